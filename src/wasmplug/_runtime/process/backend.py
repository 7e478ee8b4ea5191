"""The application's side of a process-isolated plugin: workers, calls, host calls, faults.

:class:`ProcessBackend` sits behind a :class:`~wasmplug.Plugin` loaded with
``isolation="process"``; ``Plugin`` hands it every call, and the public
surface (exports, errors, metrics, restart policy) stays the same.

A call checks out one worker (``pool_size`` of them at most), sends ``CALL``
and then serves the worker until it answers: ``HOSTCALL`` runs the host
function here, in the calling thread, and sends ``RETURN``. The wait has a
deadline, ``Limits.timeout_ms`` plus :data:`KILL_GRACE_MS`: the worker's own
epoch deadline normally ends a spinning guest first, and the kill ends what no
epoch reaches (a guest blocked in ``wasi:io/poll``, a wedged runtime). A worker
that dies, is killed, or sends anything malformed is reaped and replaced by a
warm spare (``spares`` of them are kept ready per plugin).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import attrs
from wasmtime import WasmtimeError
from wasmtime.component import Component

from wasmplug import _telemetry
from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.hostfuncs import Invoke
from wasmplug._bridge.resources import Resource
from wasmplug._bridge.values import Err, Ok
from wasmplug._bridge.wit import FuncSig, HandleT, ResultT
from wasmplug._errors import (
    CapabilityError,
    ErrorResult,
    HostFunctionError,
    InstantiationError,
    LinkError,
    PluginClosedError,
    PluginCrashed,
    PluginError,
    PluginFault,
    PluginTimeout,
    ReentrantCallError,
    ResultTooLarge,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.cache import CompileCache
from wasmplug._runtime.faults import classify
from wasmplug._runtime.pool import InstancePool

from .codec import Decode, Encode, ProtocolError, decoder, encoder, supported
from .spawn import WorkerProcess, spawn_worker
from .wire import MAX_FRAME_BYTES, Op

if TYPE_CHECKING:
    from wasmplug._runtime.exports import ExportFunc
    from wasmplug._runtime.host import ImportPlan
    from wasmplug._runtime.plugin import Plugin

__all__ = ["KILL_GRACE_MS", "ProcessBackend"]

log = logging.getLogger("wasmplug.process")

KILL_GRACE_MS = 50.0
"""How long past ``Limits.timeout_ms`` the application waits before killing the worker."""
START_TIMEOUT_S = 120.0
"""Deadline for a worker to start, load the compiled component and instantiate it."""
SPARE_JOIN_TIMEOUT_S = 5.0
"""How long ``close()`` waits for spare starters once their booting workers are killed."""
_MAX_TEXT = 1 << 16  # longest message / log line taken from a worker, in characters

_tls = _callctx._tls


class _Frame:
    """This thread's call into a process plugin, on the call chain re-entry checks walk."""

    __slots__ = ("caller", "deadline_s", "host_exc", "host_func", "plugin", "worker")

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


@attrs.frozen
class _ExportCodec:
    encs: list[Encode]
    ok: Decode | None
    err: Decode | None


class _ParentHandles:
    """Application side of one worker's handle table: host objects lent to it, by id.

    An object stays in the table while the worker may use it: until the worker
    reports it dropped (``DROP``), or ownership comes back to the application
    (an ``own`` handle from the worker), or the call it was lent to as a
    ``borrow`` returns (a borrow cannot outlive its call).
    """

    __slots__ = ("borrowed", "worker")

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.borrowed: list[int] = []

    def object_id(self, ty: HandleT, obj: Any) -> int:
        if isinstance(obj, Resource) or obj is None:
            name = ty.resource.name
            raise WitTypeError(f"expects {ty} (an instance of the provided {name} class)")
        worker = self.worker
        oid = worker.next_oid
        worker.next_oid += 1
        worker.objects[oid] = obj
        if not ty.owned:
            self.borrowed.append(oid)
        return oid

    def object_for(self, ty: HandleT, oid: int) -> Any:
        objects = self.worker.objects
        try:
            return objects.pop(oid) if ty.owned else objects[oid]
        except KeyError:
            raise ProtocolError(f"no {ty.resource.name} object with id {oid}") from None

    def end_call(self) -> None:
        """The call returned: forget what was only borrowed for it."""
        objects = self.worker.objects
        for oid in self.borrowed:
            objects.pop(oid, None)
        self.borrowed.clear()


def _text(value: Any) -> str:
    if value.__class__ is not str:
        raise ProtocolError("expected a string")
    return value[:_MAX_TEXT]


def _check_supported(name: str, sigs: list[tuple[str, FuncSig]]) -> None:
    problems = [
        f"{where}: {sig} passes a guest-defined resource handle, which cannot cross "
        "the process boundary; load it with isolation='inprocess'"
        for where, sig in sigs
        if not all(supported(t) for _, t in sig.params) or not supported(sig.result)
    ]
    if problems:
        raise LinkError(name, problems)


def _worker_settings(
    plugin: Plugin,
    plan: ImportPlan,
    cache: CompileCache,
    cache_key: str,
    consume_fuel: bool,
    tick_ms: float,
) -> dict[str, Any]:
    """The ``INIT`` message body: everything a worker needs to rebuild the plugin."""
    sandbox = plugin.sandbox
    return {
        "name": plugin.name,
        "sha256": plugin.sha256,
        "cache_key": cache_key,
        "cache_dir": str(cache.directory),
        "consume_fuel": consume_fuel,
        "tick_ms": tick_ms,
        "limits": attrs.asdict(plugin.limits),
        "stdio": plugin.manifest.stdio,
        # With the identity bound at load: the worker binds the path again and
        # refuses it unless it is still that directory (see _sandbox.bound_dir).
        "preopens": [
            [
                str(p.host_path),
                p.guest_path,
                p.writable,
                p.directory.real_path,
                *p.directory.identity(),
            ]
            for p in sandbox.preopens
        ],
        "env": [list(pair) for pair in sandbox.env],
        "uses_wasi": plan.uses_wasi,
        "needs_traps": plan.needs_traps,
    }


class ProcessBackend:
    """Runs one plugin's calls in worker processes; starts the first one at once.

    Args:
        plugin: The plugin this backend serves (its exports, limits, supervisor).
        pool_size: Worker processes serving calls, at most.
        plan: Its resolved host imports (they run here, in the application).
        component: Its compiled component, written to ``cache`` if not there yet.
        cache: The compile cache workers load the component from, or ``None``
            (the host has none): then a private temporary one is used.
        cache_key: The component's key in the compile cache.
        engine_settings: The host engine's settings string (part of the cache key).
        consume_fuel: The host's engine setting.
        tick_ms: The epoch tick, as in the host.
        spares: Ready workers to keep besides the ones serving calls.

    Raises:
        LinkError: an export or import passes guest-defined resource handles.
        InstantiationError: the first worker could not start or instantiate.
    """

    def __init__(
        self,
        plugin: Plugin,
        *,
        pool_size: int,
        plan: ImportPlan,
        component: Component,
        cache: CompileCache | None,
        cache_key: str,
        engine_settings: str,
        consume_fuel: bool,
        tick_ms: float,
        spares: int,
    ) -> None:
        self.plugin = plugin
        self._host_funcs: list[_HostFunc] = []
        wanted: list[list[Any]] = []
        sigs: list[tuple[str, FuncSig]] = []
        for iface, (shape, invokes) in plan.resolved.interfaces.items():
            names = []
            for sig in shape.functions:
                self._add_host_func(f"{shape.name}#{sig.name}", sig, invokes[sig.name])
                sigs.append((f"{shape.name}#{sig.name}", sig))
                names.append(sig.name)
            wanted.append([iface, names])
        world = []
        for name, (sig, invoke) in plan.resolved.functions.items():
            self._add_host_func(name, sig, invoke)
            sigs.append((name, sig))
            world.append(name)
        if world:
            wanted.append(["", world])
        sigs += [(ex.name, ex.sig) for ex in plugin._exports_list]
        _check_supported(plugin.name, sigs)
        self._exports = [self._export_codec(ex.sig) for ex in plugin._exports_list]
        timeout = plugin.limits.timeout_ms
        self._timeout_ms = timeout
        self._kill_after = None if timeout is None else (timeout + KILL_GRACE_MS) / 1000.0
        self._guest_log = logging.getLogger(f"wasmplug.plugin.{plugin.name}")
        self._memory_limited = plugin.limits.memory_bytes is not None
        # The worker refuses to lift a value past max_result_bytes; msgpack adds at
        # most one byte per four (a u32 is five bytes), so anything much bigger than
        # that is a lie, refused before it is read.
        cap = plugin.limits.max_result_bytes
        self._max_frame = (
            MAX_FRAME_BYTES if cap is None else min(MAX_FRAME_BYTES, 2 * cap + (1 << 20))
        )
        self._lock = threading.Lock()
        self._spares_wanted = spares
        self._spares: list[WorkerProcess] = []
        self._starting = 0
        # Workers still booting (spawned, not yet READY) and the threads starting
        # spares: close() kills the first and joins the second, so no worker or fd
        # outlives the plugin.
        self._booting: set[WorkerProcess] = set()
        self._spare_threads: list[threading.Thread] = []
        self._tmp_cache: str | None = None
        if cache is None:
            self._tmp_cache = tempfile.mkdtemp(prefix="wasmplug-compiled-")
            cache = CompileCache(Path(self._tmp_cache), engine_settings)
        if not cache.path_for(cache_key).exists():
            cache.put(cache_key, bytes(component.serialize()))
        self._settings = _worker_settings(plugin, plan, cache, cache_key, consume_fuel, tick_ms)
        self._settings["imports"] = wanted
        self.pool: InstancePool[WorkerProcess] = InstancePool(pool_size, self._new_worker)
        try:
            self.pool.prime()
        except BaseException:
            self._cleanup()
            raise
        self._refill_spares()

    def _add_host_func(self, qualname: str, sig: FuncSig, invoke: Invoke) -> None:
        self._host_funcs.append(
            _HostFunc(
                qualname=qualname,
                invoke=invoke,
                decs=[decoder(t) for _, t in sig.params],
                enc=None if sig.result is None else encoder(sig.result),
                returns_result=isinstance(sig.result, ResultT),
            )
        )

    @staticmethod
    def _export_codec(sig: FuncSig) -> _ExportCodec:
        result = sig.result
        encs = [encoder(t) for _, t in sig.params]
        if isinstance(result, ResultT):
            return _ExportCodec(
                encs,
                None if result.ok is None else decoder(result.ok),
                None if result.err is None else decoder(result.err),
            )
        return _ExportCodec(encs, None if result is None else decoder(result), None)

    # -- workers ------------------------------------------------------------------------

    def _start_worker(self) -> WorkerProcess:
        """Start a worker and wait until it has instantiated the plugin.

        Raises:
            InstantiationError: it could not start, load or instantiate.
        """
        worker = spawn_worker()
        worker.chan.max_frame = self._max_frame
        name = self.plugin.name
        with self._lock:
            self._booting.add(worker)
        try:
            worker.chan.send([Op.INIT, self._settings])
            msg = self._converse(worker, None, time.monotonic() + START_TIMEOUT_S)
            if msg[0] == Op.READY:
                return worker
            kind = msg[1] if len(msg) > 1 else None
            if kind == "capability" and len(msg) == 3:
                raise self._capability(_text(msg[2]))
            if kind == "inst" and len(msg) >= 4:
                err = InstantiationError(_text(msg[2]))
                err.__notes__ = [_text(n) for n in msg[4:]]
                raise err from WasmtimeError(_text(msg[3]))
            detail = _text(msg[2]) if len(msg) > 2 else "no detail"
            raise InstantiationError(f"cannot start a worker process for plugin {name!r}: {detail}")
        except InstantiationError:
            worker.close()
            raise
        except (EOFError, OSError, TimeoutError, ProtocolError) as e:
            worker.close()
            why = worker.describe_exit()[0] if isinstance(e, EOFError | OSError) else str(e)
            raise InstantiationError(
                f"cannot start a worker process for plugin {name!r}: {why or type(e).__name__}"
            ) from None
        except BaseException:
            worker.close()
            raise
        finally:
            with self._lock:
                self._booting.discard(worker)

    def _refill_spares(self) -> None:
        with self._lock:
            missing = self._spares_wanted - len(self._spares) - self._starting
            if missing <= 0 or self.plugin._closed:
                return
            self._starting += missing
        for _ in range(missing):
            thread = threading.Thread(target=self._start_spare, name="wasmplug-spare", daemon=True)
            with self._lock:
                self._spare_threads = [t for t in self._spare_threads if t.is_alive()]
                self._spare_threads.append(thread)
            thread.start()

    def _start_spare(self) -> None:
        try:
            worker = self._start_worker()
        except BaseException as e:
            if not self.plugin._closed:
                log.warning("plugin %s: cannot start a spare worker: %s", self.plugin.name, e)
            with self._lock:
                self._starting -= 1
            return
        with self._lock:
            self._starting -= 1
            keep = not self.plugin._closed
            if keep:
                self._spares.append(worker)
        if not keep:
            worker.close()

    def _new_worker(self) -> WorkerProcess:
        """The pool's factory: a ready worker, a spare if there is one, after the
        restart policy's backoff."""
        plugin = self.plugin
        sup = plugin._supervisor
        if sup.quarantined:
            raise plugin._quarantined(None)
        sup.before_instantiate()
        worker = None
        with self._lock:
            while self._spares and worker is None:
                candidate = self._spares.pop(0)
                if candidate.running:
                    worker = candidate
                else:
                    candidate.close()
        if worker is None:
            worker = self._start_worker()
        self._refill_spares()
        return worker

    def _checkout(self) -> WorkerProcess:
        """A worker for one call (its lock held): alive, and with a fresh instance
        due if its last call faulted."""
        pool = self.pool
        while True:
            worker = pool.checkout()
            if worker.running:
                break
            # It died while idle (killed from outside, the OOM killer...): count the
            # crash, then take the next slot, which comes back empty.
            pool.discard(worker)
            worker.lock.release()
            text, sig, code = worker.describe_exit()
            crash = PluginCrashed(f"{text} while idle", signal=sig, exit_code=code)
            self.plugin._supervisor.record_fault(self.plugin._error(crash, None))
        if not worker.fresh:
            # The worker discarded its instance after a fault: the next call makes
            # a new one, which is a restart for the restart policy.
            sup = self.plugin._supervisor
            try:
                if sup.quarantined:
                    raise self.plugin._quarantined(None)
                sup.before_instantiate()
            except BaseException:
                pool.checkin(worker)
                raise
            worker.fresh = True
        return worker

    # -- the call path ------------------------------------------------------------------

    def invoke(self, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        """Call export ``ex`` in a worker; the same contract as ``Plugin.call``."""
        plugin = self.plugin
        if plugin._closed:
            raise plugin._error(PluginClosedError("plugin is closed"), ex)
        if len(args) != ex.nparams:
            raise WitTypeError(
                f"{plugin.name}: {ex.name} takes {ex.nparams} argument(s) "
                f"({', '.join(ex.param_names)}), got {len(args)}"
            )
        prev = getattr(_tls, "inst", None)
        if prev is not None and plugin._running_here(prev):
            raise plugin._error(
                ReentrantCallError("called from inside one of its own host calls"), ex
            )
        if plugin._supervisor.quarantined:
            raise plugin._quarantined(ex)
        codec = self._exports[ex.index]
        try:
            worker = self._checkout()
        except PluginError as e:
            raise plugin._error(e, ex)  # noqa: B904 - same exception, now attributed
        handles = _ParentHandles(worker)
        try:
            wire = []
            i = 0
            try:
                for i, enc in enumerate(codec.encs):
                    wire.append(enc(args[i], handles))
            except (WitTypeError, WitValueError) as e:
                raise type(e)(
                    f"{plugin.name}: {ex.name}: parameter {ex.param_names[i]!r} {e}"
                ).with_traceback(None) from None
            return self._run(worker, ex, codec, wire, prev)
        finally:
            handles.end_call()
            self.pool.checkin(worker)

    def _run(
        self, worker: WorkerProcess, ex: ExportFunc, codec: _ExportCodec, wire: list[Any], prev: Any
    ) -> Any:
        plugin = self.plugin
        frame = _Frame(plugin, prev, worker)
        timeout_ms = plugin.limits.timeout_ms
        if timeout_ms is not None:
            frame.deadline_s = time.monotonic() + timeout_ms / 1000
        _tls.inst = frame
        kill_after = self._kill_after
        deadline = None if kill_after is None else time.monotonic() + kill_after
        try:
            try:
                worker.chan.send([Op.CALL, ex.index, wire])
                msg = self._converse(worker, frame, deadline)
                if msg[0] == Op.RESULT and len(msg) == 2:
                    dec = codec.ok
                    value = None if dec is None else dec(msg[1], _ParentHandles(worker))
                    self._succeeded(worker)
                    return value
                if msg[0] != Op.FAULT or len(msg) < 2:
                    raise ProtocolError(f"unexpected opcode {msg[0]} in reply to CALL")
                exc = self._fault(worker, ex, codec, frame, msg)
            except BaseException as e:
                raise self._lost(worker, ex, e)  # noqa: B904 - __cause__ is set by _lost
        finally:
            _tls.inst = prev
        raise exc

    def _succeeded(self, worker: WorkerProcess) -> None:
        worker.calls += 1
        sup = self.plugin._supervisor
        if sup.consecutive:
            sup.record_success()

    def _converse(
        self, worker: WorkerProcess, frame: _Frame | None, deadline: float | None
    ) -> list[Any]:
        """Serve ``worker`` (host calls, log lines, drops) until it sends a final reply."""
        chan = worker.chan
        while True:
            msg = chan.recv(deadline)
            op = msg[0]
            if op == Op.HOSTCALL and frame is not None:
                self._host_call(worker, frame, msg)
            elif op == Op.LOG:
                self._log(msg)
            elif op == Op.DROP:
                self._drop(worker, msg)
            elif op in (Op.RESULT, Op.FAULT, Op.READY, Op.DONE):
                return msg
            else:
                raise ProtocolError(f"unexpected opcode {op}")

    def _host_call(self, worker: WorkerProcess, frame: _Frame, msg: list[Any]) -> None:
        if len(msg) != 3 or msg[1].__class__ is not int or not 0 <= msg[1] < len(self._host_funcs):
            raise ProtocolError("malformed HOSTCALL")
        hf = self._host_funcs[msg[1]]
        wire = msg[2]
        if wire.__class__ is not list or len(wire) != len(hf.decs):
            raise ProtocolError(f"HOSTCALL {hf.qualname}: wrong number of arguments")
        handles = _ParentHandles(worker)
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
            if hf.enc is not None:
                if hf.returns_result and not isinstance(out, Ok | Err):
                    out = Ok(out)
                reply = [Op.RETURN, True, hf.enc(out, handles)]
            elif out is not None:
                raise TypeError(
                    f"{hf.qualname} has no WIT result but returned {type(out).__name__}"
                )
            else:
                reply = [Op.RETURN, True, None]
        except BaseException as e:  # parked and re-raised once the worker has unwound
            if frame.host_exc is None:
                frame.host_exc = e
                frame.host_func = hf.qualname
            reply = [Op.RETURN, False, f"host function {hf.qualname} raised {type(e).__name__}"]
        worker.chan.send(reply)

    def _log(self, msg: list[Any]) -> None:
        if len(msg) != 3 or msg[1].__class__ is not int:
            raise ProtocolError("malformed LOG")
        level = min(max(msg[1], logging.DEBUG), logging.ERROR)
        self._guest_log.log(level, "%s", _text(msg[2]))

    @staticmethod
    def _drop(worker: WorkerProcess, msg: list[Any]) -> None:
        if len(msg) != 2 or msg[1].__class__ is not list:
            raise ProtocolError("malformed DROP")
        objects = worker.objects
        for oid in msg[1]:
            if oid.__class__ is not int:
                raise ProtocolError("malformed DROP")
            objects.pop(oid, None)

    def _capability(self, message: str) -> CapabilityError:
        """A worker refused to create an instance: a granted directory changed (counted)."""
        self.plugin._supervisor.record("capability", message, None)
        return CapabilityError(message)

    def _fault(
        self,
        worker: WorkerProcess,
        ex: ExportFunc,
        codec: _ExportCodec,
        frame: _Frame,
        msg: list[Any],
    ) -> BaseException:
        """The exception for a FAULT reply (the worker itself is fine and stays)."""
        plugin = self.plugin
        kind = msg[1]
        if kind == "err" and len(msg) == 3:
            value = None if codec.err is None else codec.err(msg[2], _ParentHandles(worker))
            if codec.err is None and msg[2] is not None:
                raise ProtocolError("err payload for a result without an error type")
            self._succeeded(worker)
            return plugin._error(ErrorResult(value), ex)
        if kind == "inst" and len(msg) >= 4:
            err = InstantiationError(_text(msg[2]))
            err.__notes__ = [_text(n) for n in msg[4:]]
            err.__cause__ = WasmtimeError(_text(msg[3]))
            return err
        if kind == "capability" and len(msg) == 3:
            return self._capability(_text(msg[2]))
        if kind in ("WitTypeError", "WitValueError", "StaleResourceError") and len(msg) == 3:
            cls = {"WitTypeError": WitTypeError, "WitValueError": WitValueError}.get(
                kind, StaleResourceError
            )
            return cls(_text(msg[2]))
        if kind == "error" and len(msg) == 3:
            return plugin._error(PluginError(_text(msg[2])), ex)
        exc: PluginFault
        worker.fresh = False  # the worker discarded its instance
        if kind == "host" and len(msg) == 2:
            host_exc = frame.host_exc
            if host_exc is None:
                raise ProtocolError("reported a host-function fault, but none failed")
            frame.host_exc = None
            if not isinstance(host_exc, Exception):
                fault = HostFunctionError(
                    f"host function {frame.host_func} raised {type(host_exc).__name__}"
                )
                plugin._supervisor.record_fault(plugin._error(fault, ex))
                return host_exc
            if isinstance(host_exc, PluginTimeout):  # an async host function ran out of time
                plugin._supervisor.record_fault(plugin._error(host_exc, ex))
                return host_exc
            exc = HostFunctionError(
                f"host function {frame.host_func} raised {type(host_exc).__name__}: {host_exc}"
            )
            exc.__cause__ = host_exc
        elif kind == "lift" and len(msg) == 4 and msg[2] in ("result-size", "timeout"):
            # The worker's result exceeded Limits.max_result_bytes or the deadline
            # while it was lifted there (see wasmplug._bridge.lift).
            exc = (ResultTooLarge if msg[2] == "result-size" else PluginTimeout)(_text(msg[3]))
        elif kind == "wasm" and len(msg) == 4:
            cause, tail = _text(msg[2]), _text(msg[3])
            exc = classify(cause, guest_stderr=tail, memory_limited=self._memory_limited)
            exc.__cause__ = WasmtimeError(cause)
            exc.guest_stderr = tail
        else:
            raise ProtocolError(f"malformed FAULT {kind!r}")
        plugin._supervisor.record_fault(plugin._error(exc, ex))
        return exc

    def _lost(self, worker: WorkerProcess, ex: ExportFunc, e: BaseException) -> BaseException:
        """The call did not end with a reply: kill the worker; what should the caller see?"""
        self.pool.discard(worker)
        plugin = self.plugin
        if plugin._closed:
            return plugin._error(PluginClosedError("plugin was closed during the call"), ex)
        exc: PluginFault
        if isinstance(e, TimeoutError):
            exc = PluginTimeout(
                f"exceeded its time limit ({self._timeout_ms:g} ms); the worker process was killed"
            )
        elif isinstance(e, EOFError | OSError):
            text, sig, code = worker.describe_exit()
            exc = PluginCrashed(f"{text} during the call", signal=sig, exit_code=code)
        elif isinstance(e, ProtocolError):
            text, sig, code = worker.describe_exit()
            exc = PluginCrashed(
                f"worker process {worker.pid} broke the wire protocol ({e}) and was killed",
                signal=sig,
                exit_code=code,
            )
        else:
            # Ctrl-C (or another BaseException) while waiting: the worker was killed,
            # which ends the call at once; count it like in-process, then let it go on.
            if not isinstance(e, Exception):
                plugin._record_interrupt(ex, e)
            return e
        exc.__cause__ = e if not isinstance(e, ProtocolError) else None
        plugin._supervisor.record_fault(plugin._error(exc, ex))
        return exc

    # -- lifecycle and health --------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        """Pids of every worker process, spares included (for tests and diagnostics)."""
        with self._lock:
            spares = list(self._spares)
        return sorted(w.pid for w in [*self.pool.live(), *spares])

    def reset(self) -> None:
        """Make idle workers discard their instances; the next call starts fresh."""
        for worker in self.pool.live():
            if not worker.lock.acquire(blocking=False):
                continue  # busy: its call goes on
            try:
                if not worker.alive:
                    continue
                try:
                    worker.chan.send([Op.RESET])
                    msg = self._converse(worker, None, time.monotonic() + START_TIMEOUT_S)
                    if msg[0] != Op.DONE:
                        raise ProtocolError("expected DONE")
                except (OSError, EOFError, TimeoutError, ProtocolError):
                    self.pool.discard(worker)
            finally:
                worker.lock.release()

    def close(self) -> None:
        """Kill and reap every worker at once; calls still running raise
        :class:`PluginClosedError` (``Plugin._closed`` is already set)."""
        with self._lock:
            spares, self._spares = self._spares, []
            booting = list(self._booting)
            starters, self._spare_threads = self._spare_threads, []
        for worker in spares:
            worker.close()
        for worker in booting:
            worker.kill()
        deadline = time.monotonic() + SPARE_JOIN_TIMEOUT_S
        for thread in starters:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self.pool.live():
            worker.kill()
        # Idle workers are discarded (reaped) here; running calls see EOF at once
        # and discard theirs. Never wait for the ones this thread is running
        # (close() from a host function): that call discards its worker on return.
        self.pool.close(skip=self._this_threads_workers())
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp_cache is not None:
            shutil.rmtree(self._tmp_cache, ignore_errors=True)

    def _this_threads_workers(self) -> list[WorkerProcess]:
        workers = []
        frame = getattr(_tls, "inst", None)
        while frame is not None:
            if isinstance(frame, _Frame) and frame.plugin is self.plugin:
                workers.append(frame.worker)
            frame = frame.caller
        return workers

    def _test_crash_current_worker(self) -> None:
        """Test hook: make the worker serving this thread's call segfault (SIGSEGV)."""
        frame = getattr(_tls, "inst", None)
        while frame is not None and not (isinstance(frame, _Frame) and frame.plugin is self.plugin):
            frame = frame.caller
        if frame is None:
            raise RuntimeError("not inside a call of this plugin")
        frame.worker.chan.send([Op.CRASH])
