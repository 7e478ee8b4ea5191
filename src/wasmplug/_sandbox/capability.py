"""The public capability API: :class:`Capability` (a definition object) and :class:`Permission`.

A :class:`Capability` carries everything about one kind of access; the base
class is also how applications define their own. The built-in definitions,
which override the declaration, grant and link hooks, and the loops over all
of them, are in :mod:`wasmplug._sandbox.capabilities`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol

import attrs

from wasmplug._semver import semver_compatible

from .grants import EffectiveSandbox, Grants

__all__ = ["Capability", "Declarations", "Permission"]

_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_APP_ID_RE = re.compile(rf"{_ID}:{_ID}(?:/{_ID})*")  # fullmatch; namespaced, unlike built-ins

_REGISTRY: dict[str, Capability] = {}


class Declarations(Protocol):
    """What a manifest declares, as the capability definitions read it
    (a :class:`~wasmplug.Manifest`)."""

    @property
    def host_interfaces(self) -> tuple[str, ...]: ...

    @property
    def env(self) -> tuple[str, ...]: ...

    @property
    def allowed_outbound_hosts(self) -> tuple[str, ...]: ...

    @property
    def filesystem(self) -> tuple[Any, ...]: ...


class _CapabilityType(type):
    """Iterating the class lists every capability (as iterating the former enum did)."""

    def __iter__(cls) -> Iterator[Capability]:
        return iter(tuple(_REGISTRY.values()))

    def __len__(cls) -> int:
        return len(_REGISTRY)


class Capability(metaclass=_CapabilityType):
    """A kind of access a plugin can be granted, with everything about it.

    The built-in capabilities are class attributes: ``FILESYSTEM_READ``,
    ``FILESYSTEM_WRITE``, ``ENVIRONMENT``, ``HTTP`` and ``HOST_INTERFACE``.
    Applications define their own::

        RUN_COMMANDS = Capability(
            "acme:run-commands", "Run commands", "run programs on this computer"
        )

    An application capability is asked for with ``RUN_COMMANDS.permission()``
    (in a :class:`PermissionRequest` given to ``GrantPolicy.decide``), granted
    as ``Grants(capabilities={"acme:run-commands"})`` (remembered by the grant
    store), and checked with ``RUN_COMMANDS.granted_in(grants)``.

    Args:
        id: A stable id, ``namespace:kebab-name`` (built-ins have plain names).
        display_name: A short phrase for permission prompts (``"Run commands"``).
        description: A longer explanation shown with it.
        imports: Interface names (a ``name@`` prefix matches every version)
            that need this capability: a plugin importing one is refused at
            load unless it is granted, and is asked for it.

    Raises:
        ValueError: ``id`` is not ``namespace:kebab-name``, or is already
            defined differently.
    """

    __slots__ = ("description", "display_name", "id", "imports")

    FILESYSTEM_READ: ClassVar[Capability]
    """Read a directory the manifest declares (``[[capabilities.filesystem]]``)."""
    FILESYSTEM_WRITE: ClassVar[Capability]
    """Write to it (``mode = "rw"``)."""
    ENVIRONMENT: ClassVar[Capability]
    """Read an environment variable the manifest declares (``env``)."""
    HTTP: ClassVar[Capability]
    """Outbound HTTP to the patterns the manifest declares (``allowed-outbound-hosts``)."""
    HOST_INTERFACE: ClassVar[Capability]
    """Use an interface the application provides as sensitive (``host-interfaces``)."""

    # Overridden by the built-in definitions below.
    manifest_key: ClassVar[str | None] = None
    grant_key: ClassVar[str | None] = None

    def __init__(
        self, id: str, display_name: str, description: str = "", *, imports: Iterable[str] = ()
    ) -> None:
        builtin = type(self) is not Capability
        if not builtin and not (isinstance(id, str) and _APP_ID_RE.fullmatch(id)):
            raise ValueError(
                f"capability id {id!r} must be 'namespace:kebab-name' (e.g. 'acme:run-commands')"
            )
        self.id = id
        self.display_name = display_name
        self.description = description
        self.imports = tuple(imports)
        known = _REGISTRY.get(id)
        if known is not None and (type(known) is not type(self) or _fields(known) != _fields(self)):
            raise ValueError(f"capability {id!r} is already defined as {known!r}")
        _REGISTRY.setdefault(id, self)

    # -- identity ---------------------------------------------------------------

    @property
    def value(self) -> str:
        """The id (as the former enum's ``value``)."""
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Capability) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Capability {self.id!r}: {self.display_name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Capability.get, (self.id,))

    @staticmethod
    def get(id: str) -> Capability:
        """The capability with this id (built-in or defined by the application).

        Raises:
            KeyError: no such capability.
        """
        return _REGISTRY[id]

    @staticmethod
    def all() -> tuple[Capability, ...]:
        """Every capability defined so far, built-ins first."""
        return tuple(_REGISTRY.values())

    # -- prompts ------------------------------------------------------------------

    def describe(self, target: str = "") -> str:
        """Prompt text: ``"Make web requests: https://api.example.com"``."""
        return f"{self.display_name}: {target}" if target else self.display_name

    def permission(self, target: str = "", reason: str = "") -> Permission:
        """A :class:`Permission` asking for this capability (``reason`` defaults to
        the description)."""
        return Permission(self, target, reason or self.description)

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        """What ``manifest`` asks for of this capability (application capabilities:
        one permission per declared host interface among ``imports``)."""
        return [self.permission(name) for name in manifest.host_interfaces if self.covers(name)]

    @property
    def is_application_defined(self) -> bool:
        """Whether the application defined it (not one of the built-ins)."""
        return type(self) is Capability

    # -- imports ----------------------------------------------------------------------

    def covers(self, import_name: str) -> bool:
        """Whether ``import_name`` is one of the imports that need this capability."""
        return any(_import_matches(import_name, pattern) for pattern in self.imports)

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        """Whether declaring this capability in ``manifest`` declares import ``name``."""
        return False

    # -- grants -------------------------------------------------------------------------

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        """Whether ``grants`` (or a plugin's ``sandbox``) grant this capability.

        For built-in capabilities: whether anything of it is granted."""
        if isinstance(grants, EffectiveSandbox):
            return self.id in grants.capabilities
        return self.id in grants.capabilities

    # Declaration and grant hooks of the built-ins; application capabilities are
    # grouped under one grant key (see _ApplicationCapabilities).

    def check_declared(self, item: str) -> str | None:
        """Why one declared value is invalid, or ``None``."""
        return None

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> dict[str, Any]:
        """Declared ∩ granted: ``EffectiveSandbox`` fields; notes on what was
        declared but not granted go to ``denied``."""
        return {}

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> Any:
        """The ``Grants`` field from its JSON form (grant store), or its TOML form
        (a grants file) with ``toml=True``; a wrong type raises ``Invalid``
        naming ``where``."""
        raise NotImplementedError

    def grant_to_data(self, value: Any) -> Any:
        """The JSON form of the ``Grants`` field."""
        raise NotImplementedError

    def merge(self, earlier: Any, answer: Any) -> Any:
        """Combine an earlier answer with a new one (the new one wins where both speak)."""
        raise NotImplementedError

    def show_grant(self, value: Any, *, show_values: bool = False) -> list[str]:
        """One line per granted item, for ``wasmplug grants list``."""
        raise NotImplementedError

    def show_declared(self, manifest: Declarations) -> list[str]:
        """What ``manifest`` declares of this capability, for ``inspect`` and ``list``."""
        return []


def _fields(cap: Capability) -> tuple[Any, ...]:
    return (cap.id, cap.display_name, cap.description, cap.imports)


def _import_matches(name: str, pattern: str) -> bool:
    if pattern.endswith(("@", "/")):
        return name.startswith(pattern)
    return name == pattern or semver_compatible(name, pattern)


@attrs.frozen
class Permission:
    """One thing a plugin asks for, as shown in a prompt.

    Attributes:
        capability: What kind of access.
        target: What exactly: a guest path, an env key, a URL pattern, an
            interface name (empty for an application capability asked as a whole).
        reason: The plugin's or the application's explanation, if any.
    """

    capability: Capability
    target: str
    reason: str = ""

    @property
    def description(self) -> str:
        """``"Read files in a folder: /data"`` (plus the reason, if any)."""
        text = self.capability.describe(self.target)
        return f"{text} ({self.reason})" if self.reason else text

    @property
    def key(self) -> str:
        """``"<capability id>:<target>"``: how remembered answers name it."""
        return f"{self.capability.id}:{self.target}"
