"""Turn wasmtime's error text into wasmplug's fault classes, in one place.

wasmtime-py reports component-call failures as a plain ``WasmtimeError`` whose
text ends with a ``Caused by:`` chain; there is no trap code. The messages
below are wasmtime's own (``wasmtime::Trap`` display strings, wasmtime 50).
``tests/test_faults.py`` pins each one against a real trap so that a wasmtime
upgrade that rewords them fails loudly instead of misclassifying.
"""

from __future__ import annotations

import re

from wasmplug._errors import (
    FuelExhausted,
    PluginFault,
    PluginInterrupted,
    PluginTimeout,
    PluginTrapped,
    ResourceLimitExceeded,
    ResultTooLarge,
)

__all__ = ["DEADLINE_TRAP", "INTERRUPT_TRAP", "classify", "split_backtrace"]

_TRAP_PREFIX = "wasm trap: "

# The errors wasmplug's own epoch-deadline callback ends a call with (deadline.py).
DEADLINE_TRAP = "wasmplug: the call's deadline passed (Limits.timeout_ms)"
INTERRUPT_TRAP = "wasmplug: the call was interrupted (Ctrl-C, or its caller gave up waiting)"

# Guest-side symptoms of allocation failure after memory.grow returned -1.
# componentize-py guests print these to stderr before aborting.
_OOM_MARKERS = (
    "MemoryError",
    "memory allocation of",
    "out of memory",
    "Out of memory",
)


def split_backtrace(message: str) -> tuple[str, str]:
    """Split wasmtime's error text into ``(cause, wasm_backtrace)``.

    The cause is the innermost ``Caused by`` line without its ``wasm trap:``
    prefix, e.g. ``"wasm `unreachable` instruction executed"``.
    """
    backtrace = ""
    match = re.search(r"wasm backtrace:\n(.*?)(?:\n\n|\Z)", message, re.S)
    if match:
        backtrace = match.group(1).rstrip()
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if "Caused by:" in lines:
        lines = lines[lines.index("Caused by:") + 1 :]
    cause = lines[-1] if lines else message.strip()
    cause = re.sub(r"^\d+: ", "", cause)
    if cause.startswith(_TRAP_PREFIX):
        cause = cause[len(_TRAP_PREFIX) :]
    return cause, backtrace


def classify(message: str, *, guest_stderr: str = "", memory_limited: bool = False) -> PluginFault:
    """Map one wasmtime error message to the matching :class:`PluginFault` subclass.

    Args:
        message: ``str()`` of the ``WasmtimeError``.
        guest_stderr: The tail of what the instance wrote to stderr, used to tell
            an out-of-memory abort from other traps.
        memory_limited: Whether the instance ran under ``Limits.memory_bytes``.

    Returns:
        The exception to raise (the caller sets ``__cause__``).
    """
    cause, backtrace = split_backtrace(message)
    if cause in ("interrupt", DEADLINE_TRAP):
        return PluginTimeout("exceeded its time limit (epoch deadline)", wasm_backtrace=backtrace)
    if cause == INTERRUPT_TRAP:
        return PluginInterrupted("interrupted", wasm_backtrace=backtrace)
    if cause.startswith("all fuel consumed"):
        return FuelExhausted("ran out of fuel", wasm_backtrace=backtrace)
    if "too much data is being copied between the host and the guest" in cause:
        # wasmtime's own bound on what one call may copy out ("hostcall fuel").
        return ResultTooLarge(
            f"the value is too large for wasmtime to lift ({cause})", wasm_backtrace=backtrace
        )
    if "exceeds memory limits" in cause or "table limits" in cause:
        return ResourceLimitExceeded(cause, wasm_backtrace=backtrace)
    if memory_limited and any(marker in guest_stderr for marker in _OOM_MARKERS):
        return ResourceLimitExceeded(
            f"ran out of memory under its memory limit ({cause})", wasm_backtrace=backtrace
        )
    return PluginTrapped(cause, wasm_backtrace=backtrace)
