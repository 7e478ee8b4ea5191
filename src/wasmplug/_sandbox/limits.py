"""Resource limits and the restart policy, as frozen value types."""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["Limits", "RestartPolicy"]

WASM_PAGE = 65536
"""Size of one WebAssembly linear-memory page, in bytes."""


def _positive_or_none(_inst: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value < math.inf  # also refuses NaN
    ):
        raise ValueError(
            f"Limits.{attribute.name} must be a positive number or None, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Limits:
    """Per-plugin resource limits. ``None`` means "no limit of this kind".

    Every limit applies to one instance of the plugin (one wasmtime Store), and
    the defaults bound the instance as a whole: at most 256 MiB of linear memory
    in total, in one memory, with at most 16 tables of 100,000 elements and 64
    core instances, and at most 64 MiB of lifted result per call.

    A plugin never gets more than the application allows: when a manifest
    also asks for limits, the effective limit of each kind is the smaller one
    (see :meth:`capped_by`).

    Attributes:
        timeout_ms: Wall-clock budget of one call, in milliseconds, enforced by
            an epoch deadline (resolution: the host's tick, 1 ms by default).
            Exceeding it raises :class:`~wasmplug.PluginTimeout`. Lifting a large
            result also checks it.
        memory_bytes: Total linear memory of one instance, all its memories
            together, in bytes. wasmtime limits each memory separately, so each
            of the ``memories`` allowed memories may grow to an equal share,
            :attr:`per_memory_bytes` (with ``memories=None`` nothing bounds the
            total: each memory may grow to ``memory_bytes``). ``memory.grow`` past
            it fails (returns -1) in the guest. componentize-py components need about 12.3 MiB (197
            pages) in their one memory just to instantiate.
        fuel: Fuel budget of one call (roughly, Wasm instructions). Needs
            ``PluginHost(consume_fuel=True)``; exhausting it raises
            :class:`~wasmplug.FuelExhausted`.
        table_elements: Maximum elements of each table (per table; ``tables``
            bounds how many there are).
        instances: Maximum core instances in one instance's store
            (componentize-py components use 16, componentize-js ones 4).
        tables: Maximum tables in one instance's store (componentize-py and
            componentize-js components use 2).
        memories: Maximum linear memories in one instance's store. A component
            with more fails to instantiate (:class:`~wasmplug.InstantiationError`).
        max_result_bytes: Most a call's result (or the arguments of one host
            function call) may take once lifted, in bytes: string and byte-list
            contents plus 32 bytes per value, about what wasmtime's value tree
            holds. Exceeding it raises :class:`~wasmplug.ResultTooLarge`.
        host_objects: Most objects of the application's host-defined resource
            types (the plugin imports them) one instance may hold handles to at once,
            ``own`` and ``borrow``, in both isolation tiers (the default matches
            ``table_elements``). A host function whose result would pass it fails
            the call with :class:`~wasmplug.ResourceLimitExceeded` (the guest traps,
            the instance is discarded and its objects released); so does a call
            whose arguments would. A guest calling a host constructor in a loop
            otherwise grows the application's object table without bound.
    """

    timeout_ms: float | None = attrs.field(default=1000, validator=_positive_or_none)
    memory_bytes: int | None = attrs.field(default=256 * 2**20, validator=_positive_or_none)
    fuel: int | None = attrs.field(default=None, validator=_positive_or_none)
    table_elements: int | None = attrs.field(default=100_000, validator=_positive_or_none)
    instances: int | None = attrs.field(default=64, validator=_positive_or_none)
    tables: int | None = attrs.field(default=16, validator=_positive_or_none)
    memories: int | None = attrs.field(default=1, validator=_positive_or_none)
    max_result_bytes: int | None = attrs.field(default=64 * 2**20, validator=_positive_or_none)
    host_objects: int | None = attrs.field(default=100_000, validator=_positive_or_none)

    @property
    def per_memory_bytes(self) -> int | None:
        """The size each linear memory may grow to, in bytes.

        That is ``memory_bytes`` split evenly over the ``memories`` allowed, or
        ``None`` when there is no memory limit.
        """
        if self.memory_bytes is None:
            return None
        return int(self.memory_bytes // (self.memories or 1))

    @classmethod
    def unlimited(cls) -> Limits:
        """Limits with every kind switched off (for trusted, first-party components)."""
        return cls(**{field.name: None for field in attrs.fields(cls)})

    def capped_by(self, ceiling: Limits) -> Limits:
        """Return these limits with each kind lowered to ``ceiling``'s where that is smaller."""

        def cap(a: float | None, b: float | None) -> float | None:
            if a is None:
                return b
            if b is None:
                return a
            return min(a, b)

        values = {
            field.name: cap(getattr(self, field.name), getattr(ceiling, field.name))
            for field in attrs.fields(Limits)
        }
        capped = Limits(**values)  # type: ignore[arg-type]
        # Usually one of the two already (the same limits for every plugin that asks
        # for nothing special): hand that one out, so thousands of loaded plugins
        # share it rather than each holding an equal copy.
        if capped == ceiling:
            return ceiling
        if capped == self:
            return self
        return capped


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """What happens after a plugin instance faults.

    The faulty instance is always discarded. The next call instantiates a
    fresh one after a backoff that doubles with each consecutive fault
    (``backoff_initial_ms * 2**(n-1)``, capped at ``backoff_max_ms``). If
    ``max_faults`` faults happen within ``window_s`` seconds, the plugin is
    quarantined: every call raises :class:`~wasmplug.PluginQuarantinedError`
    until :meth:`wasmplug.Plugin.reset`. This mirrors Envoy's ``FAIL_RELOAD``
    with backoff; a successful call resets the consecutive-fault count.

    Attributes:
        max_faults: Faults within the window that trigger quarantine (>= 1).
        window_s: Length of the sliding window, in seconds.
        backoff_initial_ms: Delay before the first restart after a fault, in ms.
        backoff_max_ms: Upper bound of the restart delay, in ms.
    """

    max_faults: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    window_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    backoff_initial_ms: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    backoff_max_ms: float = attrs.field(default=1000.0, validator=attrs.validators.ge(0))

    def backoff_ms(self, consecutive_faults: int) -> float:
        """Delay before re-instantiating after ``consecutive_faults`` faults in a row, in ms."""
        if consecutive_faults <= 0 or self.backoff_initial_ms == 0:
            return 0.0
        delay = self.backoff_initial_ms * 2.0 ** (consecutive_faults - 1)
        return float(min(delay, self.backoff_max_ms))
