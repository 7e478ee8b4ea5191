"""A loaded plugin: typed export calls, an instance pool, and crash isolation."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import functools
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, final

from wasmtime.component import Component, ExportIndex, Linker

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge import ffi as f
from wasmplug._bridge import sigguard as _sigguard
from wasmplug._bridge.hostfuncs import Linked
from wasmplug._bridge.resources import Resource, end_borrows, end_moves, track_moves
from wasmplug._bridge.values import Err
from wasmplug._bridge.wit import ComponentShape, FuncSig, ResourceRef, snake
from wasmplug._errors import (
    CapabilityError,
    ErrorResult,
    HostFunctionError,
    PluginClosedError,
    PluginError,
    PluginFault,
    PluginInterrupted,
    PluginQuarantinedError,
    PluginTimeout,
    ReentrantCallError,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)
from wasmplug._sandbox.grants import EffectiveSandbox
from wasmplug._sandbox.limits import Limits, RestartPolicy
from wasmplug._sandbox.manifest import Manifest

from .aio import AsyncCall, run_as
from .callthread import (
    CLOSE_GRACE_S,
    GRACE_MS,
    MAX_STUCK_THREADS,
    CallThread,
    Cancelled,
    blocking_imports,
)
from .deadline import SLICE_MS
from .exports import Buffers, ExportFunc, Exports, short_interface_name
from .faults import classify
from .instance import Instance
from .pool import InstancePool
from .resource_types import build_resource_classes
from .supervisor import PluginMetrics, Supervisor
from .telemetry import instrument

if TYPE_CHECKING:
    from .host import PluginHost
    from .process.backend import ProcessBackend

__all__ = ["Plugin"]

E = TypeVar("E", bound=PluginError)

byref = ctypes.byref
_swap = _callctx.swap
_current = _callctx.current
_tls = _callctx._tls
_func_call = f.func_call
_set_deadline = f.set_epoch_deadline
_set_fuel = f.set_fuel
_val_delete = f.val_delete
_BOOL = f.BOOL
_deferred = _sigguard.deferred
_run_deferred = _sigguard.run_deferred


def _call_chain(cur: Instance | None) -> list[Instance]:
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
    except struct.error:
        return False
    return True


@final
class Plugin:
    """A loaded plugin. Created by :meth:`PluginHost.load`, never directly.

    Calls are thread-safe. Each call runs on an instance from a pool of at most
    ``pool_size`` instances (created lazily), so calls on different instances run
    in parallel: ctypes releases the GIL while Wasm runs. Instances keep state
    between calls; with ``pool_size > 1`` consecutive calls may see different
    instances, so use it for stateless plugins.

    Any fault discards the faulty instance; the next call gets a fresh one
    after the restart policy's backoff, or fails fast with
    :class:`PluginQuarantinedError` once the crash-loop limit is reached.

    Attributes:
        name: The plugin's name (from its manifest).
        manifest: The plugin's manifest.
        limits: The effective limits (manifest requests capped by the application).
        sandbox: The effective capabilities (declared ∩ granted).
        sha256: Hex SHA-256 of the component bytes.
        publisher: Key id (hex) of the trusted key that signed it, or ``None``.
        exports: Attribute-style access to exports.
        blocking_wasi: The WASI interfaces it imports through which a guest can
            block in the host (``("wasi:io/poll@0.2.0",)``...). When not empty,
            each instance's calls run on a call thread of its own and the caller
            waits with the deadline (see docs/crash-isolation.md, "Blocking WASI
            calls"); when empty, calls run directly on the calling thread.
    """

    def __init__(
        self,
        *,
        host: PluginHost,
        component: Component,
        shape: ComponentShape,
        manifest: Manifest,
        sandbox: EffectiveSandbox,
        limits: Limits,
        linker: Linker,
        linked: Linked,
        uses_wasi: bool,
        pool_size: int,
        restart_policy: RestartPolicy,
        sha256: str,
        publisher: str | None = None,
        backend: Callable[..., ProcessBackend] | None = None,
        call_threads: bool = True,
    ) -> None:
        self._host = host
        self._component = component
        self.shape = shape
        self.manifest = manifest
        self.name = manifest.name
        self.sandbox = sandbox
        self.limits = limits
        self.sha256 = sha256
        self.publisher = publisher
        self._linker = linker
        self._linked = linked
        self._uses_wasi = uses_wasi
        self._closed = False
        self._supervisor = Supervisor(restart_policy, name=manifest.name)
        self._pool: InstancePool[Instance] = InstancePool(pool_size, self._new_instance)
        self.pool_size = pool_size
        self._ticker = host._ticker
        timeout = limits.timeout_ms
        self._deadline_ticks = host._ticker.deadline_ticks(timeout) if timeout else 2**62
        # A call's store deadline is set one slice ahead; the deadline callback
        # (deadline.py) grants the next slice until _deadline_ticks are spent.
        self._slice_ticks = min(self._deadline_ticks, host._ticker.deadline_ticks(SLICE_MS))
        self._fuel = limits.fuel if host._consume_fuel and limits.fuel is not None else None
        # A plugin that can block in WASI runs each instance's calls on its own
        # thread and waits with a deadline (callthread.py); others call directly.
        self.blocking_wasi = tuple(blocking_imports(shape.imports)) if uses_wasi else ()
        self._threaded = call_threads and bool(self.blocking_wasi)
        self._call = self._run_on_thread if self._threaded else self._run
        self._wait_s = None if timeout is None else (timeout + GRACE_MS) / 1000
        self._stuck: set[CallThread] = set()
        self._stuck_lock = threading.Lock()
        self._exports_list: list[ExportFunc] = []
        self._export_indices: list[ExportIndex] = []
        self._by_name: dict[str, ExportFunc] = {}
        self._build_exports()
        # isolation="process": ``backend(self, pool_size=...)`` runs every call in
        # worker processes (see wasmplug._runtime.process); the pool stays empty.
        self._backend: ProcessBackend | None = None
        # With an OpenTelemetry SDK configured, calls run through a span/timer
        # wrapper bound here; otherwise the call path is untouched (telemetry.py).
        self._tel = instrument(self, isolation="process" if backend else "inprocess")
        if self._tel is not None:
            self._invoke = self._tel.wrap(self._invoke)  # type: ignore[method-assign,assignment]
        if backend is not None:
            self._backend = backend(self, pool_size=pool_size)
            return
        # The first instance, now: start-up failures surface at load time.
        self._pool.prime()

    # -- construction -------------------------------------------------------------

    def _build_exports(self) -> None:
        component = self._component
        self._resource_classes: dict[tuple[str, str], type[Resource]] = {}
        attrs_root: dict[str, Any] = {}
        items_root: dict[str, Any] = {}
        for iface_name, iface in self.shape.exports.items():
            parent = component.get_export_index(iface_name)
            assert parent is not None
            funcs = [
                (sig, self._add_export(f"{iface_name}#{sig.name}", sig, parent))
                for sig in iface.functions
            ]
            members = self._members(iface_name, [r.name for r in iface.resources], funcs)
            attrs_root[short_interface_name(iface_name)] = members
            items_root[iface_name] = members
        funcs = [
            (sig, self._add_export(sig.name, sig, None)) for sig in self.shape.export_functions
        ]
        root = self._members("", [], funcs)
        attrs_root.update(root._attrs)
        items_root.update(root._items)
        self.exports = Exports(attrs_root, items_root)

    def _members(
        self, interface: str, resources: list[str], funcs: list[tuple[FuncSig, ExportFunc]]
    ) -> Exports:
        """An interface's exports: plain functions (snake_case attributes), one
        class per resource type (PascalCase attributes), everything by WIT name."""
        classes, plain = build_resource_classes(interface, resources, funcs)
        attrs: dict[str, Any] = {}
        for name, cls in classes.items():
            self._resource_classes[(interface, name)] = cls
            attrs[cls.__name__] = cls
        for name, ex in plain.items():
            attrs.setdefault(snake(name), ex)
        return Exports(attrs, {sig.name: ex for sig, ex in funcs})

    def _add_export(self, name: str, sig: FuncSig, parent: ExportIndex | None) -> ExportFunc:
        func_name = name.rpartition("#")[2]
        index = self._component.get_export_index(func_name, parent)
        assert index is not None
        ex = ExportFunc(self, len(self._exports_list), name, sig)
        self._exports_list.append(ex)
        self._export_indices.append(index)
        self._by_name[name] = ex
        return ex

    def _resource_type_id(self, ref: ResourceRef) -> int:
        return self._linked.resource_types[(ref.interface, ref.name)]

    # -- the call path ------------------------------------------------------------

    def call(self, export: str, *args: Any) -> Any:
        """Call an export by its WIT name.

        Args:
            export: ``"greet"`` for a world-level function, or
                ``"demo:plugin/api@0.1.0#run"`` for a function of an exported interface.
            *args: Python values, one per WIT parameter (see the type table in the docs).

        Returns:
            The converted result; ``None`` for a function without one. For a
            ``result<T, E>`` return type, the ``ok`` payload.

        Raises:
            WitTypeError: an argument has the wrong Python type (names the parameter).
            WitValueError: an argument is out of range for its WIT type.
            ErrorResult: the export returned ``err(E)``; ``.value`` is E.
            PluginTrapped: the guest trapped. The instance was discarded.
            PluginTimeout: the call exceeded ``Limits.timeout_ms``.
            FuelExhausted: the call exceeded ``Limits.fuel``.
            ResourceLimitExceeded: the guest hit a memory or table limit.
            ResultTooLarge: the result exceeded ``Limits.max_result_bytes`` once lifted.
            HostFunctionError: a host function raised; the exception is ``__cause__``.
            PluginQuarantinedError: too many faults; call :meth:`reset`.
            PluginClosedError: the plugin or its host was closed.
            ReentrantCallError: called from a host function of this same plugin.
            InstantiationError: a fresh instance could not be created.
            CapabilityError: a fresh instance was refused: a granted directory no
                longer is the directory it was when the plugin was loaded
                (counted in :meth:`metrics` as a ``"capability"`` fault).
            KeyboardInterrupt: re-raised here if a host function raised it.
        """
        ex = self._by_name.get(export)
        if ex is None:
            raise self._unknown_export(export)
        return self._invoke(ex, args)

    async def acall(self, export: str, *args: Any) -> Any:
        """Like :meth:`call`, but runs in the host's worker threads; awaiting does not
        block the event loop.

        Async host functions (``async def``) called by the plugin during this call
        run on this event loop while the worker thread waits for them, within the
        call's time limit. Cancelling the awaiting task interrupts the call: the
        host coroutine the guest is waiting for is cancelled, and a guest running
        its own code is ended at its next deadline check (every 10 ms); the
        instance is discarded either way.

        Host functions, sync or async, run in a copy of the awaiting task's
        ``contextvars`` context, as under :meth:`call`: they see its context
        variables and its current OpenTelemetry span.
        """
        loop = asyncio.get_running_loop()
        call = AsyncCall(loop)
        # The worker runs in a copy of the caller's context (as asyncio.to_thread does;
        # run_in_executor does not), so host functions, sync or async, see the
        # caller's contextvars and current span, and the call's span nests under it.
        job = functools.partial(self._acall_worker, call, export, args)
        fut = loop.run_in_executor(
            self._host._executor, functools.partial(contextvars.copy_context().run, job)
        )
        try:
            return await fut
        except asyncio.CancelledError:
            call.cancel()
            raise

    def _acall_worker(self, call: AsyncCall, export: str, args: tuple[Any, ...]) -> Any:
        prev = _callctx.set_async(call)
        try:
            return self.call(export, *args)
        finally:
            _callctx.set_async(prev)

    def _unknown_export(self, export: str) -> PluginError:
        err = PluginError(f"no export named {export!r}; exports are: {', '.join(self._by_name)}")
        err.plugin = self.name
        return err

    def _invoke(self, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        if self._backend is not None:
            return self._backend.invoke(ex, args)
        if self._closed:
            raise self._error(PluginClosedError("plugin is closed"), ex)
        if len(args) != ex.nparams:
            raise WitTypeError(
                f"{self.name}: {ex.name} takes {ex.nparams} argument(s) "
                f"({', '.join(ex.param_names)}), got {len(args)}"
            )
        cur = getattr(_tls, "inst", None)
        if cur is not None and self._running_here(cur):
            raise self._error(
                ReentrantCallError("called from inside one of its own host calls"), ex
            )
        if self._supervisor.quarantined:
            raise self._quarantined(ex)
        pool = self._pool
        try:
            if ex.has_handles:
                inst = self._checkout_for(args)
                if inst is not None:
                    try:
                        return self._call(inst, ex, args)
                    except BaseException as e:
                        if not isinstance(e, Exception):
                            self._interrupted(inst, ex, e)
                        raise
                    finally:
                        inst.lock.release()
            inst = pool.checkout()
        except PluginError as e:
            # Closed or quarantined while waiting for an instance, or a stale handle.
            raise self._error(e, ex)  # noqa: B904 - same exception, now attributed
        try:
            return self._call(inst, ex, args)
        except BaseException as e:
            if not isinstance(e, Exception):
                self._interrupted(inst, ex, e)
            raise
        finally:
            pool.checkin(inst)

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
        return any(inst.plugin is self for inst in _call_chain(cur))

    def _run(self, inst: Instance, ex: ExportFunc, args: tuple[Any, ...]) -> Any:
        if inst.pending_drops:
            self._run_drops(inst)
        buf = inst.buffers[ex.index]
        if buf is None:
            buf = inst.buffers[ex.index] = ex.take_buffers()
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
        except (WitTypeError, WitValueError) as e:
            if ex.free_params:
                for ref in buf.param_refs[:i]:
                    _val_delete(ref)
            if moved is not None:  # the call never happened: own handles stay with Python
                end_moves(moved, undo=True)
                end_borrows(inst)
            raise type(e)(
                f"{self.name}: {ex.name}: parameter {ex.param_names[i]!r} {e}"
            ).with_traceback(None) from None
        if moved is not None:
            end_moves(moved, undo=False)
        ctx = inst.context
        ticker = self._ticker
        # The deadline is absolute (epoch + ticks); while the epoch has not moved
        # since it was set, it still grants the full budget, so skip the FFI call.
        epoch = ticker.epoch
        if inst.deadline_epoch != epoch:
            _set_deadline(ctx, self._slice_ticks)
            inst.deadline_epoch = epoch
        inst.deadline_at = epoch + self._deadline_ticks
        if self._fuel is not None:
            _set_fuel(ctx, self._fuel)
        # inst.host_exc is None here: _fault() consumes it after every failed call.
        stderr = inst.stderr
        if stderr.tail:
            stderr.tail = ""  # classify a fault by this call's output only
        in_flight = ticker.in_flight
        tls = _tls
        prev = getattr(tls, "inst", None)
        # Restored in `finally`: Ctrl-C may raise anywhere in here (see _interrupted).
        try:
            tls.inst = inst
            inst.caller = prev
            in_flight.add(inst)
            err = _func_call(
                inst.funcs[ex.index], ctx, buf.params, ex.nparams, buf.rref, ex.nresults
            )
        finally:
            in_flight.discard(inst)
            tls.inst = prev
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
        if isinstance(host_exc, PluginTimeout):  # an async host function ran out of time
            exc = host_exc
        elif host_exc is not None:
            exc = HostFunctionError(
                f"host function {inst.host_func} raised {type(host_exc).__name__}: {host_exc}"
            )
            exc.__cause__ = host_exc
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

    # -- instances ----------------------------------------------------------------------

    def _checkout_for(self, args: tuple[Any, ...]) -> Instance | None:
        """Lock the instance that owns the first resource argument (or return None)."""
        for arg in args:
            if isinstance(arg, Resource):
                inst: Instance = arg._inst
                if inst.plugin is not self:
                    raise WitValueError(f"{arg!r} belongs to plugin {inst.plugin.name!r}")
                if not self._pool.lock(inst):
                    raise StaleResourceError(
                        f"{arg.type_name} handle belongs to an instance that was discarded"
                    )
                return inst
        return None

    def _new_instance(self) -> Instance:
        """The pool's factory: a fresh instance, after the restart policy's backoff."""
        if self._supervisor.quarantined:
            raise self._quarantined(None)
        self._supervisor.before_instantiate()
        try:
            if self._tel is not None:
                inst: Instance = self._tel.timed_instantiate(functools.partial(Instance, self))
                return inst
            return Instance(self)
        except CapabilityError as e:
            # A grant no longer names the directory it named at load: a fault of
            # the plugin's sandbox, counted like any other; no instance exists.
            self._supervisor.record("capability", str(e), None)
            raise

    def _drop_resource(self, inst: Instance, ptr: Any) -> None:
        """Drop an ``own`` handle now (``Resource.drop``): run the guest destructor."""
        if self._backend is not None:  # ptr is a token for a guest object in a worker
            self._backend.drop_resource(inst, ptr)  # type: ignore[arg-type]
            return
        if inst in _call_chain(_current()):
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

    def _run_drops(self, inst: Instance) -> None:
        """Run the guest destructors of the handles queued on ``inst`` (its lock held,
        no Wasm of it running on this thread). A destructor is guest code: it runs
        under a call's deadline and fuel."""
        drops = inst.pending_drops
        ticker = self._ticker
        ctx = inst.context
        epoch = ticker.epoch
        _set_deadline(ctx, self._slice_ticks)
        inst.deadline_epoch = epoch
        inst.deadline_at = epoch + self._deadline_ticks
        err = None
        prev = _current()
        # Restored in `finally`: Ctrl-C may raise anywhere in here (see _interrupted).
        try:
            _swap(inst)
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
            ticker.in_flight.discard(inst)
            _swap(prev)
        if _deferred:
            _run_deferred(inst)  # a signal deferred in a callback: raise it now
        if err:
            try:
                self._fault(inst, None, err)
            except PluginFault as e:
                e.add_note("raised by the guest destructor of a dropped resource handle")
                raise

    # -- lifecycle and health ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (on this plugin or its host)."""
        return self._closed

    def metrics(self) -> PluginMetrics:
        """A snapshot of this plugin's counters."""
        sup = self._supervisor
        pool = self._pool if self._backend is None else self._backend.pool
        instances, calls = pool.stats()
        return PluginMetrics(
            calls=calls,
            faults=dict(sup.faults),
            restarts=sup.restarts,
            instances=instances,
            quarantined=sup.quarantined,
            last_fault=sup.last_fault,
            stuck_threads=len(self._stuck),
        )

    def reset(self) -> None:
        """Lift quarantine and discard idle instances, so the next call starts fresh."""
        self._supervisor.reset()
        if self._backend is not None:
            self._backend.reset()
        else:
            self._pool.drain(wait=False)

    def close(self) -> None:
        """Close the plugin: wait for running calls, then free every instance. Idempotent.

        With ``isolation="process"`` it does not wait: every worker process is
        killed and reaped at once, and calls still running raise
        :class:`PluginClosedError`. Later calls raise :class:`PluginClosedError`.
        """
        self._close(time.monotonic() + CLOSE_GRACE_S)

    def _close(self, deadline: float) -> None:
        """:meth:`close`, letting calls blocked in WASI run until ``deadline``
        (``time.monotonic()``), then cancelling their waits."""
        if self._closed:
            return
        self._closed = True
        if self._backend is not None:
            self._backend.close()
            self.sandbox.close()
            return
        # Never wait for an instance this thread is running (close() from a host
        # function): the call discards it when it returns.
        here = _call_chain(_current())
        if self._threaded:
            for inst in self._pool.live():
                ct = inst.call_thread
                if ct is None or inst in here:
                    continue
                while ct.busy and time.monotonic() < deadline:
                    time.sleep(0.002)
                ct.cancel()  # its caller gives up and abandons the thread
        self._pool.close(skip=here)
        for ex in self._exports_list:
            ex.spare.clear()  # recycled call buffers (their __del__ frees what they keep)
        self.sandbox.close()

    def __enter__(self) -> Plugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<wasmplug.Plugin {self.name} {self.manifest.version} {state}>"
