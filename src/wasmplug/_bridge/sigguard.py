"""Keep Ctrl-C from being lost at the entry of a ctypes callback that wasmtime calls.

Python runs signal handlers on the main thread, at the next "eval breaker"
check, and the first instruction of every Python function is one. While the
main thread is inside Wasm, the next Python code it runs is one of wasmplug's
ctypes callbacks (a host-function trampoline, or the epoch-deadline callback
that slices every call). If the application's SIGINT handler raises
``KeyboardInterrupt`` right at the entry of such a callback, before its
``try``, ctypes prints "Exception ignored on calling ctypes callback function",
the interrupt is lost, and the callback's return value is undefined (wasmtime
reads it as an error pointer).

So while a host is open, SIGINT's Python handler is wrapped by :func:`_guard`.
When the signal lands in the frame of a registered entry point
(:func:`entry_point`), the guard only records it; the entry point calls
:func:`run_deferred` inside its ``try`` (a safe point), which runs the
application's handler there. When it lands inside a ``__del__`` (a wasmtime
object freed by the garbage collector on the main thread), where Python would
print and drop the exception, the guard trips the signal again so that it is
handled as soon as the finalizer returns. Anywhere else, the guard calls the application's
handler at once, exactly as if it were installed directly. Deferred signals
are only recorded and run on the main thread, the only thread Python runs
signal handlers on.

Limits: the guard is installed only from the main thread, and only over a
Python-level handler (``default_int_handler`` or the application's own). A
handler installed after the host was created replaces the guard; the old
hazard then applies to Ctrl-C during a main-thread call. ``asyncio.run`` only
installs its own SIGINT handler over ``default_int_handler``, so under an open
host it leaves Python's plain ``KeyboardInterrupt`` behaviour in place.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

from . import callctx as _callctx
from . import ffi as _ffi

__all__ = ["deferred", "entry_point", "install", "run_deferred", "uninstall"]

F = TypeVar("F", bound=Callable[..., Any])

_ENTRY_CODES: set[CodeType] = set()
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


# Called by the entry points on their way out, after their last deferred check.
entry_point(_ffi.new_error)


def _guard(signum: int, frame: FrameType | None) -> Any:
    if frame is not None and frame.f_code in _ENTRY_CODES:
        if _callctx.current() is None:
            # An entry point outside any Wasm call (a finalizer run by a Store's
            # close): nothing will pick the signal up, so trip it again shortly;
            # it is handled in the Python code that called close().
            _retrip_soon(signum)
        else:
            deferred.append(signum)
        return None
    if _in_finalizer(frame):
        # Python prints and drops an exception raised in __del__ ("Exception
        # ignored in ..."): the interrupt would be lost. Trip it again shortly,
        # so it is raised once the finalizer has returned.
        _retrip_soon(signum)
        return None
    return _call_previous(signum, frame)


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


def _in_finalizer(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` (a wasmtime object freed on the
    main thread, say), where an exception cannot propagate."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


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
