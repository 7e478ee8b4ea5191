"""Serving a worker while a call waits: host functions, guest log lines, dropped host objects.

A plugin's host imports run in the application, in the thread that made the
call: the worker sends ``HOSTCALL function, [args]`` and waits for ``RETURN``.
:class:`HostCalls` numbers the imported functions once (the worker links its
stand-ins in the same order, from the ``imports`` list of ``INIT``), decodes
the arguments against their WIT types, runs the function, and encodes its
result. An exception is parked on the call's :class:`Frame` and re-raised once
the worker has unwound (as in-process: the guest never sees a Python exception).
"""

from __future__ import annotations

import logging
import weakref
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import attrs

from wasmplug import _telemetry
from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.hostfuncs import Invoke, answer
from wasmplug._bridge.values import Err
from wasmplug._bridge.wit import FuncSig, ResultT
from wasmplug._sandbox.stdio import GuestOutput

from .codec import Decode, Encode, ProtocolError, decoder, encoder
from .handles import CallHandles
from .wire import Op

if TYPE_CHECKING:
    from wasmplug._bridge.hostfuncs import ResolvedImports
    from wasmplug._runtime.plugin import Plugin

    from .spawn import WorkerProcess

__all__ = ["Frame", "HostCalls", "text"]

_MAX_TEXT = 1 << 16  # longest message / log line taken from a worker, in characters
_STREAM_LEVELS = (logging.INFO, logging.WARNING)  # guest stdout, stderr (see Instance)


def text(value: Any) -> str:
    """A string a worker sent (truncated), or :class:`ProtocolError`."""
    if value.__class__ is not str:
        raise ProtocolError("expected a string")
    return value[:_MAX_TEXT]


class Frame:
    """This thread's call into a process plugin, on the call chain re-entry checks walk."""

    __slots__ = ("caller", "deadline_s", "host_exc", "host_func", "plugin", "worker")

    ticker = None
    """No epoch ticker of the application's ticks for a frame: the worker runs the
    Wasm, on its own epoch clock (``engine.EpochTicker``)."""

    def __init__(self, plugin: Plugin, caller: Any, worker: WorkerProcess) -> None:
        self.plugin = plugin
        self.caller = caller
        self.worker = worker
        self.host_exc: BaseException | None = None
        self.host_func = ""
        # When the call's budget ends (time.monotonic()), for async host functions.
        self.deadline_s: float | None = None


@attrs.frozen
class _HostFunc:
    qualname: str
    invoke: Invoke
    decs: list[Decode]
    enc: Encode | None
    returns_result: bool


class HostCalls:
    """The host functions one plugin imports, numbered as its workers link them.

    Args:
        resolved: The plugin's resolved host imports.
        plugin_name: For the ``wasmplug.plugin.<name>`` logger of guest output.
        discard_output: The manifest says ``stdio = "discard"``: guest output is
            dropped here too, whatever a worker sends.

    Attributes:
        wanted: ``[[interface or "", [function names]], ...]``: the order the
            worker links its stand-ins in (function id = position).
        sigs: ``(qualified name, signature)`` of every host function.
    """

    def __init__(
        self, resolved: ResolvedImports, plugin_name: str, *, discard_output: bool = False
    ) -> None:
        self._funcs: list[_HostFunc] = []
        self.wanted: list[list[Any]] = []
        self.sigs: list[tuple[str, FuncSig]] = []
        for iface, (shape, invokes) in resolved.interfaces.items():
            names = []
            for sig in shape.functions:
                self._add(f"{shape.name}#{sig.name}", sig, invokes[sig.name])
                names.append(sig.name)
            self.wanted.append([iface, names])
        world = []
        for name, (sig, invoke) in resolved.functions.items():
            self._add(name, sig, invoke)
            world.append(name)
        if world:
            self.wanted.append(["", world])
        self._guest_log = logging.getLogger(f"wasmplug.plugin.{plugin_name}")
        self._discard_output = discard_output
        # Each worker's guest stdout and stderr, as in-process (see log()).
        self._outputs: weakref.WeakKeyDictionary[WorkerProcess, dict[int, GuestOutput]] = (
            weakref.WeakKeyDictionary()
        )

    def _add(self, qualname: str, sig: FuncSig, invoke: Invoke) -> None:
        self.sigs.append((qualname, sig))
        self._funcs.append(
            _HostFunc(
                qualname=qualname,
                invoke=invoke,
                decs=[decoder(t) for _, t in sig.params],
                enc=None if sig.result is None else encoder(sig.result),
                returns_result=isinstance(sig.result, ResultT),
            )
        )

    def serve(
        self, worker: WorkerProcess, frame: Frame, msg: list[Any], deadline: float | None
    ) -> None:
        """Run the host function a ``HOSTCALL`` names and send the worker its ``RETURN``
        (by ``deadline``, the call's, a ``time.monotonic()`` value).

        Raises:
            ProtocolError: the message is malformed (the worker is killed).
            OSError: the worker is gone.
            TimeoutError: the worker did not take the reply by the deadline.
        """
        funcs = self._funcs
        if len(msg) != 3 or msg[1].__class__ is not int or not 0 <= msg[1] < len(funcs):
            raise ProtocolError("malformed HOSTCALL")
        hf = funcs[msg[1]]
        wire = msg[2]
        if wire.__class__ is not list or len(wire) != len(hf.decs):
            raise ProtocolError(f"HOSTCALL {hf.qualname}: wrong number of arguments")
        handles = CallHandles(worker)
        args = [dec(w, handles) for dec, w in zip(hf.decs, wire, strict=True)]
        try:
            # A child span of the plugin's call span, as for in-process host calls.
            with _telemetry.span("wasmplug.host_call", {"wasmplug.host.function": hf.qualname}):
                try:
                    out = hf.invoke(args)
                    if out.__class__ is CoroutineType:  # an async host function (see aio.py)
                        out = _callctx.run_coroutine(out, frame, hf.qualname)
                except Err as e:
                    if not hf.returns_result:
                        raise
                    out = e
            enc = hf.enc
            out = answer(
                hf.qualname, out, has_result=enc is not None, returns_result=hf.returns_result
            )
            reply = [Op.RETURN, True, None if enc is None else enc(out, handles)]
        except BaseException as e:  # parked and re-raised once the worker has unwound
            if frame.host_exc is None:
                frame.host_exc = e
                frame.host_func = hf.qualname
            reply = [Op.RETURN, False, f"host function {hf.qualname} raised {type(e).__name__}"]
        worker.chan.send(reply, deadline)

    def log(self, worker: WorkerProcess, msg: list[Any]) -> None:
        """A line the guest wrote to stdout or stderr (``LOG level, text``, the level
        the in-process tier logs that stream at: INFO or WARNING).

        The line goes through this worker's own :class:`GuestOutput` for that
        stream, here in the application: the rate limit, the cut into lines of at
        most ``MAX_LINE_BYTES`` (a record never holds a newline) and ``stdio =
        "discard"`` hold even for a worker that ignores its own.
        """
        if len(msg) != 3 or msg[1].__class__ is not int or msg[1] not in _STREAM_LEVELS:
            raise ProtocolError("malformed LOG")
        line = text(msg[2])
        outputs = self._outputs.get(worker)
        if outputs is None:
            outputs = self._outputs[worker] = {}
        out = outputs.get(msg[1])
        if out is None:
            out = outputs[msg[1]] = GuestOutput(
                self._guest_log, msg[1], discard=self._discard_output
            )
        out(line.encode("utf-8", "replace") + b"\n")

    @staticmethod
    def dropped(worker: WorkerProcess, msg: list[Any]) -> None:
        """The worker no longer holds these host objects (``DROP [ids]``)."""
        if len(msg) != 2 or msg[1].__class__ is not list:
            raise ProtocolError("malformed DROP")
        objects = worker.objects
        for oid in msg[1]:
            if oid.__class__ is not int:
                raise ProtocolError("malformed DROP")
            objects.pop(oid, None)
