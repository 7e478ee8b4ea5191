"""Capabilities: the one enum of what a plugin can be granted, and what its imports need.

Zellij's ``PermissionType`` is the model: one enum, each member with a
user-facing description, and one table from host imports to capabilities.

Some things are *implied* and never prompted for: clocks, random numbers,
stdout/stderr into the application's log (rate-limited), and the limits
within the application's defaults. Everything in :class:`Capability` is
denied unless granted.
"""

from __future__ import annotations

import enum

import attrs

from .manifest import Manifest

__all__ = [
    "Capability",
    "Permission",
    "capability_for_import",
    "requested_permissions",
]


class Capability(enum.Enum):
    """A kind of access a plugin can be granted. Value: a stable kebab-case id."""

    FILESYSTEM_READ = "filesystem-read"
    FILESYSTEM_WRITE = "filesystem-write"
    ENVIRONMENT = "environment"
    HTTP = "http"
    HOST_INTERFACE = "host-interface"

    @property
    def display_name(self) -> str:
        """A short description for permission prompts, e.g. ``"Read files in a folder"``."""
        return _DISPLAY[self]


_DISPLAY = {
    Capability.FILESYSTEM_READ: "Read files in a folder",
    Capability.FILESYSTEM_WRITE: "Create, change and delete files in a folder",
    Capability.ENVIRONMENT: "Read an environment variable",
    Capability.HTTP: "Make web requests",
    Capability.HOST_INTERFACE: "Use an application interface",
}

# One table: import-name prefix -> the capability that gives it any effect.
# wasi:* interfaces are always linked, but with a capability-less WASI context
# they can do nothing until the matching capability is granted.
_IMPORT_TABLE: tuple[tuple[str, Capability | None], ...] = (
    ("wasi:filesystem/", Capability.FILESYSTEM_READ),
    ("wasi:cli/environment", Capability.ENVIRONMENT),
    ("wasi:sockets/", None),  # never granted: no sockets for plugins
    ("wasi:http/", None),  # never linked for real: no host allow-list (linked as traps)
    ("wasmplug:host/http", Capability.HTTP),
)


def capability_for_import(name: str) -> Capability | None:
    """The capability an import needs to have any effect, or ``None`` if it needs none
    (implied) or can never have one (sockets, wasi:http).

    Every other non-WASI interface is a :attr:`Capability.HOST_INTERFACE`.
    """
    for prefix, capability in _IMPORT_TABLE:
        if name.startswith(prefix):
            return capability
    if name.startswith("wasi:"):
        return None
    return Capability.HOST_INTERFACE


@attrs.frozen
class Permission:
    """One thing a plugin asks for, as shown in a prompt.

    Attributes:
        capability: What kind of access.
        target: What exactly: a guest path, an env key, a URL pattern, an interface name.
        reason: The plugin's own explanation, if its manifest gives one.
    """

    capability: Capability
    target: str
    reason: str = ""

    @property
    def description(self) -> str:
        """``"Read files in a folder: /data"`` (plus the plugin's reason, if any)."""
        text = f"{self.capability.display_name}: {self.target}"
        return f"{text} ({self.reason})" if self.reason else text


def requested_permissions(
    manifest: Manifest, sensitive_interfaces: frozenset[str] = frozenset()
) -> tuple[Permission, ...]:
    """Everything ``manifest`` asks for that needs a grant.

    Args:
        manifest: The plugin's manifest.
        sensitive_interfaces: Interfaces the application provides as sensitive;
            only those of the declared host interfaces need a grant.
    """
    out: list[Permission] = []
    for req in manifest.filesystem:
        out.append(Permission(Capability.FILESYSTEM_READ, req.guest_path, req.description))
        if req.mode == "rw":
            out.append(Permission(Capability.FILESYSTEM_WRITE, req.guest_path, req.description))
    out.extend(Permission(Capability.ENVIRONMENT, key) for key in manifest.env)
    out.extend(Permission(Capability.HTTP, host) for host in manifest.allowed_outbound_hosts)
    out.extend(
        Permission(Capability.HOST_INTERFACE, name)
        for name in manifest.host_interfaces
        if name in sensitive_interfaces
    )
    return tuple(out)
