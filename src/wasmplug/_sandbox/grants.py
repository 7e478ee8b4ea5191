"""Grants: what the application allows, and the effective sandbox (declared ∩ granted).

Nothing reaches a plugin unless the manifest declares it *and* the
application grants it. The host path of a directory always comes from the
grant, never from the plugin. WASI is linked with a capability-less
``WasiConfig`` plus exactly the granted preopens and environment keys; no
``inherit_*`` call is ever made.

Each granted directory is bound to its identity when the plugin loads
(:class:`~wasmplug._sandbox.bound_dir.BoundDir`), and checked before every new
instance. A grant that lies inside (or is the same directory as) another,
*writable* grant of the same plugin is refused at load: through the outer
grant the plugin could write into the inner one, so a read-only inner grant
would not be read-only, and it could replace the inner directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import attrs
from wasmtime import WasiConfig

from wasmplug._errors import CapabilityError

from .bound_dir import BoundDir
from .stdio import GuestOutput

__all__ = ["DirGrant", "EffectiveSandbox", "Grants", "check_overlaps"]


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


def _dirs(value: Mapping[str, DirGrant | str | os.PathLike[str]]) -> dict[str, DirGrant]:
    return {
        guest: v if isinstance(v, DirGrant) else DirGrant(Path(v), "ro")
        for guest, v in value.items()
    }


def _str_map(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _str_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Grants:
    """What the application allows one plugin to have.

    Attributes:
        filesystem: Guest path → host directory. A plain path grants read-only
            access; use :class:`DirGrant` with ``mode="rw"`` for writes.
        env: Environment variables granted, name → value. Only keys the
            manifest also declares are visible to the guest.
        host_interfaces: Interfaces granted when they were provided with
            ``sensitive=True``. Non-sensitive provided interfaces need no grant.
        allowed_outbound_hosts: Outbound URL patterns granted (Spin syntax).
        capabilities: Ids of application-defined capabilities granted
            (see :class:`~wasmplug.Capability`).

    Each field is the grant of one :class:`~wasmplug.Capability` definition,
    which also says how it is stored, merged, read from a grants file and shown.
    """

    filesystem: Mapping[str, DirGrant] = attrs.field(factory=dict, converter=_dirs)
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)
    host_interfaces: frozenset[str] = attrs.field(factory=frozenset, converter=_str_set)
    allowed_outbound_hosts: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    capabilities: frozenset[str] = attrs.field(factory=frozenset, converter=_str_set)

    @classmethod
    def none(cls) -> Grants:
        """No grants at all (the default)."""
        return cls()


@attrs.frozen
class Preopen:
    host_path: Path
    guest_path: str
    writable: bool
    directory: BoundDir = attrs.field(eq=False, repr=False)


@attrs.frozen
class EffectiveSandbox:
    """The sandbox one plugin actually gets: declared ∩ granted.

    Attributes:
        preopens: Directories visible in the guest.
        env: Environment variables visible in the guest.
        allowed_outbound_hosts: Outbound URL patterns the plugin may reach.
        denied: Human-readable notes on what was declared but not granted.
        capabilities: Ids of the application capabilities granted.
    """

    preopens: tuple[Preopen, ...]
    env: tuple[tuple[str, str], ...]
    allowed_outbound_hosts: tuple[str, ...]
    denied: tuple[str, ...]
    capabilities: frozenset[str] = frozenset()

    def wasi_config(self, stdout: GuestOutput | None, stderr: GuestOutput | None) -> WasiConfig:
        """Build a fresh ``WasiConfig`` for one instance.

        Raises:
            CapabilityError: if a granted host directory no longer names the
                directory it named at load (see :class:`BoundDir`), or cannot
                be preopened.
        """
        config = WasiConfig()
        config.argv = ["plugin"]
        if self.env:
            config.env = [list(pair) for pair in self.env]
        for p in self.preopens:
            p.directory.preopen(config, writable=p.writable)
        if stdout is not None:
            config.stdout_custom = stdout
        if stderr is not None:
            config.stderr_custom = stderr
        return config

    def close(self) -> None:
        """Release the directories held for the preopens (idempotent)."""
        for p in self.preopens:
            p.directory.close()


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
