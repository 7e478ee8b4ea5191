"""`wasmplug pack|keygen|sign|verify|grants`: the files written verify after a fresh read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wasmplug import Grants, Manifest, PluginHost
from wasmplug._cli.main import main
from wasmplug._sandbox.grantstore import GrantPolicy, GrantStore, PermissionRequest
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws

WAT = """
(component
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory (the current one) with c.wasm and wasmplug.toml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.wasm").write_bytes(wasmtime.wat2wasm(WAT))
    (tmp_path / "wasmplug.toml").write_text('[plugin]\nname = "acme:one"\nversion = "1.0.0"\n')
    return tmp_path


def cli(*argv: str) -> int:
    return main(list(argv))


def test_pack_keygen_sign_verify_round_trip(files: Path) -> None:
    d = files
    assert cli("pack", "c.wasm", "-m", "wasmplug.toml", "-o", "p.wasm") == 0
    assert ws.get_custom_section((d / "p.wasm").read_bytes(), MANIFEST_SECTION) is not None
    assert cli("keygen", "-K", "a.pub", "-k", "a.sec") == 0
    assert (d / "a.sec").stat().st_mode & 0o777 == 0o600
    assert len((d / "a.pub").read_bytes()) == 33  # wasmsign2 raw: 0x01 || pk
    assert len((d / "a.sec").read_bytes()) == 65  # 0x81 || seed || pk
    assert cli("sign", "-i", "p.wasm", "-o", "s.wasm", "-k", "a.sec") == 0
    assert cli("verify", "-i", "s.wasm", "-K", "a.pub") == 0
    # An independent re-read of the written files verifies too.
    pk = _signing.load_public_key((d / "a.pub").read_bytes())
    _signing.verify((d / "s.wasm").read_bytes(), pk)
    # ... and the signed, packed file loads with its embedded manifest.
    with PluginHost(cache_dir=d / "cache", trusted_keys=[pk]) as host:
        plugin = host.load(d / "s.wasm")
        assert plugin.name == "acme:one"
        assert plugin.call("one") == 1


def test_multiple_signatures(files: Path) -> None:
    d = files
    for k in ("a", "b", "c"):
        cli("keygen", "-K", f"{k}.pub", "-k", f"{k}.sec")
    cli("sign", "-i", "c.wasm", "-o", "s1.wasm", "-k", "a.sec")
    cli("sign", "-i", "s1.wasm", "-o", "s2.wasm", "-k", "b.sec")
    assert cli("verify", "-i", "s2.wasm", "-K", "a.pub") == 0
    assert cli("verify", "-i", "s2.wasm", "-K", "b.pub") == 0
    assert cli("verify", "-i", "s2.wasm", "-K", "c.pub") == 3
    assert len(_signing.signatures((d / "s2.wasm").read_bytes())) == 2


def test_detached_signature(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = files
    cli("keygen", "-K", "a.pub", "-k", "a.sec")
    cli("keygen", "-K", "b.pub", "-k", "b.sec")
    assert cli("sign", "-i", "c.wasm", "-k", "a.sec", "-S", "c.sig") == 0
    assert cli("sign", "-i", "c.wasm", "-k", "b.sec", "-S", "c.sig") == 0
    assert (d / "c.wasm").read_bytes() == wasmtime.wat2wasm(WAT)  # the binary is untouched
    for k in ("a", "b"):
        assert cli("verify", "-i", "c.wasm", "-K", f"{k}.pub", "-S", "c.sig") == 0
    assert "detached signature verified" in capsys.readouterr().out
    # Without the detached signature the binary is unsigned: verification fails (exit 3).
    assert cli("verify", "-i", "c.wasm", "-K", "a.pub") == 3


def test_pem_and_openssh_keys(files: Path) -> None:
    d = files
    sk = Ed25519PrivateKey.generate()
    (d / "k.pem").write_bytes(
        sk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (d / "k.pub").write_bytes(
        sk.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    assert cli("sign", "-i", "c.wasm", "-o", "s.wasm", "-k", "k.pem") == 0
    assert cli("verify", "-i", "s.wasm", "-K", "k.pub") == 0


def test_mismatched_public_key_is_refused(files: Path) -> None:
    d = files
    cli("keygen", "-K", "a.pub", "-k", "a.sec")
    cli("keygen", "-K", "b.pub", "-k", "b.sec")
    code = cli(
        "sign", "-i", "c.wasm", "-o", "s.wasm",
        "-k", "a.sec", "-K", "b.pub",
    )  # fmt: skip
    assert code == 3
    assert not (d / "s.wasm").exists()


def test_pack_refuses_an_invalid_manifest(files: Path) -> None:
    d = files
    (d / "bad.toml").write_text('[plugin]\nname = "Bad"\n')
    assert cli("pack", "c.wasm", "-m", "bad.toml", "-o", "p.wasm") == 3
    assert not (d / "p.wasm").exists()


def test_grants_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "g.json"
    policy = GrantPolicy(prompt=lambda req: Grants(env={"A": "1"}), store=GrantStore(store))
    perms = ()
    m = Manifest(name="acme:one", env=("A",))
    from wasmplug._sandbox.capabilities import requested_permissions

    perms = requested_permissions(m)
    policy.decide(PermissionRequest("acme:one", "1.0.0", None, "", "ab" * 32, perms, perms))
    assert cli("grants", "list", "--store", str(store)) == 0
    assert "acme:one" in capsys.readouterr().out
    assert cli("grants", "list", "--json", "--store", str(store)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["grants"]["env"] == {"A": "***"}  # secrets stay hidden by default
    assert cli("grants", "list", "--json", "--show-values", "--store", str(store)) == 0
    assert json.loads(capsys.readouterr().out)[0]["grants"]["env"] == {"A": "1"}
    assert cli("grants", "revoke", "acme:one", "--store", str(store)) == 0
    assert GrantStore(store).list() == []
