"""Calls into plugins that can block in WASI run on a per-instance thread, so the
caller can wait with a deadline.

wasmtime's WASI implementation blocks in host code: ``wasi:io/poll`` ``poll`` and
``pollable.block`` (a guest may ask to sleep 2⁶⁴ ns through a clock
subscription), blocking stream reads and writes, filesystem calls on a FIFO,
sockets. Epoch deadlines are checked only in Wasm code, so they never fire
there, and a thread blocked inside wasmtime cannot be interrupted.

So for a plugin whose component imports such an interface (known statically,
:func:`blocking_imports`), each instance gets a :class:`CallThread`: its
instantiation, calls and resource drops run there, and the caller waits on a
lock with a deadline. Host functions the guest calls are handed back to the
waiting caller and run on its thread (``callctx.host_call_runner``), so they see
the caller's thread-locals and context, as on the direct path. Waiting in Python
keeps the caller responsive: Ctrl-C interrupts the wait on the main thread,
``close()`` can cancel it, and at the deadline the caller gives up. The instance
is then *abandoned*: forgotten by the pool and never touched again by the caller
(its Store is still in use), while the thread, a daemon, runs on until wasmtime
returns; it then closes the instance itself and exits. A thread that never
returns stays blocked until the process exits (daemon threads do not delay
interpreter exit).

Plugins that import none of these interfaces never pay for this: they keep the
direct call path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from wasmplug._bridge import callctx as _callctx

__all__ = [
    "BLOCKING_FREE_WASI",
    "CLOSE_GRACE_S",
    "GRACE_MS",
    "MAX_STUCK_THREADS",
    "CallThread",
    "Cancelled",
    "blocking_imports",
]

GRACE_MS = 40.0
"""How long past its budget a caller waits before abandoning the call thread, in ms.
A guest spinning in Wasm is ended by its epoch deadline well within it."""

MAX_STUCK_THREADS = 4
"""Abandoned call threads still blocked, per plugin, at which the plugin is quarantined.
Each holds its instance's Store (its linear memory) until the host call returns."""

CLOSE_GRACE_S = 0.5
"""How long ``close()`` lets running calls of such a plugin finish before cancelling them."""

BLOCKING_FREE_WASI = (
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdout",
    "wasi:cli/terminal-",
    "wasi:clocks/",
    "wasi:io/error",
    "wasi:random/",
)
"""WASI interfaces (name prefixes) none of whose functions can block in the host.

Everything else under ``wasi:`` is treated as able to block: ``wasi:io/poll``,
``wasi:io/streams`` (blocking reads, writes, flushes, splices), ``wasi:cli/stdin``,
``wasi:filesystem/*``, ``wasi:sockets/*``, ``wasi:http/*``, and any interface
this list does not know. Clock subscriptions only create pollables; waiting on
them needs ``wasi:io/poll``.
"""


def blocking_imports(imports: Iterable[str]) -> list[str]:
    """The WASI interfaces among ``imports`` through which a guest can block in the host.

    Args:
        imports: Interface names the component imports (``wasi:io/poll@0.2.0``...).

    Returns:
        The blocking-capable ones, sorted; empty for a plugin that can use the
        direct call path.
    """
    return sorted(
        name
        for name in imports
        if name.startswith("wasi:") and not name.startswith(BLOCKING_FREE_WASI)
    )


class Cancelled(Exception):
    """The wait was cancelled by ``close()``."""


class CallThread:
    """One daemon thread that runs the jobs of one instance, one at a time.

    Only the thread holding the instance's lock submits jobs (:meth:`run`), so
    at most one job is pending. The caller and the thread meet on two locks
    used as binary semaphores (``_go``: a job is ready; ``_done``: its outcome
    is); ``_mutex`` decides, when the caller stops waiting, whether the job
    finished first or the thread is abandoned.
    """

    __slots__ = (
        "_caller_inst",
        "_cancelled",
        "_done",
        "_error",
        "_go",
        "_host_call",
        "_host_reply",
        "_job",
        "_mutex",
        "_on_exit",
        "_result",
        "_thread",
        "abandoned",
        "busy",
        "caller",
        "exited",
        "stopping",
    )

    def __init__(self, name: str, on_exit: Callable[[CallThread], None]) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._mutex = threading.Lock()
        self._job: Callable[[], Any] | None = None
        self._caller_inst: Any = None
        self._host_call: tuple[Any, Callable[[Any], Any], Any] | None = None
        self._host_reply: Any = None
        self.caller: threading.Thread | None = None  # the thread waiting for the job
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._on_exit = on_exit
        self.busy = False
        self.abandoned = False
        self.exited = False  # set by the owner's on_exit bookkeeping
        self.stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------

    def run(self, job: Callable[[], Any], timeout_s: float | None) -> tuple[bool, Any]:
        """Run ``job`` on the thread and wait up to ``timeout_s`` seconds (``None``: no limit).

        Returns:
            ``(True, result)`` when the job returned in time; ``(False, None)`` when
            the deadline passed: the thread is then abandoned (see :meth:`abandon`).

        Raises:
            Cancelled: :meth:`cancel` was called while waiting; the thread is abandoned.
            BaseException: what the job raised (re-raised here); or a
                ``KeyboardInterrupt`` that interrupted the wait, after abandoning
                the thread.
        """
        self._job = job
        self.caller = threading.current_thread()
        self._caller_inst = _callctx.current()
        self._cancelled = False
        self.busy = True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._go.release()
        try:
            while True:
                left = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
                done = self._done.acquire(timeout=left)
                if not (done and self._host_call is not None and not self._cancelled):
                    break
                self._serve_host_call()
        except BaseException:
            if not self._give_up():
                self._error = self._result = None  # it finished just as the wait broke
            raise
        # If the job finished before the caller gave up, _give_up is False: use it.
        if (not done or self._cancelled) and self._give_up():
            if self._cancelled:
                raise Cancelled
            return False, None
        return True, self._take()

    def _serve_host_call(self) -> None:
        """Run the host function the guest called, here on the caller's thread (so
        thread-locals, context variables and re-entry checks are the caller's), and
        hand the outcome back to the call thread."""
        inst, fn, args = self._host_call  # type: ignore[misc]
        self._host_call = None
        prev = _callctx.swap(inst)
        try:
            self._host_reply = (True, fn(args))
        except BaseException as e:  # handed to the trampoline, which parks it
            self._host_reply = (False, e)
        finally:
            _callctx.swap(prev)
        self._go.release()

    def _give_up(self) -> bool:
        """Abandon the thread, unless its job has finished (then return False)."""
        with self._mutex:
            if not self.busy:
                # Finished: consume the token it released (unless the wait or
                # cancel() already did).
                self._done.acquire(blocking=False)
                return False
            self.abandoned = True
            if self._host_call is not None:
                # It waits for the answer to a host call: refuse it, so the guest
                # traps and the thread ends.
                self._host_call = None
                self._host_reply = (False, Cancelled("the caller stopped waiting"))
                self._go.release()
            return True

    def _take(self) -> Any:
        error, result = self._error, self._result
        self._error = self._result = None
        if error is not None:
            raise error
        return result

    def cancel(self) -> bool:
        """Wake a caller waiting on a running job (``close()``): it abandons the thread.

        Returns:
            Whether a job was running (and its caller is now told to give up).
        """
        with self._mutex:
            if not self.busy or self.abandoned or self._cancelled:
                return False
            self._cancelled = True
            self._done.release()
            return True

    def stop(self) -> None:
        """Let the thread exit once idle (the instance is being closed)."""
        self.stopping = True
        if threading.current_thread() is not self._thread and not self.busy:
            self._job = None
            self._go.release()

    # -- the thread's side ---------------------------------------------------------------

    def _call_on_caller(self, fn: Callable[[Any], Any], args: Any) -> Any:
        """The host-call runner of this thread (see ``callctx.host_call_runner``):
        run ``fn(args)`` on the waiting caller's thread and return its result.

        Raises:
            BaseException: what ``fn`` raised; or :class:`Cancelled` if the caller
                has stopped waiting.
        """
        with self._mutex:
            if self.abandoned or self._cancelled:
                raise Cancelled("the caller stopped waiting")
            self._host_call = (_callctx.current(), fn, args)
            self._done.release()
        self._go.acquire()
        ok, value = self._host_reply
        self._host_reply = None
        if not ok:
            raise value
        return value

    def _loop(self) -> None:
        tls, swap = _callctx.tls, _callctx.swap
        while True:
            self._go.acquire()
            job = self._job
            if job is None:
                return
            self._job = None
            # The caller's call chain continues here: re-entry checks and
            # current_plugin() see the same chain as on the calling thread.
            swap(self._caller_inst)
            tls.host_call_runner = self._call_on_caller
            try:
                self._result = job()
            except BaseException as e:  # handed to the caller, never lost here
                self._error = e
            finally:
                swap(None)
                tls.host_call_runner = None
                self._caller_inst = None
            with self._mutex:
                self.busy = False
                abandoned = self.abandoned
                if not abandoned and not self._cancelled:
                    self._done.release()  # (cancel() already released it)
            if abandoned:
                self._error = self._result = None
                try:
                    self._on_exit(self)
                except BaseException:
                    pass
                return
            if self.stopping:
                return
