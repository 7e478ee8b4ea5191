"""The worker process: one plugin instance behind a channel to the application.

Started by :mod:`.spawn` as ``python -I -S -c BOOTSTRAP <rfd> <wfd> <parent pid>
<package dir> <import path...>`` with an empty environment, a private working
directory and no file descriptors but stdio (``/dev/null``) and its ends of the
channel's pipes, ``<rfd>`` and ``<wfd>``. It dies with the application:
``PR_SET_PDEATHSIG`` (``SIGKILL``), and it exits on EOF. Once it has its settings,
and before it starts a thread or runs the plugin's code, it confines itself
(:mod:`.jail`: a seccomp filter and a Landlock ruleset) and says how in ``READY``.

The worker runs the ordinary in-process call path (``Plugin`` and ``Instance``)
on the compiled component it reads from the compile cache (it never compiles).
Its host imports are stand-ins that send ``HOSTCALL`` to the application and
wait for ``RETURN``: host functions, host-defined resources and the HTTP
interface all run in the application. The restart policy, quarantine and
metrics are the application's; the worker only reports what happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import signal
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from wasmtime.component import Component, Linker

from wasmplug._bridge.hostfuncs import Invoke, ResolvedImports, link_resolved
from wasmplug._bridge.resources import Resource, moved_into_guest
from wasmplug._bridge.wit import (
    FuncSig,
    HandleT,
    InterfaceShape,
    Prim,
    ResultT,
    contains_handles,
    read_shape,
)
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
from wasmplug._runtime.cache import CompileCache
from wasmplug._runtime.exports import ExportFunc
from wasmplug._runtime.plugin import Plugin, PluginPort
from wasmplug._runtime.services import HostServices
from wasmplug._sandbox.capabilities import sandbox_from_wire
from wasmplug._sandbox.confinement import to_wire as confinement_to_wire
from wasmplug._sandbox.grants import EffectiveSandbox
from wasmplug._sandbox.limits import Limits, RestartPolicy
from wasmplug._sandbox.manifest import Manifest

from .budget import DROP_CHUNK
from .codec import Encode, ProtocolError, decoder, encoder
from .jail import confine
from .wire import WORKER_SPANS, Channel, Op

__all__ = ["main"]

_LINK, _INSTANTIATE = (
    WORKER_SPANS.index(n) for n in ("wasmplug.load.link", "wasmplug.instantiate")
)
_PR_SET_PDEATHSIG = 1
_HEADROOM = 64 << 20  # bytes of address space above what start-up used, besides guest memory
WORKER_SLOTS = 2
"""Pooling-allocator slots of a worker of a host with ``instance_slots``: its one
instance, and the fresh one made while the discarded one may still be referenced.
The host's ``instance_slots`` is its capacity for in-process instances; a worker's
instances live in the worker's own address space and do not count against it."""
WORKER_TICK_MS = 5.0
"""A worker's epoch tick, at least (the host's ``tick_ms`` if coarser). A guest that
spins past its deadline is ended by the worker's own epoch deadline within two ticks
plus the ticker's idle poll (10 ms), well before the application kills the worker at
``timeout_ms`` + ``backend.KILL_GRACE_MS`` (50 ms); a 1 ms tick would only make that
clean end a little more precise, at 1,000 wake-ups a second of a CPU-bound call (each
taking the GIL and tens of microseconds of CPU on a VM) instead of 200."""
_NEVER_QUARANTINE = RestartPolicy(max_faults=2**31 - 1, window_s=1e-9)


Serve = Callable[[list[Any], Any], list[Any]]
"""``serve(wire args, drops) -> reply``: one ``CALL`` of an export (see ``Server._server``)."""
Plain = tuple[Callable[[tuple[Any, ...]], Any], int, "Encode | None"]
"""``(call, arity, err encoder)``: a ``CALL`` the serving loop runs inline."""


class StartError(Exception):
    """The worker could not get ready (reported to the application, then exit)."""


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the thread that spawned it exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _segfault() -> NoReturn:
    """Test hook (``Op.CRASH``): a real null-pointer read in native code."""
    ctypes.string_at(0)
    os._exit(70)  # unreachable


class RemoteObject:
    """Stands in for a host-defined resource object that lives in the application.

    Attributes:
        oid: The application's id of the object.
        dropped: Reports the id to the application (``DROP``) once this stand-in
            is garbage-collected; detached when ownership goes back to the
            application (see ``_Handles.object_id``).
    """

    __slots__ = ("__weakref__", "dropped", "oid")

    def __init__(self, oid: int, dropped: list[int]) -> None:
        self.oid = oid
        self.dropped = weakref.finalize(self, dropped.append, oid)

    def __repr__(self) -> str:
        return f"<remote host object {self.oid}>"


class _Handles:
    """Worker side of the handle tables.

    Host-defined resources: one :class:`RemoteObject` per live object id (the
    object lives in the application). Guest-defined resources: the instance's
    own :class:`~wasmplug.Resource` handles, by a token that is never reused;
    the application holds the token (see ``handles.py``).
    """

    def __init__(self) -> None:
        self.live: weakref.WeakValueDictionary[int, RemoteObject] = weakref.WeakValueDictionary()
        self.dropped: list[int] = []
        self.guest: dict[int, Resource] = {}
        self.next_token = 1
        self.taken: list[int] = []  # guest tokens passed as ``own`` in the current call

    def object_id(self, ty: HandleT, obj: Any) -> int:
        if not ty.resource.imported:
            if not isinstance(obj, Resource):  # the bridge lifted it: cannot happen
                raise WitTypeError(f"expects {ty}, got {type(obj).__name__}")
            token = self.next_token
            self.next_token += 1
            self.guest[token] = obj
            return token
        if not isinstance(obj, RemoteObject):
            raise WitTypeError(f"expects {ty} (an object the application created)")
        if ty.owned:
            # Ownership goes back: the application forgets the id as it reads it, so
            # this worker must never report it dropped. (When the stand-in dies is
            # refcount timing: often just before the reply naming it is sent, so a
            # DROP would reach the application first.)
            obj.dropped.detach()
            self.live.pop(obj.oid, None)
        return obj.oid

    def object_for(self, ty: HandleT, oid: int) -> Any:
        if not ty.resource.imported:
            res = self.guest.get(oid)
            if res is None:
                raise StaleResourceError(f"{ty.resource.name} handle was already dropped")
            if ty.owned:
                self.taken.append(oid)
            return res
        obj = self.live.get(oid)
        if obj is None:
            obj = self.live[oid] = RemoteObject(oid, self.dropped)
        return obj

    def release(self, tokens: list[Any]) -> None:
        """The application dropped these handles: their destructors run before the
        next call, as for garbage-collected handles in-process."""
        for token in tokens:
            if token.__class__ is not int:
                raise ProtocolError("malformed drop list")
            self.guest.pop(token, None)  # the last reference: Resource.__del__ queues it

    def end_call(self) -> None:
        """Forget the ``own`` handles the call moved into the guest."""
        for token in self.taken:
            res = self.guest.get(token)
            if res is not None and moved_into_guest(res):
                del self.guest[token]
        self.taken.clear()

    def purge(self) -> None:
        """The instance was discarded: its guest handles are stale; forget them."""
        self.guest = {t: r for t, r in self.guest.items() if r.alive}


class _HostFailed(Exception):
    """A host function failed in the application; the fault is reported from there."""


class _LogForwarder(logging.Handler):
    """Sends the worker's log records (guest stdout/stderr lines) to the application."""

    def __init__(self, chan: Channel) -> None:
        super().__init__(logging.DEBUG)
        self.chan = chan

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.chan.send([Op.LOG, record.levelno, record.getMessage()])
        except Exception:
            pass


class Server:
    """Serves one plugin's calls until the channel closes."""

    def __init__(self, chan: Channel, settings: dict[str, Any], sandbox: EffectiveSandbox) -> None:
        self.chan = chan
        self.handles = _Handles()
        # Stages timed for the application's trace (SPAN), when it traces: those of
        # start-up are sent before READY, later ones (a restart in a call) at once.
        self.traced = bool(settings.get("telemetry"))
        self.serving = False
        self.startup_spans: list[list[int]] = []
        services = HostServices(
            consume_fuel=bool(settings["consume_fuel"]),
            tick_ms=max(float(settings["tick_ms"]), WORKER_TICK_MS),
            max_workers=1,  # never used: acall is the application's
            # The same engine as the host's, or the code it compiled does not load.
            memory_accounting=bool(settings.get("memory_accounting")),
            # A host with instance_slots: fresh instances (after a fault, reset())
            # come from pooling-allocator slots here too, sized by this plugin's limits.
            instance_slots=WORKER_SLOTS if settings.get("pooling") else None,
            limits=Limits(**settings["limits"]),
        )
        cache = CompileCache(Path(settings["cache_dir"]), services.engine_settings)
        payload = cache.get(settings["cache_key"])
        if payload is None:
            raise StartError("the compiled component is missing from the compile cache")
        component = Component.deserialize(services.engine, payload)
        shape = read_shape(services.engine, component)
        # World-level host resources are defined at the root (their functions are stand-ins).
        self._root_resources = tuple(r.name for r in shape.import_resources)
        resolved = self._stand_ins(shape.imports, shape.import_functions, settings["imports"])
        link_start = time.time_ns()
        linker = Linker(services.engine)
        if settings["uses_wasi"]:
            linker.add_wasip2()
        linked = link_resolved(linker, resolved)
        if settings["needs_traps"]:
            linker.define_unknown_imports_as_traps(component)
        self.report(_LINK, link_start, time.time_ns())
        first_start = time.time_ns()
        self.plugin = Plugin(
            services=services,
            component=component,
            shape=shape,
            manifest=Manifest(name=settings["name"], stdio=settings["stdio"]),
            sandbox=sandbox,
            limits=Limits(**settings["limits"]),
            linker=linker,
            linked=linked,
            uses_wasi=bool(settings["uses_wasi"]),
            pool_size=1,
            restart_policy=_NEVER_QUARANTINE,
            sha256=settings["sha256"],
            # Calls run on this (main) thread even when the guest can block in WASI:
            # the application kills the whole worker at the deadline, which the
            # in-process call-thread path only approximates, and a call thread left
            # behind could still use the channel after the worker had moved on.
            call_threads=False,
        )
        self.port = port = PluginPort(self.plugin)
        # Building the export table, then the first instance; later instances are
        # made in calls (after a fault), and each is reported as it is made.
        self.report(_INSTANTIATE, first_start, time.time_ns())
        port.time_instances(self._timed_instance)
        # The export table, by index (the one the application's CALL names).
        self.calls: list[tuple[Serve, Plain | None]] = [self._server(ex) for ex in port.exports]

    def _server(self, ex: ExportFunc) -> tuple[Serve, Plain | None]:
        """How ``CALL`` of export ``ex`` is served: ``serve(wire args, drops) -> reply``,
        and, when the export qualifies, the ``(call, arity, err encoder)`` that the
        serving loop runs inline instead (see :meth:`serve`).

        Values of primitive WIT types cross as they are (the application encoded
        them, the bridge's lowerers check them as for any call), and a primitive
        result is its own wire form. So for an export whose signature names no
        resource handle, and whose parameters and result are primitives, serving a
        call is: the argument tuple, the export's in-process call function
        (``PluginPort.bind``: ``fastcall``, made here once), the reply.
        """
        sig = ex.sig
        result = sig.result
        ok_t = err_t = None
        if ex.returns_result:
            assert isinstance(result, ResultT)
            ok_t, err_t = result.ok, result.err
        else:
            ok_t = result
        decs = [None if isinstance(t, Prim) else decoder(t) for _, t in sig.params]
        ok_enc = None if ok_t is None or isinstance(ok_t, Prim) else encoder(ok_t)
        err_enc = None if err_t is None else encoder(err_t)
        handles = self.handles
        failure = self._failure
        nparams = len(decs)
        call: Callable[[tuple[Any, ...]], Any]
        plain: Plain | None = None
        if contains_handles([t for _, t in sig.params] + [result]):
            call = functools.partial(self.port.invoke, ex)
        else:
            call = self.port.bind(ex)
            plain = (call, nparams, err_enc) if ok_enc is None and not any(decs) else None

        def serve(wire: list[Any], drops: Any) -> list[Any]:
            if drops.__class__ is not list or len(wire) != nparams:
                raise ProtocolError("malformed CALL")
            if drops:
                handles.release(drops)
            try:
                args = tuple(
                    [w if d is None else d(w, handles) for d, w in zip(decs, wire, strict=True)]
                )
                value = call(args)
            except BaseException as e:
                return failure(e, err_enc)
            else:
                return [Op.RESULT, value if ok_enc is None else ok_enc(value, handles)]
            finally:
                handles.end_call()

        return serve, plain

    # -- host imports: stand-ins that call the application ------------------------

    def _stand_ins(
        self,
        interfaces: dict[str, InterfaceShape],
        functions: tuple[FuncSig, ...],
        wanted: list[list[Any]],
    ) -> ResolvedImports:
        """Link the imports the application resolved, in its order (= function ids)."""
        by_iface: dict[str, tuple[InterfaceShape, dict[str, Invoke]]] = {}
        root: dict[str, tuple[FuncSig, Invoke]] = {}
        world = {sig.name: sig for sig in functions}
        fid = 0
        for iface_name, names in wanted:
            if iface_name:
                shape = interfaces[iface_name]
                sigs = {sig.name: sig for sig in shape.functions}
                invokes: dict[str, Invoke] = {}
                by_iface[iface_name] = (shape, invokes)
                for name in names:
                    invokes[name] = self._stand_in(fid, sigs[name])
                    fid += 1
            else:
                for name in names:
                    root[name] = (world[name], self._stand_in(fid, world[name]))
                    fid += 1
        return ResolvedImports(by_iface, root, self._root_resources)

    def _stand_in(self, fid: int, sig: FuncSig) -> Invoke:
        encs = [encoder(t) for _, t in sig.params]
        dec = None if sig.result is None else decoder(sig.result)
        handles = self.handles

        def invoke(args: list[Any]) -> Any:
            wire = [encs[i](a, handles) for i, a in enumerate(args)]
            self._send([Op.HOSTCALL, fid, wire])
            while True:
                msg = self.chan.recv()
                op = msg[0]
                if op == Op.RETURN:
                    if msg[1]:
                        return None if dec is None else dec(msg[2], handles)
                    raise _HostFailed(str(msg[2]))
                if op == Op.CRASH:
                    _segfault()
                raise ProtocolError(f"unexpected opcode {op} during a host call")

        return invoke

    # -- serving ------------------------------------------------------------------------

    def _send(self, message: list[Any]) -> None:
        dropped = self.handles.dropped
        if dropped:
            ids, dropped[:] = list(dropped), []
            for i in range(0, len(ids), DROP_CHUNK):  # the application's bound per frame
                self.chan.send([Op.DROP, ids[i : i + DROP_CHUNK]])
        self.chan.send(message)

    def _timed_instance(self, create: Callable[[], Any]) -> Any:
        start = time.time_ns()
        inst = create()
        self.report(_INSTANTIATE, start, time.time_ns())
        return inst

    def report(self, kind: int, start_ns: int, end_ns: int) -> None:
        """Report a timed stage to the application (if it traces)."""
        if not self.traced:
            return
        if self.serving:
            self._send([Op.SPAN, kind, start_ns, end_ns])
        else:
            self.startup_spans.append([Op.SPAN, kind, start_ns, end_ns])

    def serve(self) -> None:
        """Serve the application's requests until the channel closes (``EOFError``).

        A ``CALL`` of an export with a plain entry (see :meth:`_server`) is run
        inline: the least Python between two ``recv`` calls, each of which starts
        with the caches of the other process.
        """
        self.serving = True
        chan = self.chan
        recv, send = chan.recv, chan.send
        calls = self.calls
        failure = self._failure
        dropped = self.handles.dropped
        count = len(calls)
        call_op, result_op = Op.CALL, Op.RESULT
        no_drops: list[int] = []  # what serve() takes as no drops (a list, and empty)
        while True:
            msg = recv()
            if msg[0] == call_op:
                if len(msg) != 4 or msg[2].__class__ is not list:
                    raise ProtocolError("malformed CALL")
                index = msg[1]
                if index.__class__ is not int or not 0 <= index < count:
                    raise ProtocolError("CALL of an unknown export")
                serve, plain = calls[index]
                wire = msg[2]
                if plain is not None and msg[3] == no_drops and len(wire) == plain[1]:
                    try:
                        reply = [result_op, plain[0](tuple(wire))]
                    except BaseException as e:
                        reply = failure(e, plain[2])
                else:
                    reply = serve(wire, msg[3])
                if dropped:
                    self._send(reply)
                else:
                    send(reply)
            else:
                self._request(msg)

    def _request(self, msg: list[Any]) -> None:
        """Serve a request other than ``CALL``."""
        op = msg[0]
        if op == Op.DESTROY and len(msg) == 2:
            self._destroy(msg[1])
        elif op == Op.RESET:
            self.plugin.reset()
            self.handles.purge()
            self._send([Op.DONE])
        elif op == Op.CRASH:
            _segfault()
        else:
            raise ProtocolError(f"unexpected opcode {op}")

    def _destroy(self, token: Any) -> None:
        """Run the guest destructor of a handle the application dropped (``DESTROY``)."""
        res = self.handles.guest.pop(token, None) if token.__class__ is int else None
        try:
            if res is not None:
                res.drop()
        except BaseException as e:
            reply = self._failure(e, None)
        else:
            reply = [Op.RESULT, None]
        self._send(reply)

    def _failure(self, e: BaseException, err_enc: Encode | None) -> list[Any]:
        """The ``FAULT`` reply for what a call (or a destructor) raised."""
        handles = self.handles
        if isinstance(e, ErrorResult):
            return [Op.FAULT, "err", None if err_enc is None else err_enc(e.value, handles)]
        if isinstance(e, HostFunctionError):
            handles.purge()
            return [Op.FAULT, "host"]
        if isinstance(e, PluginFault):
            handles.purge()
            if e.__cause__ is None and isinstance(e, ResultTooLarge | PluginTimeout):
                # Raised by wasmplug while lifting the result, not by wasmtime.
                return [Op.FAULT, "lift", e.fault, Exception.__str__(e)]
            notes = getattr(e, "__notes__", [])
            return [Op.FAULT, "wasm", str(e.__cause__ or ""), e.guest_stderr, *notes]
        if isinstance(e, InstantiationError):
            notes = getattr(e, "__notes__", [])
            return [Op.FAULT, "inst", str(e), str(e.__cause__ or ""), *notes]
        if isinstance(e, CapabilityError):  # a grant no longer names its directory: no instance
            return [Op.FAULT, "capability", str(e)]
        if isinstance(e, WitTypeError | WitValueError | StaleResourceError):
            return [Op.FAULT, type(e).__name__, str(e)]
        if isinstance(e, PluginError):
            return [Op.FAULT, "error", Exception.__str__(e)]
        raise e


def _limit_memory(limits: dict[str, Any]) -> None:
    """Cap the data segment (RLIMIT_DATA): what start-up used, plus the guest's memory
    limit, plus headroom. wasmtime reserves guest memory as PROT_NONE address space
    (not counted) and counts only the pages it makes accessible, so this caps real
    use without breaking the reservations that ``RLIMIT_AS`` would."""
    memory = limits.get("memory_bytes")
    if memory is None:
        return
    used = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                used = int(line.split()[1]) * 1024
    if used:
        cap = used + int(memory) + _HEADROOM
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def main(argv: list[str]) -> None:
    """Worker entry point: ``argv = [prog, rfd, wfd, parent_pid, package_dir, *sys_path]``."""
    rfd, wfd, parent_pid = int(argv[1]), int(argv[2]), int(argv[3])
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the application's to handle
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    chan = Channel(rfd, wfd)
    # Only guest output goes to the application (LOG): the worker's own records
    # (its fault lines) repeat what the application logs itself, with the
    # structured fields, and would pass for lines the guest wrote.
    guest = logging.getLogger("wasmplug.plugin")
    guest.addHandler(_LogForwarder(chan))
    guest.setLevel(logging.DEBUG)
    guest.propagate = False
    wlog = logging.getLogger("wasmplug")
    wlog.addHandler(logging.NullHandler())
    wlog.propagate = False
    try:
        msg = chan.recv()
        if msg[0] != Op.INIT:
            raise ProtocolError("expected INIT")
        settings = msg[1]
        try:
            sandbox = sandbox_from_wire(settings["sandbox"])
            # Before the guest first runs, and while this is the only thread (jail.py).
            confinement = confine(settings["confinement"], settings["cache_entry"], sandbox)
            server = Server(chan, settings, sandbox)  # instantiates the plugin once
        except InstantiationError as e:
            notes = getattr(e, "__notes__", [])
            chan.send([Op.FAULT, "inst", str(e), str(e.__cause__ or ""), *notes])
            os._exit(0)
        except CapabilityError as e:  # a granted directory is not the one bound at load
            chan.send([Op.FAULT, "capability", str(e)])
            os._exit(0)
        _limit_memory(settings["limits"])
        for span in server.startup_spans:
            chan.send(span)
        chan.send([Op.READY, os.getpid(), confinement_to_wire(confinement)])
        server.serve()
    except EOFError:
        pass
    except BaseException as e:
        with contextlib.suppress(Exception):
            chan.send([Op.FAULT, "start", f"{type(e).__name__}: {e}"])
        os._exit(1)
    os._exit(0)
