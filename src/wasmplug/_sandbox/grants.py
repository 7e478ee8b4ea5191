"""Grants: what the application allows, and the effective sandbox (declared ∩ granted).

Nothing reaches a plugin unless the manifest declares it *and* the
application grants it. The host path of a directory always comes from the
grant, never from the plugin. WASI is linked with a capability-less
``WasiConfig`` plus exactly the granted preopens and environment keys; no
``inherit_*`` call is ever made.

:class:`Grants` and :class:`EffectiveSandbox` hold one entry per *grant kind*,
keyed by the kind's grant key (``"filesystem"``, ``"env"``...). Each kind is a
capability definition (:class:`~wasmplug.Capability` with a ``grant_key``) that
registers itself here when it is defined (:func:`register_kind`): it converts a
value given in code, computes its part of the effective sandbox, and links it
into each instance's WASI context. The familiar attributes
(``Grants.filesystem``, ``EffectiveSandbox.preopens``...) are views of those
entries, and the keyword arguments of both constructors are the kinds'
attribute names, so a new kind needs no new field here.

Each granted directory is bound to its identity when the plugin loads
(:class:`~wasmplug._sandbox.bound_dir.BoundDir`), and checked before every new
instance. A grant that lies inside (or is the same directory as) another,
*writable* grant of the same plugin is refused at load: through the outer
grant the plugin could write into the inner one, so a read-only inner grant
would not be read-only, and it could replace the inner directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
from wasmtime import WasiConfig

from wasmplug._errors import CapabilityError

from .bound_dir import BoundDir
from .stdio import GuestOutput

__all__ = [
    "DirGrant",
    "EffectiveSandbox",
    "FrozenMap",
    "GrantKind",
    "Grants",
    "Preopen",
    "WasiSettings",
    "by_keyword",
    "check_overlaps",
    "register_kind",
    "wasi_text",
]


class FrozenMap(Mapping[str, Any]):
    """An immutable mapping, equal to any mapping with the same items (hashable
    when its values are)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


class GrantKind(Protocol):
    """What :class:`Grants` and :class:`EffectiveSandbox` need of a grant kind
    (a :class:`~wasmplug.Capability` definition with a ``grant_key``)."""

    @property
    def id(self) -> str: ...

    @property
    def grant_key(self) -> str | None: ...

    @property
    def grant_attr(self) -> str: ...

    @property
    def effective_attr(self) -> str: ...

    def convert_grant(self, value: Any) -> Any: ...

    def configure_wasi(self, config: WasiConfig, effective: Any) -> None: ...

    def release(self, effective: Any) -> None: ...


_KINDS: dict[str, GrantKind] = {}  # grant key -> kind, in definition order


def register_kind(kind: GrantKind) -> None:
    """Make ``kind`` a grant kind: its grant key names its entry in :class:`Grants`
    and :class:`EffectiveSandbox`, its attribute names their keyword arguments.

    Raises:
        ValueError: another kind already uses its grant key or an attribute name.
    """
    assert kind.grant_key is not None
    known = _KINDS.get(kind.grant_key)
    if known is not None:
        if known.id != kind.id:
            raise ValueError(f"grant key {kind.grant_key!r} is already used by {known.id!r}")
        return
    for other in _KINDS.values():
        names = {other.grant_attr, other.effective_attr}
        if other.id != kind.id and names & {kind.grant_attr, kind.effective_attr}:
            raise ValueError(f"{kind.id!r}: an attribute name is already used by {other.id!r}")
    _KINDS[kind.grant_key] = kind


def by_keyword(owner: str, given: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments of ``owner(...)`` re-keyed: ``keys`` maps each known keyword
    (a kind's attribute name) to its key.

    Raises:
        TypeError: an unknown keyword, naming the known ones.
    """
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in keys:
            known = ", ".join(sorted(keys))
            raise TypeError(
                f"{owner}() got an unexpected keyword argument {name!r} (known: {known})"
            )
        out[keys[name]] = value
    return out


def _keys(attr: Callable[[GrantKind], str]) -> dict[str, str]:
    return {attr(kind): key for key, kind in _KINDS.items()}


def _absolute(p: str | os.PathLike[str]) -> Path:
    return Path(p).absolute()


@attrs.frozen
class DirGrant:
    """A host directory granted for one guest path.

    Attributes:
        host_path: Directory on the host (made absolute; must exist at load).
        mode: The most the application allows: ``"ro"`` or ``"rw"``. The
            effective mode is the stricter of this and the manifest's.
    """

    host_path: Path = attrs.field(converter=_absolute)
    mode: Literal["ro", "rw"] = "ro"


@attrs.frozen(init=False)
class Grants:
    """What the application allows one plugin to have.

    Args:
        filesystem: Guest path → host directory. A plain path grants read-only
            access; use :class:`DirGrant` with ``mode="rw"`` for writes.
        env: Environment variables granted, name → value. Only keys the
            manifest also declares are visible to the guest.
        host_interfaces: Interfaces granted when they were provided with
            ``sensitive=True``. Non-sensitive provided interfaces need no grant.
        allowed_outbound_hosts: Outbound URL patterns granted (Spin syntax).
        capabilities: Ids of application-defined capabilities granted
            (see :class:`~wasmplug.Capability`).
        granted: The same, keyed by grant key (``{"env": {...}}``); the keyword
            arguments above win over it.

    Every keyword is the grant of one :class:`~wasmplug.Capability` definition
    (a kind an application defines adds its own), which also says how it is
    stored, merged, read from a grants file and shown. Empty grants are dropped,
    so ``Grants(env={}) == Grants()``.

    Raises:
        TypeError: an unknown keyword, or a value of the wrong type.
        ValueError: a value no plugin could be given (an ``env`` name or value
            with a NUL character or a lone surrogate, see ``wasi_text``).
    """

    granted: Mapping[str, Any]
    """Grant key → the grant of that kind (only non-empty ones)."""

    def __init__(self, *, granted: Mapping[str, Any] | None = None, **by_attr: Any) -> None:
        by_key = by_keyword("Grants", by_attr, _keys(lambda k: k.grant_attr))
        values = {**(granted or {}), **by_key}
        out: dict[str, Any] = {}
        for key, value in values.items():
            kind = _KINDS.get(key)
            if kind is None:
                raise TypeError(f"Grants(): unknown grant key {key!r} (known: {', '.join(_KINDS)})")
            converted = kind.convert_grant(value)
            if converted:
                out[key] = converted
        self.__attrs_init__(FrozenMap(out))

    @classmethod
    def none(cls) -> Grants:
        """No grants at all (the default)."""
        return cls()

    def get(self, key: str, default: Any = None) -> Any:
        """The grant of the kind with grant key ``key``, or ``default``."""
        return self.granted.get(key, default)

    @property
    def filesystem(self) -> Mapping[str, DirGrant]:
        """Guest path → :class:`DirGrant`."""
        return self.granted.get("filesystem", FrozenMap())  # type: ignore[no-any-return]

    @property
    def env(self) -> Mapping[str, str]:
        """Environment variable name → value."""
        return self.granted.get("env", FrozenMap())  # type: ignore[no-any-return]

    @property
    def host_interfaces(self) -> frozenset[str]:
        """Sensitive interfaces granted."""
        return self.granted.get("host-interfaces", frozenset())  # type: ignore[no-any-return]

    @property
    def allowed_outbound_hosts(self) -> tuple[str, ...]:
        """Outbound URL patterns granted."""
        return self.granted.get("allowed-outbound-hosts", ())  # type: ignore[no-any-return]

    @property
    def capabilities(self) -> frozenset[str]:
        """Ids of the application capabilities granted."""
        return self.granted.get("capabilities", frozenset())  # type: ignore[no-any-return]


def wasi_text(value: Any, what: str) -> str:
    """``value`` if it can cross into a WASI context as a program argument or an
    environment variable's name or value: a ``str`` without NUL characters that
    encodes as UTF-8 (WASI strings are UTF-8; wasmtime takes them as C strings, so a
    NUL would silently cut the string short, and a lone surrogate fails to encode
    only when an instance is made).

    Raises:
        TypeError: ``value`` is not a ``str``.
        ValueError: it holds a NUL character or a lone surrogate.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate): {value!r}") from None
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    try:
        items = None if isinstance(value, str) else tuple(value)
    except TypeError:
        items = None
    if items is None or not all(isinstance(v, str) for v in items):
        raise TypeError(f"WasiSettings {what} must be a sequence of str, got {value!r}")
    for v in items:
        wasi_text(v, f"WasiSettings {what}")
    return items


def _args(value: Any) -> tuple[str, ...]:
    return _strings(value, "args")


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    pairs = tuple(_strings(pair, "env pairs") for pair in value)
    for pair in pairs:
        if len(pair) != 2 or not pair[0] or "=" in pair[0]:
            raise ValueError(
                f"WasiSettings env needs (name, value) pairs, names without '=': {pair!r}"
            )
    return pairs  # type: ignore[return-value]


@attrs.frozen
class WasiSettings:
    """A capability kind's link step as data: what it adds to each instance's WASI
    context (returned by :meth:`Capability.wasi_settings`).

    Unlike a link step written as code (:meth:`Capability.configure_wasi`), data can be
    sent to a worker process: a kind whose link step is a ``WasiSettings`` works with
    ``isolation="process"`` too, where the worker applies it without running any of the
    application's code.

    Attributes:
        args: Program arguments (``wasi:cli/environment`` ``get-arguments``), appended
            after ``argv[0]`` (``"plugin"``) and those of other kinds.
        env: Environment variables, ``(name, value)`` pairs, added to those of the
            ``env`` grant and of other kinds.

    Raises:
        TypeError: an item is not a ``str``.
        ValueError: a string holds a NUL character or a lone surrogate (see
            ``wasi_text``), or an ``env`` item is not a ``(name, value)`` pair with
            a non-empty name without ``=``.
    """

    args: tuple[str, ...] = attrs.field(default=(), converter=_args)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)

    def apply(self, config: WasiConfig) -> None:
        """Add these settings to ``config`` (wasmtime appends arguments and variables)."""
        if self.args:
            config.argv = list(self.args)
        if self.env:
            config.env = [list(pair) for pair in self.env]

    def to_wire(self) -> list[Any]:
        """JSON-like data for a worker process."""
        return [list(self.args), [list(pair) for pair in self.env]]

    @classmethod
    def from_wire(cls, data: Any) -> WasiSettings:
        """The inverse of :meth:`to_wire`.

        Raises:
            CapabilityError: ``data`` is not what :meth:`to_wire` makes.
        """
        try:
            args, env = data
            return cls(args, env)
        except (TypeError, ValueError) as e:
            raise CapabilityError(f"malformed WASI settings from the application: {e}") from None


@attrs.frozen
class Preopen:
    host_path: Path
    guest_path: str
    writable: bool
    directory: BoundDir = attrs.field(eq=False, repr=False)


@attrs.frozen(init=False)
class EffectiveSandbox:
    """The sandbox one plugin actually gets: declared ∩ granted.

    Args:
        preopens: Directories visible in the guest.
        env: Environment variables visible in the guest, ``(name, value)`` pairs.
        allowed_outbound_hosts: Outbound URL patterns the plugin may reach.
        capabilities: Ids of the application capabilities granted.
        denied: Human-readable notes on what was declared but not granted.
        effective: The same, keyed by grant key; the keyword arguments above win.
        linked: Link steps given as data (:class:`WasiSettings`) by kinds that are not
            defined in this process: what a worker process receives for an
            application's kinds.

    Each keyword is one grant kind's part (:class:`Grants` explains kinds).
    """

    effective: Mapping[str, Any]
    """Grant key → what the plugin gets of that kind (only non-empty ones)."""
    denied: tuple[str, ...]
    linked: tuple[WasiSettings, ...]

    def __init__(
        self,
        *,
        effective: Mapping[str, Any] | None = None,
        denied: tuple[str, ...] = (),
        linked: tuple[WasiSettings, ...] = (),
        **by_attr: Any,
    ) -> None:
        by_key = by_keyword("EffectiveSandbox", by_attr, _keys(lambda k: k.effective_attr))
        values = {**(effective or {}), **by_key}
        effective = FrozenMap({k: v for k, v in values.items() if v})
        self.__attrs_init__(effective, tuple(denied), tuple(linked))

    def get(self, key: str, default: Any = None) -> Any:
        """What the plugin gets of the kind with grant key ``key``, or ``default``."""
        return self.effective.get(key, default)

    @property
    def preopens(self) -> tuple[Preopen, ...]:
        """Directories visible in the guest."""
        return self.effective.get("filesystem", ())  # type: ignore[no-any-return]

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        """Environment variables visible in the guest."""
        return self.effective.get("env", ())  # type: ignore[no-any-return]

    @property
    def allowed_outbound_hosts(self) -> tuple[str, ...]:
        """Outbound URL patterns the plugin may reach."""
        return self.effective.get("allowed-outbound-hosts", ())  # type: ignore[no-any-return]

    @property
    def capabilities(self) -> frozenset[str]:
        """Ids of the application capabilities granted (and declared)."""
        return self.effective.get("capabilities", frozenset())  # type: ignore[no-any-return]

    def wasi_config(self, stdout: GuestOutput | None, stderr: GuestOutput | None) -> WasiConfig:
        """Build a fresh ``WasiConfig`` for one instance: each kind's link step
        adds its part (preopens, environment...) to an empty configuration.

        Raises:
            CapabilityError: if a granted host directory no longer names the
                directory it named at load (see :class:`BoundDir`), or cannot
                be preopened.
        """
        config = WasiConfig()
        config.argv = ["plugin"]
        for key, value in self.effective.items():
            _KINDS[key].configure_wasi(config, value)
        for settings in self.linked:
            settings.apply(config)
        if stdout is not None:
            stdout.wire(config, "stdout")
        if stderr is not None:
            stderr.wire(config, "stderr")
        return config

    def close(self) -> None:
        """Release what the kinds hold (the directories of the preopens; idempotent)."""
        for key, value in self.effective.items():
            _KINDS[key].release(value)


def _ancestors(directory: BoundDir) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of ``directory`` and of every directory above its real path."""
    found = {directory.identity()}
    for parent in Path(directory.real_path).parents:
        try:
            st = os.stat(parent)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def check_overlaps(preopens: list[Preopen]) -> None:
    """Refuse a grant that lies inside, or is, the directory of another writable grant."""
    for inner in preopens:
        above = _ancestors(inner.directory)
        for outer in preopens:
            if outer is inner or not outer.writable:
                continue
            if outer.directory.identity() in above:
                same = outer.directory.identity() == inner.directory.identity()
                where = "is the same directory as" if same else "lies inside"
                raise CapabilityError(
                    f"grant for {inner.guest_path!r} ({inner.host_path}) {where} the writable "
                    f"grant for {outer.guest_path!r} ({outer.host_path}): through "
                    f"{outer.guest_path!r} the plugin could modify or replace it. Grant the "
                    "outer directory read-only, or grant directories that do not overlap"
                )
