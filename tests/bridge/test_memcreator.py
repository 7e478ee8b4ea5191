"""The memory creator of ``memory_accounting=True`` hosts, called through its C
function pointers the way wasmtime calls it: the mapping it makes (read back from
``/proc/self/maps``), growth within the reservation only, zero-filled pages, errors
instead of exceptions, and the count per owner."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator

import pytest

from wasmplug._bridge import ffi, memcreator, sigguard
from wasmplug._bridge.memcreator import PAGE, MemoryAccounting

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)"
)

RESERVED = 64 * PAGE
GUARD = 4 * PAGE
NO_MAX = 2**64 - 1  # SIZE_MAX: the C API's "no maximum"


def _regions(start: int, end: int) -> list[tuple[int, int, str]]:
    """``(start, end, perms)`` of what is mapped in ``[start, end)``, clipped to it and
    with adjacent runs of the same permissions joined (the kernel merges a mapping
    with a neighbour of the same kind into one line, or not)."""
    out: list[tuple[int, int, str]] = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            lo, hi = max(lo, start), min(hi, end)
            if lo >= hi:
                continue
            if out and out[-1][1] == lo and out[-1][2] == perms[:3]:
                lo = out.pop()[0]
            out.append((lo, hi, perms[:3]))
    return out


class Creator:
    """One registered accounting, and the memories a test made through it."""

    def __init__(self, owner: object = "plugin-a") -> None:
        self.owner = owner
        self.accounting = MemoryAccounting(lambda: self.owner)
        self.env = next(memcreator._ids)
        memcreator._ACCOUNTINGS[self.env] = self.accounting
        self.made: list[ffi.LinearMemory] = []

    def new(self, minimum: int, maximum: int = NO_MAX, reserved: int = RESERVED) -> int:
        """Call new_memory; return wasmtime's error pointer (0 on success)."""
        out = ffi.LinearMemory()
        err = memcreator._NEW_MEMORY(
            self.env, None, minimum, maximum, reserved, GUARD, ctypes.byref(out)
        )
        if not err:
            self.made.append(out)
        return int(err or 0)

    def close(self) -> None:
        for mem in self.made:
            mem.finalizer(mem.env)
        self.made.clear()
        memcreator._ACCOUNTINGS.pop(self.env, None)


@pytest.fixture
def creator() -> Iterator[Creator]:
    c = Creator()
    yield c
    c.close()


def get(mem: ffi.LinearMemory) -> tuple[int, int, int]:
    """``(base, byte_size, byte_capacity)`` through get_memory."""
    size, capacity = ctypes.c_size_t(), ctypes.c_size_t()
    base = mem.get_memory(mem.env, ctypes.byref(size), ctypes.byref(capacity))
    return base, size.value, capacity.value


def grow(mem: ffi.LinearMemory, new_size: int) -> str | None:
    """grow_memory; the error message, or ``None`` on success."""
    err = mem.grow_memory(mem.env, new_size)
    return ffi.error_message_at(err) if err else None


def test_layout_guard_accessible_reservation_guard(creator: Creator) -> None:
    assert creator.new(2 * PAGE) == 0
    base, size, capacity = get(creator.made[0])
    assert (size, capacity) == (2 * PAGE, RESERVED)
    start, end = base - GUARD, base + RESERVED + GUARD
    assert _regions(start, end) == [
        (start, base, "---"),
        (base, base + 2 * PAGE, "rw-"),
        (base + 2 * PAGE, end, "---"),
    ]


def test_growth_stays_inside_the_reservation_and_never_moves(creator: Creator) -> None:
    assert creator.new(PAGE, maximum=RESERVED) == 0
    mem = creator.made[0]
    base = get(mem)[0]
    assert grow(mem, 10 * PAGE) is None
    assert get(mem) == (base, 10 * PAGE, RESERVED)
    assert grow(mem, RESERVED) is None  # exactly the whole reservation
    err = grow(mem, RESERVED + PAGE)
    assert err is not None
    assert "limit" in err
    assert get(mem) == (base, RESERVED, RESERVED)
    end = base + RESERVED + GUARD
    assert _regions(base, end) == [(base, base + RESERVED, "rw-"), (base + RESERVED, end, "---")]


def test_growth_past_the_type_maximum_is_refused(creator: Creator) -> None:
    assert creator.new(PAGE, maximum=3 * PAGE) == 0
    mem = creator.made[0]
    assert grow(mem, 3 * PAGE) is None
    err = grow(mem, 4 * PAGE)
    assert err is not None
    assert "limit" in err
    assert get(mem)[1] == 3 * PAGE
    base = get(mem)[0]
    assert _regions(base + 3 * PAGE, base + 4 * PAGE) == [(base + 3 * PAGE, base + 4 * PAGE, "---")]


def test_a_memory_cannot_shrink(creator: Creator) -> None:
    assert creator.new(4 * PAGE) == 0
    err = grow(creator.made[0], 2 * PAGE)
    assert err is not None
    assert "shrink" in err
    assert get(creator.made[0])[1] == 4 * PAGE


def test_new_and_grown_pages_are_zero_and_data_stays(creator: Creator) -> None:
    assert creator.new(PAGE) == 0
    mem = creator.made[0]
    base = get(mem)[0]
    assert ctypes.string_at(base, PAGE) == bytes(PAGE)
    ctypes.memmove(base + 100, b"kept", 4)
    assert grow(mem, 3 * PAGE) is None
    assert get(mem)[0] == base
    assert ctypes.string_at(base + 100, 4) == b"kept"
    assert ctypes.string_at(base + PAGE, 2 * PAGE) == bytes(2 * PAGE)


@pytest.mark.parametrize(
    ("minimum", "reserved", "why"),
    [
        (PAGE, 0, "no reservation"),
        (2 * RESERVED, RESERVED, "exceeds the reservation"),
        (PAGE, RESERVED + 1, "multiple"),
    ],
    ids=["no-reservation", "minimum-past-reservation", "unaligned-reservation"],
)
def test_requests_it_cannot_serve_return_an_error(
    creator: Creator, minimum: int, reserved: int, why: str
) -> None:
    before = memcreator.live_memories()
    err = creator.new(minimum, reserved=reserved)
    assert err != 0
    assert why in ffi.error_message_at(err)
    assert memcreator.live_memories() == before
    assert creator.accounting.memories_of("plugin-a") == 0


def test_an_unknown_creator_returns_an_error_not_an_exception() -> None:
    out = ffi.LinearMemory()
    err = memcreator._NEW_MEMORY(2**40, None, PAGE, NO_MAX, RESERVED, GUARD, ctypes.byref(out))
    assert err
    assert "could not create" in ffi.error_message_at(err)


def test_out_of_address_space_is_an_error(creator: Creator) -> None:
    err = creator.new(PAGE, reserved=2**62)  # no kernel gives 4 EiB of address space
    assert err != 0
    assert "mmap" in ffi.error_message_at(err)


def test_counts_bytes_per_owner_until_freed(creator: Creator) -> None:
    acc = creator.accounting
    assert creator.new(PAGE) == 0
    creator.owner = "plugin-b"
    assert creator.new(3 * PAGE) == 0
    creator.owner = None  # unattributed: counted, but for nobody
    assert creator.new(PAGE) == 0
    assert (acc.bytes_of("plugin-a"), acc.bytes_of("plugin-b")) == (PAGE, 3 * PAGE)
    assert grow(creator.made[1], 5 * PAGE) is None
    assert acc.bytes_of("plugin-b") == 5 * PAGE
    b = creator.made[1]
    base, _, _ = get(b)
    b.finalizer(b.env)
    creator.made.remove(b)
    assert (acc.bytes_of("plugin-b"), acc.memories_of("plugin-b")) == (0, 0)
    assert "plugin-b" not in acc._tallies  # no owner is held once its memories are gone
    assert _regions(base - GUARD, base + RESERVED + GUARD) == []  # unmapped
    assert acc.bytes_of("plugin-a") == PAGE


def test_an_owner_that_raises_still_gets_its_memory() -> None:
    def broken() -> object:
        raise RuntimeError("no current plugin")

    c = Creator()
    c.accounting._owner = broken
    try:
        assert c.new(PAGE) == 0
        assert c.accounting.memories_of(None) == 1
    finally:
        c.close()


def test_callbacks_are_signal_guarded_entry_points() -> None:
    for fn in (
        memcreator._new_memory,
        memcreator._get_memory,
        memcreator._grow_memory,
        memcreator._free_memory,
        memcreator._forget_creator,
    ):
        assert fn.__code__ in sigguard._ENTRY_CODES
