"""Starting a plugin's worker processes and keeping warm spares ready.

A worker is started (``spawn``), sent ``INIT`` and served until it reports
``READY`` (its instance exists) or why it could not start. :class:`WorkerStarter`
does that for one plugin, within :data:`START_TIMEOUT_S`, and keeps ``spares``
ready workers besides the ones serving calls, each started on a thread of its
own, so that recovery after a crash or kill is one hand-over, not a Python
start-up. Every worker it started is either handed over, kept as a spare, or
killed and reaped by :meth:`WorkerStarter.close`: none outlives the plugin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from wasmtime import WasmtimeError

from wasmplug import _telemetry
from wasmplug._errors import CapabilityError, InstantiationError
from wasmplug._runtime.telemetry import plugin_attributes
from wasmplug._sandbox.capabilities import sandbox_to_wire
from wasmplug._sandbox.confinement import Confinement
from wasmplug._sandbox.confinement import from_wire as confinement_from_wire

from .codec import ProtocolError
from .handles import retire
from .hostcalls import text
from .spawn import WorkerProcess, spawn_worker
from .watchdog import WATCHDOG
from .wire import Op

if TYPE_CHECKING:
    from wasmplug._runtime.cache import CompileCache
    from wasmplug._runtime.linking import ImportPlan
    from wasmplug._runtime.plugin import Plugin, PluginPort

__all__ = ["SPARE_JOIN_TIMEOUT_S", "START_TIMEOUT_S", "WorkerStarter", "worker_settings"]

log = logging.getLogger("wasmplug.process")

START_TIMEOUT_S = 120.0
"""Deadline for a worker to start, load the compiled component and instantiate it."""
SPARE_JOIN_TIMEOUT_S = 5.0
"""How long ``close()`` waits for spare starters once their booting workers are killed."""

Converse = Callable[[WorkerProcess, None, float], list[Any]]


def worker_settings(
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
        "cache_entry": str(cache.path_for(cache_key)),  # the one file of it a worker may read
        "consume_fuel": consume_fuel,
        "tick_ms": tick_ms,
        "limits": attrs.asdict(plugin.limits),
        "stdio": plugin.manifest.stdio,
        # What the worker links into WASI (preopens with the identity bound at load,
        # environment...), in each capability kind's own wire form.
        "sandbox": sandbox_to_wire(sandbox),
        "uses_wasi": plan.uses_wasi,
        "needs_traps": plan.needs_traps,
    }


class WorkerStarter:
    """Starts one plugin's workers and keeps its warm spares.

    Args:
        port: The plugin (its name, and whether it is closed).
        settings: The ``INIT`` message body.
        max_frame: Largest frame accepted from these workers, in bytes.
        max_objects: Most msgpack objects one frame from them may decode into
            (see :mod:`.budget`).
        max_depth: How deep the arrays of one frame from them may nest.
        spares: Ready workers to keep besides the ones serving calls.
        converse: Serves a worker (log lines, spans) until its final reply.
        capability: The error for a worker that refused a changed directory
            (it also counts the fault).
    """

    def __init__(
        self,
        port: PluginPort,
        settings: dict[str, Any],
        *,
        max_frame: int,
        max_objects: int,
        max_depth: int,
        spares: int,
        converse: Converse,
        capability: Callable[[str], CapabilityError],
    ) -> None:
        self._port = port
        self._settings = settings
        self._max_frame = max_frame
        self._max_objects = max_objects
        self._max_depth = max_depth
        self._converse = converse
        self._capability = capability
        self._lock = threading.Lock()
        self._wanted = spares
        self._spares: list[WorkerProcess] = []
        self._starting = 0
        # Workers still booting (spawned, not yet READY) and the threads starting
        # spares: close() kills the first and joins the second, so no worker or fd
        # outlives the plugin.
        self._booting: set[WorkerProcess] = set()
        self._threads: list[threading.Thread] = []
        self.confinement: Confinement | None = None  # what the last ready worker reported

    def start(self, *, traced: bool = False) -> WorkerProcess:
        """Start a worker and wait until it has instantiated the plugin.

        Args:
            traced: Report the worker's start-up stages (SPAN) under the current span.

        Raises:
            InstantiationError: it could not start, load or instantiate.
            CapabilityError: a granted directory is no longer the one bound at load.
        """
        worker = spawn_worker()
        worker.chan.max_frame = self._max_frame
        worker.chan.max_objects = self._max_objects
        worker.chan.max_depth = self._max_depth
        worker.traced = traced
        name = self._port.plugin.name
        with self._lock:
            self._booting.add(worker)
        deadline = time.monotonic() + START_TIMEOUT_S
        WATCHDOG.arm(worker, deadline)  # kills it at the deadline, which ends the waits
        try:
            worker.chan.send([Op.INIT, self._settings], deadline)
            msg = self._converse(worker, None, deadline)
            worker.traced = True  # from now on its stages belong to the calls it serves
            if msg[0] == Op.READY:
                self._confined(confinement_from_wire(msg[2] if len(msg) > 2 else None))
                retire(worker, self._port)  # its first instance, for guest resource handles
                return worker
            kind = msg[1] if len(msg) > 1 else None
            if kind == "capability" and len(msg) == 3:
                raise self._capability(text(msg[2]))
            if kind == "inst" and len(msg) >= 4:
                err = InstantiationError(text(msg[2]))
                err.__notes__ = [text(n) for n in msg[4:]]
                raise err from WasmtimeError(text(msg[3]))
            detail = text(msg[2]) if len(msg) > 2 else "no detail"
            raise InstantiationError(f"cannot start a worker process for plugin {name!r}: {detail}")
        except InstantiationError:
            worker.close()
            raise
        except (EOFError, OSError, TimeoutError, ProtocolError) as e:
            worker.close()
            if worker.overdue or isinstance(e, TimeoutError):
                why = f"it was not ready within {START_TIMEOUT_S:g} s"
            elif isinstance(e, EOFError | OSError):
                why = worker.describe_exit()[0]
            else:
                why = str(e)
            raise InstantiationError(
                f"cannot start a worker process for plugin {name!r}: {why or type(e).__name__}"
            ) from None
        except BaseException:
            worker.close()
            raise
        finally:
            WATCHDOG.disarm(worker)
            with self._lock:
                self._booting.discard(worker)

    def _confined(self, confinement: Confinement) -> None:
        """Keep what a ready worker reported; warn (once) about what it lacks.

        Raises:
            InstantiationError: ``"require"``, and the worker is not fully confined
                (it checks that itself; this is the application's own check).
        """
        if self._settings["confinement"] == "require" and not confinement.complete:
            raise InstantiationError(
                f"worker process of plugin {self._port.plugin.name!r} is not confined "
                f"({confinement}) and worker_confinement='require'"
            )
        with self._lock:
            first, self.confinement = self.confinement is None, confinement
        if first and confinement.missing and self._settings["confinement"] != "off":
            log.warning(
                "plugin %s: its worker processes are only partly confined: %s",
                self._port.plugin.name,
                "; ".join(confinement.missing),
            )

    def take_spare(self) -> WorkerProcess | None:
        """A ready spare that is still running, or ``None``."""
        with self._lock:
            while self._spares:
                candidate = self._spares.pop(0)
                if candidate.running:
                    return candidate
                candidate.close()
        return None

    def refill(self) -> None:
        """Start spares in the background until ``spares`` are ready or starting."""
        with self._lock:
            missing = self._wanted - len(self._spares) - self._starting
            if missing <= 0 or self._port.closed:
                return
            self._starting += missing
        for _ in range(missing):
            thread = threading.Thread(target=self._start_spare, name="wasmplug-spare", daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _start_spare(self) -> None:
        # Traced when telemetry is on: a root span (no load or call asked for it),
        # marked as a spare, holding the worker's own link and instantiate spans.
        attrs = {**plugin_attributes(self._port.plugin, "process"), "wasmplug.worker.spare": True}
        try:
            with _telemetry.span("wasmplug.worker.start", attrs):
                worker = self.start(traced=True)
        except BaseException as e:
            if not self._port.closed:
                log.warning("plugin %s: cannot start a spare worker: %s", self._port.plugin.name, e)
            with self._lock:
                self._starting -= 1
            return
        with self._lock:
            self._starting -= 1
            keep = not self._port.closed
            if keep:
                self._spares.append(worker)
        if not keep:
            worker.close()

    def spare_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._spares]

    def close(self) -> None:
        """Kill and reap the spares, kill the workers still booting, join the starters."""
        with self._lock:
            spares, self._spares = self._spares, []
            booting = list(self._booting)
            starters, self._threads = self._threads, []
        for worker in spares:
            worker.close()
        for worker in booting:
            worker.kill()
        deadline = time.monotonic() + SPARE_JOIN_TIMEOUT_S
        for thread in starters:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
