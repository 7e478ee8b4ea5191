"""Capabilities: one definition object per kind of access, carrying everything about it.

Zellij's ``PermissionType`` and Spin's one table per capability kind are the
models. A :class:`Capability` says, in one place:

- its stable id, display name and prompt text (:attr:`~Capability.display_name`,
  :meth:`~Capability.describe`);
- the import names that need it (:attr:`~Capability.imports`);
- its manifest key under ``[capabilities]`` and how a declared value is checked
  (``manifest_key``, ``check_declared``; :mod:`~wasmplug._sandbox.manifest`
  applies them to ``Manifest(...)`` and TOML alike);
- what it asks the user for (``permissions``);
- its grant: the :class:`~wasmplug.Grants` field, its JSON form in the grant
  store, its form in a grants TOML file, how two answers merge, and how the CLI
  shows it (``grant_key``, ``grant_from_data``, ``grant_to_data``, ``merge``,
  ``show_grant``);
- the link step: declared ∩ granted (``resolve``: the preopens, environment,
  hosts and application capabilities of the plugin's ``EffectiveSandbox``, which
  each instance's WASI context is built from), and the imports a declaration
  brings (``declares_import``: outbound hosts declare the HTTP interface).

Adding a built-in capability is one new definition here (plus a field on
``Manifest`` and ``Grants``) and its tests; every loop below picks it up.
Applications define their own capabilities with the public constructor
(``Capability("acme:run-commands", "Run commands")``): they are asked for with
:meth:`Capability.permission`, remembered by :class:`~wasmplug.GrantPolicy`
in ``Grants.capabilities``, and checked with :meth:`Capability.granted_in`. An
application capability that names ``imports`` is also required, like a
sensitive interface, by every plugin that imports one of them.

Some things are *implied* and never prompted for: clocks, random numbers,
stdout/stderr into the application's log (rate-limited), and the limits
within the application's defaults. Sockets and ``wasi:http`` are never granted.
"""

from __future__ import annotations

import posixpath
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wasmplug._jsonstore import Invalid, as_dict, as_list, as_str, as_str_list
from wasmplug._semver import semver_compatible

from .bound_dir import BoundDir
from .capability import _REGISTRY, Capability, Declarations, Permission
from .grants import DirGrant, EffectiveSandbox, Grants, Preopen, check_overlaps
from .urlpattern import PatternError, parse_pattern

__all__ = [
    "BUILTIN",
    "GRANT_KINDS",
    "HTTP_INTERFACE",
    "Capability",
    "Permission",
    "capability_for_import",
    "check_guest_path",
    "declared_capabilities",
    "declares_import",
    "requested_permissions",
    "resolve",
    "show_grants",
]

HTTP_INTERFACE = "wasmplug:host/http@0.1.0"
"""The built-in outbound HTTP interface (``src/wasmplug/wit/http.wit``)."""

_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
INTERFACE_RE = re.compile(rf"{_ID}:{_ID}/{_ID}(?:@[0-9A-Za-z.+-]+)?|{_ID}")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# -- the built-in definitions ---------------------------------------------------------------


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def show_value(value: object) -> str:
    """``repr(value)`` cut to a readable length and depth, for messages about outside input."""
    return _REPR.repr(value)


def check_guest_path(path: str) -> str | None:
    """Return why ``path`` is not an acceptable guest path, or ``None`` if it is."""
    if "\0" in path:
        return "contains a NUL byte"
    if not path.startswith("/"):
        return f"{show_value(path)} must be absolute (start with '/')"
    if ".." in path.split("/"):
        return f"{show_value(path)} must not contain '..'"
    if posixpath.normpath(path) != path and path != "/":
        return f"{show_value(path)} is not normalised (use {show_value(posixpath.normpath(path))})"
    return None


class _FilesystemRead(Capability):
    """Directories: ``[[capabilities.filesystem]]`` (guest path, mode), granted as
    ``Grants.filesystem`` (guest path → :class:`DirGrant`), preopened per instance."""

    __slots__ = ()
    manifest_key = "filesystem"
    grant_key = "filesystem"

    def check_declared(self, item: str) -> str | None:
        return check_guest_path(item)

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        out: list[Permission] = []
        for req in manifest.filesystem:
            out.append(Permission(self, req.guest_path, req.description))
            if req.mode == "rw":
                out.append(Permission(Capability.FILESYSTEM_WRITE, req.guest_path, req.description))
        return out

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> dict[str, Any]:
        preopens: list[Preopen] = []
        try:
            for req in manifest.filesystem:
                grant = grants.filesystem.get(req.guest_path)
                if grant is None:
                    denied.append(f"filesystem {req.guest_path} ({req.mode}): not granted")
                    continue
                writable = req.mode == "rw" and grant.mode == "rw"
                if req.mode == "rw" and not writable:
                    denied.append(
                        f"filesystem {req.guest_path}: write access not granted (read-only)"
                    )
                directory = BoundDir(grant.host_path, req.guest_path)
                preopens.append(Preopen(grant.host_path, req.guest_path, writable, directory))
            check_overlaps(preopens)
        except BaseException:
            for p in preopens:
                p.directory.close()
            raise
        return {"preopens": tuple(preopens)}

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        if isinstance(grants, EffectiveSandbox):
            return bool(grants.preopens)
        return bool(grants.filesystem)

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> dict[str, DirGrant]:
        out: dict[str, DirGrant] = {}
        for guest, spec in as_dict(value, where).items():
            at = f"{where}.{guest}"
            if toml:  # grants file: "/srv/data" or "/srv/data:rw"
                spec = as_str(spec, at)
                host, _, mode = spec.rpartition(":")
                if mode not in ("ro", "rw") or not host:
                    host, mode = spec, "ro"
            else:  # grant store: [host path, mode]
                pair = as_list(spec, at)
                if len(pair) != 2:
                    raise Invalid(f"{at}: expected [host path, mode], got {len(pair)} items")
                host, mode = as_str(pair[0], f"{at}[0]"), as_str(pair[1], f"{at}[1]")
            if mode not in ("ro", "rw"):
                raise Invalid(f"{at}: mode must be 'ro' or 'rw', got {mode!r}")
            out[guest] = DirGrant(Path(host), mode)  # type: ignore[arg-type]
        return out

    def grant_to_data(self, value: Mapping[str, DirGrant]) -> Any:
        return {k: [str(v.host_path), v.mode] for k, v in value.items()}

    def merge(self, earlier: Mapping[str, DirGrant], answer: Mapping[str, DirGrant]) -> Any:
        return {**earlier, **answer}

    def show_grant(self, value: Mapping[str, DirGrant], *, show_values: bool = False) -> list[str]:
        return [f"filesystem {k} -> {v.host_path} ({v.mode})" for k, v in value.items()]

    def show_declared(self, manifest: Declarations) -> list[str]:
        return [f"{r.guest_path} ({r.mode})" for r in manifest.filesystem]


class _FilesystemWrite(Capability):
    """Write access to a declared directory: asked for by :class:`_FilesystemRead`
    (``mode = "rw"``) and granted by a :class:`DirGrant` with ``mode="rw"``."""

    __slots__ = ()

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return []  # listed by FILESYSTEM_READ, next to the read permission it extends

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        if isinstance(grants, EffectiveSandbox):
            return any(p.writable for p in grants.preopens)
        return any(g.mode == "rw" for g in grants.filesystem.values())


class _Environment(Capability):
    """Environment variables: ``env = ["KEY"]`` declares names, ``Grants.env`` gives
    values; the granted ones are set in each instance's WASI context."""

    __slots__ = ()
    manifest_key = "env"
    grant_key = "env"

    def check_declared(self, item: str) -> str | None:
        return (
            None
            if ENV_KEY_RE.fullmatch(item)
            else f"{show_value(item)} is not an environment variable name"
        )

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return [Permission(self, key) for key in manifest.env]

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> dict[str, Any]:
        env = []
        for key in manifest.env:
            if key in grants.env:
                env.append((key, grants.env[key]))
            else:
                denied.append(f"env {key}: not granted")
        return {"env": tuple(env)}

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        return bool(grants.env)

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> dict[str, str]:
        return {k: as_str(v, f"{where}.{k}") for k, v in as_dict(value, where).items()}

    def grant_to_data(self, value: Mapping[str, str]) -> Any:
        return dict(value)

    def merge(self, earlier: Mapping[str, str], answer: Mapping[str, str]) -> Any:
        return {**earlier, **answer}

    def show_grant(self, value: Mapping[str, str], *, show_values: bool = False) -> list[str]:
        return [f"env {k}={v}" if show_values else f"env {k}" for k, v in value.items()]

    def show_declared(self, manifest: Declarations) -> list[str]:
        return list(manifest.env)


def _string_list_grant(value: Any, where: str) -> tuple[str, ...]:
    return tuple(as_str_list(value, where))


def check_host_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is not an outbound host pattern (Spin syntax), or ``None``."""
    try:
        parse_pattern(pattern)
    except PatternError as e:
        return (
            f"{show_value(pattern)} is not a host pattern like 'https://api.example.com' "
            f"or 'https://*.example.org:8443' ({e})"
        )
    return None


class _Http(Capability):
    """Outbound HTTP: ``allowed-outbound-hosts`` declares URL patterns (Spin syntax),
    ``Grants.allowed_outbound_hosts`` grants them, and declaring any also declares
    the built-in :data:`HTTP_INTERFACE`, whose provider (``HttpCapability``)
    checks every request against the plugin's effective patterns."""

    __slots__ = ()
    manifest_key = "allowed-outbound-hosts"
    grant_key = "allowed-outbound-hosts"
    interface = HTTP_INTERFACE

    def check_declared(self, item: str) -> str | None:
        return check_host_pattern(item)

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return [Permission(self, host) for host in manifest.allowed_outbound_hosts]

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        return bool(manifest.allowed_outbound_hosts) and self.covers(name)

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> dict[str, Any]:
        granted = grants.allowed_outbound_hosts
        hosts = tuple(h for h in manifest.allowed_outbound_hosts if h in granted)
        denied.extend(
            f"outbound host {h}: not granted"
            for h in manifest.allowed_outbound_hosts
            if h not in granted
        )
        return {"allowed_outbound_hosts": hosts}

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        return bool(grants.allowed_outbound_hosts)

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> tuple[str, ...]:
        return _string_list_grant(value, where)

    def grant_to_data(self, value: tuple[str, ...]) -> Any:
        return list(value)

    def merge(self, earlier: tuple[str, ...], answer: tuple[str, ...]) -> Any:
        return tuple(dict.fromkeys([*earlier, *answer]))

    def show_grant(self, value: tuple[str, ...], *, show_values: bool = False) -> list[str]:
        return [f"http {h}" for h in value]

    def show_declared(self, manifest: Declarations) -> list[str]:
        return list(manifest.allowed_outbound_hosts)


class _HostInterfaces(Capability):
    """Application interfaces: ``host-interfaces`` declares the WIT interfaces a
    plugin imports; one provided with ``sensitive=True`` also needs
    ``Grants.host_interfaces``."""

    __slots__ = ()
    manifest_key = "host-interfaces"
    grant_key = "host-interfaces"

    def check_declared(self, item: str) -> str | None:
        if INTERFACE_RE.fullmatch(item):
            return None
        return f"{show_value(item)} is not a WIT interface name like 'ns:pkg/iface@1.0.0'"

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return [Permission(self, name) for name in manifest.host_interfaces if name in sensitive]

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        return any(semver_compatible(name, d) for d in manifest.host_interfaces)

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        return isinstance(grants, Grants) and bool(grants.host_interfaces)

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> frozenset[str]:
        return frozenset(as_str_list(value, where))

    def grant_to_data(self, value: frozenset[str]) -> Any:
        return sorted(value)

    def merge(self, earlier: frozenset[str], answer: frozenset[str]) -> Any:
        return earlier | answer

    def show_grant(self, value: frozenset[str], *, show_values: bool = False) -> list[str]:
        return [f"interface {i}" for i in sorted(value)]

    def show_declared(self, manifest: Declarations) -> list[str]:
        return list(manifest.host_interfaces)


class _ApplicationCapabilities(Capability):
    """The grant of every application-defined capability: ``Grants.capabilities``,
    a set of capability ids (not itself a capability one can ask for)."""

    __slots__ = ()
    grant_key = "capabilities"

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return [
            p
            for cap in _REGISTRY.values()
            if cap.is_application_defined
            for p in cap.permissions(manifest, sensitive)
        ]

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> dict[str, Any]:
        return {"capabilities": frozenset(grants.capabilities)}

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> frozenset[str]:
        return frozenset(as_str_list(value, where))

    def grant_to_data(self, value: frozenset[str]) -> Any:
        return sorted(value)

    def merge(self, earlier: frozenset[str], answer: frozenset[str]) -> Any:
        return earlier | answer

    def show_grant(self, value: frozenset[str], *, show_values: bool = False) -> list[str]:
        out = []
        for cap_id in sorted(value):
            cap = _REGISTRY.get(cap_id)
            out.append(f"capability {cap_id}" + (f" ({cap.display_name})" if cap else ""))
        return out


Capability.FILESYSTEM_READ = _FilesystemRead(
    "filesystem-read", "Read files in a folder", imports=("wasi:filesystem/",)
)
Capability.FILESYSTEM_WRITE = _FilesystemWrite(
    "filesystem-write", "Create, change and delete files in a folder"
)
Capability.ENVIRONMENT = _Environment(
    "environment", "Read an environment variable", imports=("wasi:cli/environment@",)
)
Capability.HTTP = _Http("http", "Make web requests", imports=("wasmplug:host/http@",))
Capability.HOST_INTERFACE = _HostInterfaces("host-interface", "Use an application interface")
_APPLICATION = _ApplicationCapabilities("application", "Application capabilities")
del _REGISTRY["application"]  # a grant group, not a capability to ask for

BUILTIN: tuple[Capability, ...] = (
    Capability.FILESYSTEM_READ,
    Capability.FILESYSTEM_WRITE,
    Capability.ENVIRONMENT,
    Capability.HTTP,
    Capability.HOST_INTERFACE,
)
"""The built-in capabilities, in prompt order."""

DECLARABLE: tuple[Capability, ...] = tuple(c for c in BUILTIN if c.manifest_key is not None)
"""Those with a manifest key under ``[capabilities]``."""

GRANT_KINDS: tuple[Capability, ...] = (*(c for c in BUILTIN if c.grant_key), _APPLICATION)
"""One per :class:`Grants` field (application capabilities share one)."""

_GRANT_ATTRS = {
    "filesystem": "filesystem",
    "env": "env",
    "allowed-outbound-hosts": "allowed_outbound_hosts",
    "host-interfaces": "host_interfaces",
    "capabilities": "capabilities",
}


def grant_attr(cap: Capability) -> str:
    """The :class:`Grants` attribute that holds ``cap``'s grant."""
    assert cap.grant_key is not None
    return _GRANT_ATTRS[cap.grant_key]


# -- the loops ------------------------------------------------------------------------------

# Import-name prefixes that can never get a capability: sockets are never granted,
# and wasi:http is never linked for real (no host allow-list; it is linked as traps).
_NEVER = ("wasi:sockets/", "wasi:http/")


def declared_capabilities(manifest: Declarations) -> dict[str, list[str]]:
    """What ``manifest`` declares, by manifest key, as ``inspect`` and ``list`` show it."""
    return {cap.manifest_key: cap.show_declared(manifest) for cap in DECLARABLE if cap.manifest_key}


def show_grants(grants: Grants, *, show_values: bool = False) -> list[str]:
    """One line per granted item, as ``wasmplug grants list`` shows them."""
    return [
        line
        for cap in GRANT_KINDS
        for line in cap.show_grant(getattr(grants, grant_attr(cap)), show_values=show_values)
    ]


def capability_for_import(name: str) -> Capability | None:
    """The capability an import needs to have any effect, or ``None`` if it needs none
    (implied) or can never have one (sockets, wasi:http).

    Every other non-WASI interface is a :attr:`Capability.HOST_INTERFACE`,
    unless an application capability covers it.
    """
    if name.startswith(_NEVER):
        return None
    for cap in _REGISTRY.values():
        if cap.covers(name):
            return cap
    if name.startswith("wasi:"):
        return None
    return Capability.HOST_INTERFACE


def requested_permissions(
    manifest: Declarations, sensitive_interfaces: frozenset[str] = frozenset()
) -> tuple[Permission, ...]:
    """Everything ``manifest`` asks for that needs a grant.

    Args:
        manifest: The plugin's manifest.
        sensitive_interfaces: Interfaces the application provides as sensitive;
            only those of the declared host interfaces need a grant.
    """
    return tuple(
        p
        for cap in (*BUILTIN, _APPLICATION)
        for p in cap.permissions(manifest, sensitive_interfaces)
    )


def declares_import(manifest: Declarations, name: str) -> bool:
    """Whether ``manifest`` declares the (non-WASI) import ``name``: a
    semver-compatible name in ``host-interfaces``, or an interface a declared
    capability brings (``allowed-outbound-hosts`` declares :data:`HTTP_INTERFACE`)."""
    return any(cap.declares_import(manifest, name) for cap in BUILTIN)


def resolve(manifest: Declarations, grants: Grants) -> EffectiveSandbox:
    """Intersect what ``manifest`` declares with what ``grants`` allows.

    Each granted directory is opened and bound to its identity here; the
    returned sandbox holds it until :meth:`EffectiveSandbox.close`.

    Raises:
        CapabilityError: if a granted host directory does not exist or is not a
            directory, or if a granted directory is, or lies inside, another
            writable granted directory.
    """
    denied: list[str] = []
    fields: dict[str, Any] = {}
    for cap in GRANT_KINDS:
        fields.update(cap.resolve(manifest, grants, denied))
    return EffectiveSandbox(
        preopens=fields["preopens"],
        env=fields["env"],
        allowed_outbound_hosts=fields["allowed_outbound_hosts"],
        denied=tuple(denied),
        capabilities=fields["capabilities"],
    )
