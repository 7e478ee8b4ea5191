"""The instance pool alone, with fake instances (no Wasm)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from wasmplug import PluginClosedError
from wasmplug._runtime.pool import InstancePool

DEADLINE_S = 5.0


class Fake:
    """A stand-in instance: a lock, an alive flag, a call counter."""

    made = 0

    def __init__(self) -> None:
        Fake.made += 1
        self.id = Fake.made
        self.lock = threading.Lock()
        self.alive = True
        self.calls = 0
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        self.alive = False

    def __repr__(self) -> str:
        return f"<Fake {self.id} {'alive' if self.alive else 'dead'}>"


class Factory:
    def __init__(self) -> None:
        self.made: list[Fake] = []
        self.fail: BaseException | None = None

    def __call__(self) -> Fake:
        if self.fail is not None:
            raise self.fail
        inst = Fake()
        self.made.append(inst)
        return inst


@pytest.fixture
def factory() -> Factory:
    return Factory()


def run_in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def target() -> None:
        try:
            out.append(fn())  # type: ignore[operator]
        except BaseException as e:  # handed to the test
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def wait_until(cond: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_size_must_be_positive(factory: Factory) -> None:
    with pytest.raises(ValueError, match="pool_size must be >= 1"):
        InstancePool(0, factory)


def test_instances_are_created_lazily_and_reused(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    assert factory.made == []
    inst = pool.checkout()
    assert inst.lock.locked()
    pool.checkin(inst)
    assert not inst.lock.locked()
    again = pool.checkout()
    assert again is inst
    pool.checkin(again)
    assert len(factory.made) == 1
    assert pool.stats() == (1, 0)


def test_slots_are_first_in_first_out(factory: Factory) -> None:
    # Sequential calls cycle through the slots: each empty slot is filled on its
    # first use, then the instances take turns.
    pool = InstancePool(3, factory)
    seen = []
    for _ in range(6):
        inst = pool.checkout()
        seen.append(inst.id)
        pool.checkin(inst)
    assert len(factory.made) == 3
    assert seen == seen[:3] * 2


def test_prime_creates_one_idle_instance(factory: Factory) -> None:
    pool = InstancePool(2, factory)
    first = pool.prime()
    assert factory.made == [first]
    assert not first.lock.locked()
    assert pool.checkout() is first


def test_prime_failure_gives_the_slot_back(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    factory.fail = RuntimeError("start-up trapped")
    with pytest.raises(RuntimeError, match="start-up trapped"):
        pool.prime()
    factory.fail = None
    inst = pool.checkout()  # the one slot is still there: this does not block
    assert inst.alive


def test_concurrent_callers_get_distinct_instances_up_to_size(factory: Factory) -> None:
    pool = InstancePool(2, factory)
    a = pool.checkout()
    b = pool.checkout()
    assert a is not b
    t, out = run_in_thread(pool.checkout)
    time.sleep(0.05)
    assert out == [], "a third caller must wait: the pool is full"
    pool.checkin(b)
    t.join(DEADLINE_S)
    assert out == [b]
    assert len(factory.made) == 2


def test_discard_frees_the_slot_for_a_fresh_instance(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.checkout()
    inst.calls = 5
    pool.discard(inst)
    assert not inst.alive
    pool.checkin(inst)  # a discarded instance is not queued again
    fresh = pool.checkout()
    assert fresh is not inst
    assert fresh.alive
    assert pool.stats() == (1, 5), "calls on the discarded instance still count"
    pool.checkin(fresh)


def test_discard_is_idempotent(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.checkout()
    pool.discard(inst)
    pool.discard(inst)
    assert inst.closes == 1
    inst.lock.release()
    # Exactly one slot came back: one caller gets an instance, a second waits.
    fresh = pool.checkout()
    t, out = run_in_thread(pool.checkout)
    time.sleep(0.05)
    assert out == []
    pool.checkin(fresh)
    t.join(DEADLINE_S)
    assert out == [fresh]
    assert len(factory.made) == 2


def test_create_failure_gives_the_slot_back(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    factory.fail = RuntimeError("instantiate failed")
    for _ in range(3):
        with pytest.raises(RuntimeError):
            pool.checkout()
    factory.fail = None
    assert pool.checkout().alive


def test_a_queued_instance_discarded_elsewhere_is_skipped(factory: Factory) -> None:
    # A resource call locks its owning instance directly while that instance
    # sits idle in the queue; a fault there discards it, and checkout must skip
    # the stale queue entry and use the freed slot.
    pool = InstancePool(1, factory)
    inst = pool.prime()
    assert inst.lock.acquire(timeout=DEADLINE_S)
    pool.discard(inst)
    inst.lock.release()
    fresh = pool.checkout()
    assert fresh is not inst
    assert fresh.alive
    pool.checkin(fresh)
    assert pool.stats()[0] == 1


def test_drain_discards_idle_instances_only_without_wait(factory: Factory) -> None:
    pool = InstancePool(2, factory)
    busy = pool.checkout()
    idle = pool.checkout()
    pool.checkin(idle)
    pool.drain(wait=False)
    assert not idle.alive
    assert busy.alive
    pool.checkin(busy)
    assert pool.stats()[0] == 1


def test_close_waits_for_running_calls_then_discards_everything(factory: Factory) -> None:
    pool = InstancePool(2, factory)
    busy = pool.checkout()
    t, _ = run_in_thread(lambda: pool.close())
    time.sleep(0.05)
    assert t.is_alive(), "close() must wait for the running call"
    pool.checkin(busy)
    t.join(DEADLINE_S)
    assert not t.is_alive()
    assert not busy.alive
    assert pool.stats()[0] == 0
    with pytest.raises(PluginClosedError):
        pool.checkout()


def test_close_from_inside_a_call_does_not_deadlock(factory: Factory) -> None:
    # close() from a host function of the running call: the instance is skipped,
    # then discarded when the call checks it in.
    pool = InstancePool(1, factory)
    inst = pool.checkout()
    pool.close(skip=[inst])
    assert inst.alive
    pool.checkin(inst)
    assert not inst.alive
    assert not inst.lock.locked()


def test_a_waiter_sees_the_close(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.checkout()
    t, out = run_in_thread(pool.checkout)
    time.sleep(0.02)
    closer, _ = run_in_thread(lambda: pool.close())
    time.sleep(0.02)
    pool.checkin(inst)
    closer.join(DEADLINE_S)
    t.join(DEADLINE_S)
    assert len(out) == 1
    assert isinstance(out[0], PluginClosedError)


def test_an_instance_created_while_closing_is_closed(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    gate = threading.Event()

    def slow() -> Fake:
        inst = factory()
        pool.closed = True  # close() ran while this instance was being created
        gate.set()
        return inst

    pool._create = slow
    with pytest.raises(PluginClosedError):
        pool.checkout()
    assert gate.is_set()
    assert not factory.made[0].alive
    assert pool.stats()[0] == 0


def test_many_threads_never_share_an_instance(factory: Factory) -> None:
    pool = InstancePool(3, factory)
    in_use: set[int] = set()
    guard = threading.Lock()
    errors: list[str] = []

    def worker(n: int) -> Iterator[None]:
        for i in range(300):
            inst = pool.checkout()
            with guard:
                if inst.id in in_use:
                    errors.append(f"instance {inst.id} lent twice")
                in_use.add(inst.id)
            inst.calls += 1
            with guard:
                in_use.discard(inst.id)
            if (i + n) % 37 == 0:
                pool.discard(inst)
            pool.checkin(inst)
        yield

    threads = [threading.Thread(target=lambda n=n: list(worker(n))) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S * 4)
    assert errors == []
    live, calls = pool.stats()
    assert live <= 3
    assert calls == 6 * 300
    assert sum(1 for f in factory.made if f.alive) == live


# A pool of one: its instance's lock alone is a checkout (InstancePool.solo), the way
# the generated call functions (fastcall.py) use it.


def solo_call(pool: InstancePool[Fake], during: object = None) -> Fake | None:
    """What a generated call function does with a pool of one: the instance that ran
    the call (``during()`` runs with its lock held), or ``None`` for "discarded while
    waiting, take the general path"."""
    inst = pool.solo
    if inst is None:
        inst = pool.ready_solo()
    with inst.lock:
        if inst.alive:
            try:
                inst.calls += 1
                if during is not None:
                    during()  # type: ignore[operator]
                return inst
            finally:
                if pool.closed:
                    pool.discard(inst)
    return None


def busy_solo_call(
    pool: InstancePool[Fake],
) -> tuple[threading.Event, threading.Thread, list[object]]:
    """A solo call on another thread that holds the instance until the event is set."""
    go = threading.Event()
    thread, out = run_in_thread(lambda: solo_call(pool, during=lambda: go.wait(DEADLINE_S)))
    wait_until(pool.solo.lock.locked)  # type: ignore[union-attr]
    return go, thread, out


def test_solo_is_the_alive_instance_of_a_pool_of_one(factory: Factory) -> None:
    assert InstancePool(2, factory).solo is None
    pool = InstancePool(1, factory)
    assert pool.solo is None  # made on demand
    inst = pool.prime()
    assert pool.solo is inst
    assert inst.lock.acquire(timeout=DEADLINE_S)
    pool.discard(inst)
    inst.lock.release()
    assert pool.solo is None
    fresh = pool.ready_solo()  # makes the next one, idle in the queued slot
    assert pool.solo is fresh
    assert fresh is not inst
    assert not fresh.lock.locked()
    assert pool._slots.qsize() == 1
    assert solo_call(pool) is fresh
    assert pool.checkout() is fresh  # the queued slot holds it
    pool.checkin(fresh)
    assert pool.stats() == (1, 1)


def test_solo_leaves_its_slot_queued_and_others_wait_for_its_lock(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.prime()
    go, running, out = busy_solo_call(pool)
    assert pool._slots.qsize() == 1  # the slot stays queued, holding the instance
    waiters = [run_in_thread(pool.checkout), run_in_thread(lambda: solo_call(pool))]
    wait_until(lambda: pool._slots.qsize() == 0)  # the checkout took the slot
    time.sleep(0.02)
    assert all(got == [] for _, got in waiters)
    go.set()
    running.join(DEADLINE_S)
    assert out == [inst]
    (_, out1), (second, out2) = waiters
    wait_until(lambda: out1 != [])  # the checkout waited for the lock, then got it
    assert out1 == [inst]
    pool.checkin(inst)
    second.join(DEADLINE_S)  # the solo call ran before the checkout, or now
    assert out2 == [inst]
    assert pool.stats() == (1, 2)


def test_solo_discarded_while_waiting_sends_the_call_elsewhere(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.prime()
    assert inst.lock.acquire(timeout=DEADLINE_S)  # as a fault does: discard with the lock held
    t, out = run_in_thread(lambda: solo_call(pool))
    time.sleep(0.02)
    pool.discard(inst)
    inst.lock.release()
    t.join(DEADLINE_S)
    assert out == [None]
    assert pool.solo is None


def test_a_solo_call_during_close_is_discarded_when_it_ends(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.prime()
    # close() from inside the call (a host function): not waited for.
    assert solo_call(pool, during=lambda: pool.close(skip=[inst])) is inst
    assert not inst.alive
    assert not inst.lock.locked()
    assert pool.solo is None
    with pytest.raises(PluginClosedError):
        pool.ready_solo()


def test_close_waits_for_a_solo_call(factory: Factory) -> None:
    pool = InstancePool(1, factory)
    inst = pool.prime()
    go, running, out = busy_solo_call(pool)
    closer, _ = run_in_thread(lambda: pool.close())
    time.sleep(0.05)
    assert closer.is_alive(), "close() must wait for the running call"
    assert inst.alive
    go.set()
    running.join(DEADLINE_S)
    closer.join(DEADLINE_S)
    assert not closer.is_alive()
    assert out == [inst]
    assert not inst.alive
    assert pool.stats()[0] == 0
