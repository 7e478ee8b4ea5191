"""The registry and trust commands of the CLI: install, list, remove."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from support.registry import packed, signed, write
from wasmplug._cli.main import main
from wasmplug._trust import signing as _signing


@pytest.fixture
def pair() -> _signing.KeyPair:
    return _signing.generate_keypair()


def test_cli_round_trip(
    tmp_path: Path, pair: _signing.KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    pk = write(tmp_path, "pub.key", pair.public_key.to_wasmsign2_bytes())
    ts = ["--trust-store", str(tmp_path / "cli-trust.json")]
    rg = ["--registry", str(tmp_path / "cli-reg")]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    kid = pair.key_id.hex()

    def run(*argv: str) -> int:
        return main([*cache, *argv])

    assert run("trust", "add", str(pk), "--scope", "acme:*", "--name", "Acme", *ts) == 0
    capsys.readouterr()
    assert run("trust", "list", "--json", *ts) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert keys == [{"key-id": kid, "name": "Acme", "scopes": ["acme:*"]}]

    good = write(tmp_path, "tool.wasm", signed(packed("acme:tool", "2.0.0"), pair))
    assert run("install", str(good), *rg, *ts) == 0
    assert "installed acme:tool 2.0.0" in capsys.readouterr().out
    assert run("list", "--json", "--no-entry-points", *rg, *ts) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["version"], row["source"], row["key-id"]) == (
        "acme:tool", "2.0.0", "registry", kid,
    )  # fmt: skip
    assert row["exports"] == ["one"]
    assert row["revoked"] is False
    assert run("list", *rg, *ts, "--no-entry-points") == 0
    assert "acme:tool" in capsys.readouterr().out

    old = write(tmp_path, "old.wasm", signed(packed("acme:tool", "1.0.0"), pair))
    assert run("install", str(old), *rg, *ts) == 3
    assert "refusing a rollback" in capsys.readouterr().err
    evil = write(tmp_path, "evil.wasm", signed(packed("evil:tool"), pair))
    assert run("install", str(evil), *rg, *ts) == 3
    assert "trusted only for acme:*" in capsys.readouterr().err
    assert run("install", str(old), "--force", *rg, *ts) == 0

    assert run("remove", "acme:tool", "--version", "1.0.0", *rg) == 0
    assert run("remove", "acme:tool", *rg) == 0
    assert run("remove", "acme:tool", *rg) == 3
    capsys.readouterr()
    assert run("list", "--json", "--no-entry-points", *rg, *ts) == 0
    assert json.loads(capsys.readouterr().out) == []

    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert run("trust", "revoke", "--digest", digest, *ts) == 0
    assert run("install", str(good), *rg, *ts) == 3
    assert "revoked" in capsys.readouterr().err
    assert run("trust", "revoke", "--key", kid, *ts) == 0
    assert run("trust", "revoke", "--digest", "xyz", *ts) == 2
    assert run("trust", "list", *ts) == 0
    out = capsys.readouterr().out
    assert f"revoked key {kid}" in out
    assert f"revoked sha256 {digest}" in out
    assert run("trust", "remove", kid, *ts) == 0
    assert run("trust", "remove", kid, *ts) == 2
    with pytest.raises(SystemExit):
        run("trust", "revoke", *ts)  # --key or --digest is required


def test_cli_install_allow_unsigned_and_list_discovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rg = ["--registry", str(tmp_path / "r")]
    ts = ["--trust-store", str(tmp_path / "t.json")]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    path = write(tmp_path, "dev.wasm", packed("dev", "0.1.0"))
    assert main([*cache, "install", str(path), *rg, *ts]) == 3
    assert "not signed" in capsys.readouterr().err
    assert main([*cache, "install", str(path), "--allow-unsigned", *rg, *ts]) == 0
    assert "UNSIGNED" in capsys.readouterr().out
    drop = tmp_path / "drop"
    drop.mkdir()
    write(drop, "x.wasm", packed("x", "3.0.0"))
    write(drop, "junk.wasm", b"junk")
    assert main(["list", "--json", "--no-entry-points", "--dir", str(drop), *rg, *ts]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [(r["name"], r["source"], r["signed"]) for r in rows] == [
        ("dev", "registry", False),
        ("x", "dir", False),
    ]
    assert "junk.wasm" in captured.err
