"""Linear-memory bytes of a worker process, read from its ``/proc/<pid>/maps`` (Linux).

wasmtime-py 50 gives no access to a component instance's core memories (no C-API
function reaches them, and the resource limiter of the C API is a fixed set of
limits, not a callback that sees each ``memory.grow``). A worker, though, holds
exactly one instance of one plugin, so the linear memory in its address space is
that instance's, and the kernel shows it. wasmtime's default allocator reserves
each 32-bit linear memory as one mapping (``Config.memory_reservation``, 4 GiB,
plus guard regions), makes the memory's current size readable and writable (the
copy-on-write image of its data segments is mapped over the start of it) and
leaves the rest ``PROT_NONE``, so each memory shows as a run of adjacent ``rw``
mappings followed at once by a ``---p`` mapping, the two together at least
:data:`MIN_RESERVATION` long. Nothing else in a worker has that shape: glibc
heaps reserve 64 MiB, and thread and signal stacks put their guard page below
the stack, not above. The ``rw`` bytes are the memory's size, page for page.
"""

from __future__ import annotations

__all__ = ["MIN_RESERVATION", "linear_memory_bytes", "parse_maps"]

MIN_RESERVATION = 1 << 30
"""Shortest mapping (accessible part and ``PROT_NONE`` rest) counted as a linear
memory (bytes): a 32-bit memory reserves 4 GiB; glibc's largest arenas, 64 MiB."""


def parse_maps(text: str) -> int:
    """Linear-memory bytes in a ``/proc/<pid>/maps`` listing (see the module docstring)."""
    total = 0
    run_start = run_end = -1  # the current run of adjacent rw mappings
    for line in text.splitlines():
        span, _, rest = line.partition(" ")
        start_hex, _, end_hex = span.partition("-")
        start, end = int(start_hex, 16), int(end_hex, 16)
        perms = rest[:4]
        if perms.startswith("rw"):
            if start != run_end:
                run_start = start
            run_end = end
            continue
        if perms == "---p" and start == run_end and end - run_start >= MIN_RESERVATION:
            total += run_end - run_start
        run_start = run_end = -1
    return total


def linear_memory_bytes(pid: int) -> int | None:
    """Linear-memory bytes of worker ``pid``, or ``None`` if its maps cannot be read
    (it exited, or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return parse_maps(f.read())
    except (OSError, ValueError):
        return None
