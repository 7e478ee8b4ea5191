"""Interrupted and concurrent installs, with real processes: the index is the commit point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import wasmplug
from support.registry import packed, signed, snapshot, write
from wasmplug import (
    TrustStore,
)
from wasmplug._trust.registry import Registry

CHILD = textwrap.dedent("""
    import pathlib, sys, time
    from wasmplug._trust.registry import Registry
    from wasmplug._trust.store import TrustStore
    root, store, source, ready, hook, delay = sys.argv[1:7]
    original = getattr(Registry, hook)
    def paused(self, *args):
        if hook == "_stage_file":
            original(self, *args)
        pathlib.Path(ready).write_text("ready")
        time.sleep(float(delay))
        if hook != "_stage_file":
            original(self, *args)
    setattr(Registry, hook, paused)
    Registry(root).install(source, trust_store=TrustStore(store))
""")


def spawn(reg: Registry, store: TrustStore, source: Path, ready: Path, hook: str, delay: float):  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(Path(wasmplug.__file__).parent.parent)}
    args = [str(reg.root), str(store.path), str(source), str(ready), hook, str(delay)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env)


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, "the child exited early"
        assert time.monotonic() < deadline, "the child never reached the hook"
        time.sleep(0.01)


def referenced_files(reg: Registry) -> tuple[set[Path], set[Path]]:
    on_disk = set((reg.root / "plugins").rglob("*.wasm"))
    return on_disk, {i.path for i in reg.list() if i.path is not None}


@pytest.mark.parametrize("hook", ["_stage_file", "_commit_index"])
def test_killed_install_leaves_the_registry_unchanged(
    tmp_path: Path, reg: Registry, store: TrustStore, install: Any, pair: Any, hook: str
) -> None:
    install(signed(packed("existing"), pair))
    before, listed = snapshot(reg.root), reg.list()
    source = write(tmp_path, "tool.wasm", signed(packed("tool"), pair))
    proc = spawn(reg, store, source, tmp_path / "ready", hook, 60)
    try:
        wait_for(tmp_path / "ready", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    after = snapshot(reg.root)
    assert after[1] == before[1]  # index bytes
    assert reg.list() == listed
    assert any(p.startswith(".staging/") for p, _ in after[0])  # it did get that far
    if hook == "_stage_file":
        assert [e for e in after[0] if e[0].startswith("plugins")] == [
            e for e in before[0] if e[0].startswith("plugins")
        ]
    else:  # the file was placed but never committed: an unreferenced orphan
        on_disk, referenced = referenced_files(reg)
        assert on_disk - referenced
    # The next change cleans up after the killed one and works.
    assert install(source).name == "tool"
    assert list((reg.root / ".staging").iterdir()) == []
    on_disk, referenced = referenced_files(reg)
    assert on_disk == referenced
    assert {i.name for i in reg.list()} == {"existing", "tool"}


def test_two_processes_install_at_once(
    tmp_path: Path, reg: Registry, store: TrustStore, pair: Any
) -> None:
    procs = []
    for name in ("alpha", "beta"):
        source = write(tmp_path, f"{name}.wasm", signed(packed(name), pair))
        procs.append(spawn(reg, store, source, tmp_path / f"{name}.ready", "_stage_file", 0.3))
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    index = json.loads(reg.index_path.read_text())
    assert sorted(index["plugins"]) == ["alpha", "beta"]
    assert {i.name for i in reg.list()} == {"alpha", "beta"}
    on_disk, referenced = referenced_files(reg)
    assert on_disk == referenced
