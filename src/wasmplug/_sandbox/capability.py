"""The public capability API: :class:`Capability` (a definition object) and :class:`Permission`.

A :class:`Capability` carries everything about one kind of access. The base
class is also how applications define their own: a plain instance is an
*application capability* (declared under ``application`` in a manifest,
granted in ``Grants.capabilities``), and a subclass that sets a
``manifest_key`` and a ``grant_key`` is a new *kind*, with its own manifest
key, grant, prompt lines, CLI display and link step, all in that one class.
The built-in definitions and the loops over all of them are in
:mod:`wasmplug._sandbox.capabilities`.

The hooks a kind may override, by stage (the defaults suit a kind whose
declaration is a list of names and whose grant is a set of them, as
``host-interfaces`` is):

- *declare*: ``parse_declared`` (the TOML value), ``check_declared`` /
  ``declared_problems`` (the value rules, for TOML and ``Manifest(...)``
  alike), ``normalise_declared``, ``show_declared``, ``declares_import``;
- *ask*: ``permissions`` (one :class:`Permission` per declared item);
- *grant*: ``convert_grant`` (a value given in code), ``grant_from_data`` /
  ``grant_to_data`` (the grant store's JSON and a grants file's TOML),
  ``merge``, ``show_grant`` and ``mask_data`` (``wasmplug grants list``),
  ``parse_cli_grant`` (``wasmplug call --grant PREFIX:...``);
- *link*: ``resolve`` (declared ∩ granted, the kind's part of the
  :class:`~wasmplug._sandbox.grants.EffectiveSandbox`), ``wasi_settings`` (its
  part of each instance's WASI context, as data) or ``configure_wasi`` (the same
  as code, which only the built-in kinds may use with ``isolation="process"``),
  ``release``, and ``to_wire``/``from_wire`` (how a built-in kind's part reaches
  a worker process).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

import attrs
from wasmtime import WasiConfig

from wasmplug._errors import CapabilityError
from wasmplug._jsonstore import as_str_list
from wasmplug._semver import semver_compatible

from .grants import EffectiveSandbox, Grants, WasiSettings, register_kind

__all__ = [
    "MALFORMED",
    "Capability",
    "Declarations",
    "Permission",
    "declared_kind",
    "declared_kinds",
    "grant_kind",
    "grant_kinds",
    "is_builtin",
    "show_value",
]

_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_APP_ID_RE = re.compile(rf"{_ID}:{_ID}(?:/{_ID})*")  # fullmatch; namespaced, unlike built-ins
_KEY_RE = re.compile(_ID)
_BUILTIN_PACKAGE = "wasmplug._sandbox."
_RESERVED_KEYS = frozenset({"stdio"})  # [capabilities] keys that are not capabilities

_REGISTRY: dict[str, Capability] = {}  # id -> capability one can ask for
_DECLARED: dict[str, Capability] = {}  # manifest key -> the kind that owns it
_GRANTED: dict[str, Capability] = {}  # grant key -> the kind that owns it

Problem = Callable[[str, str], None]
"""``problem(key, message)``: how a parser reports one problem and carries on."""


class _Malformed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED: Any = _Malformed()
"""Stands in for a declared item whose TOML type ``parse_declared`` already reported,
so the value rules that run after it still name every other item by its own index
(a manifest with a problem is never built, so it never reaches a Manifest)."""


class Declarations(Protocol):
    """What a manifest declares, as the capability definitions read it
    (a :class:`~wasmplug.Manifest`)."""

    @property
    def declarations(self) -> Mapping[str, tuple[Any, ...]]: ...


def declared_kinds() -> tuple[Capability, ...]:
    """Every kind with a manifest key, in definition order (built-ins first)."""
    return tuple(_DECLARED.values())


def grant_kinds() -> tuple[Capability, ...]:
    """Every kind with a grant key, in definition order (built-ins first)."""
    return tuple(_GRANTED.values())


def declared_kind(key: str) -> Capability | None:
    """The kind that owns manifest key ``key``, if any."""
    return _DECLARED.get(key)


def grant_kind(key: str) -> Capability | None:
    """The kind that owns grant key ``key``, if any."""
    return _GRANTED.get(key)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def show_value(value: object) -> str:
    """``repr(value)`` cut to a readable length and depth, for messages about outside input."""
    return _REPR.repr(value)


def _as_tuple(value: Any) -> Any:
    """Lists (and other iterables) become tuples; a string is kept, for the validator
    to report (``env="HOME"`` would otherwise become four one-letter keys)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value
    return tuple(value)


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

    A plugin declares it in its manifest (``[capabilities] application =
    ["acme:run-commands"]``, or ``Manifest(application=[...])``); the
    application grants it as ``Grants(capabilities={"acme:run-commands"})``
    (asked for, and remembered, by a :class:`GrantPolicy` like any other
    grant) and checks it with ``RUN_COMMANDS.granted_in(plugin.sandbox)``,
    which holds only what was both declared and granted. An application can
    also ask at run time with ``RUN_COMMANDS.permission()`` in a
    :class:`PermissionRequest`.

    A subclass that sets ``manifest_key`` and ``grant_key`` defines a new
    kind of capability with its own manifest key and grant (see the module
    docstring for the hooks it may override).

    Args:
        id: A stable id, ``namespace:kebab-name`` (built-ins have plain names).
        display_name: A short phrase for permission prompts (``"Run commands"``).
        description: A longer explanation shown with it.
        imports: Interface names (a ``name@`` prefix matches every version)
            that need this capability: a plugin importing one is refused at
            load unless it is granted, and is asked for it.

    Raises:
        ValueError: ``id`` is not ``namespace:kebab-name``, or is already
            defined differently, or a kind's manifest or grant key is taken.
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

    manifest_key: ClassVar[str | None] = None
    """Its key under ``[capabilities]`` (a kind; ``None`` for a plain capability)."""
    grant_key: ClassVar[str | None] = None
    """Its grant's key in ``Grants``, the grant store and grants files."""
    cli_prefix: ClassVar[str | None] = None
    """``wasmplug call --grant PREFIX:...`` grants it."""
    cli_usage: ClassVar[str] = ""
    """How that ``--grant`` is written, for help and errors (``"http:PATTERN"``)."""
    listed: ClassVar[bool] = True
    """Whether it is one to ask for (listed by :meth:`all`), not only a grant group."""

    def __init__(
        self, id: str, display_name: str, description: str = "", *, imports: Iterable[str] = ()
    ) -> None:
        if not is_builtin(self) and not (isinstance(id, str) and _APP_ID_RE.fullmatch(id)):
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
        if known is None:
            self._register()

    def _register(self) -> None:
        key = self.manifest_key
        if key is not None:
            if not _KEY_RE.fullmatch(key) or key in _RESERVED_KEYS:
                raise ValueError(f"manifest key {key!r} must be kebab-case, and not 'stdio'")
            owner = _DECLARED.get(key)
            if owner is not None and owner.id != self.id:
                raise ValueError(f"manifest key {key!r} is already used by {owner.id!r}")
        if self.grant_key is not None:
            register_kind(self)
            _GRANTED.setdefault(self.grant_key, self)
        if key is not None:
            _DECLARED.setdefault(key, self)
        if self.listed:
            _REGISTRY[self.id] = self

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

    @property
    def is_application_defined(self) -> bool:
        """Whether it is a plain application capability (granted in ``Grants.capabilities``)."""
        return type(self) is Capability

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
        """What ``manifest`` asks for of this capability: one permission per declared item."""
        return [Permission(self, str(item)) for item in self.declared_in(manifest)]

    # -- imports ----------------------------------------------------------------------

    def covers(self, import_name: str) -> bool:
        """Whether ``import_name`` is one of the imports that need this capability."""
        return any(_import_matches(import_name, pattern) for pattern in self.imports)

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        """Whether declaring this capability in ``manifest`` declares import ``name``."""
        return False

    # -- declare ------------------------------------------------------------------------

    @property
    def manifest_attr(self) -> str:
        """The ``Manifest(...)`` keyword of its manifest key (``-`` becomes ``_``)."""
        assert self.manifest_key is not None
        return self.manifest_key.replace("-", "_")

    def declared_in(self, manifest: Declarations) -> tuple[Any, ...]:
        """What ``manifest`` declares under this kind's manifest key (empty if nothing)."""
        if self.manifest_key is None:
            return ()
        return manifest.declarations.get(self.manifest_key, ())

    def parse_declared(self, value: Any, where: str, problem: Problem) -> tuple[Any, ...]:
        """The declaration from its TOML value (an array of strings); wrong TOML
        types go to ``problem`` and are left out."""
        if not isinstance(value, list):
            problem(where, f"must be an array of strings, got {type(value).__name__}")
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                problem(f"{where}[{i}]", f"must be a string, got {type(item).__name__}")
                out.append(MALFORMED)
        return tuple(out)

    def normalise_declared(self, value: Any) -> Any:
        """A value given to ``Manifest(...)``, before the rules run (lists become tuples)."""
        return _as_tuple(value)

    def check_declared(self, item: str) -> str | None:
        """Why one declared value is invalid, or ``None``."""
        return None

    def declared_problems(self, value: Any, where: str) -> list[str]:
        """Every rule the declaration breaks, keyed as in ``wasmplug.toml``: a tuple of
        strings, each passing :meth:`check_declared`, without duplicates."""
        if isinstance(value, str) or not isinstance(value, tuple):
            return [f"{where}: must be an array of strings, got {type(value).__name__}"]
        out = []
        for i, item in enumerate(value):
            if item is MALFORMED:  # reported by parse_declared
                continue
            error = f"must be a string, got {type(item).__name__}"
            if isinstance(item, str):
                error = self.check_declared(item) or ""
            if error:
                out.append(f"{where}[{i}]: {error}")
        items = [item for item in value if item is not MALFORMED]
        if len(set(items)) != len(items):
            out.append(f"{where}: contains duplicates")
        return out

    def show_declared(self, declared: tuple[Any, ...]) -> list[str]:
        """The declaration, one line per item, for ``inspect`` and ``list``."""
        return [str(item) for item in declared]

    # -- grant --------------------------------------------------------------------------

    @property
    def grant_attr(self) -> str:
        """The ``Grants(...)`` keyword of its grant key."""
        assert self.grant_key is not None
        return self.grant_key.replace("-", "_")

    @property
    def effective_attr(self) -> str:
        """The ``EffectiveSandbox(...)`` keyword of its part of the sandbox."""
        return self.grant_attr

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        """Whether ``grants`` (or a plugin's ``sandbox``) grant this capability.

        For a kind: whether anything of it is granted."""
        if self.grant_key is None:
            return self.id in grants.capabilities
        return bool(grants.get(self.grant_key))

    def convert_grant(self, value: Any) -> Any:
        """A grant given in code (``Grants(kind=...)``): a set of names.

        Raises:
            TypeError: a bare string (it would be a set of characters).
        """
        if isinstance(value, str | bytes):
            raise TypeError(f"{self.grant_attr}: expected a collection of strings, got a string")
        return frozenset(value)

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> Any:
        """The grant from its JSON form (grant store), or its TOML form (a grants
        file) with ``toml=True``.

        Raises:
            ValueError: a wrong type or value, naming ``where`` (the grant store and
                grants files turn it into their own errors).
        """
        return frozenset(as_str_list(value, where))

    def grant_to_data(self, value: Any) -> Any:
        """The JSON form of the grant."""
        return sorted(value)

    def mask_data(self, data: Any) -> Any:
        """The JSON form with secret values hidden (``wasmplug grants list`` without
        ``--show-values``)."""
        return data

    def merge(self, earlier: Any, answer: Any) -> Any:
        """Combine an earlier answer with a new one (the new one wins where both speak)."""
        return frozenset(earlier) | frozenset(answer)

    def show_grant(self, value: Any, *, show_values: bool = False) -> list[str]:
        """One line per granted item, for ``wasmplug grants list``."""
        return [f"{self.id} {item}" for item in sorted(value)]

    def parse_cli_grant(self, text: str, current: Any) -> Any:
        """The grant with ``--grant PREFIX:text`` added to ``current`` (or ``None``).

        Raises:
            ValueError: ``text`` is not a valid grant of this kind.
        """
        if not text:
            raise ValueError("empty")
        return frozenset(current or ()) | {text}

    # -- link -----------------------------------------------------------------------------

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        """Declared ∩ granted: this kind's part of the ``EffectiveSandbox``; notes
        on what was declared but not granted go to ``denied``."""
        granted = grants.get(self.grant_key or "", frozenset())
        out = []
        for item in self.declared_in(manifest):
            if item in granted:
                out.append(item)
            else:
                denied.append(f"{self.id} {item}: not granted")
        return tuple(out)

    def wasi_settings(self, effective: Any) -> WasiSettings | None:
        """This kind's link step as data: what its part of the sandbox (``effective``,
        from :meth:`resolve`) adds to each instance's WASI context; ``None`` for
        nothing. A kind that links here rather than in :meth:`configure_wasi` also
        works with ``isolation="process"``: the worker process applies the data."""
        return None

    def configure_wasi(self, config: WasiConfig, effective: Any) -> None:
        """Add this kind's part of the sandbox to one instance's WASI context; by
        default, what :meth:`wasi_settings` returns.

        An application's kind that overrides it links with code, which a worker
        process never runs: loading a plugin that is granted such a kind with
        ``isolation="process"`` raises :class:`~wasmplug.CapabilityError`. Return a
        :class:`~wasmplug.WasiSettings` from :meth:`wasi_settings` instead.
        """
        settings = self.checked_wasi_settings(effective)
        if settings is not None:
            settings.apply(config)

    def checked_wasi_settings(self, effective: Any) -> WasiSettings | None:
        """What :meth:`wasi_settings` returns, checked to be a ``WasiSettings`` or ``None``.

        Raises:
            CapabilityError: it returned anything else.
        """
        settings = self.wasi_settings(effective)
        if settings is not None and not isinstance(settings, WasiSettings):
            raise CapabilityError(
                f"capability kind {self.id!r}: {type(self).__qualname__}.wasi_settings() "
                f"returned a {type(settings).__name__}, not a WasiSettings or None"
            )
        return settings

    def release(self, effective: Any) -> None:
        """Release what :meth:`resolve` acquired (when the plugin closes; idempotent)."""

    def to_wire(self, effective: Any) -> Any:
        """This kind's part of the sandbox as JSON-like data for a worker process
        (only kinds with a WASI link step are sent)."""
        return list(effective)

    def from_wire(self, data: Any) -> Any:
        """The inverse of :meth:`to_wire`, in the worker.

        Raises:
            CapabilityError: the part can no longer be honoured there.
        """
        return tuple(data)

    @property
    def links_wasi(self) -> bool:
        """Whether it has a WASI link step (overrides :meth:`wasi_settings` or
        :meth:`configure_wasi`)."""
        kind = type(self)
        return (
            kind.configure_wasi is not Capability.configure_wasi
            or kind.wasi_settings is not Capability.wasi_settings
        )


def is_builtin(cap: Capability) -> bool:
    """Whether ``cap`` is one of wasmplug's own definitions (which every worker process
    has), not an application's."""
    return type(cap).__module__.startswith(_BUILTIN_PACKAGE)


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
