"""The shared wasmtime Engine and the epoch ticker thread that enforces timeouts."""

from __future__ import annotations

import threading
import time

from wasmtime import Config, Engine

__all__ = ["EpochTicker", "make_engine"]


def make_engine(*, consume_fuel: bool) -> tuple[Engine, str]:
    """Create the Engine every plugin of one host shares.

    Returns:
        ``(engine, settings)`` where ``settings`` is a stable string of the
        options that affect compiled code; it is part of the compile-cache key.
    """
    config = Config()
    config.wasm_component_model = True
    config.epoch_interruption = True
    config.consume_fuel = consume_fuel
    config.cranelift_opt_level = "speed"
    settings = f"component-model,epoch,fuel={int(consume_fuel)},opt=speed"
    return Engine(config), settings


class EpochTicker:
    """A daemon thread that advances the engine's epoch every ``tick_ms`` while calls run.

    Each timed call sets its store's deadline to ``ceil(timeout_ms / tick_ms) + 1``
    ticks and adds its instance to :attr:`in_flight` (a set: ``add`` and
    ``discard`` are atomic under the GIL, so the call path takes no lock).
    ctypes releases the GIL while Wasm runs, so this thread keeps ticking
    while a guest spins in a loop, and wasmtime interrupts the guest at its
    next epoch check past the deadline.

    While nothing is in flight the thread polls every ``idle_poll_ms`` instead
    of ticking, so an idle host costs almost no CPU; a timeout can therefore
    fire up to ``idle_poll_ms`` late.
    """

    def __init__(self, engine: Engine, tick_ms: float, idle_poll_ms: float = 10.0) -> None:
        self.engine = engine
        self.tick_ms = tick_ms
        self.in_flight: set[object] = set()
        self.epoch = 0  # mirrors the engine's epoch; read without a lock (see Plugin._run)
        self._tick_s = tick_ms / 1000.0
        self._idle_s = max(idle_poll_ms, tick_ms) / 1000.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasmplug-epoch", daemon=True)
        self._thread.start()

    def deadline_ticks(self, timeout_ms: float) -> int:
        """Number of ticks to pass to ``set_epoch_deadline`` for ``timeout_ms``."""
        return int(-(-timeout_ms // self.tick_ms)) + 1

    def _run(self) -> None:
        stop, in_flight, increment = self._stop, self.in_flight, self.engine.increment_epoch
        tick_s, idle_s = self._tick_s, self._idle_s
        base = time.monotonic()
        ticks = 0
        while True:
            if in_flight:
                # Catch up on wall-clock time: a sleep of one tick overshoots by
                # timer slack, and counting sleeps would stretch every deadline.
                due = int((time.monotonic() - base) / tick_s)
                while ticks < due:
                    increment()
                    ticks += 1
                    self.epoch += 1
                if stop.wait(tick_s):
                    return
            else:
                if stop.wait(idle_s):
                    return
                base, ticks = time.monotonic(), 0

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
