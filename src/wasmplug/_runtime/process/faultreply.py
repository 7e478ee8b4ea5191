"""What a worker's ``FAULT`` reply means to the caller of a process-tier call.

The worker reports how a call (or a guest destructor) failed as ``[FAULT, kind,
...]``; :class:`FaultReader` turns that into the exception the caller sees, the
same classes and messages as in-process (:func:`wasmplug._runtime.faults.classify`
for traps), and does the accounting the in-process call path does (the restart
policy's fault record, the instance retired after a trap). Every field of the
reply is untrusted: a reply of an unknown kind or shape is a
:class:`~.codec.ProtocolError`, and the caller kills the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasmtime import WasmtimeError

from wasmplug._bridge.hostfuncs import host_fault
from wasmplug._errors import (
    CapabilityError,
    ErrorResult,
    HostFunctionError,
    InstantiationError,
    PluginError,
    PluginFault,
    PluginTimeout,
    ResultTooLarge,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.faults import classify

from .codec import ExportCodec, ProtocolError
from .handles import CallHandles, retire
from .hostcalls import Frame, text

if TYPE_CHECKING:
    from wasmplug._runtime.exports import ExportFunc
    from wasmplug._runtime.plugin import PluginPort

    from .spawn import WorkerProcess

__all__ = ["FaultReader"]

_WORKER_WORDS = 200
"""Characters of a failed worker's own report (``FAULT "start"``) quoted in the error."""


class FaultReader:
    """Reads one plugin's ``FAULT`` replies.

    Args:
        port: The plugin, as the process tier sees it (errors, fault accounting).
        memory_limited: The plugin has ``Limits.memory_bytes`` (a failed grow is then
            reported as the limit, see :func:`~wasmplug._runtime.faults.classify`).
        succeeded: Called for an ``err`` result, which is a successful call.
    """

    def __init__(
        self,
        port: PluginPort,
        memory_limited: bool,
        succeeded: Callable[[WorkerProcess, ExportFunc | None], None],
    ) -> None:
        self._port = port
        self._memory_limited = memory_limited
        self._succeeded = succeeded

    def capability(self, message: str) -> CapabilityError:
        """A worker refused to create an instance: a granted directory changed (counted)."""
        self._port.supervisor.record("capability", message, None)
        return CapabilityError(message)

    def read(
        self,
        worker: WorkerProcess,
        ex: ExportFunc | None,
        codec: ExportCodec | None,
        frame: Frame,
        msg: list[Any],
    ) -> BaseException:
        """The exception for a FAULT reply (the worker itself is fine and stays)."""
        port = self._port
        kind = msg[1]
        if kind == "err" and len(msg) == 3 and codec is not None:
            dec = codec.err
            if dec is None and msg[2] is not None:
                raise ProtocolError("err payload for a result without an error type")
            value = None if dec is None else dec(msg[2], CallHandles(worker))
            self._succeeded(worker, ex)
            return port.error(ErrorResult(value), ex)
        if kind == "inst" and len(msg) >= 4:
            err = InstantiationError(text(msg[2]))
            err.__notes__ = [text(n) for n in msg[4:]]
            err.__cause__ = WasmtimeError(text(msg[3]))
            return err
        if kind == "capability" and len(msg) == 3:
            return self.capability(text(msg[2]))
        if kind in ("WitTypeError", "WitValueError", "StaleResourceError") and len(msg) == 3:
            cls = {"WitTypeError": WitTypeError, "WitValueError": WitValueError}.get(
                kind, StaleResourceError
            )
            return cls(text(msg[2]))
        if kind == "error" and len(msg) == 3:
            return port.error(PluginError(text(msg[2])), ex)
        if kind == "start":
            # The worker's serving loop raised (worker.main): it is exiting. Its own
            # words, untrusted, cut short: what a bug in the worker leaves to go on.
            said = msg[2] if len(msg) == 3 and msg[2].__class__ is str else ""
            raise ProtocolError(f"the worker failed: {said[:_WORKER_WORDS]!r}")
        exc: PluginFault
        worker.fresh = False  # the worker discarded its instance...
        retire(worker, port)  # ...and with it the guest objects its handles named
        if kind == "host" and len(msg) == 2:
            host_exc = frame.host_exc
            if host_exc is None:
                raise ProtocolError("reported a host-function fault, but none failed")
            frame.host_exc = None
            if not isinstance(host_exc, Exception):
                fault = HostFunctionError(
                    f"host function {frame.host_func} raised {type(host_exc).__name__}"
                )
                port.fault(fault, ex)
                return host_exc
            exc = host_fault(frame.host_func, host_exc)  # as in-process
        elif kind == "lift" and len(msg) == 4 and msg[2] in ("result-size", "timeout"):
            # The worker's result exceeded Limits.max_result_bytes or the deadline
            # while it was lifted there (see wasmplug._bridge.lift).
            exc = (ResultTooLarge if msg[2] == "result-size" else PluginTimeout)(text(msg[3]))
        elif kind == "wasm" and len(msg) >= 4:
            cause, tail = text(msg[2]), text(msg[3])
            exc = classify(cause, guest_stderr=tail, memory_limited=self._memory_limited)
            exc.__cause__ = WasmtimeError(cause)
            exc.guest_stderr = tail
            for note in msg[4:]:  # e.g. "raised by the guest destructor..."
                exc.add_note(text(note))
        else:
            # Named by its type unless it is a string: a repr of an array nested a
            # thousand deep would raise RecursionError.
            what = repr(kind[:_WORKER_WORDS]) if kind.__class__ is str else type(kind).__name__
            raise ProtocolError(f"malformed FAULT {what}")
        return port.fault(exc, ex)
