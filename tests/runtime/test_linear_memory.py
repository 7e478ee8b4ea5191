"""Linear memory per plugin: read from a worker's memory map (``isolation="process"``),
reported by ``PluginHost.stats()`` and the ``wasmplug.memory.linear`` gauge."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmplug import Limits, Manifest, Plugin, PluginHost
from wasmplug._runtime.process.memory import parse_maps

from .test_faults import FAULTY_WAT

GiB = 1 << 30
PAGE = 65536

# A 4 GiB + 32 MiB reservation whose first 2 pages are accessible (one of them the
# copy-on-write image of the data segments), then a glibc arena (64 MiB), a thread
# stack (its guard page below it) and a library mapping.
MAPS = """\
7f0000000000-7f0000010000 rw-p 00000000 00:01 5   /memfd:wasm-memory-image (deleted)
7f0000010000-7f0000020000 rw-p 00000000 00:00 0
7f0000020000-7f0102000000 ---p 00000000 00:00 0
7f0200000000-7f0200021000 rw-p 00000000 00:00 0
7f0200021000-7f0204000000 ---p 00000000 00:00 0
7f0300000000-7f0300001000 ---p 00000000 00:00 0
7f0300001000-7f0300801000 rw-p 00000000 00:00 0
7f0400000000-7f0400010000 r-xp 00000000 08:01 9   /usr/lib/libc.so.6
"""


def test_parse_maps_counts_the_accessible_part_of_each_reservation() -> None:
    assert parse_maps(MAPS) == 2 * PAGE
    two = MAPS + "7f0500000000-7f0500030000 rw-p 00000000 00:00 0\n"
    two += f"7f0500030000-{0x7F0500000000 + 4 * GiB:x} ---p 00000000 00:00 0\n"
    assert parse_maps(two) == 2 * PAGE + 3 * PAGE
    assert parse_maps("") == 0


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as h:
        yield h


def _load(host: PluginHost, isolation: str) -> Plugin:
    host.provide("cb", lambda x: x)
    return host.load(
        FAULTY_WAT.encode(),
        allow_unsigned=True,
        manifest=Manifest(name="faulty", host_interfaces=("cb",)),
        limits=Limits(memory_bytes=4 << 20),
        isolation=isolation,  # type: ignore[arg-type]
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_process_tier_reports_the_instances_linear_memory(host: PluginHost) -> None:
    plugin = _load(host, "process")
    stats = host.stats().get("faulty")
    assert stats is not None
    assert stats.linear_memory_bytes == 1 * PAGE  # (memory 1)
    assert plugin.call("grow-max") == 64  # grown to the 4 MiB limit
    stats = host.stats().get("faulty")
    assert stats is not None
    assert stats.linear_memory_bytes == 64 * PAGE
    plugin.reset()  # a fresh instance in the next call
    plugin.call("add", 1, 2)
    stats = host.stats().get("faulty")
    assert stats is not None
    assert stats.linear_memory_bytes == 1 * PAGE


def test_in_process_it_is_not_known_without_memory_accounting(host: PluginHost) -> None:
    _load(host, "inprocess")
    stats = host.stats().get("faulty")
    assert stats is not None
    assert stats.linear_memory_bytes is None
