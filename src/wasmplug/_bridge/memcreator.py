"""Linear memories that wasmplug maps itself, so that each one can be counted per plugin.

A host created with ``PluginHost(memory_accounting=True)`` builds its engine with
this module's memory creator (:meth:`MemoryAccounting.install`); every other host
uses wasmtime's own allocator and never runs this code. wasmtime-py reaches no
component instance's core memory, so a memory creator is the one place that sees
every in-process linear memory: when it is created, each time it grows, and when
its Store frees it.

The allocator is part of the sandbox. wasmtime's compiled code leaves out bounds
checks on the promise that every address from a memory's base to ``reserved +
guard`` bytes past it either belongs to the memory or faults (and its signal
handler turns a fault in that range into an out-of-bounds trap). So each memory is
laid out as wasmtime's own on-demand allocator lays it out (``MmapMemory``)::

    start          base                                                      end
    | guard        | accessible: size | rest of the reservation | guard        |
    | PROT_NONE    | READ|WRITE       | PROT_NONE               | PROT_NONE    |
                   <----------------- reserved ----------------->

- one ``mmap`` of ``guard + reserved + guard`` bytes, ``PROT_NONE``,
  ``MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE``: address space only, nothing resident
  and nothing charged to the commit limit (the guard before the base is wasmtime's
  default ``guard_before_linear_memory``, defence in depth);
- only the first ``size`` bytes (rounded up to the host page) are readable and
  writable; a grow ``mprotect``s more of the reservation, and is refused (an
  error, which the guest sees as ``memory.grow`` returning -1) past the reservation
  or the memory type's maximum. The base never moves: wasmtime asserts it for any
  growth within the capacity reported, which is the whole reservation;
- fresh anonymous pages read as zero, as WebAssembly requires of a new memory and of
  grown pages; a memory never shrinks, so no page is ever made accessible twice;
- the finalizer, called when the Store is deleted, ``munmap``s the whole range.

The callbacks are module-level ctypes callbacks that live as long as the process:
wasmtime may call a memory's callbacks until its Store is deleted, which can be after
the host that created it is gone. None of them lets an exception reach C: ctypes
would print it and return 0, which wasmtime reads as success (a new memory whose
callbacks panic, or a grow that made nothing accessible). A failure returns a
``wasmtime_error_t`` instead. They are registered with
:mod:`~wasmplug._bridge.sigguard`, so a Ctrl-C that lands on their first
instruction is deferred to the end of the call rather than raised there.

The store limiter (``Limits.memory_bytes``) still decides every size first:
wasmtime consults it before it asks the creator for a memory or a grow.

Attribution: a memory belongs to whatever ``owner()`` returns on the thread that
creates it. The runtime passes :func:`wasmplug._bridge.callctx.current_plugin`:
wasmtime calls the creator synchronously on the instantiating thread, while
``Instance._instantiate`` has made the new instance current there (restored in
``finally``). Its size is kept up to date on each grow and leaves the count when
the memory is unmapped.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import mmap
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from wasmtime import Config

from . import ffi
from .sigguard import entry_point

__all__ = ["MemoryAccounting", "live_memories"]

PAGE = mmap.PAGESIZE
_PROT_NONE = 0
_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
# Python's mmap module has no MAP_NORESERVE; Linux's value (macOS ignores the flag).
_MAP_NORESERVE = 0x4000 if sys.platform.startswith("linux") else 0
_MAP_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0) | _MAP_NORESERVE
_MAP_FAILED = ctypes.c_void_p(-1).value

if os.name == "posix":
    _libc = ctypes.CDLL(None, use_errno=True)
    _mmap = _libc.mmap
    _mmap.restype = ctypes.c_void_p
    _mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    _mprotect = _libc.mprotect
    _mprotect.restype = ctypes.c_int
    _mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _munmap = _libc.munmap
    _munmap.restype = ctypes.c_int
    _munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _round_up(n: int) -> int:
    return -(-n // PAGE) * PAGE


def _os_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


class _Refused(Exception):
    """A request this allocator will not serve (the message says why)."""


class _Memory:
    """One linear memory: its mapping, accessible size and owner."""

    __slots__ = (
        "accessible",
        "base",
        "length",
        "limit",
        "owner",
        "reserved",
        "size",
        "start",
        "tally",
    )

    def __init__(self, minimum: int, maximum: int, reserved: int, guard: int) -> None:
        if reserved == 0:
            # wasmtime always passes its memory_reservation (MemoryCreatorProxy); a
            # memory without one would have to move to grow, which this allocator never does.
            raise _Refused("no reservation size was given")
        if reserved % PAGE or guard % PAGE:
            raise _Refused(f"reservation {reserved} or guard {guard} is not a multiple of {PAGE}")
        if minimum > reserved:
            raise _Refused(f"minimum size {minimum} exceeds the reservation of {reserved} bytes")
        self.reserved = reserved
        self.limit = min(maximum, reserved)  # maximum is SIZE_MAX for "no maximum"
        self.length = guard + reserved + guard
        start = _mmap(None, self.length, _PROT_NONE, _MAP_FLAGS, -1, 0)
        if start is None or start == _MAP_FAILED:
            raise _os_error(f"mmap of {self.length} bytes")
        self.start: int = start
        self.base: int = start + guard
        self.size = 0
        self.accessible = 0
        self.owner: object = None
        self.tally: _Tally | None = None
        try:
            self._protect(minimum)
        except BaseException:
            self.unmap()
            raise
        self.size = minimum

    def _protect(self, size: int) -> None:
        """Make the first ``size`` bytes (rounded up to the page) readable and writable."""
        accessible = _round_up(size)
        if accessible > self.accessible:
            if _mprotect(self.base + self.accessible, accessible - self.accessible, _PROT_RW):
                raise _os_error("mprotect")
            self.accessible = accessible

    def grow(self, new_size: int) -> None:
        """Grow to ``new_size`` bytes in place.

        Raises:
            _Refused: smaller than now, or past the reservation or the maximum.
            OSError: ``mprotect`` failed (out of memory).
        """
        if new_size < self.size:
            raise _Refused(f"a linear memory cannot shrink ({self.size} -> {new_size} bytes)")
        if new_size > self.limit:
            raise _Refused(
                f"growing to {new_size} bytes would pass this memory's limit of "
                f"{self.limit} bytes (its reservation or its type's maximum)"
            )
        self._protect(new_size)
        self.size = new_size

    def unmap(self) -> None:
        """Release the whole range (idempotent)."""
        if self.start and not _munmap(self.start, self.length):
            self.start = 0


class _Tally:
    """One owner's live memories and their bytes."""

    __slots__ = ("bytes", "memories")

    def __init__(self) -> None:
        self.memories = 0
        self.bytes = 0


class MemoryAccounting:
    """Counts the linear memories of one engine, by owner.

    Args:
        owner: Called on the thread that creates each memory; returns the object the
            memory is counted for (a plugin), or ``None`` (counted as unattributed).

    Raises:
        OSError: the platform has no ``mmap`` (POSIX only).
    """

    def __init__(self, owner: Callable[[], object]) -> None:
        if os.name != "posix":
            raise OSError(errno.ENOSYS, "memory accounting needs mmap (Linux or macOS)")
        self._owner = owner
        self._lock = threading.Lock()
        self._tallies: dict[object, _Tally] = {}

    def install(self, config: Config) -> None:
        """Make engines built from ``config`` allocate their linear memories here.

        Copy-on-write memory images are turned off on ``config`` (see
        :func:`ffi.use_memory_creator`): data segments are copied in at instantiation.
        """
        key = next(_ids)
        _ACCOUNTINGS[key] = self  # until wasmtime drops the creator (_forget_creator)
        creator: Any = ffi.MemoryCreator()
        creator.env = key
        creator.new_memory = _NEW_MEMORY
        creator.finalizer = _FORGET_CREATOR
        try:
            ffi.use_memory_creator(config, creator)
        except BaseException:
            del _ACCOUNTINGS[key]
            raise

    def bytes_of(self, owner: object) -> int:
        """Bytes accessible (``memory.size``) in ``owner``'s live memories, all together."""
        tally = self._tallies.get(owner)
        return 0 if tally is None else tally.bytes

    def memories_of(self, owner: object) -> int:
        """How many live memories ``owner`` has."""
        tally = self._tallies.get(owner)
        return 0 if tally is None else tally.memories

    def _add(self, memory: _Memory) -> None:
        try:
            owner = self._owner()
        except Exception:  # the memory is still served; it is just not attributed
            owner = None
        with self._lock:
            tally = self._tallies.get(owner)
            if tally is None:
                tally = self._tallies[owner] = _Tally()
            tally.memories += 1
            tally.bytes += memory.size
        memory.owner, memory.tally = owner, tally

    def _grown(self, memory: _Memory, delta: int) -> None:
        tally = memory.tally
        if tally is not None:
            with self._lock:
                tally.bytes += delta

    def _remove(self, memory: _Memory) -> None:
        tally = memory.tally
        if tally is None:
            return
        memory.tally = None
        with self._lock:
            tally.memories -= 1
            tally.bytes -= memory.size
            if not tally.memories and self._tallies.get(memory.owner) is tally:
                del self._tallies[memory.owner]  # hold no owner without memories
        memory.owner = None


def live_memories() -> int:
    """Memories mapped by this module and not yet freed, over every engine (for tests)."""
    return len(_MEMORIES)


_ids = itertools.count(1)
_ACCOUNTINGS: dict[int, MemoryAccounting] = {}
"""Creator ``env`` -> its accounting, while wasmtime holds the creator."""
_MEMORIES: dict[int, tuple[_Memory, MemoryAccounting]] = {}
"""Memory ``env`` -> the memory and its accounting, from creation to the finalizer."""


def _error(message: str) -> int:
    """A ``wasmtime_error_t*`` to return to wasmtime (never raises if it can help it)."""
    try:
        return ffi.new_error(message)
    except BaseException:
        return ffi.new_error("wasmplug: linear memory allocation failed")


@entry_point
def _new_memory(
    env: int, ty: Any, minimum: int, maximum: int, reserved: int, guard: int, out: Any
) -> int:
    try:
        accounting = _ACCOUNTINGS[env]
        memory = _Memory(minimum, maximum, reserved, guard)
        key = 0
        try:
            accounting._add(memory)
            key = next(_ids)
            _MEMORIES[key] = (memory, accounting)
            ret: Any = out.contents
            ret.env = key
            ret.get_memory = _GET_MEMORY
            ret.grow_memory = _GROW_MEMORY
            ret.finalizer = _FREE_MEMORY
        except BaseException:  # wasmtime will not call the finalizer: undo here
            _MEMORIES.pop(key, None)
            accounting._remove(memory)
            memory.unmap()
            raise
        return 0
    except BaseException as e:
        return _error(f"wasmplug could not create a linear memory: {e}")


@entry_point
def _get_memory(env: int, size: Any, capacity: Any) -> int:
    try:
        memory = _MEMORIES[env][0]
        size[0] = memory.size
        capacity[0] = memory.reserved  # what it can grow to without moving
        return memory.base
    except BaseException:  # pragma: no cover - every env wasmtime holds is live
        return 0


@entry_point
def _grow_memory(env: int, new_size: int) -> int:
    try:
        memory, accounting = _MEMORIES[env]
        old = memory.size
        memory.grow(new_size)
        accounting._grown(memory, new_size - old)
        return 0
    except BaseException as e:
        return _error(f"wasmplug could not grow a linear memory: {e}")


@entry_point
def _free_memory(env: int) -> None:
    try:
        entry = _MEMORIES.pop(env, None)
        if entry is not None:
            memory, accounting = entry
            accounting._remove(memory)
            memory.unmap()
    except BaseException:  # pragma: no cover - nothing can be reported from a finalizer
        pass


@entry_point
def _forget_creator(env: int) -> None:
    try:
        _ACCOUNTINGS.pop(env, None)
    except BaseException:  # pragma: no cover
        pass


# Module constants: wasmtime holds raw pointers to these for the life of the process.
_NEW_MEMORY = ffi.NewMemoryCallback(_new_memory)
_GET_MEMORY = ffi.GetMemoryCallback(_get_memory)
_GROW_MEMORY = ffi.GrowMemoryCallback(_grow_memory)
_FREE_MEMORY = ffi.MemoryFinalizer(_free_memory)
_FORGET_CREATOR = ffi.CreatorFinalizer(_forget_creator)
