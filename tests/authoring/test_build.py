"""Tests of the cached componentize-py builder; all but the last run a fake tool."""

from __future__ import annotations

import hashlib
import logging
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from wasmplug._errors import BuildError
from wasmplug._fsutil import file_lock, write_atomic
from wasmplug.authoring import _build

FAKE_TOOL = textwrap.dedent(
    """
    import pathlib, sys
    args = sys.argv[1:]
    if args == ["--version"]:
        print("componentize-py 0.0.0-fake")
        sys.exit(0)
    log = pathlib.Path(sys.argv[0]).with_name("calls.log")
    with log.open("a") as f:
        f.write(" ".join(args) + "\\n")
    if "fail" in pathlib.Path(args[args.index("-p") + 1], "app.py").read_text():
        print("Traceback: fake failure", file=sys.stderr)
        sys.exit(1)
    pathlib.Path(args[args.index("-o") + 1]).write_bytes(b"\\0asm\\x0d\\0\\x01\\0fake")
    """
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    app_dir = tmp_path / "app"
    (app_dir / "wit").mkdir(parents=True)
    (app_dir / "wit" / "world.wit").write_text("package a:b;\nworld w { export f: func(); }\n")
    (app_dir / "app.py").write_text("class WitWorld:\n    def f(self) -> None: ...\n")
    (app_dir / "helper.py").write_text("X = 1\n")
    return app_dir


@pytest.fixture
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replace componentize-py by a fast fake; returns the log of its build invocations."""
    script = tmp_path / "tool" / "fake_componentize_py.py"
    script.parent.mkdir()
    script.write_text(FAKE_TOOL)
    monkeypatch.setattr(_build, "find_componentize_py", lambda: [sys.executable, str(script)])
    return script.with_name("calls.log")


def key(app_dir: Path, **overrides: object) -> str:
    kwargs: dict[str, object] = {
        "wit_path": app_dir / "wit", "world": "w", "module": "app", "stub_wasi": False,
        "tool_version": "componentize-py 0.25.1",
    }  # fmt: skip
    kwargs.update(overrides)
    return _build.build_cache_key(app_dir, **kwargs)  # type: ignore[arg-type]


def test_cache_key_tracks_sources_and_options(app: Path) -> None:
    base = key(app)
    assert len(base) == 64
    assert key(app) == base
    (app / "README.md").write_text("not a source")
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-314.pyc").write_bytes(b"junk")
    assert key(app) == base, "non-.py files outside the WIT dir must not change the key"

    (app / "helper.py").write_text("X = 2\n")
    changed_py = key(app)
    assert changed_py != base
    (app / "wit" / "world.wit").write_text("package a:b;\nworld w { export g: func(); }\n")
    assert key(app) != changed_py
    variants = {
        key(app), key(app, world="v"), key(app, module="main"), key(app, stub_wasi=True),
        key(app, tool_version="componentize-py 0.26.0"),
    }  # fmt: skip
    assert len(variants) == 5


def test_cache_key_includes_relative_paths(app: Path) -> None:
    base = key(app)
    (app / "helper.py").rename(app / "other.py")
    assert key(app) != base


def test_missing_tool_raises_build_error(
    app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(BuildError, match="pip install componentize-py"):
        _build.build_python(app, wit=app / "wit", world="w")


def test_build_is_cached_atomic_and_copied(app: Path, tmp_path: Path, fake_tool: Path) -> None:
    cache = tmp_path / "cache" / "builds"
    events: list[_build.ProgressEvent] = []
    built = _build.build_python(
        app, wit=app / "wit", world="w", cache_dir=cache, progress=events.append
    )
    out = built.path
    assert not built.cached
    assert built.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert built.size == out.stat().st_size
    assert built.tool == "componentize-py 0.0.0-fake"
    assert out.parent == cache
    assert out.name == key(app, tool_version="componentize-py 0.0.0-fake") + ".wasm"
    assert out.read_bytes().startswith(b"\0asm")
    assert [p.name for p in cache.iterdir()] == [out.name], "no temporary files left"
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert [(e.target, e.action, e.status) for e in events] == [
        ("w", "build", "started"),
        ("w", "build", "finished"),
    ]
    assert str(events[0]).startswith("building w with componentize-py")
    assert str(events[1]).startswith("built w in ")
    assert events[1].elapsed_s == built.seconds > 0
    assert "--stub-wasi" not in fake_tool.read_text()

    dest = tmp_path / "dist" / "w.wasm"
    again = _build.build_python(app, wit=app / "wit", world="w", cache_dir=cache, output=dest)
    assert again.path == dest
    assert again.cached
    assert again.seconds == 0.0
    assert again.sha256 == built.sha256
    assert dest.read_bytes() == out.read_bytes()
    assert len(fake_tool.read_text().splitlines()) == 1, "second call must hit the cache"
    assert [p.name for p in dest.parent.iterdir()] == ["w.wasm"]


def test_failed_build_raises_and_leaves_nothing(app: Path, tmp_path: Path, fake_tool: Path) -> None:
    (app / "app.py").write_text("fail\n")
    cache = tmp_path / "cache"
    events: list[_build.ProgressEvent] = []
    with pytest.raises(BuildError, match="exit status 1") as info:
        _build.build_python(
            app, wit=app / "wit", world="w", cache_dir=cache, name="my-plugin",
            progress=events.append,
        )  # fmt: skip
    assert "fake failure" in info.value.output
    assert [(e.target, e.status) for e in events] == [
        ("my-plugin", "started"),
        ("my-plugin", "failed"),
    ]
    assert "exit status 1" in events[1].message
    assert list(cache.iterdir()) == []


def test_stub_wasi_is_passed(app: Path, tmp_path: Path, fake_tool: Path) -> None:
    _build.build_python(app, wit=app / "wit", world="w", cache_dir=tmp_path / "c", stub_wasi=True)
    assert "--stub-wasi" in fake_tool.read_text()


def _lock_of(app: Path, cache: Path) -> tuple[Path, Path]:
    """The cache entry of ``app`` built by the fake tool, and its build lock."""
    dest = cache / (key(app, tool_version="componentize-py 0.0.0-fake") + ".wasm")
    return dest, cache / f".{dest.name}.lock"


def test_a_build_waits_for_the_same_build_in_another_process(
    app: Path, tmp_path: Path, fake_tool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several test sessions (or CI jobs) building the same plugin at once each ran
    componentize-py, and on a loaded machine they ran past the timeout together. One
    builds; the others wait for its lock and find the cache entry."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    dest, lock = _lock_of(app, cache)
    waiting = threading.Event()
    real_lock = _build.file_lock

    def spied_lock(path: Path, **kwargs: Any) -> Any:
        waiting.set()
        return real_lock(path, **kwargs)

    monkeypatch.setattr(_build, "file_lock", spied_lock)
    results: list[_build.BuiltComponent] = []
    builder = threading.Thread(
        target=lambda: results.append(
            _build.build_python(app, wit=app / "wit", world="w", cache_dir=cache)
        )
    )
    with file_lock(lock):  # "another process" is building it (flock: one per open file)
        builder.start()
        assert waiting.wait(10)
        write_atomic(dest, b"\0asm\x0d\0\x01\0built elsewhere", mode=0o600)
    builder.join(10)
    assert not builder.is_alive()
    assert results[0].cached
    assert results[0].path == dest
    assert not fake_tool.exists(), "componentize-py must not run a second time"
    assert [p.name for p in cache.iterdir()] == [dest.name], "the lock file is removed"


def test_a_build_held_up_past_the_timeout_by_another_process_fails(
    app: Path, tmp_path: Path, fake_tool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_build, "_TIMEOUT_S", 0.05)
    monkeypatch.setattr(_build, "_LOCK_GRACE_S", 0.05)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    _, lock = _lock_of(app, cache)
    with file_lock(lock), pytest.raises(BuildError, match="another process has been building w"):
        _build.build_python(app, wit=app / "wit", world="w", cache_dir=cache)
    assert not fake_tool.exists()


def test_file_lock_waits_at_most_its_timeout(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        with pytest.raises(TimeoutError, match=r"x\.lock is still locked"):
            with file_lock(lock, timeout_s=0.02):
                pass
    with file_lock(lock, timeout_s=0.0):  # free again: taken at once
        pass


@pytest.mark.slow
def test_real_greeter_build_is_a_component() -> None:
    from support.plugins import build_greeter

    path = build_greeter()
    with path.open("rb") as f:
        header = f.read(8)
    assert header == b"\0asm\x0d\x00\x01\x00", "component-model binary preamble"
    assert build_greeter() == path


def test_progress_is_reported_once_callback_or_log(
    app: Path, tmp_path: Path, fake_tool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With a callback, the log copy drops to DEBUG: an application that shows both
    # (the db_wrapper demo did) must not print every build line twice.
    events: list[_build.ProgressEvent] = []
    with caplog.at_level(logging.INFO, logger="wasmplug.build"):
        _build.build_python(
            app, wit=app / "wit", world="w", cache_dir=tmp_path / "a", progress=events.append
        )
    assert len(events) == 2
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    caplog.clear()
    (app / "helper.py").write_text("X = 3\n")  # a new build, without a callback
    with caplog.at_level(logging.INFO, logger="wasmplug.build"):
        _build.build_python(app, wit=app / "wit", world="w", cache_dir=tmp_path / "b")
    assert [r.getMessage()[:11] for r in caplog.records] == ["building w ", "built w in "]
