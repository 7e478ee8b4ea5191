"""Declared ∩ granted: what a plugin actually gets."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import wasmtime
from wasmtime.component import Component, Linker

from support.wasi_wat import ENV_WAT, stream_imports
from wasmplug import (
    CapabilityError,
    DirGrant,
    FilesystemRequest,
    GrantPolicy,
    GrantPolicyError,
    Grants,
    Limits,
    Manifest,
)
from wasmplug._sandbox import grants as grants_module
from wasmplug._sandbox.capabilities import resolve
from wasmplug._sandbox.grants import EffectiveSandbox, GrantKind
from wasmplug._sandbox.stdio import GuestOutput


def manifest(**kwargs: object) -> Manifest:
    return Manifest(name="t", **kwargs)  # type: ignore[arg-type]


def test_nothing_declared_means_nothing_granted(tmp_path: Path) -> None:
    sandbox = resolve(manifest(), Grants(filesystem={"/data": tmp_path}, env={"K": "v"}))
    assert sandbox.preopens == ()
    assert sandbox.env == ()


def test_declared_but_not_granted_is_denied_and_noted() -> None:
    m = manifest(env=("K",), filesystem=(FilesystemRequest("/data", "ro"),))
    sandbox = resolve(m, Grants())
    assert sandbox.preopens == ()
    assert sandbox.env == ()
    assert any("env K" in d for d in sandbox.denied)
    assert any("/data" in d for d in sandbox.denied)


def test_intersection(tmp_path: Path) -> None:
    m = manifest(env=("A", "B"), filesystem=(FilesystemRequest("/data", "ro"),))
    sandbox = resolve(m, Grants(env={"A": "1", "C": "3"}, filesystem={"/data": tmp_path}))
    assert sandbox.env == (("A", "1"),)
    assert [(p.guest_path, p.host_path, p.writable) for p in sandbox.preopens] == [
        ("/data", tmp_path.absolute(), False)
    ]


@pytest.mark.parametrize(
    ("declared", "granted", "writable"),
    [("ro", "ro", False), ("ro", "rw", False), ("rw", "ro", False), ("rw", "rw", True)],
    ids=["ro-ro", "ro-rw", "rw-ro", "rw-rw"],
)
def test_mode_is_the_stricter_of_both(
    tmp_path: Path, declared: str, granted: str, writable: bool
) -> None:
    m = manifest(filesystem=(FilesystemRequest("/d", declared),))  # type: ignore[arg-type]
    sandbox = resolve(m, Grants(filesystem={"/d": DirGrant(tmp_path, granted)}))  # type: ignore[arg-type]
    assert sandbox.preopens[0].writable is writable


def test_granted_directory_must_exist(tmp_path: Path) -> None:
    m = manifest(filesystem=(FilesystemRequest("/d", "ro"),))
    with pytest.raises(CapabilityError, match="not a directory"):
        resolve(m, Grants(filesystem={"/d": tmp_path / "missing"}))


def test_limits_are_capped_by_the_application() -> None:
    app = Limits(timeout_ms=100, memory_bytes=64 * 2**20)
    asked = Limits(timeout_ms=1000, memory_bytes=16 * 2**20, table_elements=None)
    effective = asked.capped_by(app)
    assert effective.timeout_ms == 100  # the plugin cannot raise the app's ceiling
    assert effective.memory_bytes == 16 * 2**20  # but may ask for less
    assert Limits.unlimited().capped_by(app) == app


@pytest.mark.parametrize("bad", [0, -1, True, "5"], ids=["zero", "negative", "bool", "str"])
def test_limits_validate(bad: object) -> None:
    with pytest.raises(ValueError, match="timeout_ms"):
        Limits(timeout_ms=bad)  # type: ignore[arg-type]


# A tiny component that writes "out-line\n" to wasi:cli/stdout and "err-line\n" to
# wasi:cli/stderr (output-stream.blocking-write-and-flush), each stream once.
STDIO_WAT = (
    "\n(component $C\n"
    + stream_imports(writes=("blocking-write-and-flush",), cli=("stdout", "stderr"))
    + r"""
  (core module $mem
    (memory (export "memory") 1)
    (data (i32.const 0) "out-line\0aerr-line\0a"))
  (core instance $mem (instantiate $mem))
  (core func $get_stdout (canon lower (func $stdout "get-stdout")))
  (core func $get_stderr (canon lower (func $stderr "get-stderr")))
  (core func $write (canon lower (func $streams "[method]output-stream.blocking-write-and-flush")
    (memory (core memory $mem "memory"))))
  (core func $drop (canon resource.drop $output))
  (core module $m
    (import "h" "get-stdout" (func $get_stdout (result i32)))
    (import "h" "get-stderr" (func $get_stderr (result i32)))
    (import "h" "write" (func $write (param i32 i32 i32 i32)))
    (import "h" "drop" (func $drop (param i32)))
    (import "h" "memory" (memory 1))
    (func $emit (param $stream i32) (param $at i32)
      (call $write (local.get $stream) (local.get $at) (i32.const 9) (i32.const 64))
      (call $drop (local.get $stream)))
    (func (export "run")
      (call $emit (call $get_stdout) (i32.const 0))
      (call $emit (call $get_stderr) (i32.const 9))))
  (core instance $i (instantiate $m (with "h" (instance
    (export "get-stdout" (func $get_stdout))
    (export "get-stderr" (func $get_stderr))
    (export "write" (func $write))
    (export "drop" (func $drop))
    (export "memory" (memory $mem "memory"))))))
  (func (export "run") (canon lift (core func $i "run")))
)
"""
)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _run_stdio_guest(
    sandbox: EffectiveSandbox, *, stdout: bool, stderr: bool
) -> dict[str, list[str]]:
    """Run STDIO_WAT in a store configured by ``sandbox.wasi_config``; lines per stream."""
    captured: dict[str, list[str]] = {}
    sinks: dict[str, GuestOutput | None] = {}
    for stream, wired in (("stdout", stdout), ("stderr", stderr)):
        logger = logging.getLogger(f"wasmplug.test.grants.{stream}")
        handler = _Lines()
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        captured[stream] = handler.lines
        sinks[stream] = GuestOutput(logger, logging.INFO) if wired else None
    engine = wasmtime.Engine()
    linker = Linker(engine)
    linker.add_wasip2()
    store = wasmtime.Store(engine)
    store.set_wasi(sandbox.wasi_config(sinks["stdout"], sinks["stderr"]))
    run = linker.instantiate(store, Component(engine, STDIO_WAT)).get_func(store, "run")
    assert run is not None
    run(store)
    for sink in sinks.values():
        if sink is not None:
            sink.close()  # log what the guest wrote (through a pipe or the callback)
    return captured


def test_wasi_config_wires_each_guest_stream_to_its_own_sink() -> None:
    sandbox = resolve(manifest(), Grants())
    lines = _run_stdio_guest(sandbox, stdout=True, stderr=True)
    assert lines == {"stdout": ["out-line"], "stderr": ["err-line"]}


@pytest.mark.parametrize("wired", ["stdout", "stderr"])
def test_an_unwired_guest_stream_goes_nowhere(wired: str) -> None:
    """With no sink a stream is WASI's default (discarded), never the other stream's sink."""
    sandbox = resolve(manifest(), Grants())
    lines = _run_stdio_guest(sandbox, stdout=wired == "stdout", stderr=wired == "stderr")
    expected = {"stdout": ["out-line"], "stderr": ["err-line"]}[wired]
    assert lines[wired] == expected
    assert lines[{"stdout": "stderr", "stderr": "stdout"}[wired]] == []


def _two_dirs(outer: tuple[str, Path, str], inner: tuple[str, Path, str]) -> EffectiveSandbox:
    """Resolve a manifest declaring both guest paths rw, granted as given."""
    requests = tuple(FilesystemRequest(guest, "rw") for guest, _, _ in (outer, inner))
    grants = {guest: DirGrant(host, mode) for guest, host, mode in (outer, inner)}  # type: ignore[arg-type]
    return resolve(manifest(filesystem=requests), Grants(filesystem=grants))


def test_a_grant_inside_a_writable_grant_is_refused(tmp_path: Path) -> None:
    """Through the writable outer grant the plugin could modify or replace the inner one."""
    (tmp_path / "cfg").mkdir()
    for inner_mode in ("ro", "rw"):
        with pytest.raises(
            CapabilityError,
            match=r"grant for '/cfg' \(.*cfg\) lies inside the writable grant for '/data'.* Grant "
            "the outer directory read-only, or grant directories that do not overlap$",
        ):
            _two_dirs(("/data", tmp_path, "rw"), ("/cfg", tmp_path / "cfg", inner_mode))
    with pytest.raises(CapabilityError, match="is the same directory as the writable grant"):
        _two_dirs(("/a", tmp_path, "rw"), ("/b", tmp_path, "ro"))


def test_grants_that_cannot_modify_each_other_are_allowed(tmp_path: Path) -> None:
    for d in ("out", "x", "y"):
        (tmp_path / d).mkdir()
    allowed = [
        (("/project", tmp_path, "ro"), ("/out", tmp_path / "out", "rw")),  # ro outer
        (("/a", tmp_path, "ro"), ("/b", tmp_path, "ro")),  # the same directory, read-only
        (("/x", tmp_path / "x", "rw"), ("/y", tmp_path / "y", "rw")),  # disjoint
    ]
    for outer, inner in allowed:
        sandbox = _two_dirs(outer, inner)
        assert [p.guest_path for p in sandbox.preopens] == [outer[0], inner[0]]
        sandbox.close()


def test_the_guest_sees_argv_plugin_and_only_the_declared_granted_env() -> None:
    sandbox = resolve(manifest(env=("A", "B")), Grants(env={"A": "1", "C": "3"}))
    engine = wasmtime.Engine()
    linker = Linker(engine)
    linker.add_wasip2()
    store = wasmtime.Store(engine)
    store.set_wasi(sandbox.wasi_config(None, None))
    instance = linker.instantiate(store, Component(engine, ENV_WAT))

    def call(name: str) -> object:
        func = instance.get_func(store, name)
        assert func is not None
        result = func(store)
        func.post_return(store)
        return result

    assert call("env-count") == 1  # A: declared and granted; B: not granted; C: not declared
    assert (call("arg-count"), call("arg0-first-byte")) == (1, ord("p"))  # argv == ["plugin"]


@pytest.mark.parametrize(
    ("env", "error", "match"),
    [
        ({"A": "a\0b"}, ValueError, "NUL"),
        ({"A": "\ud800"}, ValueError, "lone surrogate"),
        ({"A\0": "x"}, ValueError, "NUL"),
        ({"A": 5}, TypeError, "must be a str"),
        ("A=1", TypeError, "mapping"),
    ],
    ids=["nul-value", "surrogate-value", "nul-name", "int-value", "string"],
)
def test_an_env_grant_holds_only_strings_wasi_can_carry(
    env: object, error: type[Exception], match: str
) -> None:
    """Regression: a NUL in a granted value was cut short in the guest without a word
    (wasmtime takes C strings), a lone surrogate or an int failed at each instantiation
    with a raw UnicodeEncodeError or AttributeError, and the worker turned an int into
    a str the in-process tier never saw."""
    with pytest.raises(error, match=match):
        Grants(env=env)  # type: ignore[arg-type]


def test_a_grants_file_with_a_nul_in_an_env_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grants.toml"
    path.write_text('[grants."acme:*"]\nenv = { HOME = "a\\u0000b" }\n')
    with pytest.raises(
        GrantPolicyError, match=r"grants\.acme:\*\.env: env 'HOME' must not contain NUL"
    ):
        GrantPolicy.from_toml(path)


def test_the_order_of_the_grants_does_not_matter(tmp_path: Path) -> None:
    """The inner grant first: the outer writable one is still found."""
    (tmp_path / "cfg").mkdir()
    with pytest.raises(CapabilityError, match="lies inside the writable grant for '/data'"):
        _two_dirs(("/cfg", tmp_path / "cfg", "ro"), ("/data", tmp_path, "rw"))


def test_unknown_grants_are_type_errors_naming_the_known_ones() -> None:
    known = r"\(known: allowed_outbound_hosts, capabilities, env, "
    with pytest.raises(
        TypeError, match=r"^Grants\(\) got an unexpected keyword argument 'bogus' " + known
    ):
        Grants(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"^Grants\(\): unknown grant key 'nope' \(known: filesystem, env, "
    ):
        Grants(granted={"nope": 1})
    with pytest.raises(TypeError, match=r"^EffectiveSandbox\(\) got an unexpected keyword"):
        EffectiveSandbox(bogus=1)


def test_a_grant_kind_needs_its_own_key_and_attribute_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grants_module, "_KINDS", dict(grants_module._KINDS))  # restored after

    def kind(id: str, key: str, attr: str, effective: str) -> GrantKind:
        fields = {"id": id, "grant_key": key, "grant_attr": attr, "effective_attr": effective}
        return SimpleNamespace(**fields)  # type: ignore[return-value]

    quota = kind("test:quota", "quota", "quota", "quota")
    grants_module.register_kind(quota)
    grants_module.register_kind(kind("test:quota", "quota", "quota", "quota"))  # again: kept
    assert grants_module._KINDS["quota"] is quota
    with pytest.raises(ValueError, match=r"^grant key 'quota' is already used by 'test:quota'$"):
        grants_module.register_kind(kind("test:other", "quota", "other", "other"))
    for attr, effective in (("quota", "other"), ("other", "quota"), ("env", "other")):
        with pytest.raises(ValueError, match=r"^'test:other': an attribute name is already used"):
            grants_module.register_kind(kind("test:other", "other", attr, effective))
    assert "other" not in grants_module._KINDS
