"""One component instance: its Store, WASI context, export handles and call buffers.

An instance is used by one thread at a time (its ``lock``). It is never
reused after a fault: wasmtime poisons a component instance after a trap
("cannot enter component instance"), and Zellij's habit of keeping a
panicked instance around ended in a segfault (zellij#5374).
"""

from __future__ import annotations

import ctypes
import logging
import math
import select
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from wasmtime import WasmtimeError

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge import ffi as f
from wasmplug._bridge import sigguard as _sigguard
from wasmplug._bridge.hostfuncs import forget_host_objects
from wasmplug._bridge.resources import Resource, lift_handle, lower_handle
from wasmplug._bridge.wit import HandleT, ResourceRef
from wasmplug._errors import InstantiationError, PluginClosedError
from wasmplug._sandbox.stdio import GuestOutput

from . import deadline as _deadline
from .callthread import GRACE_MS, CallThread, Cancelled
from .faults import split_backtrace

_running = _callctx.running
_get_ident = threading.get_ident
_deferred = _sigguard.deferred
_install_deadline = _deadline.install
_store_limiter = f.store_limiter

if TYPE_CHECKING:
    from wasmplug._sandbox.grants import EffectiveSandbox
    from wasmplug._sandbox.limits import Limits
    from wasmplug._sandbox.manifest import Manifest

    from .engine import EpochTicker
    from .exports import ExportFunc
    from .instancespec import InstanceSpec
    from .services import HostServices

__all__ = ["ExportFuncs", "Instance", "InstanceOwner"]

_PAGE = 65536
_NO_OUTPUT = GuestOutput(logging.getLogger("wasmplug.plugin"), logging.INFO, discard=True)
"""The output of every instance of a component without WASI (it cannot write any)."""


class ExportFuncs(dict[int, Any]):
    """``byref`` of each export's ``wasmtime_component_func_t``, by export index,
    looked up in wasmtime on first use: a fresh instance pays only for the
    exports it calls (most instances of a pool, or after a fault, call one or
    two), and a lookup after that is one dict access on the call path.

    It holds the component instance and its store's context, never the
    :class:`Instance` (no reference cycle); :meth:`Instance.close` replaces it
    with an empty one, so nothing can reach a freed store through it.
    """

    __slots__ = ("component", "indices", "store_context")

    def __init__(self, instance: Any, context: Any, indices: list[Any]) -> None:
        super().__init__()
        self.component = instance
        self.store_context = context
        self.indices = indices  # ExportIndex.ptr() of each export (InstanceSpec)

    def __missing__(self, index: int) -> Any:
        if self.component is None:
            raise PluginClosedError("the instance was closed")
        func = self[index] = f.export_func(
            ctypes.byref(self.component), self.store_context, self.indices[index]
        )
        return func


_NO_FUNCS = ExportFuncs(None, None, [])
"""The export functions of a closed instance: none."""
_NO_BUFFERS: list[Any] = []
"""The call buffers of a closed instance: none (never appended to)."""


class InstanceOwner(Protocol):
    """What an instance uses of the plugin that owns it (:class:`~wasmplug.Plugin`).

    A protocol, so that this module does not import ``plugin`` (which imports it).
    """

    name: str
    manifest: Manifest
    limits: Limits
    sandbox: EffectiveSandbox
    _services: HostServices
    _spec: InstanceSpec
    _writes_stdout: bool
    _writes_stderr: bool
    _threaded: bool
    _ticker: EpochTicker
    _exports_list: list[ExportFunc]

    @property
    def _resource_classes(self) -> dict[tuple[str, str], type[Resource]]: ...

    def _resource_type_id(self, ref: ResourceRef) -> int: ...

    def _drop_resource(self, inst: Instance, ptr: Any) -> None: ...

    def _call_thread_abandoned(self, ct: CallThread) -> None: ...

    def _call_thread_exited(self, ct: CallThread) -> None: ...


class Instance:
    """A live instance of a plugin's component, in its own Store.

    Attributes:
        plugin: The owning plugin.
        store: Its own store (a :class:`~wasmplug._bridge.ffi.RawStore`).
        context: Raw ``wasmtime_context_t*`` of the store, for the fast call path.
        instance: The ``wasmtime_component_instance_t`` (a C struct).
        funcs: ``byref(func)`` per export, indexed like ``plugin._exports_list``,
            looked up on an export's first call (:class:`ExportFuncs`).
        alive: False once discarded.
        host_exc: The exception a host function raised during the current call.
        signal_exc: The exception a signal handler raised during the current call
            (Ctrl-C), parked by the deadline callback or a host-function trampoline.
        interrupt: Set to end the running call at its next deadline slice.
        deadline_at: Epoch tick at which the running call's budget ends.
        pending_drops: ``own`` handles (``ResourceAny*``) that were garbage-collected
            and whose guest destructors run before the next call (see
            ``Plugin._run_drops``).
        calls: Calls completed on this instance.
    """

    __slots__ = (
        "__weakref__",
        "_host_reps",
        "alive",
        "buffers",
        "call_thread",
        "caller",
        "calls",
        "context",
        "deadline_at",
        "deadline_epoch",
        "freed",
        "funcs",
        "host_exc",
        "host_func",
        "instance",
        "interrupt",
        "lift_deadline",
        "lift_left",
        "lock",
        "max_lift",
        "output_poll",
        "pending_drops",
        "plugin",
        "signal_exc",
        "stderr",
        "stdout",
        "store",
    )

    def __init__(self, plugin: InstanceOwner) -> None:
        spec = plugin._spec
        settings = spec.settings
        self.plugin = plugin
        self.alive = True
        self.host_exc: BaseException | None = None
        self.host_func = ""  # the host function that raised host_exc
        # The instance this thread was running when this one was entered (a host
        # function calling another plugin), so re-entry anywhere up the chain is seen.
        self.caller: Instance | None = None
        self._host_reps: set[int] | None = None  # made on first use (host_reps)
        self.pending_drops: list[Any] = []
        self.calls = 0
        self.deadline_epoch = -1
        self.deadline_at = 0
        self.interrupt = False
        self.signal_exc: BaseException | None = None
        # The budget of the value being lifted (see _bridge.lift), reset before each lift.
        self.max_lift = self.lift_left = settings.max_lift
        self.lift_deadline = 0.0  # time.monotonic() deadline of the current lift; 0: not yet known
        self.lock = threading.Lock()
        self.freed = False
        self.call_thread: CallThread | None = None
        self.output_poll: select.poll | None = None
        self.buffers: list[Any] = [None] * len(spec.export_index_ptrs)
        store = self.store = f.RawStore(spec.engine, spec.engine_ptr)
        self.context: Any = store.context
        _install_deadline(store.ptr)
        if settings.limiter is not None:
            _store_limiter(store.ptr, *settings.limiter)
        if spec.uses_wasi:
            self._wire_wasi()
        else:  # no WASI, no stdout or stderr: nothing is ever written, the tail stays ""
            self.stdout = self.stderr = _NO_OUTPUT
        if settings.fuel is not None:
            err = f.set_fuel(self.context, settings.fuel)
            if err:  # pragma: no cover - only without fuel enabled, checked at load
                self.close()
                raise f.error_from_ptr(err)
        if plugin._threaded:
            # It can block in WASI: start-up, calls and drops run on its own thread.
            self.call_thread = CallThread(f"wasmplug-call:{plugin.name}", self._call_thread_exited)
            self.instance = self._instantiate_on_thread()
        else:
            self.instance = self._instantiate()
        if self.output_poll is not None:
            self.drain_output()  # what start-up printed is logged before load() returns
        self.funcs = ExportFuncs(self.instance, self.context, spec.export_index_ptrs)

    def _wire_wasi(self) -> None:
        """Give the store its WASI context, with guest output logged (or discarded)."""
        plugin = self.plugin
        logger = logging.getLogger(f"wasmplug.plugin.{plugin.name}")
        discard = plugin.manifest.stdio == "discard"
        self.stdout = GuestOutput(logger, logging.INFO, discard=discard)
        self.stderr = GuestOutput(logger, logging.WARNING, discard=discard)
        try:  # checks that every granted directory is still the one bound at load
            config = plugin.sandbox.wasi_config(
                self.stdout if plugin._writes_stdout else None,
                self.stderr if plugin._writes_stderr else None,
            )
            self.store.set_wasi(config)
        except BaseException:
            self.close()
            raise
        # Guest output through pipes is drained after each call (drain_output).
        for out in (self.stdout, self.stderr):
            if out.pipe is not None:
                if self.output_poll is None:
                    self.output_poll = select.poll()
                self.output_poll.register(out.pipe.fileno(), select.POLLIN)

    @property
    def host_reps(self) -> set[int]:
        """Reps of the host objects (``own`` handles of host-defined resources) this
        instance's guest holds; forgotten when it is freed. Made on first use."""
        reps = self._host_reps
        if reps is None:
            reps = self._host_reps = set()
        return reps

    @property
    def max_host_objects(self) -> int:
        """The most :attr:`host_reps` it may hold (``Limits.host_objects``; ``2**62``:
        no limit)."""
        limit: int = self.plugin._spec.settings.max_host_objects
        return limit

    def drain_output(self) -> None:
        """Log what the guest has written to stdout/stderr so far (see GuestOutput.drain).

        One ``poll(2)`` when nothing was written (cheaper than two failed reads)."""
        poll = self.output_poll
        if poll is not None and (poll.poll(0) or self.stdout.reading or self.stderr.reading):
            self.stdout.drain()
            self.stderr.drain()

    @property
    def ticker(self) -> EpochTicker:
        """The epoch ticker of this instance's host: the one that ticks while it runs
        (``callctx.running`` holds every host's calls)."""
        ticker: EpochTicker = self.plugin._spec.ticker
        return ticker

    @_sigguard.enters_wasm
    def _instantiate(self) -> Any:
        spec = self.plugin._spec
        settings = spec.settings
        ticker = spec.ticker
        epoch = ticker.epoch
        self.deadline_at = epoch + settings.startup_ticks
        ticker.arm(self.context, settings.startup_slice_ticks)
        # Start-up's first slice is a call's (see StoreSettings): while the epoch has
        # not moved, the first call need not set it again (CallPath._run).
        if settings.startup_slice_ticks == settings.call_slice_ticks:
            self.deadline_epoch = epoch
        ident = _get_ident()
        prev = _running.get(ident)
        # Restored in `finally`, the thread's entry first and by subscripts (Python
        # runs a signal handler right after a call returns: a call before it in the
        # finally could be the last statement that runs).
        try:
            _running[ident] = self
            self.caller = prev
            ticker.in_flight.add(self)
            instance = self.store.instantiate_raw(spec.linker_ptr, spec.component_ptr)
            if _deferred:
                _sigguard.run_deferred(self)
            return instance
        except WasmtimeError as e:
            self.close()
            if self.signal_exc is not None:
                raise self.signal_exc from None
            raise self._instantiation_error(str(e)) from e
        except BaseException:
            self.close()
            raise
        finally:
            if prev is None:
                del _running[ident]
            else:
                _running[ident] = prev
            ticker.in_flight.discard(self)

    def _instantiate_on_thread(self) -> Any:
        ct = self.call_thread
        assert ct is not None
        budget_ms = self.plugin._spec.settings.startup_ms
        try:
            done, instance = ct.run(self._instantiate, (budget_ms + GRACE_MS) / 1000)
        except Cancelled:
            self.abandon()
            raise PluginClosedError("plugin was closed while an instance was starting") from None
        except BaseException:
            if ct.abandoned:  # Ctrl-C while it was still starting
                self.abandon()
            raise
        if not done:
            self.abandon()
            raise InstantiationError(
                f"cannot instantiate plugin {self.plugin.name!r}: start-up was still blocked "
                f"in a host call after {budget_ms:g} ms (its call thread was abandoned)"
            )
        return instance

    def _instantiation_error(self, message: str) -> InstantiationError:
        cause, backtrace = split_backtrace(message)
        limits = self.plugin.limits
        hint = ""
        per_memory = limits.per_memory_bytes
        slots = self.plugin._services.instance_slots
        if "concurrent limit" in cause and slots is not None:
            # wasmtime's pooling allocator: "maximum concurrent limit of N for X reached"
            hint = (
                f" (every slot of the host's pooling allocator is in use: "
                f"PluginHost(instance_slots={slots}) holds at most {slots} live instances "
                "over all its plugins; close plugins or raise instance_slots)"
            )
        elif "memory" in cause and "count" in cause and limits.memories is not None:
            hint = (
                f" (the component has more linear memories than Limits.memories="
                f"{limits.memories} allows; raising it splits Limits.memory_bytes evenly "
                "between them)"
            )
        elif "memory" in cause and "limit" in cause and per_memory is not None:
            hint = (
                f" (each memory may grow to {per_memory} bytes, {per_memory // _PAGE} pages: "
                f"Limits.memory_bytes={limits.memory_bytes} over {limits.memories or 1} "
                "memory(ies), which is below what this component needs to instantiate; "
                "componentize-py components need about 12.3 MiB / 197 pages)"
            )
        elif ("instance" in cause or "table" in cause) and "count" in cause:
            hint = " (see Limits.instances and Limits.tables)"
        if self.host_exc is not None:
            hint += f" (a host function raised {type(self.host_exc).__name__} during start-up)"
        err = InstantiationError(f"cannot instantiate plugin {self.plugin.name!r}: {cause}{hint}")
        err.__notes__ = [backtrace] if backtrace else []
        return err

    # HandleBridge, used by the converters -------------------------------------

    def lower_handle(self, ty: HandleT, value: Any, val: Any) -> None:
        lower_handle(self, ty, value, val)

    def lift_handle(self, ty: HandleT, val: Any) -> Any:
        return lift_handle(self, ty, val)

    def lift_deadline_s(self) -> float:
        """The ``time.monotonic()`` time by which the current lift must end: what is
        left of the call's epoch deadline, computed on first use in each lift."""
        deadline = self.lift_deadline
        if not deadline:
            plugin = self.plugin
            ticker = plugin._ticker
            if plugin.limits.timeout_ms is None:
                deadline = math.inf
            else:
                ticks_left = self.deadline_at - ticker.epoch
                deadline = time.monotonic() + max(0, ticks_left) * ticker.tick_ms / 1000.0
            self.lift_deadline = deadline
        return deadline

    # ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the Store and everything in it (idempotent)."""
        if not self.alive:
            return
        self.alive = False
        self._free()

    def abandon(self) -> None:
        """Give up an instance whose call thread is stuck in a host call.

        Its Store is still in use there, so nothing is freed now: the thread
        frees it if the host call ever returns (:meth:`_call_thread_exited`). The
        guest, should it get back to Wasm code, is ended at its next deadline slice.
        """
        self.alive = False
        self.interrupt = True
        ct = self.call_thread
        if ct is not None:
            self.plugin._call_thread_abandoned(ct)

    def _call_thread_exited(self, ct: CallThread) -> None:
        """Run on an abandoned call thread once its job has returned."""
        try:
            self._free()
        finally:
            self.plugin._call_thread_exited(ct)

    def _free(self) -> None:
        if self.freed:
            return
        self.freed = True
        ct = self.call_thread
        if ct is not None:
            ct.stop()
        if self.stdout is not _NO_OUTPUT:
            self.stdout.close()
            self.stderr.close()
        reps = self._host_reps
        if reps:
            forget_host_objects(reps)
            reps.clear()
        # The guest objects go with the store; free the host-side handles.
        drops = self.pending_drops
        while drops:
            f.resource_any_delete(drops.pop())
        buffers = self.buffers
        if buffers:
            self.buffers = _NO_BUFFERS
            exports = self.plugin._exports_list
            for i, buf in enumerate(buffers):
                if buf is not None:
                    exports[i].give_back(buf)
        self.funcs = _NO_FUNCS
        self.context = None
        self.instance = None
        self.store.close()

    def guest_stderr_tail(self) -> str:
        return self.stderr.tail

    def drop_handle(self, ptr: Any) -> None:
        """``Resource.drop()`` on an ``own`` handle: its guest destructor runs now, or
        before this instance's next call if a host function is running on it."""
        self.plugin._drop_resource(self, ptr)

    def resource_class(self, ref: ResourceRef) -> type[Resource]:
        """The plugin's class for handles of the exported resource type ``ref``."""
        return self.plugin._resource_classes.get((ref.interface, ref.name), Resource)

    def resource_type_id(self, ref: ResourceRef) -> int:
        """The linker's type id of the host-defined (imported) resource type ``ref``."""
        return self.plugin._resource_type_id(ref)

    @staticmethod
    def release_handle(ptr: Any) -> None:
        """Free a handle's ``ResourceAny*`` without running the guest destructor (a
        ``borrow``, or the instance is gone and the guest object with it)."""
        f.resource_any_delete(ptr)

    def drop_resource(self, ptr: Any) -> Any:
        """Run the guest destructor of an owned resource and free ``ptr``.

        The caller holds ``lock`` and has made the call context current. Returns
        wasmtime's error pointer (``None`` on success), as ``func_call`` does.
        """
        err = f.resource_any_drop(self.context, ptr)
        f.resource_any_delete(ptr)
        return err
