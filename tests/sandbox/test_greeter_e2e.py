"""End to end with a real componentize-py plugin (tests/plugins/greeter).

The first run builds (~10 s) and compiles (~9 s) the greeter; both are cached
on disk, so later runs load it in a fraction of a second.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.plugins import GREETER_API_INTERFACE, GREETER_HOST_INTERFACE
from wasmplug import (
    DirGrant,
    ErrorResult,
    FilesystemRequest,
    Grants,
    Limits,
    Manifest,
    Plugin,
    PluginHost,
    PluginTimeout,
    PluginTrapped,
    ResourceLimitExceeded,
)

Loader = Callable[..., Plugin]
PLUGIN_LOGGER = "wasmplug.plugin.greeter"


def manifest(**capabilities: Any) -> Manifest:
    return Manifest(
        name="greeter",
        version="0.1.0",
        host_interfaces=(GREETER_HOST_INTERFACE,),
        **capabilities,
    )


@pytest.fixture
def host_calls(shared_host: PluginHost) -> Iterator[list[tuple[str, str]]]:
    """Re-provide the greeter's host interface with a recording implementation.

    Plugins loaded while it is active are linked to it; the shared host's
    no-op implementation is restored afterwards.
    """
    calls: list[tuple[str, str]] = []
    config = {"colour": "blue"}

    def log(msg: str) -> None:
        calls.append(("log", msg))

    def get_config(key: str) -> str | None:
        calls.append(("get-config", key))
        return config.get(key)

    shared_host.provide(GREETER_HOST_INTERFACE, {"log": log, "get-config": get_config})
    try:
        yield calls
    finally:
        shared_host.provide(
            GREETER_HOST_INTERFACE, {"log": lambda msg: None, "get-config": lambda key: None}
        )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from the host\n")
    (data / "sub").mkdir()
    return data


# -- values and host imports ----------------------------------------------------------


def test_greet_round_trip_calls_host_log(
    load_greeter: Loader, host_calls: list[tuple[str, str]]
) -> None:
    plugin = load_greeter()
    assert plugin.call("greet", "Ada") == "Hello, Ada!"
    assert plugin.exports.greet("Grace ✓") == "Hello, Grace ✓!"
    assert host_calls == [("log", "greeting Ada"), ("log", "greeting Grace ✓")]


def test_host_function_with_result(load_greeter: Loader, host_calls: list[tuple[str, str]]) -> None:
    plugin = load_greeter()
    assert plugin.call("config-value", "colour") == "blue"
    assert plugin.call("config-value", "size") is None
    assert host_calls == [("get-config", "colour"), ("get-config", "size")]


def test_exported_interface(load_greeter: Loader) -> None:
    plugin = load_greeter()
    assert plugin.exports.api.run(5) == 11
    assert plugin.exports[GREETER_API_INTERFACE].run(0) == 1
    assert plugin.call(f"{GREETER_API_INTERFACE}#run", 20) == 41


def test_divide_err_is_error_result(load_greeter: Loader) -> None:
    plugin = load_greeter()
    assert plugin.call("divide", 7, 2) == 3
    with pytest.raises(ErrorResult) as info:
        plugin.call("divide", 1, 0)
    assert info.value.value == "division by zero"
    assert info.value.plugin == "greeter"
    assert info.value.export == "divide"
    assert plugin.call("divide", 9, 3) == 3
    assert plugin.metrics().total_faults == 0


# -- filesystem sandbox -------------------------------------------------------------------


def test_read_only_preopen(load_greeter: Loader, data_dir: Path) -> None:
    plugin = load_greeter(
        manifest=manifest(filesystem=(FilesystemRequest("/data", "ro"),)),
        grants=Grants(filesystem={"/data": data_dir}),
    )
    assert plugin.call("read-file", "/data/hello.txt") == "hello from the host\n"
    assert plugin.call("list-dir", "/data") == ["hello.txt", "sub"]
    with pytest.raises(ErrorResult) as info:
        plugin.call("write-file", "/data/new.txt", "nope")
    assert "not permitted" in info.value.value
    assert not (data_dir / "new.txt").exists()
    with pytest.raises(ErrorResult):
        plugin.call("write-file", "/data/hello.txt", "overwritten")
    assert (data_dir / "hello.txt").read_text() == "hello from the host\n"


def test_read_write_preopen(load_greeter: Loader, data_dir: Path) -> None:
    plugin = load_greeter(
        manifest=manifest(filesystem=(FilesystemRequest("/data", "rw"),)),
        grants=Grants(filesystem={"/data": DirGrant(data_dir, "rw")}),
    )
    assert plugin.call("write-file", "/data/sub/new.txt", "written by the guest") is None
    assert (data_dir / "sub" / "new.txt").read_text() == "written by the guest"
    assert plugin.call("read-file", "/data/sub/new.txt") == "written by the guest"


def test_rw_request_with_ro_grant_is_read_only(load_greeter: Loader, data_dir: Path) -> None:
    plugin = load_greeter(
        manifest=manifest(filesystem=(FilesystemRequest("/data", "rw"),)),
        grants=Grants(filesystem={"/data": DirGrant(data_dir, "ro")}),
    )
    assert plugin.call("read-file", "/data/hello.txt") == "hello from the host\n"
    with pytest.raises(ErrorResult):
        plugin.call("write-file", "/data/new.txt", "nope")
    assert not (data_dir / "new.txt").exists()


def test_no_grant_no_filesystem(load_greeter: Loader, data_dir: Path) -> None:
    plugin = load_greeter(manifest=manifest(filesystem=(FilesystemRequest("/data", "ro"),)))
    with pytest.raises(ErrorResult):
        plugin.call("read-file", "/data/hello.txt")
    with pytest.raises(ErrorResult):
        plugin.call("list-dir", "/")


def test_cannot_escape_the_preopen(load_greeter: Loader, data_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (data_dir / "link").symlink_to(secret)
    (data_dir / "dirlink").symlink_to(tmp_path)
    plugin = load_greeter(
        manifest=manifest(filesystem=(FilesystemRequest("/data", "rw"),)),
        grants=Grants(filesystem={"/data": DirGrant(data_dir, "rw")}),
    )
    for path in [
        "/data/../etc/passwd",
        "/data/../secret.txt",
        "/data/link",
        "/data/dirlink/secret.txt",
        "/etc/passwd",
    ]:
        with pytest.raises(ErrorResult) as info:
            plugin.call("read-file", path)
        assert "top secret" not in info.value.value
    with pytest.raises(ErrorResult):
        plugin.call("write-file", "/data/../escaped.txt", "x")
    with pytest.raises(ErrorResult):
        plugin.call("write-file", "/data/dirlink/escaped.txt", "x")
    assert not (tmp_path / "escaped.txt").exists()
    assert secret.read_text() == "top secret"


# -- environment and sockets --------------------------------------------------------------


def test_environment_is_declared_and_granted_only(
    load_greeter: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("WASMPLUG_HOST_SECRET", "s3cret")
    plugin = load_greeter(
        manifest=manifest(env=("GREETING", "DECLARED_ONLY")),
        grants=Grants(env={"GREETING": "hi", "GRANTED_ONLY": "x"}),
    )
    assert plugin.call("get-env", "GREETING") == "hi"
    assert plugin.call("get-env", "GRANTED_ONLY") is None
    assert plugin.call("get-env", "DECLARED_ONLY") is None
    assert plugin.call("get-env", "UNDECLARED") is None
    assert plugin.call("get-env", "HOME") is None
    assert plugin.call("get-env", "PATH") is None
    assert plugin.call("get-env", "WASMPLUG_HOST_SECRET") is None


def test_sockets_are_denied(load_greeter: Loader) -> None:
    """A connect to a live listener on loopback is refused by the sandbox, not the network."""
    plugin = load_greeter()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with pytest.raises(ErrorResult) as info:
            plugin.call("try-socket", port)
        ready, _, _ = select.select([listener], [], [], 0.2)
        assert not ready, "the guest's connection reached the listener"
    assert info.value.value.startswith("PermissionError"), info.value.value


# -- faults ---------------------------------------------------------------------------


def test_panic_is_trapped_and_traceback_logged(
    load_greeter: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = load_greeter()
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    with pytest.raises(PluginTrapped) as info:
        plugin.call("panic", "the guest gave up")
    assert info.value.plugin == "greeter"
    assert info.value.export == "panic"
    logged = [r.getMessage() for r in caplog.records if r.name == PLUGIN_LOGGER]
    text = "\n".join(logged)
    assert "Traceback (most recent call last):" in text
    assert "in panic" in text
    assert "RuntimeError: the guest gave up" in text
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == PLUGIN_LOGGER), (
        "guest stderr is logged at WARNING"
    )
    assert plugin.call("greet", "again") == "Hello, again!"
    assert plugin.metrics().faults == {"trap": 1}


def test_spin_times_out(load_greeter: Loader) -> None:
    # the budget also covers the calls that follow: room for a loaded machine
    plugin = load_greeter(limits=Limits(timeout_ms=500))
    with pytest.raises(PluginTimeout) as info:
        plugin.call("spin")
    assert info.value.export == "spin"
    assert plugin.call("greet", "after timeout") == "Hello, after timeout!"


def test_hog_hits_the_memory_limit(load_greeter: Loader) -> None:
    plugin = load_greeter(limits=Limits(memory_bytes=64 * 2**20))
    assert plugin.call("hog", 4) == 4
    with pytest.raises(ResourceLimitExceeded) as info:
        plugin.call("hog", 2000)
    assert info.value.fault == "resource-limit"
    assert "memory limit" in str(info.value)
    assert plugin.call("greet", "after oom") == "Hello, after oom!"


def test_earlier_output_does_not_make_a_panic_look_like_oom(load_greeter: Loader) -> None:
    """Only the failing call's stderr decides whether a trap was an out-of-memory abort."""
    plugin = load_greeter(limits=Limits(memory_bytes=64 * 2**20))
    plugin.call("print-stdout", "MemoryError: handled earlier, carrying on")
    with pytest.raises(PluginTrapped) as info:
        plugin.call("panic", "an unrelated bug")
    assert type(info.value) is PluginTrapped


def test_print_goes_to_the_plugin_logger(
    load_greeter: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = load_greeter()
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    assert plugin.call("print-stdout", "hello, log") is None
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == PLUGIN_LOGGER]
    assert (logging.INFO, "hello, log") in records, "stdout at INFO"
    assert (logging.WARNING, "hello, log") in records, "stderr at WARNING"


def test_stdio_discard(load_greeter: Loader, caplog: pytest.LogCaptureFixture) -> None:
    plugin = load_greeter(manifest=manifest(stdio="discard"))
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    assert plugin.call("print-stdout", "silenced") is None
    assert [r for r in caplog.records if r.name == PLUGIN_LOGGER] == []
