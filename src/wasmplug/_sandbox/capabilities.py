"""Capabilities: one definition object per kind of access, carrying everything about it.

Zellij's ``PermissionType`` and Spin's one table per capability kind are the
models. A :class:`Capability` says, in one place:

- its stable id, display name and prompt text (:attr:`~Capability.display_name`,
  :meth:`~Capability.describe`);
- the import names that need it (:attr:`~Capability.imports`);
- its manifest key under ``[capabilities]``, how its TOML value is read and how a
  declared value is checked (``manifest_key``, ``parse_declared``,
  ``declared_problems``: :mod:`~wasmplug._sandbox.manifest` applies them to
  ``Manifest(...)`` and TOML alike, and keeps the declaration under that key);
- what it asks the user for (``permissions``);
- its grant: its key in :class:`~wasmplug.Grants`, its JSON form in the grant
  store, its form in a grants file, how two answers merge, how the CLI shows and
  parses it (``grant_key``, ``convert_grant``, ``grant_from_data``,
  ``grant_to_data``, ``merge``, ``show_grant``, ``parse_cli_grant``);
- the link step: declared ∩ granted (``resolve``: its part of the plugin's
  ``EffectiveSandbox``), what that part adds to each instance's WASI context
  (``configure_wasi``), how it reaches a worker process (``to_wire``), and the
  imports a declaration brings (``declares_import``: outbound hosts declare the
  HTTP interface).

Adding a capability is one new definition (here for a built-in, anywhere for an
application's own kind) and its tests: ``Manifest``, ``Grants``,
``EffectiveSandbox``, the grant store, grants files, the CLI and the process
tier all loop over the registered definitions. Applications define plain
capabilities with the public constructor (``Capability("acme:run-commands",
"Run commands")``): a plugin declares them under ``application``, they are
granted in ``Grants.capabilities`` and checked with
:meth:`Capability.granted_in`. One that names ``imports`` is also required,
like a sensitive interface, by every plugin that imports one of them.

Some things are *implied* and never prompted for: clocks, random numbers,
stdout/stderr into the application's log (rate-limited), and the limits
within the application's defaults. Sockets and ``wasi:http`` are never granted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wasmtime import WasiConfig

from wasmplug._errors import CapabilityError
from wasmplug._jsonstore import as_dict, as_str, as_str_list
from wasmplug._semver import semver_compatible

from .capability import (
    _APP_ID_RE,
    _REGISTRY,
    Capability,
    Declarations,
    Permission,
    declared_kinds,
    grant_kind,
    grant_kinds,
    is_builtin,
    show_value,
)
from .filesystem import FilesystemRequest, _FilesystemRead, _FilesystemWrite, check_guest_path
from .grants import EffectiveSandbox, Grants, WasiSettings, wasi_text
from .urlpattern import PatternError, parse_pattern

__all__ = [
    "BUILTIN",
    "DECLARABLE",
    "GRANT_KINDS",
    "HTTP_INTERFACE",
    "Capability",
    "FilesystemRequest",
    "Permission",
    "capability_for_import",
    "check_guest_path",
    "declared_capabilities",
    "declares_import",
    "requested_permissions",
    "resolve",
    "sandbox_from_wire",
    "sandbox_to_wire",
    "show_grants",
]

HTTP_INTERFACE = "wasmplug:host/http@0.1.0"
"""The built-in outbound HTTP interface (``src/wasmplug/wit/http.wit``)."""

_ID = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
INTERFACE_RE = re.compile(rf"{_ID}:{_ID}/{_ID}(?:@[0-9A-Za-z.+-]+)?|{_ID}")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _not_a_string(value: Any) -> TypeError:
    return TypeError(f"expected a collection, got a string: {show_value(value)}")


# -- the built-in definitions ---------------------------------------------------------------


class _Environment(Capability):
    """Environment variables: ``env = ["KEY"]`` declares names, ``Grants.env`` gives
    values; the granted ones are set in each instance's WASI context."""

    __slots__ = ()
    manifest_key = "env"
    grant_key = "env"
    cli_prefix = "env"
    cli_usage = "env:KEY=VALUE"

    def check_declared(self, item: str) -> str | None:
        if ENV_KEY_RE.fullmatch(item):
            return None
        return f"{show_value(item)} is not an environment variable name"

    def convert_grant(self, value: Mapping[str, str]) -> dict[str, str]:
        if isinstance(value, str | bytes) or not isinstance(value, Mapping):
            raise TypeError(f"env: expected a mapping of names to values, got {value!r}")
        return {wasi_text(k, "env name"): wasi_text(v, f"env {k!r}") for k, v in value.items()}

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> dict[str, str]:
        data = {k: as_str(v, f"{where}.{k}") for k, v in as_dict(value, where).items()}
        try:
            return self.convert_grant(data)
        except (TypeError, ValueError) as e:  # grants files and the grant store report these
            raise ValueError(f"{where}: {e}") from None

    def grant_to_data(self, value: Mapping[str, str]) -> Any:
        return dict(value)

    def mask_data(self, data: Any) -> Any:
        return dict.fromkeys(data, "***")  # granted values are secrets

    def merge(self, earlier: Mapping[str, str], answer: Mapping[str, str]) -> Any:
        return {**earlier, **answer}

    def show_grant(self, value: Mapping[str, str], *, show_values: bool = False) -> list[str]:
        return [f"env {k}={v}" if show_values else f"env {k}" for k, v in value.items()]

    def parse_cli_grant(self, text: str, current: Any) -> Any:
        key, eq, value = text.partition("=")
        if not eq or not key:
            raise ValueError("expected KEY=VALUE")
        return {**(current or {}), key: value}

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        env = []
        for key in self.declared_in(manifest):
            if key in grants.env:
                env.append((key, grants.env[key]))
            else:
                denied.append(f"env {key}: not granted")
        return tuple(env)

    def configure_wasi(self, config: WasiConfig, effective: tuple[tuple[str, str], ...]) -> None:
        config.env = [list(pair) for pair in effective]

    def to_wire(self, effective: tuple[tuple[str, str], ...]) -> Any:
        return [list(pair) for pair in effective]

    def from_wire(self, data: Any) -> Any:
        return tuple((str(k), str(v)) for k, v in data)


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
    cli_prefix = "http"
    cli_usage = "http:PATTERN"
    interface = HTTP_INTERFACE

    def check_declared(self, item: str) -> str | None:
        return check_host_pattern(item)

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        return bool(self.declared_in(manifest)) and self.covers(name)

    def convert_grant(self, value: Any) -> Any:
        if isinstance(value, str | bytes):
            raise _not_a_string(value)
        return tuple(value)  # in the order given

    def grant_from_data(self, value: Any, where: str, *, toml: bool = False) -> tuple[str, ...]:
        return tuple(as_str_list(value, where))

    def grant_to_data(self, value: tuple[str, ...]) -> Any:
        return list(value)

    def merge(self, earlier: tuple[str, ...], answer: tuple[str, ...]) -> Any:
        return tuple(dict.fromkeys([*earlier, *answer]))

    def show_grant(self, value: tuple[str, ...], *, show_values: bool = False) -> list[str]:
        return [f"http {h}" for h in value]

    def parse_cli_grant(self, text: str, current: Any) -> Any:
        if not text:
            raise ValueError("expected a URL pattern")
        return (*(current or ()), text)

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        declared, granted = self.declared_in(manifest), grants.allowed_outbound_hosts
        denied.extend(f"outbound host {h}: not granted" for h in declared if h not in granted)
        return tuple(h for h in declared if h in granted)


class _HostInterfaces(Capability):
    """Application interfaces: ``host-interfaces`` declares the WIT interfaces a
    plugin imports; one provided with ``sensitive=True`` also needs
    ``Grants.host_interfaces`` (checked when the imports are linked)."""

    __slots__ = ()
    manifest_key = "host-interfaces"
    grant_key = "host-interfaces"
    cli_prefix = "iface"
    cli_usage = "iface:NAME"

    def check_declared(self, item: str) -> str | None:
        if INTERFACE_RE.fullmatch(item):
            return None
        return f"{show_value(item)} is not a WIT interface name like 'ns:pkg/iface@1.0.0'"

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        return [Permission(self, n) for n in self.declared_in(manifest) if n in sensitive]

    def declares_import(self, manifest: Declarations, name: str) -> bool:
        return any(semver_compatible(name, d) for d in self.declared_in(manifest))

    def granted_in(self, grants: Grants | EffectiveSandbox) -> bool:
        return isinstance(grants, Grants) and bool(grants.host_interfaces)

    def show_grant(self, value: frozenset[str], *, show_values: bool = False) -> list[str]:
        return [f"interface {i}" for i in sorted(value)]

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        return ()  # a link-time check against the providers, not a part of the sandbox


class _ApplicationCapabilities(Capability):
    """Application-defined capabilities as a group: a manifest declares their ids
    under ``application``, ``Grants.capabilities`` grants them, and the sandbox holds
    the ids declared (or implied by a declared interface they guard) and granted.
    Not itself a capability one asks for."""

    __slots__ = ()
    manifest_key = "application"
    grant_key = "capabilities"
    cli_prefix = "cap"
    cli_usage = "cap:NAMESPACE:NAME"
    listed = False

    def check_declared(self, item: str) -> str | None:
        if _APP_ID_RE.fullmatch(item):
            return None
        return f"{show_value(item)} is not a capability id like 'acme:run-commands'"

    def _wanted(self, manifest: Declarations) -> dict[str, Capability | None]:
        """Id → definition (``None`` if the application defines none) of what
        ``manifest`` asks for: declared ids, then those guarding a declared interface."""
        wanted: dict[str, Capability | None] = {
            cap_id: _REGISTRY.get(cap_id) for cap_id in self.declared_in(manifest)
        }
        for name in Capability.HOST_INTERFACE.declared_in(manifest):
            for cap in _REGISTRY.values():
                if cap.is_application_defined and cap.covers(name):
                    wanted.setdefault(cap.id, cap)
        return wanted

    def permissions(
        self, manifest: Declarations, sensitive: frozenset[str] = frozenset()
    ) -> list[Permission]:
        found = self._wanted(manifest).values()
        return [cap.permission() for cap in found if cap is not None and cap.is_application_defined]

    def show_grant(self, value: frozenset[str], *, show_values: bool = False) -> list[str]:
        out = []
        for cap_id in sorted(value):
            cap = _REGISTRY.get(cap_id)
            out.append(f"capability {cap_id}" + (f" ({cap.display_name})" if cap else ""))
        return out

    def resolve(self, manifest: Declarations, grants: Grants, denied: list[str]) -> Any:
        wanted = self._wanted(manifest)
        for cap_id, cap in wanted.items():
            if cap is None:
                denied.append(f"capability {cap_id}: not defined by the application")
            elif cap_id not in grants.capabilities:
                denied.append(f"capability {cap_id}: not granted")
        return frozenset(cap_id for cap_id in wanted if cap_id in grants.capabilities)


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
APPLICATION = _ApplicationCapabilities("application", "Application capabilities")

BUILTIN: tuple[Capability, ...] = (
    Capability.FILESYSTEM_READ,
    Capability.FILESYSTEM_WRITE,
    Capability.ENVIRONMENT,
    Capability.HTTP,
    Capability.HOST_INTERFACE,
)
"""The built-in capabilities, in prompt order."""

DECLARABLE: tuple[Capability, ...] = declared_kinds()
"""The built-in kinds with a manifest key under ``[capabilities]``."""

GRANT_KINDS: tuple[Capability, ...] = grant_kinds()
"""The built-in kinds with a grant (application capabilities share one)."""


# -- the loops (over every registered kind, built-in or not) --------------------------------

# Import-name prefixes that can never get a capability: sockets are never granted,
# and wasi:http is never linked for real (no host allow-list; it is linked as traps).
_NEVER = ("wasi:sockets/", "wasi:http/")


def declared_capabilities(manifest: Declarations) -> dict[str, list[str]]:
    """What ``manifest`` declares, by manifest key, as ``inspect`` and ``list`` show it."""
    return {
        cap.manifest_key: cap.show_declared(cap.declared_in(manifest))
        for cap in declared_kinds()
        if cap.manifest_key
    }


def show_grants(grants: Grants, *, show_values: bool = False) -> list[str]:
    """One line per granted item, as ``wasmplug grants list`` shows them."""
    return [
        line
        for cap in grant_kinds()
        if cap.grant_key is not None and cap.grant_key in grants.granted
        for line in cap.show_grant(grants.granted[cap.grant_key], show_values=show_values)
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
    """Everything ``manifest`` asks for that needs a grant, in prompt order.

    Args:
        manifest: The plugin's manifest.
        sensitive_interfaces: Interfaces the application provides as sensitive;
            only those of the declared host interfaces need a grant.
    """
    kinds = dict.fromkeys((*BUILTIN, *declared_kinds()))
    return tuple(p for cap in kinds for p in cap.permissions(manifest, sensitive_interfaces))


def declares_import(manifest: Declarations, name: str) -> bool:
    """Whether ``manifest`` declares the (non-WASI) import ``name``: a
    semver-compatible name in ``host-interfaces``, or an interface a declared
    capability brings (``allowed-outbound-hosts`` declares :data:`HTTP_INTERFACE`)."""
    return any(cap.declares_import(manifest, name) for cap in declared_kinds())


def resolve(manifest: Declarations, grants: Grants) -> EffectiveSandbox:
    """Intersect what ``manifest`` declares with what ``grants`` allows, kind by kind.

    Each granted directory is opened and bound to its identity here; the
    returned sandbox holds it until :meth:`EffectiveSandbox.close`.

    Raises:
        CapabilityError: if a granted host directory does not exist or is not a
            directory, or if a granted directory is, or lies inside, another
            writable granted directory.
    """
    denied: list[str] = []
    effective: dict[str, Any] = {}
    try:
        for cap in grant_kinds():
            assert cap.grant_key is not None
            effective[cap.grant_key] = cap.resolve(manifest, grants, denied)
    except BaseException:
        EffectiveSandbox(effective=effective).close()
        raise
    return EffectiveSandbox(effective=effective, denied=tuple(denied))


def sandbox_to_wire(sandbox: EffectiveSandbox) -> dict[str, Any]:
    """The parts of ``sandbox`` a worker process links into WASI, as JSON-like data
    (the other parts are served by the application through its host interfaces):
    ``"kinds"``, each built-in kind's part in its own wire form (the worker has the
    same definitions), and ``"linked"``, the link steps of the application's kinds
    as :class:`WasiSettings` data (the worker never runs the application's code).

    Raises:
        CapabilityError: an application's kind that is granted links into WASI
            with code (it overrides ``configure_wasi``), which a worker cannot run.
    """
    kinds: dict[str, Any] = {}
    linked: list[Any] = []
    for key, value in sandbox.effective.items():
        cap = grant_kind(key)
        assert cap is not None
        if not cap.links_wasi:
            continue
        if is_builtin(cap):
            kinds[key] = cap.to_wire(value)
        elif type(cap).configure_wasi is not Capability.configure_wasi:
            raise CapabilityError(
                f"capability kind {key!r} ({cap.id}) links into WASI with code "
                f"({type(cap).__qualname__}.configure_wasi), which a worker process never "
                "runs: return its link step as data from wasi_settings() instead, or load "
                "the plugin with isolation='inprocess'"
            )
        else:
            settings = cap.checked_wasi_settings(value)
            if settings is not None:
                linked.append(settings.to_wire())
    for settings in sandbox.linked:
        linked.append(settings.to_wire())
    return {"kinds": kinds, "linked": linked}


def sandbox_from_wire(data: Mapping[str, Any]) -> EffectiveSandbox:
    """The inverse of :func:`sandbox_to_wire`, in the worker.

    Raises:
        CapabilityError: a part names a kind the worker does not define, is
            malformed, or cannot be honoured (a granted directory is no longer the
            one bound at load).
    """
    effective: dict[str, Any] = {}
    try:
        for key, value in data["kinds"].items():
            cap = grant_kind(key)
            if cap is None or not is_builtin(cap):
                raise CapabilityError(f"capability kind {key!r} is not defined in the worker")
            effective[key] = cap.from_wire(value)
        linked = tuple(WasiSettings.from_wire(s) for s in data["linked"])
    except BaseException:
        EffectiveSandbox(effective=effective).close()
        raise
    return EffectiveSandbox(effective=effective, linked=linked)
