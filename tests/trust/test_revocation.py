"""Revocation: decided by verifying against the revoked keys, one decision for
load, install and the CLI's listing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import wasmtime

from wasmplug import (
    PluginHost,
    Registry,
    RevokedError,
    TrustedKey,
    TrustStore,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._cli.main import main
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.store import content_sha256

WAT = """
(component
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


def packed(name: str = "acme:tool", version: str = "1.0.0") -> bytes:
    manifest = f'[plugin]\nname = "{name}"\nversion = "{version}"\n'.encode()
    return ws.with_custom_section(wasmtime.wat2wasm(WAT), MANIFEST_SECTION, manifest)


@pytest.fixture
def pair() -> _signing.KeyPair:
    return _signing.generate_keypair()


@pytest.fixture
def other() -> _signing.KeyPair:
    return _signing.generate_keypair()


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "trust.json")


def key_ids(pair: _signing.KeyPair, other: _signing.KeyPair) -> dict[str, bytes | None]:
    return {"no key id": None, "another key's id": other.key_id, "garbage id": b"\x01" * 12}


CLAIMS = ["no key id", "another key's id", "garbage id"]


@pytest.mark.parametrize("claim", CLAIMS)
@pytest.mark.parametrize("revoked_how", ["trusted in code, revoked by id", "revoked by key"])
def test_a_revoked_signer_is_found_whatever_key_id_the_record_claims(
    tmp_path: Path,
    store: TrustStore,
    pair: _signing.KeyPair,
    other: _signing.KeyPair,
    claim: str,
    revoked_how: str,
) -> None:
    # The key id in a signature record is not signed: a thief of a revoked key can
    # leave it out or write another one. Revocation must still hold, and hold even
    # with allow_unsigned=True (where a mere "untrusted" signature would load).
    data = _signing.sign(packed(), pair.secret_key, key_id=key_ids(pair, other)[claim])
    keys: tuple[object, ...] = ()
    if revoked_how == "revoked by key":
        store.revoke_key(pair.public_key)
    else:
        store.revoke_key(pair.key_id.hex())
        keys = (pair.public_key,)
    store.save()
    with PluginHost(cache_dir=False, trust_store=store, trusted_keys=keys) as host:  # type: ignore[arg-type]
        with pytest.raises(RevokedError, match=pair.key_id.hex()):
            host.load(data, allow_unsigned=True)
        with pytest.raises(RevokedError):
            host.load(data)
        with pytest.raises(RevokedError):
            host.install(data, registry=Registry(tmp_path / "reg"), allow_unsigned=True)


def test_revoking_a_trusted_key_by_id_keeps_its_public_key(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    store.add(TrustedKey(pair.public_key))
    store.revoke_key(pair.key_id.hex())
    store.remove(pair.key_id.hex())  # no longer trusted, still revoked
    store.save()
    reread = TrustStore(store.path)
    assert reread.revoked_public_keys == {pair.key_id.hex(): pair.public_key}
    data = _signing.sign(packed(), pair.secret_key, key_id=None)
    with pytest.raises(RevokedError):
        reread.check(data, "acme:tool", allow_unsigned=True)


def test_another_trusted_key_still_vouches(
    store: TrustStore, pair: _signing.KeyPair, other: _signing.KeyPair
) -> None:
    data = _signing.sign(packed(), pair.secret_key, key_id=None)
    data = _signing.sign(data, other.secret_key, key_id=other.key_id)
    store.revoke_key(pair.public_key)
    store.add(TrustedKey(other.public_key))
    assert store.check(data, "acme:tool") == TrustedKey(other.public_key)


def test_a_forged_claim_without_a_signature_is_not_revocation(
    store: TrustStore, pair: _signing.KeyPair, other: _signing.KeyPair
) -> None:
    # Signed by `other` (not revoked) while claiming nothing: untrusted, not revoked.
    data = _signing.sign(packed(), other.secret_key, key_id=None)
    store.revoke_key(pair.public_key)
    with pytest.raises(UntrustedKeyError):
        store.check(data, "acme:tool")
    assert store.check(data, "acme:tool", allow_unsigned=True) is None


def test_signed_by_ignores_key_ids(pair: _signing.KeyPair, other: _signing.KeyPair) -> None:
    data = _signing.sign(packed(), pair.secret_key, key_id=other.key_id)
    assert _signing.signed_by(data, [other.public_key, pair.public_key]) == [pair.public_key]
    assert _signing.signed_by(packed(), [pair.public_key]) == []
    tampered = data.replace(b'version = "1.0.0"', b'version = "1.0.1"')
    assert _signing.signed_by(tampered, [pair.public_key]) == []


def test_unsigned_is_a_signature_missing_error_and_a_load_error(store: TrustStore) -> None:
    with pytest.raises(UnsignedPluginError) as info:
        store.check(packed(), "acme:tool")
    from wasmplug import LoadError, SignatureError, SignatureMissingError

    assert isinstance(info.value, SignatureMissingError)
    assert isinstance(info.value, SignatureError)
    assert isinstance(info.value, LoadError)


# -- the CLI's listing uses the same decision ----------------------------------------------


def cli_list(tmp_path: Path, store: TrustStore, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    code = main(
        [
            *("list", "--json", "--no-entry-points"),
            *("--registry", str(tmp_path / "reg"), "--trust-store", str(store.path)),
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    return rows[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("revoke", ["file digest", "content digest", "signer key"])
def test_cli_list_shows_every_kind_of_revocation(
    tmp_path: Path,
    store: TrustStore,
    pair: _signing.KeyPair,
    capsys: pytest.CaptureFixture[str],
    revoke: str,
) -> None:
    data = _signing.sign(packed(), pair.secret_key, key_id=None)  # anonymous record
    with PluginHost(cache_dir=False, trust_store=store, trusted_keys=[pair.public_key]) as host:
        host.install(data, registry=Registry(tmp_path / "reg"))
    assert cli_list(tmp_path, store, capsys)["revoked"] is False
    with store.modify():
        if revoke == "file digest":
            store.revoke_digest(hashlib.sha256(data).hexdigest())
        elif revoke == "content digest":  # missed by the listing before
            store.revoke_digest(content_sha256(data))
        else:  # the record claims no key id: only verification finds it
            store.revoke_key(pair.public_key)
    assert cli_list(tmp_path, store, capsys)["revoked"] is True


def test_cli_revoke_by_key_file(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    key_file = tmp_path / "pub.key"
    key_file.write_bytes(pair.public_key.to_wasmsign2_bytes())
    argv = ["trust", "revoke", "--key-file", str(key_file), "--trust-store", str(store.path)]
    assert main(argv) == 0
    store.refresh()
    assert store.revoked_public_keys == {pair.key_id.hex(): pair.public_key}


@pytest.mark.parametrize("bad", ["abc\n", "zz", ""])
def test_cli_revoke_rejects_bad_key_ids(tmp_path: Path, store: TrustStore, bad: str) -> None:
    assert main(["trust", "revoke", "--key", bad, "--trust-store", str(store.path)]) == 2


@pytest.mark.parametrize(
    "digest", ["56fd92b5...", "56fd92b5", "g" * 64, "a" * 63, "a" * 65, "", "sha256:" + "a" * 64]
)
def test_a_malformed_digest_is_refused_not_silently_stored(store: TrustStore, digest: str) -> None:
    """A shortened or mistyped digest would never match a file: the revocation would not apply."""
    with pytest.raises(ValueError, match="64 digits"):
        store.revoke_digest(digest)
    assert not store.revoked_digests


def test_a_digest_is_normalised(store: TrustStore) -> None:
    store.revoke_digest(" " + "AB" * 32 + "\n")
    assert store.revoked_digests == {"ab" * 32}
