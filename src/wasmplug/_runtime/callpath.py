"""The in-process call path of a plugin: from ``plugin.call`` to Wasm and back.

:class:`CallPath` is the base class of :class:`~wasmplug.Plugin` that holds the path
every in-process call takes (docs/architecture.md, "A call"): check out an instance,
lower the arguments, set the deadline and fuel, call through ctypes, then turn an
error into the fault it was (discarding the instance and recording the fault for the
restart policy), or lift the result. Plugins that can block in WASI run the same
path on each instance's call thread (``callthread``), waited for with a deadline.
With ``isolation="process"`` every call goes to the plugin's :class:`Backend` instead.

The state it uses is set up by ``Plugin.__init__``; it is declared here.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

from wasmplug import _telemetry
from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge import ffi as f
from wasmplug._bridge import sigguard as _sigguard
from wasmplug._bridge.hostfuncs import host_fault
from wasmplug._bridge.resources import (
    Resource,
    end_borrows,
    end_moves,
    handle_instance,
    track_moves,
)
from wasmplug._bridge.values import Err
from wasmplug._errors import (
    ErrorResult,
    HostFunctionError,
    PluginClosedError,
    PluginError,
    PluginFault,
    PluginInterrupted,
    PluginQuarantinedError,
    PluginTimeout,
    ReentrantCallError,
    ResourceLimitExceeded,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._sandbox.confinement import Confinement
from wasmplug._sandbox.limits import Limits

from . import fastcall
from .aio import run_as
from .callthread import MAX_STUCK_THREADS, CallThread, Cancelled
from .engine import EpochTicker
from .exports import Buffers, ExportFunc
from .faults import classify
from .instance import Instance
from .pool import InstancePool
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .telemetry import CallTelemetry

__all__ = ["Backend", "CallPath", "call_chain"]

E = TypeVar("E", bound=PluginError)

byref = ctypes.byref
_running = _callctx.running
_get_ident = threading.get_ident
_current = _callctx.current
_func_call = f.func_call_args
_set_fuel = f.set_fuel
_val_delete = f.val_delete
_BOOL = f.BOOL
_deferred = _sigguard.deferred
_run_deferred = _sigguard.run_deferred


def call_chain(cur: Instance | None) -> list[Instance]:
    """The instances this thread is running: ``cur`` and the ones that called into it
    through host functions (innermost first)."""
    chain = []
    while cur is not None:
        chain.append(cur)
        cur = cur.caller
    return chain


def _pack_numbers(
    numbers: tuple[struct.Struct, tuple[type, ...], list[int]], buf: Buffers, args: Any
) -> bool:
    """Write all-number arguments in one C call; ``False`` means "use the converters"
    (a bool, a non-number or an out-of-range value: they produce the precise error)."""
    packer, allowed, _ = numbers
    for a in args:
        if a.__class__ not in allowed:
            return False
    packed = buf.packed
    packed[1::2] = args
    try:
        packer.pack_into(buf.raw, 0, *packed)
    except (struct.error, OverflowError):  # OverflowError: an f32 beyond float32's range
        return False
    return True


class Backend(Protocol):
    """Where a plugin's calls run instead of its in-process instances: with
    ``isolation="process"``, a ``process.backend.ProcessBackend``, made by
    ``factory(plugin.PluginPort(plugin), pool_size=n)``."""

    @property
    def pool(self) -> InstancePool[Any]:
        """Its workers (``stats()`` for :meth:`~wasmplug.Plugin.metrics`)."""
        ...

    def invoke(self, ex: ExportFunc, args: tuple[Any, ...], caller: Any) -> Any:
        """Run one call that :meth:`CallPath._admit` let through (``caller``: what this
        thread was running), as ``CallPath._invoke`` does in-process."""
        ...

    def bind(
        self, ex: ExportFunc, general: Callable[[tuple[Any, ...]], Any]
    ) -> Callable[[tuple[Any, ...]], Any]:
        """The function that runs ``ex``'s calls, ``bound(args)``, as ``fastcall.bind``
        makes it in-process (``general``: the plugin's checks, then :meth:`invoke`)."""
        ...

    def drop_resource(self, inst: Any, token: int) -> None:
        """Run the guest destructor of a worker's ``own`` handle (``Resource.drop``)."""
        ...

    def reset(self) -> None:
        """Discard idle workers (``Plugin.reset``)."""
        ...

    def linear_memory_bytes(self) -> int | None:
        """Linear memory of the workers' instances, in bytes (``Plugin.stats``)."""
        ...

    @property
    def confinement(self) -> Confinement | None:
        """How its workers are confined (``Plugin.confinement``)."""
        ...

    def close(self) -> None:
        """Kill and reap every worker (``Plugin.close``)."""
        ...


class CallPath:
    """The in-process call path; the base class of :class:`~wasmplug.Plugin`."""

    __slots__ = ()  # Plugin declares the slots (no __dict__ per plugin)

    # Set by Plugin.__init__:
    name: str
    limits: Limits
    _closed: bool
    _backend: Backend | None
    _supervisor: Supervisor
    _pool: InstancePool[Instance]
    _ticker: EpochTicker
    _deadline_ticks: int
    _slice_ticks: int
    _fuel: int | None
    _threaded: bool
    _uses_wasi: bool
    _exports_list: list[ExportFunc]
    _call: Callable[[Instance, ExportFunc, tuple[Any, ...]], Any]
    _wait_s: float | None
    _stuck: set[CallThread]
    _stuck_lock: threading.Lock
    _tel: CallTelemetry | None

    def _admit(self, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        """Refuse a call that cannot start (closed, wrong arity, re-entry, quarantine);
        return what this thread is running (the caller of the new call), in either tier."""
        if self._closed:
            raise self._error(PluginClosedError("plugin is closed"), ex)
        if len(args) != ex.nparams:
            raise WitTypeError(
                f"{self.name}: {ex.name} takes {ex.nparams} argument(s) "
                f"({', '.join(ex.param_names)}), got {len(args)}"
            )
        cur = _current()
        if cur is not None and self._running_here(cur):
            raise self._error(
                ReentrantCallError("called from inside one of its own host calls"), ex
            )
        if self._supervisor.quarantined:
            raise self._quarantined(ex)
        return cur

    def _bind(self, ex: ExportFunc) -> Callable[[tuple[Any, ...]], Any]:
        """Make and keep the function that runs ``ex``'s calls (``ex.bound``): generated
        for the in-process fast path when it applies (fastcall.py), else :meth:`_invoke`."""
        backend = self._backend
        if backend is not None and self._tel is None:
            bound = backend.bind(ex, functools.partial(self._invoke, ex))
        else:
            bound = fastcall.bind(self, ex)
        ex.bound = bound
        return bound

    def _invoke(self, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        cur = self._admit(ex, args)
        if self._backend is not None:
            return self._backend.invoke(ex, args, cur)
        pool = self._pool
        # A pool of one: its instance's lock alone (InstancePool.solo), held by a with
        # statement, where Ctrl-C cannot land between taking it and the code that gives
        # it back. Not with call threads, which may abandon an instance mid-call.
        solo = pool.size == 1 and not self._threaded
        owner = self._owner_of(args) if ex.has_handles else None
        try:
            if owner is not None:
                # The instance that owns the handle, by its lock (a with statement:
                # Ctrl-C cannot leave it held).
                inst, type_name = owner
                with inst.lock:
                    if inst.alive:
                        return self._call_guarded(inst, ex, args)
                raise StaleResourceError(
                    f"{type_name} handle belongs to an instance that was discarded"
                )
            if not solo:
                return pool.run(self._call_guarded, ex, args)
            inst = pool.solo or pool.ready_solo()
        except PluginError as e:
            # Closed or quarantined while waiting for an instance, a stale handle, or
            # the call's own error (attributed already: the same values again).
            raise self._error(e, ex)  # noqa: B904 - same exception, now attributed
        return self._call_solo(inst, ex, args)

    def _call_guarded(self, inst: Instance, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        """:meth:`_call`, discarding ``inst`` if a ``BaseException`` (Ctrl-C) ends it."""
        try:
            return self._call(inst, ex, args)
        except BaseException as e:
            if not isinstance(e, Exception):
                self._interrupted(inst, ex, e)
            raise

    def _call_solo(self, inst: Instance, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        """:meth:`_call` on the instance of a pool of one, by its lock alone."""
        pool = self._pool
        while True:
            with inst.lock:
                if inst.alive:
                    try:
                        return self._call_guarded(inst, ex, args)
                    finally:
                        if pool.closed:
                            pool.discard(inst)  # as checkin() does on a closed pool
            try:  # discarded while this call waited for it: the next one
                inst = pool.ready_solo()
            except PluginError as e:
                raise self._error(e, ex)  # noqa: B904 - same exception, now attributed

    def _run_on_thread(self, inst: Instance, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        """:meth:`_run` on the instance's call thread, waiting at most the call's budget."""
        job = functools.partial(self._run, inst, ex, args)
        if self._tel is not None:  # host functions see the caller's span as current
            job = functools.partial(contextvars.copy_context().run, job)
        call = _callctx.current_async()
        if call is not None:  # an acall: its host coroutines and cancellation follow the guest
            job = functools.partial(run_as, call, job)
        return self._on_thread(inst, ex, job)

    def _on_thread(self, inst: Instance, ex: ExportFunc | None, job: Any) -> Any:
        ct = inst.call_thread
        assert ct is not None
        try:
            done, value = ct.run(job, self._wait_s)
        except Cancelled:
            inst.abandon()
            self._pool.abandon(inst)
            raise self._error(
                PluginClosedError(
                    "the call was blocked in a host call when the plugin was closed "
                    "(or the interpreter exited)"
                ),
                ex,
            ) from None
        except BaseException as e:
            if ct.abandoned:  # Ctrl-C while waiting: give up the blocked thread
                inst.abandon()
                self._pool.abandon(inst)
                if not isinstance(e, Exception):
                    self._record_interrupt(ex, e)
            raise
        if done:
            return value
        inst.abandon()
        self._pool.abandon(inst)
        fault = self._error(
            PluginTimeout(
                f"exceeded its time limit ({self.limits.timeout_ms:g} ms) while blocked in a "
                "host call; its call thread was abandoned"
            ),
            ex,
        )
        self._supervisor.record_fault(fault)
        raise fault

    def _cancel_waits(self, whose: Callable[[threading.Thread], bool]) -> None:
        """Cancel the waits of callers (chosen by ``whose``) on blocked call threads."""
        for inst in self._pool.live():
            ct = inst.call_thread
            if ct is not None and ct.busy and ct.caller is not None and whose(ct.caller):
                ct.cancel()

    def _call_thread_abandoned(self, ct: CallThread) -> None:
        with self._stuck_lock:
            if not ct.exited:
                self._stuck.add(ct)
            stuck = len(self._stuck)
        if stuck >= MAX_STUCK_THREADS:
            self._supervisor.quarantine(
                f"{stuck} call threads are stuck in blocking host (WASI) calls; each keeps "
                "its instance's memory until the call returns. isolation='process' ends "
                "such calls by killing the worker instead"
            )

    def _call_thread_exited(self, ct: CallThread) -> None:
        with self._stuck_lock:
            ct.exited = True
            self._stuck.discard(ct)

    def _running_here(self, cur: Instance | None) -> bool:
        """Whether this thread is inside a call on this plugin (``cur`` and its callers)."""
        me: object = self  # a Plugin, which is its instances' InstanceOwner
        return any(inst.plugin is me for inst in call_chain(cur))

    @_sigguard.enters_wasm
    def _run(self, inst: Instance, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        if inst.pending_drops:
            self._run_drops(inst)
        buf = inst.buffers[ex.index]
        if buf is None:
            buf = inst.buffers[ex.index] = ex.take_buffers(inst)
        i = 0
        moved = track_moves() if ex.has_handles else None
        try:
            numbers = ex.numbers
            if numbers is not None and _pack_numbers(numbers, buf, args):
                pass  # every argument written by one struct.pack_into
            elif ex.all_scalar:
                for i, (slot, convert) in enumerate(buf.scalar_pairs):
                    slot.value = convert(args[i])
            else:
                pvals = buf.pvals
                for i, lower in enumerate(buf.lowers):
                    lower(args[i], pvals[i], inst)
        except (WitTypeError, WitValueError, ResourceLimitExceeded) as e:
            if ex.free_params:
                for ref in buf.param_refs[:i]:
                    _val_delete(ref)
            if moved is not None:  # the call never happened: own handles stay with Python
                end_moves(moved, undo=True)
                end_borrows(inst)
            if isinstance(e, ResourceLimitExceeded):  # Limits.host_objects
                raise
            raise ex.argument_error(self.name, i, e) from None
        if moved is not None:
            end_moves(moved, undo=False)
        ctx = inst.context
        ticker = self._ticker
        # The deadline is absolute (epoch + ticks); while the epoch has not moved
        # since it was set, it still grants the full budget, so skip the FFI call.
        epoch = ticker.epoch
        if inst.deadline_epoch != epoch:
            ticker.arm(ctx, self._slice_ticks)
            inst.deadline_epoch = epoch
        inst.deadline_at = epoch + self._deadline_ticks
        if self._fuel is not None:
            _set_fuel(ctx, self._fuel)
        # inst.host_exc is None here: _fault() consumes it after every failed call.
        stderr = inst.stderr
        if stderr.tail:
            stderr.tail = ""  # classify a fault by this call's output only
        in_flight = ticker.in_flight
        ident = _get_ident()
        prev = _running.get(ident)
        # Guest output may be logged on another thread (the stdio pump, or wasmtime's
        # for the callback stream), where this call's span is not current: while
        # tracing, hand it the call's trace ids (_sandbox/stdio.py).
        output_ids = self._tel is not None and not stderr.discard
        # Restored in `finally`: Ctrl-C may raise anywhere in here (see _interrupted).
        # The thread's entry first, by subscripts: Python runs a signal handler right
        # after a call returns, so a call before it in the finally could be the last
        # statement that runs.
        try:
            _running[ident] = inst
            inst.caller = prev
            in_flight.add(inst)
            if output_ids:
                stderr.call_fields = inst.stdout.call_fields = _telemetry.log_fields()
            err = _func_call(*buf.args)
            if inst.output_poll is not None:  # log the call's output before it returns
                inst.drain_output()
        finally:
            if prev is None:
                del _running[ident]
            else:
                _running[ident] = prev
            in_flight.discard(inst)
            if output_ids:
                stderr.call_fields = inst.stdout.call_fields = {}
        if _deferred:
            _run_deferred(inst)  # a signal deferred in a callback: raise it now
        if moved is not None:
            end_borrows(inst)
        if ex.free_params:
            for ref in buf.param_refs:
                _val_delete(ref)
        if err:
            self._fault(inst, ex, err)
        inst.calls += 1
        sup = self._supervisor
        if sup.consecutive:
            sup.record_success()
        rslot = buf.rslot
        if rslot is not None:
            post = ex.result_scalar[3]  # type: ignore[index]
            return rslot.value if post is None else post(rslot.value)
        lift = buf.lift
        if lift is None:
            return None
        inst.lift_left = inst.max_lift  # Limits.max_result_bytes, see _bridge.lift
        inst.lift_deadline = 0.0
        try:
            if self._tel is None:
                value = lift(buf.result, inst)
            else:  # a wasmplug.lift span: lifting's share of the call
                value = self._tel.timed_lift(lift, buf.result, inst)
        except PluginFault as e:  # ResultTooLarge, or the deadline passed while lifting
            self._lift_fault(inst, ex, e)
        finally:
            if ex.free_result:
                # wasmtime assigns into the result slot on the next call, dropping
                # whatever is there: leave a plain bool, not dangling pointers.
                _val_delete(buf.rref)
                buf.result.kind = _BOOL
        if ex.returns_result:
            if value.__class__ is Err:
                raise self._error(ErrorResult(value.value), ex)
            return value.value
        return value

    def _fault(self, inst: Instance, ex: ExportFunc | None, err_ptr: Any) -> None:
        """Discard ``inst`` and raise the fault that ``err_ptr`` describes."""
        cause = f.error_from_ptr(err_ptr)
        host_exc = inst.host_exc
        inst.host_exc = None
        signal_exc = inst.signal_exc
        tail = inst.stderr.tail
        self._pool.discard(inst)
        if signal_exc is not None:
            # Ctrl-C (or whatever the SIGINT handler raised) ended the call.
            self._record_interrupt(ex, signal_exc)
            raise signal_exc.with_traceback(None) from None
        if _deferred:
            _run_deferred(None)
        if host_exc is not None and not isinstance(host_exc, Exception):
            # KeyboardInterrupt / SystemExit: count the fault, then let it propagate
            # in the calling thread now that Wasm has unwound.
            fault = HostFunctionError(
                f"host function {inst.host_func} raised {type(host_exc).__name__}"
            )
            self._supervisor.record_fault(self._error(fault, ex))
            raise host_exc
        exc: PluginFault
        if host_exc is not None:
            exc = host_fault(inst.host_func, host_exc)
        else:
            exc = classify(
                str(cause), guest_stderr=tail, memory_limited=self.limits.memory_bytes is not None
            )
            exc.__cause__ = cause
        exc.guest_stderr = tail
        self._supervisor.record_fault(self._error(exc, ex))
        raise exc

    def _interrupted(self, inst: Instance, ex: ExportFunc | None, exc: BaseException) -> None:
        """A ``BaseException`` (Ctrl-C) left the call path: the instance may be mid-call
        or half-lowered, so discard it (unless a fault already did) and count it."""
        if inst.alive:
            self._pool.discard(inst)
            self._record_interrupt(ex, exc)

    def _record_interrupt(self, ex: ExportFunc | None, exc: BaseException) -> None:
        fault = PluginInterrupted(f"interrupted by {type(exc).__name__}")
        self._supervisor.record_interrupt(self._error(fault, ex))

    def _lift_fault(self, inst: Instance, ex: ExportFunc, exc: PluginFault) -> NoReturn:
        """The result could not be lifted within its limits: discard ``inst``, count, raise."""
        self._pool.discard(inst)
        self._supervisor.record_fault(self._error(exc, ex))
        raise exc.with_traceback(None)

    def _error(self, exc: E, ex: ExportFunc | None) -> E:
        exc.plugin = self.name
        exc.export = None if ex is None else ex.name
        return exc

    def _quarantined(self, ex: ExportFunc | None) -> PluginError:
        last = self._supervisor.last_fault
        why = f"; last fault: {last.kind}: {last.message}" if last else ""
        policy = self._supervisor.policy
        reason = self._supervisor.quarantine_reason
        if not reason:
            reason = f"{policy.max_faults} faults in {policy.window_s:g} s{why}"
        return self._error(
            PluginQuarantinedError(f"quarantined after {reason}; call reset() to try again"),
            ex,
        )

    # -- resource handles ---------------------------------------------------------------

    def _owner_of(self, args: tuple[Any, ...]) -> tuple[Instance, str] | None:
        """The instance that owns the first resource argument, and the handle's type
        name (or None): the call runs there, holding its lock."""
        for arg in args:
            if isinstance(arg, Resource):
                inst: Instance = handle_instance(arg)
                owner: object = inst.plugin
                if owner is not self:
                    raise WitValueError(f"{arg!r} belongs to plugin {inst.plugin.name!r}")
                return inst, arg.type_name
        return None

    def _drop_resource(self, inst: Instance, ptr: Any) -> None:
        """Drop an ``own`` handle now (``Resource.drop``): run the guest destructor."""
        if inst in call_chain(_current()):
            # A host function running on that instance: never re-enter it. The
            # destructor runs before the instance's next call.
            inst.pending_drops.append(ptr)
            return
        with inst.lock:
            if not inst.alive:
                f.resource_any_delete(ptr)
                return
            inst.pending_drops.append(ptr)
            if self._threaded:
                self._on_thread(inst, None, functools.partial(self._run_drops, inst))
            else:
                self._run_drops(inst)

    @_sigguard.enters_wasm
    def _run_drops(self, inst: Instance) -> None:
        """Run the guest destructors of the handles queued on ``inst`` (its lock held,
        no Wasm of it running on this thread). A destructor is guest code: it runs
        under a call's deadline and fuel."""
        drops = inst.pending_drops
        ticker = self._ticker
        ctx = inst.context
        epoch = ticker.epoch
        ticker.arm(ctx, self._slice_ticks)
        inst.deadline_epoch = epoch
        inst.deadline_at = epoch + self._deadline_ticks
        err = None
        ident = _get_ident()
        prev = _running.get(ident)
        # Restored in `finally`, the thread's entry first (as in _run).
        try:
            _running[ident] = inst
            inst.caller = prev
            ticker.in_flight.add(inst)
            while drops and not err:
                if self._fuel is not None:
                    _set_fuel(ctx, self._fuel)
                err = inst.drop_resource(drops.pop())
        except BaseException as e:
            self._interrupted(inst, None, e)
            raise
        finally:
            if prev is None:
                del _running[ident]
            else:
                _running[ident] = prev
            ticker.in_flight.discard(inst)
        if _deferred:
            _run_deferred(inst)  # a signal deferred in a callback: raise it now
        if err:
            try:
                self._fault(inst, None, err)
            except PluginFault as e:
                e.add_note("raised by the guest destructor of a dropped resource handle")
                raise
