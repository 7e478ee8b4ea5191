"""The command line: output shapes and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from wasmplug._cli.main import main

WAT = """
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "boom") unreachable)
    (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_u)
  )
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
  (func (export "boom") (canon lift (core func $i "boom")))
  (func (export "div") (param "a" u32) (param "b" u32) (result u32)
    (canon lift (core func $i "div")))
)
"""


@pytest.fixture
def wasm(tmp_path: Path) -> Path:
    path = tmp_path / "calc.wasm"
    path.write_bytes(wasmtime.wat2wasm(WAT))
    return path


def run(tmp_path: Path, *argv: str) -> int:
    return main(["--cache-dir", str(tmp_path / "cache"), *argv])


def test_call_prints_json(tmp_path: Path, wasm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "call", str(wasm), "add", "2", "40", "--allow-unsigned") == 0
    assert json.loads(capsys.readouterr().out) == 42


def test_call_in_a_worker_process(
    tmp_path: Path, wasm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", str(wasm), "--allow-unsigned", "--isolation", "process"]
    assert run(tmp_path, *argv, "add", "2", "40") == 0
    assert json.loads(capsys.readouterr().out) == 42
    assert run(tmp_path, *argv, "boom") == 4
    assert "trapped" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["add", "1"], 2, "takes 2 argument(s)"),
        (["add", '"x"', "1"], 2, "parameter 'a'"),
        (["nope"], 2, "no export 'nope'"),
        (["add", "99999999999", "1"], 2, "outside"),
        (["boom"], 4, "trapped"),
        (["div", "1", "0"], 4, "trapped"),
    ],
    ids=["arity", "type", "unknown-export", "range", "trap", "divide-by-zero"],
)
def test_exit_codes(
    tmp_path: Path,
    wasm: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    needle: str,
) -> None:
    assert run(tmp_path, "call", str(wasm), *argv, "--allow-unsigned") == code
    err = capsys.readouterr().err
    assert err.startswith("wasmplug: error: ")
    assert err.count("\n") == 1  # one line
    assert needle in err


def test_refusals_exit_3(tmp_path: Path, wasm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "call", str(wasm), "add", "1", "2") == 3
    assert "not signed" in capsys.readouterr().err
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\x00asm\x0d\x00\x01\x00junk")
    assert run(tmp_path, "call", str(bad), "add", "--allow-unsigned") == 3
    assert run(tmp_path, "call", str(tmp_path / "missing.wasm"), "add", "--allow-unsigned") == 3


@pytest.mark.parametrize(
    "grant",
    # env:HOME=<a byte that is not UTF-8>, as Python decodes argv: a lone surrogate
    # (regression: a traceback from Grants(), after the grant was parsed).
    ["bogus", "fs:/data", "env:NOEQUALS", "iface:", "http:", "env:HOME=a\udcffb"],
)
def test_bad_grant_is_a_usage_error(
    tmp_path: Path, wasm: Path, capsys: pytest.CaptureFixture[str], grant: str
) -> None:
    assert run(tmp_path, "call", str(wasm), "add", "1", "2", "--grant", grant) == 2
    err = capsys.readouterr().err
    assert f"bad --grant {grant!r}" in err, err
    assert "fs:/guest=/host[:rw]" in err  # the message names the accepted forms
    assert "Traceback" not in err


def test_inspect_text_and_json(
    tmp_path: Path, wasm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "inspect", str(wasm)) == 0
    out = capsys.readouterr().out
    assert "add: func(a: s32, b: s32) -> s32" in out
    assert "sha256" in out
    assert run(tmp_path, "inspect", str(wasm), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["export-functions"][0] == "add: func(a: s32, b: s32) -> s32"
    assert info["size"] == wasm.stat().st_size
    assert info["signatures"] == []


RESULT_WAT = """
(component
  (core module $m
    (memory (export "mem") 1)
    (data (i32.const 16) "\\01\\00\\00\\00\\07\\00\\00\\00")
    (func (export "check") (param i32) (result i32) i32.const 16)
  )
  (core instance $i (instantiate $m))
  (func (export "check") (param "x" u32) (result (result u32 (error u32)))
    (canon lift (core func $i "check") (memory (core memory $i "mem"))))
)
"""


def test_err_result_exits_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "check.wasm"
    path.write_bytes(wasmtime.wat2wasm(RESULT_WAT))
    assert run(tmp_path, "call", str(path), "check", "1", "--allow-unsigned") == 5
    assert json.loads(capsys.readouterr().out) == {"err": 7}


def test_unprovided_host_interface_is_refused(
    greeter_wasm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sidecar = tmp_path / "greeter.wasm"
    sidecar.write_bytes(greeter_wasm.read_bytes())
    (tmp_path / "wasmplug.toml").write_text('[plugin]\nname = "greeter"\nversion = "0.1.0"\n')
    # The greeter imports demo:plugin/host, which the CLI cannot provide: refused, exit 3.
    assert main(["call", str(sidecar), "spin", "--allow-unsigned"]) == 3
    assert "demo:plugin/host@0.1.0" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path: Path, wasm: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmplug",
            "--cache-dir",
            str(tmp_path / "c"),
            "call",
            str(wasm),
            "add",
            "1",
            "1",
            "--allow-unsigned",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
