"""Concurrent calls: the instance pool, isolation between instances, and acall."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from wasmplug import Limits, Manifest, Plugin, PluginClosedError, PluginHost, PluginTimeout

# `echo` returns its argument: the (ptr, len) pair goes to a return area at 8,
# and `realloc` always hands out 1024 (one allocation per call: the argument).
# `hold` calls the host function "poll" until it returns non-zero; `wait` does
# the same, then spins until the call's deadline.
POOL_WAT = r"""
(component
  (import "poll" (func $poll (result u32)))
  (core module $m
    (import "host" "poll" (func $poll (result i32)))
    (memory (export "mem") 1)
    (func (export "add") (param i32 i32) (result i32)
      local.get 0 local.get 1 i32.add)
    (func (export "echo") (param i32 i32) (result i32)
      (i32.store (i32.const 8) (local.get 0))
      (i32.store (i32.const 12) (local.get 1))
      i32.const 8)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
    (func (export "spin") (loop $l br $l))
    (func (export "hold")
      (loop $l (br_if $l (i32.eqz (call $poll)))))
    (func (export "wait")
      (loop $l (br_if $l (i32.eqz (call $poll))))
      (loop $l br $l))
  )
  (core func $poll_lowered (canon lower (func $poll)))
  (core instance $host (export "poll" (func $poll_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "echo") (param "s" string) (result string)
    (canon lift (core func $i "echo")
      (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "hold") (canon lift (core func $i "hold")))
  (func (export "wait") (canon lift (core func $i "wait")))
)
"""


def load(host: PluginHost, poll: Callable[[], int] = lambda: 1, **kwargs: object) -> Plugin:
    host.provide("poll", poll)
    return host.load(
        POOL_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="pooled", host_interfaces=("poll",)),
        **kwargs,  # type: ignore[arg-type]
    )


def test_many_threads_share_a_pool_without_corruption(host: PluginHost) -> None:
    plugin = load(host, pool_size=4)
    threads, calls = 8, 200
    barrier = threading.Barrier(threads)
    wrong: list[tuple[object, object]] = []
    errors: list[BaseException] = []

    def work(tid: int) -> None:
        try:
            barrier.wait()
            for i in range(calls):
                if i % 2:
                    text = f"t{tid}-call{i}-é✓" + "x" * (i % 37)
                    got: object = plugin.call("echo", text)
                    expected: object = text
                else:
                    got = plugin.call("add", tid * 1_000_000, i)
                    expected = tid * 1_000_000 + i
                if got != expected:
                    wrong.append((expected, got))
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers), "a worker hung"
    assert errors == []
    assert wrong == [], f"{len(wrong)} of {threads * calls} results corrupted"
    metrics = plugin.metrics()
    assert metrics.calls == threads * calls
    assert 1 <= metrics.instances <= 4
    assert metrics.total_faults == 0


def test_slow_call_does_not_block_other_instances(host: PluginHost) -> None:
    started = threading.Event()
    quick_done = threading.Event()
    slow_finished = threading.Event()

    def poll() -> int:
        started.set()
        return 1 if quick_done.is_set() else 0

    plugin = load(host, poll, pool_size=2, limits=Limits(timeout_ms=500))
    outcome: list[BaseException] = []

    def slow() -> None:
        try:
            plugin.call("wait")
        except BaseException as e:
            outcome.append(e)
        finally:
            slow_finished.set()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert started.wait(timeout=10), "the slow call never entered Wasm"
        for i in range(50):
            assert plugin.call("add", i, 1) == i + 1
            assert plugin.call("echo", f"quick {i}") == f"quick {i}"
        assert not slow_finished.is_set(), "quick calls waited for the slow one"
    finally:
        quick_done.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    [exc] = outcome
    assert isinstance(exc, PluginTimeout)
    assert plugin.call("add", 1, 1) == 2
    assert plugin.metrics().faults == {"timeout": 1}


def test_single_instance_serializes_calls(host: PluginHost) -> None:
    """With pool_size=1, a second caller waits for the instance instead of failing."""
    started = threading.Event()
    release = threading.Event()

    def poll() -> int:
        started.set()
        return 1 if release.is_set() else 0

    plugin = load(host, poll)
    results: list[object] = []
    waiter_done = threading.Event()

    def waiter() -> None:
        results.append(plugin.call("add", 2, 2))
        waiter_done.set()

    holder = threading.Thread(target=plugin.call, args=("hold",))
    holder.start()
    assert started.wait(timeout=10)
    second = threading.Thread(target=waiter)
    second.start()
    assert not waiter_done.wait(timeout=0.05), "the second call did not wait for the instance"
    release.set()
    holder.join(timeout=10)
    second.join(timeout=10)
    assert not holder.is_alive()
    assert not second.is_alive()
    assert results == [4]
    assert plugin.metrics().instances == 1


def test_close_while_calls_are_in_flight(host: PluginHost) -> None:
    plugin = load(host, pool_size=3)
    threads = 8
    barrier = threading.Barrier(threads + 1)
    first_round = threading.Barrier(threads + 1)
    problems: list[object] = []
    closed_errors: list[PluginClosedError] = []

    def work() -> None:
        barrier.wait()
        for i in range(300):
            try:
                got = plugin.call("echo", f"call {i}")
                if got != f"call {i}":
                    problems.append(got)
            except PluginClosedError as e:
                closed_errors.append(e)
            except BaseException as e:
                problems.append(e)
            if i == 0:
                first_round.wait()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    first_round.wait()  # every worker has made a call; the rest race with close()
    plugin.close()
    for w in workers:
        w.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert problems == []
    assert closed_errors, "calls after close() fail"
    assert all(e.plugin == "pooled" and e.export == "echo" for e in closed_errors)
    assert plugin.metrics().instances == 0


def test_acall_returns_the_result(host: PluginHost) -> None:
    plugin = load(host)

    async def main() -> list[object]:
        return list(
            await asyncio.gather(
                plugin.acall("add", 2, 3),
                plugin.acall("echo", "async é"),
                plugin.acall("add", 1, 1),
            )
        )

    assert asyncio.run(main()) == [5, "async é", 2]


def test_acall_does_not_block_the_event_loop(host: PluginHost) -> None:
    plugin = load(host, limits=Limits(timeout_ms=500))

    async def main() -> tuple[int, BaseException | None]:
        task = asyncio.ensure_future(plugin.acall("spin"))
        ticks = 0
        deadline = time.monotonic() + 30
        while not task.done():
            assert time.monotonic() < deadline, "the acall never finished"
            await asyncio.sleep(0.005)
            ticks += 1
        try:
            await task
        except PluginTimeout as e:
            return ticks, e
        return ticks, None

    start = time.perf_counter()
    ticks, exc = asyncio.run(main())
    assert isinstance(exc, PluginTimeout)
    assert exc.export == "spin"
    # Blocked, the loop would not run at all; 5 ticks of 5 ms in 500 ms leaves room
    # for a loaded machine.
    assert ticks >= 5, f"the event loop ran only {ticks} times during a 500 ms call"
    assert time.perf_counter() - start < 5
    assert asyncio.run(plugin.acall("add", 1, 1)) == 2


def test_acall_on_closed_plugin(host: PluginHost) -> None:
    plugin = load(host)
    plugin.close()
    with pytest.raises(PluginClosedError):
        asyncio.run(plugin.acall("add", 1, 1))
