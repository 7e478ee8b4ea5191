"""Keep Ctrl-C from being lost while the main thread is inside a Wasm call.

Python runs signal handlers on the main thread, at the next "eval breaker"
check: the first instruction of every Python function is one. While the main
thread is inside Wasm, the only Python it runs is wasmplug's ctypes callbacks
(a host-function trampoline, or the epoch-deadline callback that slices every
call), whatever they call, and whatever the garbage collector runs in between
(``__del__`` methods and weakref callbacks, such as a ``WeakSet``'s removal
callback for a plugin an earlier test left behind). An exception the handler
raises in most of those places is lost: at a callback's entry, before its
``try``, ctypes prints "Exception ignored on calling ctypes callback function"
(and wasmtime reads an undefined return value as an error pointer); in a
finalizer or weakref callback, Python prints and drops it; in a function the
deadline callback calls, the callback could only end the call, not re-raise.

So while a host is open, SIGINT's Python handler is wrapped by :func:`_guard`,
which looks at where the signal landed (the frame and its callers, up to the
nearest of wasmplug's own frames):

- in wasmplug's call plumbing: a registered callback (:func:`entry_point`)
  or anything it calls short of the application's host function, or a
  finalizer/weakref callback run by the collector while a Python function
  registered with :func:`enters_wasm` is inside Wasm. The guard only records
  the signal; the callback calls :func:`run_deferred` inside its ``try`` (a safe
  point), or the caller does right after Wasm returns, and the application's
  handler runs there (at most one deadline slice later). Outside any call (a
  finalizer run by a Store's close) it trips the signal again instead;
- in a finalizer or weakref callback anywhere else (application code,
  a host function included): the guard trips the signal again, so that it is
  handled as soon as that callback has returned;
- anywhere else (a host function's own code, the application): the guard calls
  the application's handler at once, exactly as if it were installed directly.

Deferred signals are only recorded and run on the main thread, the only thread
Python runs signal handlers on. Which thread the kernel delivered the signal to
does not matter: Python's C-level handler only sets flags, and the main thread
sees them the next time it takes the GIL (every callback does).

Limits: the guard is installed only from the main thread, and only over a
Python-level handler (``default_int_handler`` or the application's own). A
handler installed after the host was created replaces the guard; the old
hazard then applies to Ctrl-C during a main-thread call. ``asyncio.run`` only
installs its own SIGINT handler over ``default_int_handler``, so under an open
host it leaves Python's plain ``KeyboardInterrupt`` behaviour in place. A
weakref callback is recognised by its code (the standard library's ``weakref``
containers and ``weakref.finalize``), or by running inside one of wasmplug's
plumbing frames; a bare ``weakref.ref(obj, callback)`` the application set up
inside its own host function is not.
"""

from __future__ import annotations

import _thread
import _weakrefset
import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

from . import callctx as _callctx
from . import ffi as _ffi

__all__ = [
    "application_code",
    "deferred",
    "enters_wasm",
    "entry_point",
    "install",
    "run_deferred",
    "uninstall",
]

F = TypeVar("F", bound=Callable[..., Any])

_ENTRY_CODES: set[CodeType] = set()
_WASM_CALLER_CODES: set[CodeType] = set()
_APPLICATION_CODES: set[CodeType] = set()
# Code run only as a weakref callback (where Python drops exceptions), by file.
_WEAKREF_FILES = frozenset({weakref.__file__, _weakrefset.__file__})
_MAIN_IDENT = threading.main_thread().ident

deferred: list[int] = []
"""Signal numbers recorded by the guard at an entry point, not yet run (main thread)."""

_lock = threading.Lock()
_users = 0
_previous: Any = None  # the handler the guard wraps
_installed: Any = None  # the guard function object currently installed (or None)


def entry_point(fn: F) -> F:
    """Register ``fn`` as a ctypes callback entry point (see the module docstring).

    ``fn`` must do all its work inside one ``try`` that catches ``BaseException``,
    and call :func:`run_deferred` inside it when :data:`deferred` is not empty.
    """
    _ENTRY_CODES.add(fn.__code__)
    return fn


def enters_wasm(fn: F) -> F:
    """Register ``fn`` as a function that calls into Wasm on the calling thread and
    calls :func:`run_deferred` after Wasm returns (see the module docstring)."""
    _WASM_CALLER_CODES.add(fn.__code__)
    return fn


def application_code(fn: F) -> F:
    """Register ``fn`` as the frame through which an entry point runs the
    application's code (a host function): below it, Ctrl-C raises at once."""
    _APPLICATION_CODES.add(fn.__code__)
    return fn


# Called by the entry points on their way out, after their last deferred check.
entry_point(_ffi.new_error)


def _guard(signum: int, frame: FrameType | None) -> Any:
    plumbing, unraisable = _landed_in(frame)
    if plumbing:
        if _callctx.current() is None:
            # Outside any Wasm call (a finalizer run by a Store's close): nothing
            # will pick the signal up, so trip it again shortly; it is handled in
            # the Python code that called close().
            _retrip_soon(signum)
        else:
            deferred.append(signum)
        return None
    if unraisable:
        # Python prints and drops an exception raised in __del__ or a weakref
        # callback ("Exception ignored in ..."): the interrupt would be lost. Trip
        # it again shortly, so it is raised once the callback has returned.
        _retrip_soon(signum)
        return None
    return _call_previous(signum, frame)


def _landed_in(frame: FrameType | None) -> tuple[bool, bool]:
    """Where a signal handled in ``frame`` landed: ``(plumbing, unraisable)``.

    Walks from ``frame`` to its callers, up to the nearest registered frame.
    ``plumbing``: that frame is an entry point (the signal landed in it or in
    something it calls before the application's code), or a Wasm caller reached
    through a finalizer or weakref callback (the collector ran inside Wasm's call
    into a callback). ``unraisable``: a finalizer or weakref callback lies between.
    """
    unraisable = False
    while frame is not None:
        code = frame.f_code
        if code in _ENTRY_CODES:
            return True, unraisable
        if code in _APPLICATION_CODES:
            return False, unraisable
        if code in _WASM_CALLER_CODES:
            return unraisable, unraisable
        if code.co_name == "__del__" or code.co_filename in _WEAKREF_FILES:
            unraisable = True
        frame = frame.f_back
    return False, unraisable


def _retrip_soon(signum: int) -> None:
    """Deliver ``signum`` again in about a millisecond, from another thread.

    Not from here: tripping it inside the handler makes Python run the handler
    again at once, inside this one, before the unsafe frame has returned.
    """
    sig = signal.Signals(signum)

    def retrip() -> None:
        time.sleep(0.001)
        _thread.interrupt_main(sig)

    threading.Thread(target=retrip, name="wasmplug-sigint", daemon=True).start()


def _call_previous(signum: int, frame: FrameType | None) -> Any:
    handler = _previous
    if callable(handler):
        return handler(signum, frame)
    raise KeyboardInterrupt  # pragma: no cover - the guard only wraps callables


def run_deferred(inst: Any) -> None:
    """Run the application's handler for each deferred signal (main thread only).

    Args:
        inst: The instance whose call is running (or ``None``). If the handler
            raises, the exception is also parked on ``inst.signal_exc``, so the
            caller re-raises it once Wasm has unwound.

    Raises:
        BaseException: whatever the handler raises (``KeyboardInterrupt`` by default).
    """
    if threading.get_ident() != _MAIN_IDENT:
        return
    try:
        while deferred:
            _call_previous(deferred.pop(0), None)
    except BaseException as e:
        if inst is not None and getattr(inst, "signal_exc", None) is None:
            inst.signal_exc = e
        raise


def install() -> bool:
    """Wrap SIGINT's Python handler with the guard, from the main thread.

    Returns:
        Whether this call counts as a user (then pair it with :func:`uninstall`).
    """
    global _users, _previous, _installed
    if threading.get_ident() != _MAIN_IDENT:
        return False
    with _lock:
        _users += 1
        current = signal.getsignal(signal.SIGINT)
        if current is _guard or not callable(current):
            return True  # already guarded; or SIG_IGN / SIG_DFL: no Python handler
        _previous = current
        _installed = _guard
        signal.signal(signal.SIGINT, _guard)
        return True


def uninstall() -> None:
    """Undo one counted :func:`install`; the last one restores the wrapped handler
    (when called on the main thread and nobody replaced the guard since)."""
    global _users, _previous, _installed
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users or _installed is None or threading.get_ident() != _MAIN_IDENT:
            return
        if signal.getsignal(signal.SIGINT) is _installed:
            signal.signal(signal.SIGINT, _previous)
        _previous = _installed = None
