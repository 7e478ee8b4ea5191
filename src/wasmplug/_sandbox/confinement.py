"""What confines a process-isolated plugin's workers: the mode asked for, the report.

The worker applies it (``wasmplug._runtime.process.jail``, with :mod:`.seccomp` and
:mod:`.landlock`) and reports a :class:`Confinement` in its ``READY`` message; the
application keeps it for :attr:`Plugin.confinement <wasmplug.Plugin.confinement>`.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = ["MODES", "Confinement", "ConfinementMode", "from_wire", "to_wire"]

ConfinementMode = Literal["auto", "require", "off"]
MODES: tuple[ConfinementMode, ...] = ("auto", "require", "off")
_MAX_LINES, _MAX_LINE = 8, 500  # what a report from a worker may hold


@attrs.frozen
class Confinement:
    """How a process-isolated plugin's worker processes are confined (``Plugin.confinement``).

    Attributes:
        seccomp: Its system-call filter is applied: no new processes or programs,
            no ``setsid``/``setpgid``, no ``ptrace``, no signals to other
            processes, no sockets, no namespaces or mounts (see
            ``docs/crash-isolation.md``, "What a worker is confined to").
        landlock_abi: The Landlock ABI version its filesystem ruleset uses
            (1 or more: files beyond what the worker needs and the plugin's
            granted directories cannot be opened; 4+: no TCP either; 6+: no
            signals or abstract Unix sockets outside the worker), or 0: none.
        missing: What was not applied and why, one line each (empty when both were).
    """

    seccomp: bool
    landlock_abi: int
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Both the seccomp filter and a Landlock ruleset apply."""
        return self.seccomp and self.landlock_abi > 0

    def __str__(self) -> str:
        parts = ["seccomp" if self.seccomp else "no seccomp"]
        parts.append(f"landlock ABI {self.landlock_abi}" if self.landlock_abi else "no landlock")
        return ", ".join(parts) + "".join(f"; {m}" for m in self.missing)


def from_wire(data: Any) -> Confinement:
    """What a worker reported in ``READY`` (``[seccomp, landlock ABI, [missing...]]``);
    a report that is absent or malformed counts as nothing applied."""
    if (
        data.__class__ is list
        and len(data) == 3
        and data[0].__class__ is bool
        and data[1].__class__ is int
        and 0 <= data[1] < 1000
        and data[2].__class__ is list
        and len(data[2]) <= _MAX_LINES
        and all(m.__class__ is str and len(m) <= _MAX_LINE for m in data[2])
    ):
        return Confinement(data[0], data[1], tuple(data[2]))
    return Confinement(False, 0, ("the worker did not report how it is confined",))


def to_wire(confinement: Confinement) -> list[Any]:
    """The report a worker sends in ``READY`` (see :func:`from_wire`), within its bounds."""
    missing = [m[:_MAX_LINE] for m in confinement.missing[:_MAX_LINES]]
    return [confinement.seccomp, confinement.landlock_abi, missing]
