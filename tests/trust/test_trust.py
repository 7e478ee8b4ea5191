"""Trust: signed plugins load only from trusted, in-scope, unrevoked keys."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import wasmtime

from wasmplug import (
    PluginHost,
    RevokedError,
    SignatureInvalidError,
    TrustedKey,
    TrustStore,
    TrustStoreError,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.store import as_trusted

WAT = """
(component
  (core module $m (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
"""


def packed(name: str) -> bytes:
    manifest = f'[plugin]\nname = "{name}"\nversion = "1.0.0"\n'.encode()
    return ws.with_custom_section(wasmtime.wat2wasm(WAT), MANIFEST_SECTION, manifest)


@pytest.fixture
def pair() -> _signing.KeyPair:
    return _signing.generate_keypair()


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "trust.json")


def signed(name: str, pair: _signing.KeyPair) -> bytes:
    return _signing.sign(packed(name), pair.secret_key, key_id=pair.key_id)


def host_for(tmp_path: Path, store: TrustStore, *keys: object) -> PluginHost:
    return PluginHost(cache_dir=tmp_path / "cache", trust_store=store, trusted_keys=keys)  # type: ignore[arg-type]


def test_trusted_in_code_loads(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    with host_for(tmp_path, store, pair.public_key) as host:
        plugin = host.load(signed("acme:tool", pair))
        assert plugin.name == "acme:tool"
        assert plugin.call("one") == 1


def test_trusted_in_store_loads(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    store.add(TrustedKey(pair.public_key, ("acme:*",), "Acme"))
    store.save()
    reloaded = TrustStore(store.path)
    assert reloaded.keys == store.keys
    with host_for(tmp_path, reloaded) as host:
        assert host.load(signed("acme:tool", pair)).call("one") == 1


def test_scope_must_cover_the_name(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    key = TrustedKey(pair.public_key, ("acme:*",), "Acme")
    with host_for(tmp_path, store, key) as host, pytest.raises(UntrustedKeyError) as info:
        host.load(signed("evil:tool", pair))
    message = str(info.value)
    assert pair.key_id.hex() in message
    assert "(Acme)" in message  # the publisher's name
    assert "acme:*" in message
    assert "evil:tool" in message


def test_unknown_signer_is_untrusted(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    other = _signing.generate_keypair()
    with host_for(tmp_path, store, other.public_key) as host:
        with pytest.raises(UntrustedKeyError, match=pair.key_id.hex()):
            host.load(signed("acme:tool", pair))


def test_unsigned_is_refused(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(UnsignedPluginError):
            host.load(packed("acme:tool"))
        assert host.load(packed("acme:tool"), allow_unsigned=True).call("one") == 1


def test_tampered_manifest_fails_verification(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    data = signed("acme:tool", pair)
    tampered = data.replace(b'name = "acme:tool"', b'name = "acme:toox"')
    assert tampered != data
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(SignatureInvalidError, match=pair.key_id.hex()):
            host.load(tampered)


def test_revoked_key_and_digest(tmp_path: Path, store: TrustStore, pair: _signing.KeyPair) -> None:
    data = signed("acme:tool", pair)
    store.revoke_key(pair.key_id.hex())
    with host_for(tmp_path, store, pair.public_key) as host:
        with pytest.raises(RevokedError, match="revoked key"):
            host.load(data)
    fresh = TrustStore(tmp_path / "other.json")

    fresh.revoke_digest(hashlib.sha256(data).hexdigest())
    with host_for(tmp_path, fresh, pair.public_key) as host:
        with pytest.raises(RevokedError, match="is revoked"):
            host.load(data)


def test_store_remove_and_malformed_file(tmp_path: Path, pair: _signing.KeyPair) -> None:
    store = TrustStore(tmp_path / "t.json")
    store.add(TrustedKey(pair.public_key))
    assert store.remove(pair.key_id.hex())
    assert not store.remove(pair.key_id.hex())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TrustStoreError, match="malformed"):
        TrustStore(bad)


def test_scopes_cannot_be_empty(pair: _signing.KeyPair) -> None:
    with pytest.raises(ValueError, match="scope"):
        TrustedKey(pair.public_key, ())


def test_install_then_load_installed(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    from wasmplug import PluginNotFoundError, Registry

    registry = Registry(tmp_path / "registry")
    with host_for(tmp_path, store, pair.public_key) as host:
        info = host.install(signed("acme:tool", pair), registry=registry)
        assert (info.name, info.version, info.key_id) == ("acme:tool", "1.0.0", pair.key_id.hex())
        assert host.load_installed("acme:tool", registry=registry).call("one") == 1
        assert host.load_installed("acme:tool", "1", registry=registry).name == "acme:tool"
        with pytest.raises(PluginNotFoundError):
            host.load_installed("acme:other", registry=registry)
        # Revoking the key after install: loading verifies again and refuses.
        store.revoke_key(pair.key_id.hex())
        with pytest.raises(RevokedError):
            host.load_installed("acme:tool", registry=registry)


def test_revoking_the_content_digest_covers_re_signed_copies(
    tmp_path: Path, store: TrustStore, pair: _signing.KeyPair
) -> None:
    from wasmplug._trust.store import content_sha256

    other = _signing.generate_keypair()
    data = signed("acme:tool", pair)
    resigned = _signing.sign(_signing.strip_signature(data), other.secret_key, key_id=other.key_id)
    assert content_sha256(data) == content_sha256(resigned)
    store.revoke_digest(content_sha256(data))
    with host_for(tmp_path, store, pair.public_key, other.public_key) as host:
        for blob in (data, resigned):
            with pytest.raises(RevokedError, match="content sha256"):
                host.load(blob)
        with pytest.raises(RevokedError):
            host.load(data, allow_unsigned=True)  # revoked beats allow_unsigned


def test_a_running_host_sees_revocations_made_later(tmp_path: Path, pair: _signing.KeyPair) -> None:
    path = tmp_path / "trust.json"
    with TrustStore(path).modify() as s:
        s.add(TrustedKey(pair.public_key))
    with host_for(tmp_path, TrustStore(path)) as host:
        assert host.load(signed("acme:tool", pair)).call("one") == 1
        with TrustStore(path).modify() as other_process:  # e.g. `wasmplug trust revoke`
            other_process.revoke_key(pair.key_id.hex())
        with pytest.raises(RevokedError):
            host.load(signed("acme:tool", pair))


def test_public_key_from_pem_bytes(pair: _signing.KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization

    from wasmplug import PublicKey

    pem = pair.public_key._key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert PublicKey.from_bytes(pem) == pair.public_key


def test_the_default_store_is_trust_json_in_the_user_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # platformdirs' config dir on Linux
    assert TrustStore().path == tmp_path / "wasmplug" / "trust.json"


def test_a_key_entry_needs_only_its_public_key(tmp_path: Path, pair: _signing.KeyPair) -> None:
    path = tmp_path / "trust.json"
    # "key-id" is informational: a stale one is ignored and the id recomputed from the key
    entry = {"public-key": pair.public_key.raw.hex(), "key-id": "00" * 12}
    path.write_text(json.dumps({"keys": [entry]}))
    (key,) = TrustStore(path).keys
    assert (key.key, key.scopes, key.name) == (pair.public_key, ("*",), "")
    path.write_text(json.dumps({"revoked-keys": ["AB" * 12]}))  # no "keys" at all
    store = TrustStore(path)
    assert (store.keys, store.revoked_keys) == ([], {"ab" * 12})
    assert (store.revoked_digests, store.revoked_public_keys) == (set(), {})


PK_HEX = "11" * 32


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1], "the document: expected an object, got an array"),
        ({"keys": {"a": 1}}, "keys: expected an array"),
        ({"keys": ["abc"]}, "keys[0]: expected an object"),
        ({"keys": [{"scopes": ["*"]}]}, "keys[0].public-key: missing"),
        ({"keys": [{"public-key": "zz"}]}, "keys[0].public-key: expected hexadecimal digits"),
        ({"keys": [{"public-key": "abcd"}]}, "keys[0]: an Ed25519 public key is 32 bytes, got 2"),
        ({"keys": [{"public-key": PK_HEX}, {"name": "x"}]}, "keys[1].public-key: missing"),
        ({"keys": [{"public-key": PK_HEX, "scopes": [1]}]}, "keys[0].scopes[0]: expected a string"),
        ({"keys": [{"public-key": PK_HEX, "name": 3}]}, "keys[0].name: expected a string"),
        ({"keys": [{"public-key": PK_HEX, "key-id": 3}]}, "keys[0].key-id: expected a string"),
        ({"revoked-keys": "ab"}, "revoked-keys: expected an array of strings"),
        ({"revoked-digests": [1]}, "revoked-digests[0]: expected a string"),
        ({"revoked-public-keys": []}, "revoked-public-keys: expected an object"),
        ({"revoked-public-keys": {"x": "zz"}}, "revoked-public-keys.x: expected hexadecimal"),
        ({"revoked-public-keys": {"x": "abcd"}}, "revoked-public-keys.x: an Ed25519 public key"),
    ],
    ids=[
        "document", "keys", "entry", "public-key", "hex", "key-size", "second-entry", "scope",
        "name", "key-id", "revoked-keys", "revoked-digests", "revoked-public-keys",
        "revoked-public-key-hex", "revoked-public-key-size",
    ],
)  # fmt: skip
def test_a_malformed_store_names_the_field(tmp_path: Path, doc: object, message: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    expected = f"trust store {path} is malformed: {message}"
    with pytest.raises(TrustStoreError, match=re.escape(expected)):
        TrustStore(path)


def test_add_replaces_only_the_entry_with_the_same_key_id(
    store: TrustStore, pair: _signing.KeyPair
) -> None:
    other = _signing.generate_keypair()
    store.add(TrustedKey(pair.public_key, ("acme:*",), "Acme"))
    store.add(TrustedKey(other.public_key, ("*",), "Other"))
    store.add(TrustedKey(pair.public_key, ("acme:tool",), "Acme, narrowed"))
    assert [(k.key, k.scopes, k.name) for k in store.keys] == [
        (other.public_key, ("*",), "Other"),
        (pair.public_key, ("acme:tool",), "Acme, narrowed"),
    ]
    store.save()
    saved = json.loads(store.path.read_text())["keys"]
    assert [entry["key-id"] for entry in saved] == [other.key_id.hex(), pair.key_id.hex()]


def test_scopes_are_strings(pair: _signing.KeyPair) -> None:
    with pytest.raises(TypeError, match="a scope is a name pattern string, got int"):
        TrustedKey(pair.public_key, ("acme:*", 3))  # type: ignore[arg-type]


def test_keys_are_accepted_as_trusted_keys_public_keys_or_key_file_bytes(
    pair: _signing.KeyPair,
) -> None:
    scoped = TrustedKey(pair.public_key, ("acme:*",), "Acme")
    assert as_trusted(scoped) is scoped
    assert as_trusted(pair.public_key) == TrustedKey(pair.public_key)
    assert as_trusted(pair.public_key.to_wasmsign2_bytes()) == TrustedKey(pair.public_key)


def test_refresh_rereads_only_a_changed_file(tmp_path: Path, pair: _signing.KeyPair) -> None:
    """One stat when nothing changed: an unchanged file is not re-read (after reading it,
    or after saving it), so edits not yet saved survive a refresh."""
    path = tmp_path / "trust.json"
    TrustStore(path).save()
    store = TrustStore(path)
    first, second = TrustedKey(pair.public_key), TrustedKey(_signing.generate_keypair().public_key)
    store.add(first)  # in memory only
    store.refresh()
    assert store.keys == [first]
    store.save()
    store.add(second)
    store.refresh()
    assert store.keys == [first, second]
    with TrustStore(path).modify() as other_process:
        other_process.revoke_digest("ab" * 32)
    store.refresh()  # changed on disk: re-read, the unsaved key is gone
    assert (store.keys, store.revoked_digests) == ([first], {"ab" * 32})


def test_the_decision_names_the_signer_and_the_file(
    store: TrustStore, pair: _signing.KeyPair
) -> None:
    data = signed("acme:tool", pair)
    decision = store.verify(data, "acme:tool", extra_keys=[TrustedKey(pair.public_key)])
    assert decision.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(UntrustedKeyError, match=r"^component: signed by key id"):
        store.verify(data, "acme:tool")  # the file's default name in messages
    where = "plugins/tool.wasm"
    with pytest.raises(UntrustedKeyError, match=f"^{where}: signed by key id"):
        store.check(data, "acme:tool", where=where)
    with pytest.raises(UnsignedPluginError, match=f"^{where} is not signed; sign it"):
        store.check(packed("acme:tool"), "acme:tool", where=where)
    broken = ws.with_custom_section(packed("acme:tool"), "signature", b"\x01", first=True)
    with pytest.raises(SignatureInvalidError, match=f"^{where}: unreadable signature section"):
        store.check(broken, "acme:tool", where=where)
    anonymous = _signing.sign(packed("acme:tool"), _signing.generate_keypair().secret_key)
    with pytest.raises(UntrustedKeyError, match=r"signed by key id\(s\) \(anonymous\), none"):
        store.check(anonymous, "acme:tool")


def test_every_trusted_key_is_tried(store: TrustStore, pair: _signing.KeyPair) -> None:
    """Keys that did not sign, or whose signature fails, do not stop the search."""
    first, second = _signing.generate_keypair(), _signing.generate_keypair()
    keys = [
        TrustedKey(first.public_key),
        TrustedKey(second.public_key),
        TrustedKey(pair.public_key),
    ]
    by_id = signed("acme:tool", pair)  # the record names the signer's key id
    anonymous = _signing.sign(packed("acme:tool"), pair.secret_key)  # every key is tried
    for data in (by_id, anonymous):
        assert store.check(data, "acme:tool", extra_keys=keys) == keys[2]


def test_is_revoked_is_the_load_decision(store: TrustStore, pair: _signing.KeyPair) -> None:
    """A revoked signer refuses a file unless a trusted, unrevoked key in scope vouches."""
    revoked = _signing.generate_keypair()
    data = _signing.sign(signed("acme:tool", revoked), pair.secret_key, key_id=pair.key_id)
    store.revoke_key(revoked.public_key)
    acme = TrustedKey(pair.public_key, ("acme:*",), "Acme")
    assert store.is_revoked(data, "acme:tool", extra_keys=[acme]) is None
    for name, keys in (("other:tool", [acme]), ("acme:tool", [])):
        reason = store.is_revoked(data, name, extra_keys=keys)
        assert reason == f"component: signed by revoked key(s) {revoked.key_id.hex()}"
        with pytest.raises(RevokedError, match=re.escape(reason)):
            store.check(data, name, extra_keys=keys, allow_unsigned=True)
    assert store.is_revoked(packed("acme:tool"), "acme:tool") is None  # unsigned: not revoked
