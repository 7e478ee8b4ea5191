"""A loaded plugin: typed export calls, an instance pool, and crash isolation."""

from __future__ import annotations

import contextvars
import functools
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast, final

from wasmtime.component import Component, Linker

from wasmplug._bridge import callctx as _callctx
from wasmplug._bridge.hostfuncs import Linked
from wasmplug._bridge.resources import Resource
from wasmplug._bridge.wit import ComponentShape, FuncSig, ResourceRef, snake
from wasmplug._errors import CapabilityError, PluginError, PluginFault
from wasmplug._sandbox.confinement import Confinement
from wasmplug._sandbox.grants import EffectiveSandbox
from wasmplug._sandbox.limits import Limits, RestartPolicy
from wasmplug._sandbox.manifest import Manifest

from .aio import AsyncCall
from .callpath import Backend, CallPath, call_chain
from .callthread import CLOSE_GRACE_S, GRACE_MS, CallThread, blocking_imports
from .deadline import SLICE_MS
from .engine import call_ticks
from .exports import ExportFunc, Exports, short_interface_name
from .exporttable import export_table
from .instance import Instance
from .instancespec import instance_spec
from .pool import InstancePool
from .resource_types import build_resource_classes
from .services import HostServices
from .supervisor import PluginMetrics, Supervisor
from .telemetry import instrument

__all__ = ["Plugin", "PluginPort", "export_names", "find_export"]

E = TypeVar("E", bound=PluginError)
F = TypeVar("F", bound=PluginFault)

_STUCK_LOCK = threading.Lock()
"""Guards every plugin's set of stuck call threads (rarely taken: a thread abandoned
or exiting), so that a plugin need not hold a lock of its own for it."""
_NO_THREADS: frozenset[CallThread] = frozenset()
_NO_CALLS: dict[str, Callable[[tuple[Any, ...]], Any]] = {}
"""``Plugin._bound_calls`` before the first call: shared, empty, never written (a
plugin makes its own dict on its first call, so 10,000 idle plugins hold none)."""
"""The stuck call threads of a plugin without call threads: none, ever."""
_BUILD_LOCK = threading.RLock()
"""Held while a plugin builds its ``exports`` view and resource classes."""


@final
class Plugin(CallPath):
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
        blocking_wasi: The WASI interfaces it imports through which a guest can
            block in the host (``("wasi:io/poll@0.2.0",)``...). When not empty,
            each instance's calls run on a call thread of its own and the caller
            waits with the deadline (see docs/crash-isolation.md, "Blocking WASI
            calls"); when empty, calls run directly on the calling thread.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_bound_calls",
        "_call",
        "_closed",
        "_component",
        "_deadline_ticks",
        "_export_indices",
        "_export_positions",
        "_export_table",
        "_exports_list",
        "_exports_view",
        "_fuel",
        "_invoke",
        "_linked",
        "_linker",
        "_pool",
        "_resource_class_map",
        "_services",
        "_slice_ticks",
        "_spec",
        "_stuck",
        "_stuck_lock",
        "_supervisor",
        "_tel",
        "_threaded",
        "_ticker",
        "_uses_wasi",
        "_wait_s",
        "_writes_stderr",
        "_writes_stdout",
        "blocking_wasi",
        "limits",
        "manifest",
        "name",
        "pool_size",
        "publisher",
        "sandbox",
        "sha256",
        "shape",
    )

    def __init__(
        self,
        *,
        services: HostServices,
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
        backend: Callable[..., Backend] | None = None,
        call_threads: bool = True,
    ) -> None:
        self._services = services
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
        self._ticker = services.ticker
        timeout = limits.timeout_ms
        # A call's store deadline is set one slice ahead; the deadline callback
        # (deadline.py) grants the next slice until _deadline_ticks are spent.
        self._deadline_ticks, self._slice_ticks = call_ticks(
            timeout, services.ticker.tick_ms, SLICE_MS
        )
        self._fuel = limits.fuel if services.consume_fuel and limits.fuel is not None else None
        # A plugin that can block in WASI runs each instance's calls on its own
        # thread and waits with a deadline (callthread.py); others call directly.
        self.blocking_wasi = tuple(blocking_imports(shape.imports)) if uses_wasi else ()
        self._threaded = call_threads and bool(self.blocking_wasi)
        # The output streams it can write to: only those get a pipe (two descriptors).
        self._writes_stdout = uses_wasi and any(
            i.startswith("wasi:cli/stdout@") for i in shape.imports
        )
        self._writes_stderr = uses_wasi and any(
            i.startswith("wasi:cli/stderr@") for i in shape.imports
        )
        self._call = self._run_on_thread if self._threaded else self._run
        self._wait_s = None if timeout is None else (timeout + GRACE_MS) / 1000
        # Only a plugin with call threads can have stuck ones (thousands of small
        # plugins without need not each hold an empty set and a lock).
        self._stuck: set[CallThread] = set() if self._threaded else cast(Any, _NO_THREADS)
        self._stuck_lock = _STUCK_LOCK
        # Names, signatures and export indices are the component's, shared by every
        # plugin loaded from it; the ExportFunc objects are this plugin's.
        table = self._export_table = export_table(component, shape)
        self._export_positions = table.positions
        self._bound_calls = _NO_CALLS
        self._export_indices = table.indices
        self._exports_list = [
            ExportFunc(self, i, name, sig)
            for i, (name, sig) in enumerate(zip(table.names, table.sigs, strict=True))
        ]
        # plugin.exports and the resource classes are built on first use.
        self._exports_view: Exports | None = None
        self._resource_class_map: dict[tuple[str, str], type[Resource]] | None = None
        self._spec = instance_spec(
            services=services,
            linker=linker,
            component=component,
            export_indices=table.indices,
            export_index_ptrs=table.index_ptrs,
            limits=limits,
            slice_ticks=self._slice_ticks,
            uses_wasi=uses_wasi,
        )
        # A slot (Plugin has no __dict__), so the call path's method is bound here;
        # telemetry may wrap it below.
        self._invoke = types.MethodType(CallPath._invoke, self)  # type: ignore[method-assign]
        # isolation="process": ``backend(self, pool_size=...)`` runs every call in
        # worker processes (see wasmplug._runtime.process); the pool stays empty.
        self._backend: Backend | None = None
        # With an OpenTelemetry SDK configured, calls run through a span/timer
        # wrapper bound here; otherwise the call path is untouched (telemetry.py).
        self._tel = instrument(self, isolation="process" if backend else "inprocess")
        if self._tel is not None:
            self._invoke = self._tel.wrap(self._invoke)  # type: ignore[method-assign,assignment]
        if backend is not None:
            self._backend = backend(PluginPort(self), pool_size=pool_size)
            return
        # The first instance, now: start-up failures surface at load time.
        services.ticker.start()
        self._pool.prime()

    # -- construction -------------------------------------------------------------

    @property
    def exports(self) -> Exports:
        """Attribute-style access to the exports (see :class:`Exports`), built on first use."""
        view = self._exports_view
        if view is None:
            view = self._build_exports()
        return view

    @property
    def _resource_classes(self) -> dict[tuple[str, str], type[Resource]]:
        """The class of each exported resource type, by ``(interface, name)``."""
        classes = self._resource_class_map
        if classes is None:
            self._build_exports()
            classes = self._resource_class_map
            assert classes is not None
        return classes

    def _build_exports(self) -> Exports:
        """Build :attr:`exports` and the resource classes (once: under a lock, so two
        threads never hand out handles of two different classes for one type)."""
        with _BUILD_LOCK:
            view = self._exports_view
            if view is not None:
                return view
            classes: dict[tuple[str, str], type[Resource]] = {}
            attrs_root: dict[str, Any] = {}
            items_root: dict[str, Any] = {}
            exports = self._exports_list
            for iface_name, resources, positions in self._export_table.interfaces:
                funcs = [(exports[i].sig, exports[i]) for i in positions]
                members = self._members(iface_name, list(resources), funcs, classes)
                if iface_name:
                    attrs_root[short_interface_name(iface_name)] = members
                    items_root[iface_name] = members
                else:  # the world's own functions
                    attrs_root.update(members._attrs)
                    items_root.update(members._items)
            view = Exports(attrs_root, items_root)
            self._resource_class_map = classes
            self._exports_view = view
            return view

    @staticmethod
    def _members(
        interface: str,
        resources: list[str],
        funcs: list[tuple[FuncSig, ExportFunc]],
        classes_out: dict[tuple[str, str], type[Resource]],
    ) -> Exports:
        """An interface's exports: plain functions (snake_case attributes), one
        class per resource type (PascalCase attributes), everything by WIT name."""
        classes, plain = build_resource_classes(interface, resources, funcs)
        attrs: dict[str, Any] = {}
        for name, cls in classes.items():
            classes_out[(interface, name)] = cls
            attrs[cls.__name__] = cls
        for name, ex in plain.items():
            attrs.setdefault(snake(name), ex)
        return Exports(attrs, {sig.name: ex for sig, ex in funcs})

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
        try:
            bound = self._bound_calls[export]
        except KeyError:
            bound = self._bound_call(export)
        return bound(args)

    def _bound_call(self, export: str) -> Callable[[tuple[Any, ...]], Any]:
        """The function that runs ``export``'s calls (``ExportFunc.bound``), kept by
        name in ``_bound_calls`` so that :meth:`call` makes one dict lookup."""
        i = self._export_positions.get(export)
        if i is None:
            raise self._unknown_export(export)
        ex = self._exports_list[i]
        bound = ex.bound or self._bind(ex)
        if self._bound_calls is _NO_CALLS:
            self._bound_calls = {}
        self._bound_calls[export] = bound
        return bound

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
        import asyncio  # here: worker processes import Plugin but never await

        loop = asyncio.get_running_loop()
        call = AsyncCall(loop)
        # The worker runs in a copy of the caller's context (as asyncio.to_thread does;
        # run_in_executor does not), so host functions, sync or async, see the
        # caller's contextvars and current span, and the call's span nests under it.
        job = functools.partial(self._acall_worker, call, export, args)
        fut = loop.run_in_executor(
            self._services.executor, functools.partial(contextvars.copy_context().run, job)
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
        names = ", ".join(self._export_table.names)
        err = PluginError(f"no export named {export!r}; exports are: {names}")
        err.plugin = self.name
        return err

    # -- instances ----------------------------------------------------------------------

    def _new_instance(self) -> Instance:
        """The pool's factory: a fresh instance, after the restart policy's backoff."""
        self._admit_instance()
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

    def _admit_instance(self) -> None:
        """Before a fresh instance (in-process, or a worker's): fail fast while
        quarantined, else wait out the restart policy's backoff."""
        if self._supervisor.quarantined:
            raise self._quarantined(None)
        self._supervisor.before_instantiate()

    # -- lifecycle and health ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (on this plugin or its host)."""
        return self._closed

    @property
    def confinement(self) -> Confinement | None:
        """How this plugin's worker processes are confined (``isolation="process"``).

        Each worker applies a seccomp filter and a Landlock ruleset before the
        plugin's code first runs, as far as the kernel supports them (see
        ``PluginHost(worker_confinement=...)`` and ``docs/crash-isolation.md``,
        "What a worker is confined to"). ``None`` for an in-process plugin: it
        runs in the application's process, confined by wasmtime alone.
        """
        return None if self._backend is None else self._backend.confinement

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
        here = call_chain(_callctx.current())
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


@final
class PluginPort:
    """What the process tier may use of a :class:`Plugin`: the one interface between
    a plugin and ``wasmplug._runtime.process`` (docs/architecture.md, "The process tier").

    ``Plugin.__init__`` hands one to its backend factory (``backend(port,
    pool_size=n)``, see ``process.launch``); a worker makes one for the in-process
    plugin it runs the calls of. Both tiers share the plugin's fault accounting
    through it: the in-process call path is the plugin's own (:class:`CallPath`).

    Attributes:
        plugin: The plugin: its public attributes, and its identity (the plugin of
            resource handles and of the call frames that re-entry checks walk).
        exports: Its exports, by ``ExportFunc.index`` (the numbering workers use).
        supervisor: Its fault counts and restart policy.
        telemetry: Its call telemetry, or ``None`` without an OpenTelemetry SDK.
        invoke: ``invoke(ex, args)``: the plugin's whole call path for export ``ex``,
            as :meth:`Plugin.call` runs it once it has found ``ex`` by name.
        bind: ``bind(ex) -> bound``: the function :meth:`Plugin.call` runs ``ex``'s
            calls with, ``bound(args)`` (generated for the common case: ``fastcall``).
        admit_instance: ``admit_instance()``, before a fresh instance is made: raises
            :class:`PluginQuarantinedError` while quarantined, else waits out the
            restart policy's backoff.
    """

    __slots__ = ("admit_instance", "bind", "exports", "invoke", "plugin", "supervisor", "telemetry")

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.exports: Sequence[ExportFunc] = plugin._exports_list
        self.supervisor = plugin._supervisor
        self.telemetry = plugin._tel
        self.invoke: Callable[[ExportFunc, tuple[Any, ...]], Any] = plugin._invoke
        self.bind: Callable[[ExportFunc], Callable[[tuple[Any, ...]], Any]] = plugin._bind
        self.admit_instance: Callable[[], None] = plugin._admit_instance

    @property
    def closed(self) -> bool:
        """Whether the plugin was closed (a backend's calls then end with
        :class:`PluginClosedError`)."""
        return self.plugin._closed

    def error(self, exc: E, ex: ExportFunc | None) -> E:
        """``exc``, naming the plugin and the export ``ex`` (``None``: no call's)."""
        return self.plugin._error(exc, ex)

    def fault(self, exc: F, ex: ExportFunc | None) -> F:
        """Count ``exc`` for the restart policy, naming the plugin and ``ex``; returns it."""
        self.supervisor.record_fault(self.plugin._error(exc, ex))
        return exc

    def interrupted(self, ex: ExportFunc | None, exc: BaseException) -> None:
        """Count a call (of ``ex``) ended by ``exc``, a ``BaseException`` such as Ctrl-C."""
        self.plugin._record_interrupt(ex, exc)

    def resource_class(self, ref: ResourceRef) -> type[Resource]:
        """The plugin's handle class for the guest resource type ``ref``."""
        return self.plugin._resource_classes.get((ref.interface, ref.name), Resource)

    def drop_resource(self, inst: Any, token: int) -> None:
        """``Resource.drop()`` of an ``own`` handle of a worker's instance ``inst``."""
        backend = self.plugin._backend
        assert backend is not None  # a worker's instance belongs to a process-tier plugin
        backend.drop_resource(inst, token)

    def time_instances(self, timed: Callable[[Callable[[], Instance]], Instance]) -> None:
        """Make every later instance as ``timed(create)`` (a worker reports each one)."""
        pool = self.plugin._pool
        pool._create = functools.partial(timed, pool._create)


def find_export(plugin: Plugin, name: str) -> ExportFunc | None:
    """``plugin``'s export ``name`` (a WIT name, as for :meth:`Plugin.call`), or ``None``.

    Its signature (``.sig``: WIT parameter and result types) is what ``wasmplug call``
    parses command-line arguments by.
    """
    i = plugin._export_positions.get(name)
    return None if i is None else plugin._exports_list[i]


def export_names(plugin: Plugin) -> list[str]:
    """The WIT names :meth:`Plugin.call` accepts, in the component's order."""
    return list(plugin._export_table.names)
