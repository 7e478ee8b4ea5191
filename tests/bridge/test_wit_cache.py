"""The cache of type-only components derived from an application's WIT
(``_bridge/witsource.py``): shared by threads, and by processes through the on-disk
compile cache, whose entries are written atomically and checked on every read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import wasmtime

from bridge.test_host_surface import DB_WIT, IFACE
from wasmplug._bridge import witsource
from wasmplug._runtime.cache import CompileCache

SETTINGS = "wit-cache-test"


def derive(cache_dir: Path) -> str:
    """Derive ``IFACE``'s shape through a cache in ``cache_dir``; its text, to compare."""
    cache = CompileCache(cache_dir, SETTINGS)
    source = witsource.read_wit_source(DB_WIT)
    shape = witsource.interface_shape(wasmtime.Engine(), source, IFACE, cache)
    return repr(shape.imports[IFACE])


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from bridge.test_wit_cache import derive
    cache_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
    deadline = time.monotonic() + 60
    while not go.exists():
        assert time.monotonic() < deadline, "never told to go"
        time.sleep(0.005)
    out = []
    threads = [threading.Thread(target=lambda: out.append(derive(cache_dir))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(set(out)) == 1 and len(out) == 4, out
    print(out[0])
    """
)


def test_threads_and_processes_derive_the_same_type_component_at_once(tmp_path: Path) -> None:
    """Two processes of four threads each, plus four threads here, derive the same
    interface through one cache directory at once: every one gets the same shape, and
    the directory holds one whole entry (no temporary file left)."""
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    witsource.clear_memo()  # this process derives it too, not from its memory
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(cache_dir), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    here: list[str] = []
    threads = [threading.Thread(target=lambda: here.append(derive(cache_dir))) for _ in range(4)]
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(here) == 4
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        here.append(out.decode().strip())
    assert len(set(here)) == 1
    assert [p.suffix for p in cache_dir.iterdir()] == [".cwasm"]


def test_a_torn_cache_entry_is_never_used(tmp_path: Path) -> None:
    """An entry cut short (a crash without the atomic rename, a full disk) is
    discarded and derived again, never read as a component."""
    cache_dir = tmp_path / "cache"
    witsource.clear_memo()
    expected = derive(cache_dir)
    [entry] = cache_dir.iterdir()
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])
    witsource.clear_memo()
    assert derive(cache_dir) == expected
    assert entry.read_bytes() == whole  # derived again and stored whole
