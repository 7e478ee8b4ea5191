"""Bounds for tests that check *when* something ended (a deadline, a prompt close).

Such a test asserts the promise a page makes ("a PluginTimeout within timeout_ms +
50 ms") on the idle machine's terms, but CI runs on a loaded 2-core machine: the
thread that notices a deadline (a lock wait, the epoch ticker, a worker process)
may then wait tens of milliseconds for a core, and so may the caller that measures.
A test adds :data:`LOAD_SLACK_S` to the promise: a bound that holds under 2-4x load
and still fails a deadline that is missed by a second, or never fires. How close
to the promise the implementation comes is measured by the benchmarks, on the idle
machine, not by tests.
"""

from __future__ import annotations

__all__ = ["LOAD_SLACK_S"]

LOAD_SLACK_S = 0.25
"""Extra time, in seconds, a deadline test allows for a loaded machine."""
