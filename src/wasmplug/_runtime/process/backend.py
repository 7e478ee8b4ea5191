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
warm spare (``spares`` of them are kept ready per plugin, see :mod:`.workers`).
Host calls are served by :mod:`.hostcalls`; resource handles cross through
:mod:`.handles`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmtime.component import Component

from wasmplug import _telemetry
from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.resources import Resource, handle_instance
from wasmplug._errors import (
    PluginClosedError,
    PluginCrashed,
    PluginError,
    PluginFault,
    PluginTimeout,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.cache import CompileCache
from wasmplug._runtime.pool import InstancePool, taking
from wasmplug._runtime.telemetry import plugin_attributes
from wasmplug._sandbox.confinement import Confinement, ConfinementMode

from . import fastpath
from .budget import IDLE_FRAMES, frame_depth, frame_objects
from .codec import ExportCodec, ProtocolError, export_codec
from .faultreply import FaultReader
from .handles import CallHandles, WorkerInstance, instance_of, retire
from .hostcalls import Frame, HostCalls
from .memory import linear_memory_bytes
from .spawn import WorkerProcess
from .watchdog import WATCHDOG
from .wire import MAX_FRAME_BYTES, WORKER_SPANS, Op
from .workers import START_TIMEOUT_S, WorkerStarter, worker_settings

if TYPE_CHECKING:
    from wasmplug._runtime.exports import ExportFunc
    from wasmplug._runtime.linking import ImportPlan
    from wasmplug._runtime.plugin import PluginPort

__all__ = ["KILL_GRACE_MS", "ProcessBackend"]

log = logging.getLogger("wasmplug.process")

KILL_GRACE_MS = 50.0
"""How long past ``Limits.timeout_ms`` the application waits before killing the worker."""


class _Undelivered(Exception):
    """The worker was gone before it got the request: it never ran; try another."""


class ProcessBackend:
    """Runs one plugin's calls in worker processes; starts the first one at once.

    Args:
        port: The plugin this backend serves, as the process tier sees it (its
            exports, limits, fault accounting).
        pool_size: Worker processes serving calls, at most.
        plan: Its resolved host imports (they run here, in the application).
        component: Its compiled component, written to ``cache`` if not there yet.
        cache: The compile cache workers load the component from, or ``None``
            (the host has none): then a private temporary one is used.
        cache_key: The component's key in the compile cache.
        engine_settings: The host engine's settings string (part of the cache key).
        consume_fuel: The host's engine setting.
        memory_accounting: The host's engine setting (its engine has copy-on-write
            memory images off, and code compiled there loads only into such an engine).
        pooling: The host has ``instance_slots``: each worker then allocates its
            instance from wasmtime's pooling allocator too (slots of its own, sized
            by the plugin's limits; see ``worker.WORKER_SLOTS``).
        tick_ms: The epoch tick, as in the host.
        spares: Ready workers to keep besides the ones serving calls.
        confinement: How each worker confines itself (seccomp, Landlock): see
            :mod:`.jail`.

    Raises:
        InstantiationError: the first worker could not start or instantiate.
    """

    def __init__(
        self,
        port: PluginPort,
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
        memory_accounting: bool = False,
        pooling: bool = False,
        confinement: ConfinementMode = "auto",
    ) -> None:
        self.port = port
        self.plugin = plugin = port.plugin
        self._supervisor = port.supervisor
        self._host_calls = HostCalls(
            plan.resolved, plugin.name, discard_output=plugin.manifest.stdio == "discard"
        )
        self._exports = [export_codec(ex.sig) for ex in port.exports]
        timeout = plugin.limits.timeout_ms
        self._timeout_ms = timeout
        self._kill_after = None if timeout is None else (timeout + KILL_GRACE_MS) / 1000.0
        self._faults = FaultReader(port, plugin.limits.memory_bytes is not None, self._succeeded)
        # The worker refuses to lift a value past max_result_bytes; msgpack adds at
        # most one byte per four (a u32 is five bytes), so anything much bigger than
        # that is a lie, refused before it is read.
        cap = plugin.limits.max_result_bytes
        max_frame = MAX_FRAME_BYTES if cap is None else min(MAX_FRAME_BYTES, 2 * cap + (1 << 20))
        # And what a frame decodes into, and how deep it nests, by what these types
        # can hold (budget.py).
        sigs = [sig for _, sig in self._host_calls.sigs]
        exported = [ex.sig for ex in port.exports]
        max_objects = frame_objects(exported, sigs, cap) or max_frame
        self._tmp_cache: str | None = None
        try:  # a refusal (sandbox_to_wire) or a failed start leaves no temporary cache
            if cache is None:
                self._tmp_cache = tempfile.mkdtemp(prefix="wasmplug-compiled-")
                cache = CompileCache(Path(self._tmp_cache), engine_settings)
            if not cache.path_for(cache_key).exists():
                cache.put(cache_key, bytes(component.serialize()))
            self._settings = worker_settings(plugin, plan, cache, cache_key, consume_fuel, tick_ms)
            self._settings["memory_accounting"] = memory_accounting
            self._settings["pooling"] = pooling
            self._settings["confinement"] = confinement
            self._settings["imports"] = self._host_calls.wanted
            self._settings["telemetry"] = port.telemetry is not None
            self._span_attrs = plugin_attributes(plugin, "process")
            self._starter = WorkerStarter(
                port,
                self._settings,
                max_frame=max_frame,
                max_objects=max_objects,
                max_depth=frame_depth(exported, sigs),
                spares=spares,
                converse=self._converse,
                capability=self._faults.capability,
            )
            self.pool: InstancePool[WorkerProcess] = InstancePool(pool_size, self._new_worker)
            self.pool.prime()
        except BaseException:
            self._cleanup()
            raise
        self._starter.refill()

    # -- workers ------------------------------------------------------------------------

    def _new_worker(self) -> WorkerProcess:
        """The pool's factory: a ready worker, a spare if there is one, after the
        restart policy's backoff."""
        self.port.admit_instance()
        worker = self._starter.take_spare()
        if worker is None:
            # Traced: a wasmplug.worker.start span, holding the worker's own link and
            # instantiate spans (SPAN messages), under the load or call that needed it
            # (a spare's start is a root span of its own: see WorkerStarter).
            with _telemetry.span("wasmplug.worker.start", self._span_attrs):
                worker = self._starter.start(traced=True)
        self._starter.refill()
        return worker

    def _fresh(self, worker: WorkerProcess) -> None:
        """Give ``worker`` (its lock held, for one call) a fresh instance if its last
        call faulted."""
        # Whether it is still running is not asked here (a wait4 per call): a worker
        # that died while idle refuses the request (_Undelivered), and the call is
        # made again on the next one.
        if not worker.fresh:
            self._refresh(worker, None)

    def _refresh(self, worker: WorkerProcess, ex: ExportFunc | None) -> None:
        """The worker discarded its instance after a fault: the next call makes a new
        one, which is a restart for the restart policy (refused: the error, attributed
        to ``ex`` if given)."""
        try:
            self.port.admit_instance()
        except PluginError as e:
            if ex is None:
                raise
            raise self.port.error(e, ex)  # noqa: B904 - same exception, now attributed
        worker.fresh = True

    def _owner_of(self, args: tuple[Any, ...]) -> tuple[WorkerInstance, str] | None:
        """The worker instance holding the first guest resource argument, and the
        handle's type name (or None): a call on a handle runs where its guest object
        lives, holding that worker's lock."""
        for arg in args:
            if isinstance(arg, Resource):
                inst = handle_instance(arg)
                if inst.plugin is not self.plugin:
                    raise WitValueError(f"{arg!r} belongs to plugin {inst.plugin.name!r}")
                assert isinstance(inst, WorkerInstance)
                return inst, arg.type_name
        return None

    def _died_idle(self, worker: WorkerProcess) -> None:
        """A worker whose lock this thread holds (and keeps) exited between calls
        (killed from outside, the OOM killer...): discard it and count the crash."""
        self.pool.discard(worker)
        why, sig, code = worker.describe_exit()
        crash = PluginCrashed(f"{why} while idle", signal=sig, exit_code=code)
        self.port.fault(crash, None)

    # -- the call path ------------------------------------------------------------------

    def bind(
        self, ex: ExportFunc, general: Callable[[tuple[Any, ...]], Any]
    ) -> Callable[[tuple[Any, ...]], Any]:
        """The function that runs ``ex``'s calls (``ExportFunc.bound``): generated for
        the common case (see :mod:`.fastpath`), else ``general`` (:meth:`invoke`
        through ``Plugin``'s checks)."""
        return fastpath.bind(self, ex, general)

    def invoke(self, ex: ExportFunc, args: tuple[Any, ...], prev: Any) -> Any:
        """Call export ``ex`` in a worker; the same contract as ``Plugin.call``, whose
        checks (closed, arity, re-entry, quarantine) have passed; ``prev`` is what this
        thread was running."""
        while True:
            try:
                return self._invoke_once(ex, args, prev)
            except _Undelivered:
                continue  # the worker was gone before it got the call: on the next one

    def _invoke_once(self, ex: ExportFunc, args: tuple[Any, ...], prev: Any) -> Any:
        owner = self._owner_of(args) if ex.has_handles else None
        try:
            if owner is None:
                return self.pool.run(self._invoke_on, ex, args, prev, False)
            # The worker holding the handle's guest object, by its lock (a with
            # statement: Ctrl-C cannot leave it held).
            inst, type_name = owner
            worker = inst.worker
            with worker.lock:
                if inst.alive:
                    if worker.running:
                        return self._invoke_on(worker, ex, args, prev, True)
                    self._died_idle(worker)
            raise StaleResourceError(
                f"{type_name} handle belongs to an instance that was discarded"
            )
        except PluginError as e:
            # Closed or quarantined while waiting for a worker, a stale handle, or the
            # call's own error (attributed already: the same values again).
            raise self.port.error(e, ex)  # noqa: B904 - same exception, now attributed

    def _invoke_on(
        self, worker: WorkerProcess, ex: ExportFunc, args: tuple[Any, ...], prev: Any, routed: bool
    ) -> Any:
        """The call on ``worker``, whose lock this thread holds (``routed``: the worker
        holding a handle argument's guest object)."""
        if not routed:
            self._fresh(worker)
        plugin = self.plugin
        codec = self._exports[ex.index]
        handles = CallHandles(worker)
        undo = True  # until the worker has taken the arguments
        try:
            wire = []
            i = 0
            try:
                for i, enc in enumerate(codec.encs):
                    wire.append(enc(args[i], handles))
            except (WitTypeError, WitValueError) as e:
                raise ex.argument_error(plugin.name, i, e) from None
            inst = instance_of(worker)
            drops = inst.take_drops() if inst is not None and inst.pending_drops else []
            undo = False
            request = [Op.CALL, ex.index, wire, drops]
            try:
                return self._run(worker, ex, codec, request, prev, handles)
            except (WitTypeError, WitValueError, StaleResourceError):
                undo = True  # the worker refused the arguments before the call
                raise
            except _Undelivered:
                undo = True
                if routed:  # its guest objects died with it
                    raise StaleResourceError(
                        "the handle belongs to a worker process that exited"
                    ) from None
                raise
        finally:
            handles.end_call(undo=undo)

    def drop_resource(self, inst: WorkerInstance, token: int) -> None:
        """``Resource.drop()`` on an ``own`` handle of this plugin: the guest destructor
        runs in its worker now (from ``WorkerInstance.drop_handle``).

        Raises:
            PluginFault: the destructor faulted (the worker discarded its instance).
        """
        worker = inst.worker
        if worker in self._this_threads_workers():
            # A host function of a call on that worker: never re-enter it; the
            # destructor runs before the worker's next call.
            inst.pending_drops.append(token)
            return
        with worker.lock:  # (a with statement: Ctrl-C cannot leave it held)
            if not (worker.alive and inst.alive and worker.running):
                return  # discarded: the guest object went with it
            prev = _callctx.current()
            try:
                self._run(worker, None, None, [Op.DESTROY, token], prev, CallHandles(worker))
            except _Undelivered:
                pass  # the worker is gone, and the guest object with it

    def _run(
        self,
        worker: WorkerProcess,
        ex: ExportFunc | None,
        codec: ExportCodec | None,
        request: list[Any],
        prev: Any,
        handles: CallHandles,
    ) -> Any:
        """Send ``request`` (``CALL`` or ``DESTROY``), serve the worker until it replies,
        and return the result or raise what the reply (or its absence) means.

        Raises:
            _Undelivered: the worker had exited before it got the request (it is
                discarded, the crash counted; nothing ran).
        """
        frame = Frame(self.plugin, prev, worker)
        now = time.monotonic()
        timeout_ms = self._timeout_ms
        if timeout_ms is not None:
            frame.deadline_s = now + timeout_ms / 1000
        kill_after = self._kill_after
        deadline = None if kill_after is None else now + kill_after
        if deadline is not None:
            WATCHDOG.arm(worker, deadline)  # ends the waits at the deadline
        _callctx.swap(frame)
        try:
            try:
                try:
                    worker.chan.send(request, deadline)
                except BrokenPipeError:
                    if worker.overdue:  # killed at its deadline while the request went out
                        raise
                    # Its end of the channel was closed: the process had exited.
                    self._died_idle(worker)
                    raise _Undelivered from None
                ok, out = self._outcome(worker, ex, codec, frame, handles, deadline, None)
            except BaseException as e:
                if e.__class__ is _Undelivered:
                    raise
                raise self._lost(worker, ex, e)  # noqa: B904 - __cause__ is set by _lost
        finally:
            if deadline is not None:
                WATCHDOG.disarm(worker)
            _callctx.swap(prev)
        if ok:
            return out
        raise out

    def _outcome(
        self,
        worker: WorkerProcess,
        ex: ExportFunc | None,
        codec: ExportCodec | None,
        frame: Frame,
        handles: CallHandles,
        deadline: float | None,
        msg: list[Any] | None,
    ) -> tuple[bool, Any]:
        """Serve the worker until it replies to a call (``msg``: its first message,
        if already received) and say what the reply means: ``(True, value)``, or
        ``(False, exception)`` for the caller (a fault, an ``err`` result).

        Raises:
            ProtocolError, TimeoutError, EOFError, OSError: the call is lost (the
                caller kills the worker: :meth:`_lost`).
        """
        msg = self._converse(worker, frame, deadline, msg)
        if frame.host_exc is not None and (msg[0] != Op.FAULT or msg[1:2] != ["host"]):
            # In-process a failed host function traps the guest: its call can
            # only end in that fault, never in a value or another fault.
            raise ProtocolError("the call went on after a host function failed")
        if msg[0] == Op.RESULT and len(msg) == 2:
            dec = None if codec is None else codec.ok
            if dec is None and msg[1] is not None:
                raise ProtocolError("a value for a call without a result")
            value = None if dec is None else dec(msg[1], handles)
            self._succeeded(worker, ex)
            return True, value
        if msg[0] != Op.FAULT or len(msg) < 2:
            raise ProtocolError(f"unexpected opcode {msg[0]} in reply to a call")
        return False, self._faults.read(worker, ex, codec, frame, msg)

    def _succeeded(self, worker: WorkerProcess, ex: ExportFunc | None) -> None:
        if ex is not None:
            worker.calls += 1
        sup = self._supervisor
        if sup.consecutive:
            sup.record_success()

    def _converse(
        self,
        worker: WorkerProcess,
        frame: Frame | None,
        deadline: float | None,
        msg: list[Any] | None = None,
    ) -> list[Any]:
        """Serve ``worker`` (host calls, log lines, drops) until it sends a final reply
        (``msg``: its first message, if already received); the frames in between are
        bounded (see :mod:`.budget`)."""
        chan = worker.chan
        host_calls = self._host_calls
        idle = 0  # DROP and SPAN frames since the last host call
        while True:
            if msg is None:
                msg = chan.recv()  # the watchdog ends the wait (the caller armed it)
            op = msg[0]
            if op == Op.HOSTCALL and frame is not None:
                if frame.host_exc is not None:  # see _run: the guest cannot go on
                    raise ProtocolError("a host call after a host function failed")
                host_calls.serve(worker, frame, msg, deadline)
                idle = 0
            elif op == Op.LOG:
                worker.logs.tick()
                host_calls.log(worker, msg)
            elif op in (Op.DROP, Op.SPAN):
                idle += 1
                if idle > IDLE_FRAMES:
                    raise ProtocolError(f"more than {IDLE_FRAMES} DROP/SPAN frames in a row")
                if op == Op.DROP:
                    host_calls.dropped(worker, msg)
                else:
                    self._span(worker, msg)
            elif op in (Op.RESULT, Op.FAULT, Op.READY, Op.DONE):
                return msg
            else:
                raise ProtocolError(f"unexpected opcode {op}")
            msg = None

    def _span(self, worker: WorkerProcess, msg: list[Any]) -> None:
        """A stage the worker timed: a child span of the current one, with its times."""
        if (
            len(msg) != 4
            or not all(v.__class__ is int for v in msg[1:])
            or not 0 <= msg[1] < len(WORKER_SPANS)
            or not 0 <= msg[2] <= msg[3] < 2**63
        ):
            raise ProtocolError("malformed SPAN")
        tel = self.port.telemetry
        if tel is not None and worker.traced:
            tel.worker_span(WORKER_SPANS[msg[1]], msg[2], msg[3])

    def _lost(
        self, worker: WorkerProcess, ex: ExportFunc | None, e: BaseException
    ) -> BaseException:
        """The call did not end with a reply: kill the worker; what should the caller see?"""
        self.pool.discard(worker)
        port = self.port
        if port.closed:
            return port.error(PluginClosedError("plugin was closed during the call"), ex)
        exc: PluginFault
        if isinstance(e, TimeoutError) or (worker.overdue and isinstance(e, EOFError | OSError)):
            exc = PluginTimeout(
                f"exceeded its time limit ({self._timeout_ms:g} ms); the worker process was killed"
            )
        elif isinstance(e, EOFError | OSError):
            text, sig, code = worker.describe_exit()
            exc = PluginCrashed(f"{text} during the call", signal=sig, exit_code=code)
        elif isinstance(e, ProtocolError | RecursionError):
            # RecursionError: something the worker sent nested past what any code
            # walking it could follow (the codec's walks follow the WIT types).
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
                port.interrupted(ex, e)
            return e
        exc.__cause__ = None if isinstance(e, ProtocolError | RecursionError) else e
        return port.fault(exc, ex)

    # -- lifecycle and health --------------------------------------------------------------

    def linear_memory_bytes(self) -> int | None:
        """Linear memory of the instances serving calls (spares not counted), in bytes,
        read from each worker's memory map; ``None`` when none can be read."""
        sizes = [linear_memory_bytes(w.pid) for w in self.pool.live()]
        known = [n for n in sizes if n is not None]
        return sum(known) if known else None

    @property
    def confinement(self) -> Confinement | None:
        """How the last worker that got ready is confined (all start alike)."""
        return self._starter.confinement

    def worker_pids(self) -> list[int]:
        """Pids of every worker process, spares included (for tests and diagnostics)."""
        return sorted([w.pid for w in self.pool.live()] + self._starter.spare_pids())

    def reset(self) -> None:
        """Make idle workers discard their instances; the next call starts fresh."""
        for worker in self.pool.live():
            with taking(worker.lock, False) as got:  # (Ctrl-C cannot leave it held)
                if not got:
                    continue  # busy: its call goes on
                try:
                    self._reset(worker)
                finally:
                    worker.lock.release()

    def _reset(self, worker: WorkerProcess) -> None:
        """Make ``worker`` (its lock held) discard its instance, or discard it."""
        if not worker.alive:
            return
        retire(worker, self.port)  # guest resource handles of it are stale now
        deadline = time.monotonic() + START_TIMEOUT_S
        WATCHDOG.arm(worker, deadline)
        try:
            worker.chan.send([Op.RESET], deadline)
            msg = self._converse(worker, None, deadline)
            if msg[0] != Op.DONE:
                raise ProtocolError("expected DONE")
        except (OSError, EOFError, TimeoutError, ProtocolError):
            self.pool.discard(worker)
        finally:
            WATCHDOG.disarm(worker)

    def close(self) -> None:
        """Kill and reap every worker at once; calls still running raise
        :class:`PluginClosedError` (the plugin is already marked closed)."""
        self._starter.close()
        for worker in self.pool.live():
            worker.kill()
            inst = instance_of(worker)
            if inst is not None:
                inst.pending_drops.clear()  # the guest objects die with it
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
        frame = _callctx.current()
        while frame is not None:
            if isinstance(frame, Frame) and frame.plugin is self.plugin:
                workers.append(frame.worker)
            frame = frame.caller
        return workers

    def _test_crash_current_worker(self) -> None:
        """Test hook: make the worker serving this thread's call segfault (SIGSEGV)."""
        workers = self._this_threads_workers()
        if not workers:
            raise RuntimeError("not inside a call of this plugin")
        workers[0].chan.send([Op.CRASH])
