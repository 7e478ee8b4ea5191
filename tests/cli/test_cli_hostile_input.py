"""The CLI never prints a traceback for bad input and uses its exit codes (issue 9 §8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

import wat
from support.registry import component, packed, write
from wasmplug._cli.main import EXIT_REFUSED, EXIT_USAGE, main
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import wasm_sections as ws

DEEP_MANIFEST = (
    '[plugin]\nname = "deep"\nversion = "1.0.0"\n[limits]\nfuel = ' + "[" * 5000 + "]" * 5000 + "\n"
)


MANIFEST = b'[plugin]\nname = "echo"\nversion = "1.0.0"\n'


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def common(tmp_path: Path) -> list[str]:
    return ["--cache-dir", str(tmp_path / "cache")]


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """An unsigned component whose embedded manifest nests TOML 5,000 levels deep."""
    data = ws.with_custom_section(component(), MANIFEST_SECTION, DEEP_MANIFEST.encode())
    return write(tmp_path, "deep.wasm", data)


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["call", "{path}", "one", "--allow-unsigned"],
        ["install", "--allow-unsigned", "--registry", "{tmp}/r", "--trust-store", "{tmp}/t.json"],
    ],
    ids=["inspect", "call", "install"],
)
def test_deeply_nested_manifest_is_refused(
    command: list[str],
    common: list[str],
    deep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(path=deep, tmp=tmp_path) for a in command]
    if "{path}" not in command:
        argv.insert(1, str(deep))
    assert main([*common, *argv]) == EXIT_REFUSED
    line = _one_error_line(capsys.readouterr().err)
    assert "nested too deeply" in line


def test_list_skips_the_bad_file_with_a_warning(
    tmp_path: Path, deep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    deep.rename(drop / "deep.wasm")
    write(drop, "good.wasm", packed("good", "1.0.0"))
    argv = ["list", "--json", "--no-entry-points", "--dir", str(drop)]
    argv += ["--registry", str(tmp_path / "r"), "--trust-store", str(tmp_path / "t.json")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert [row["name"] for row in json.loads(captured.out)] == ["good"]
    assert "deep.wasm" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "option",
    [
        ["--timeout-ms", "-1"],
        ["--timeout-ms", "0"],
        ["--timeout-ms", "nan"],
        ["--timeout-ms", "inf"],
        ["--timeout-ms", "soon"],
        ["--memory-bytes", "0"],
        ["--memory-bytes", "-5"],
        ["--memory-bytes", "1.5"],
    ],
    ids=lambda o: " ".join(o),
)
def test_bad_limits_are_usage_errors(
    option: list[str], common: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "c.wasm", packed("c", "1.0.0"))
    with pytest.raises(SystemExit) as info:
        main([*common, "call", str(path), "one", "--allow-unsigned", *option])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert option[0] in err


@pytest.mark.parametrize(
    "argument",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, "9" * 5000],
    ids=["deep-array", "deep-object", "huge-integer"],
)
def test_hostile_json_argument_is_a_usage_error(
    argument: str, common: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = wat.component(
        [wat.Func("echo", (("x", wat.List(wat.P("u32"))),), wat.P("u32"), "(local.get 1)")]
    )
    data = bytes(wasmtime.wat2wasm(echo))
    wasm = write(tmp_path, "echo.wasm", ws.with_custom_section(data, MANIFEST_SECTION, MANIFEST))
    code = main([*common, "call", str(wasm), "echo", argument, "--allow-unsigned"])
    assert code == EXIT_USAGE
    _one_error_line(capsys.readouterr().err)
