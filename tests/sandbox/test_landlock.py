"""Landlock rulesets (``wasmplug._sandbox.landlock``), each applied in a child process.

A ruleset cannot be lifted, so every case runs :data:`CHILD` in a fresh interpreter:
it restricts itself to the rules it is given, then tries each operation and prints
what happened (``ok`` or the errno name).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wasmplug._sandbox import landlock

ABI = landlock.abi_version()[0] if sys.platform == "linux" else 0
pytestmark = pytest.mark.skipif(not ABI, reason="this kernel has no Landlock")
SRC = str(Path(__file__).resolve().parents[2] / "src")

CHILD = """
import errno, json, os, socket, sys
from wasmplug._sandbox import landlock
rules, tries, abi = json.loads(sys.argv[1])
fds = [(os.open(path, os.O_PATH), access) for path, access in rules]
landlock.restrict(fds, abi)
out = []
for what, arg in tries:
    try:
        if what == "read":
            open(arg, "rb").close()
        elif what == "write":
            open(arg, "w").close()
        elif what == "list":
            os.listdir(arg)
        elif what == "rename":
            os.rename(*arg)
        elif what == "connect":
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", arg))
            s.close()
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(json.dumps(out))
"""


def confined(
    rules: list[tuple[Path, int]], tries: list[tuple[str, Any]], abi: int = ABI
) -> list[str]:
    """What each of ``tries`` gives in a child restricted to ``rules``."""
    args = json.dumps([[(str(p), a) for p, a in rules], tries, abi])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
        check=True,
    )
    return list(json.loads(out.stdout))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("ro", "rw", "rw/a", "rw/b", "outside"):
        (tmp_path / name).mkdir()
    for name in ("ro/f", "rw/a/f", "outside/secret"):
        (tmp_path / name).write_text(name)
    return tmp_path


def test_each_directory_gets_its_access_and_nothing_else(tree: Path) -> None:
    rules = [(tree / "ro", landlock.DIR_READ), (tree / "rw", landlock.DIR_WRITE)]
    tries = [
        ("read", str(tree / "ro" / "f")),
        ("write", str(tree / "ro" / "new")),
        ("read", str(tree / "outside" / "secret")),
        ("list", str(tree)),
        ("write", str(tree / "rw" / "new")),
        ("rename", [str(tree / "rw" / "a" / "f"), str(tree / "rw" / "b" / "f")]),
        ("rename", [str(tree / "rw" / "b" / "f"), str(tree / "outside" / "f")]),
    ]
    refer = "ok" if ABI >= 2 else "EXDEV"  # moving to another directory needs ABI 2
    assert confined(rules, tries) == ["ok", "EACCES", "EACCES", "EACCES", "ok", refer, "EACCES"]


def test_a_rule_on_a_file_keeps_only_file_rights(tree: Path) -> None:
    """Directory rights on a file are dropped (the kernel would refuse the rule)."""
    rules = [(tree / "ro" / "f", landlock.DIR_WRITE)]
    tries = [("read", str(tree / "ro" / "f")), ("read", str(tree / "outside" / "secret"))]
    assert confined(rules, tries) == ["ok", "EACCES"]


def test_rights_an_older_abi_does_not_know_are_dropped(tree: Path) -> None:
    """Best effort: with ABI 1 the same rules load (REFER and TRUNCATE are not handled)."""
    rules = [(tree / "rw", landlock.DIR_WRITE)]
    assert confined(rules, [("write", str(tree / "rw" / "x"))], abi=1) == ["ok"]


@pytest.mark.skipif(ABI < 4, reason="TCP rules need Landlock ABI 4 (Linux 6.7)")
def test_tcp_is_denied_on_every_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert confined([], [("connect", port)]) == ["EACCES"]
        assert confined([], [("connect", port)], abi=3) == ["ok"]  # not handled before 4
