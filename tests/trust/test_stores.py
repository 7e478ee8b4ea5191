"""The JSON stores (trust store, grant store, registry index): every parse failure is
the store's own typed error, naming the file and the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wasmplug import (
    GrantPolicy,
    GrantPolicyError,
    Grants,
    GrantStore,
    GrantStoreError,
    ManifestError,
    Registry,
    RegistryError,
    StoredDecision,
    TrustedKey,
    TrustStore,
    TrustStoreError,
)
from wasmplug._fsutil import atomic_path, write_atomic
from wasmplug._trust import signing as _signing

DEEP = "[" * 100_000 + "]" * 100_000
PK = _signing.generate_keypair().public_key.raw.hex()


def open_trust(path: Path) -> None:
    TrustStore(path)


def open_grants(path: Path) -> None:
    GrantStore(path).list()


def open_index(path: Path) -> None:
    Registry(path.parent).list()


STORES: dict[str, tuple[Callable[[Path], None], type[Exception], str]] = {
    "trust store": (open_trust, TrustStoreError, "trust.json"),
    "grant store": (open_grants, GrantStoreError, "grants.json"),
    "registry index": (open_index, RegistryError, "index.json"),
}

COMMON = {
    "not json": "{not json",
    "not utf-8": b"\xff\xfe{}",
    "deep nesting": DEEP,
    "deep object": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "not an object": "[1, 2]",
    "null": "null",
}


@pytest.mark.parametrize("content", COMMON.values(), ids=COMMON.keys())
@pytest.mark.parametrize("store", STORES, ids=STORES.keys())
def test_unparsable_files_raise_the_store_error(tmp_path: Path, store: str, content: Any) -> None:
    opener, error, name = STORES[store]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(error, match=str(path)):
        opener(path)


# Fields of the wrong type, per store. Each was accepted or crashed (KeyError,
# AttributeError, TypeError) before.
TRUST_BAD = {
    "scopes as a string": {"keys": [{"public-key": PK, "scopes": "acme:*"}]},
    "scope not a string": {"keys": [{"public-key": PK, "scopes": [1]}]},
    "key not hex": {"keys": [{"public-key": "zz"}]},
    "key too short": {"keys": [{"public-key": "abcd"}]},
    "key missing": {"keys": [{"scopes": ["*"]}]},
    "keys not a list": {"keys": {"a": 1}},
    "entry not an object": {"keys": ["abc"]},
    "name not a string": {"keys": [{"public-key": PK, "name": 3}]},
    "revoked-keys a string": {"revoked-keys": "abc"},
    "revoked-digests of numbers": {"revoked-digests": [1, 2]},
    "revoked public key not hex": {"revoked-public-keys": {"x": "zz"}},
}


@pytest.mark.parametrize("doc", TRUST_BAD.values(), ids=TRUST_BAD.keys())
def test_trust_store_fields_are_type_checked(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustStoreError, match="malformed"):
        TrustStore(path)


def test_scopes_given_as_a_string_in_code_are_refused() -> None:
    key = _signing.generate_keypair().public_key
    with pytest.raises(TypeError, match="not a string"):
        TrustedKey(key, "acme:*")  # type: ignore[arg-type]


def decision(**grants: Any) -> dict[str, Any]:
    entry = {
        "plugin": "p",
        "publisher": None,
        "sha256": "00",
        "answered": [],
        "grants": {"filesystem": {}, "env": {}},
        "decided-at": 1.0,
    }
    entry["grants"].update(grants)  # type: ignore[attr-defined]
    return {"decisions": {"k": entry}}


GRANT_BAD = {
    "decisions missing": {},
    "decisions a list": {"decisions": []},
    "entry a string": {"decisions": {"k": "x"}},
    "plugin missing": {"decisions": {"k": {"sha256": "00"}}},
    "env value a number": decision(env={"K": 1}),
    "filesystem not a pair": decision(filesystem={"/d": "/srv"}),
    "filesystem mode bad": decision(filesystem={"/d": ["/srv", "xx"]}),
    "interfaces a string": decision(**{"host-interfaces": "a:b/c"}),
    "hosts of numbers": decision(**{"allowed-outbound-hosts": [1]}),
}


@pytest.mark.parametrize("doc", GRANT_BAD.values(), ids=GRANT_BAD.keys())
def test_grant_store_fields_are_type_checked(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "grants.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(GrantStoreError, match="malformed"):
        GrantStore(path).get("p", None, "00")


def test_grant_store_round_trip(tmp_path: Path) -> None:
    store = GrantStore(tmp_path / "grants.json")
    grants = Grants(env={"K": "v"}, host_interfaces={"a:b/c"})
    d = StoredDecision("p", "ab", "00", frozenset({"env:K"}), grants, 2.0)
    store.put(d)
    assert GrantStore(store.path).list() == [d]
    assert (store.path.stat().st_mode & 0o777) == 0o600


def entry(**overrides: Any) -> dict[str, Any]:
    base = {
        "file": "plugins/tool/1.0.0/plugin.wasm",
        "sha256": "00",
        "key-id": None,
        "signed": False,
        "manifest": '[plugin]\nname = "tool"\nversion = "1.0.0"\n',
        "imports": [],
        "exports": [],
    }
    base.update(overrides)
    return {"format": 1, "plugins": {"tool": {"versions": {"1.0.0": base}}}}


INDEX_BAD = {
    "format missing": {"plugins": {}},
    "plugins a list": {"format": 1, "plugins": []},
    "version not semver": {"format": 1, "plugins": {"tool": {"versions": {"1.0.0\n": {}}}}},
    "absolute file": entry(file="/etc/passwd"),
    "dotdot file": entry(file="plugins/../../x"),
    "signed a string": entry(signed="yes"),
    "imports a string": entry(imports="wasi:cli"),
    "manifest invalid": entry(manifest="[plugin]\nname = 'Bad Name'\n"),
    "manifest deep": entry(manifest="a = " + "[" * 5000 + "]" * 5000),
    "publisher a number": {"format": 1, "plugins": {"tool": {"versions": {}, "publisher": 1}}},
    "highest not semver": {
        "format": 1,
        "plugins": {"tool": {"versions": {}, "highest-version": "x"}},
    },
}


@pytest.mark.parametrize("doc", INDEX_BAD.values(), ids=INDEX_BAD.keys())
def test_registry_index_fields_are_type_checked(tmp_path: Path, doc: Any) -> None:
    reg = Registry(tmp_path)
    reg.index_path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="damaged"):
        reg.list()
    with pytest.raises(RegistryError):
        reg.get("tool")


def test_registry_get_parses_the_index_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path)
    reg.index_path.write_text(json.dumps(entry()))
    from wasmplug._sandbox.manifest import Manifest

    calls = []
    real = Manifest.from_toml.__func__  # type: ignore[attr-defined]

    def counting(cls: type, text: str, **kw: Any) -> Manifest:
        calls.append(text)
        return real(cls, text, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(Manifest, "from_toml", classmethod(counting))
    assert reg.get("tool").version == "1.0.0"
    assert len(calls) == 1


# -- the application's grants file ------------------------------------------------------

POLICY_BAD = {
    "grants a list": 'grants = ["x"]',
    "pattern not a table": '[grants]\n"acme:*" = 3',
    "env value a number": '[grants."acme:*"]\nenv = { K = 1 }',
    "filesystem value a list": '[grants."acme:*"]\nfilesystem = { "/d" = ["/srv"] }',
    "interfaces a string": '[grants."acme:*"]\nhost-interfaces = "a:b/c"',
    "hosts of numbers": '[grants."acme:*"]\nallowed-outbound-hosts = [1]',
    "unknown key": '[grants."acme:*"]\nsockets = true',
    "unknown top-level key": "other = 1",
    "capabilities of numbers": '[grants."acme:*"]\ncapabilities = [1]',
    "filesystem value a number": '[grants."acme:*"]\nfilesystem = { "/d" = 5 }',
    "an integer tomllib cannot hold": '[grants."acme:*"]\nenv = { K = ' + "9" * 5000 + " }",
    "nested too deeply": '[grants."acme:*"]\nenv = { K = ' + "[" * 5000 + "]" * 5000 + " }",
    "not toml": "[grants",
    "not utf-8": b"\xff\xfe",
}


@pytest.mark.parametrize("text", POLICY_BAD.values(), ids=POLICY_BAD.keys())
def test_grant_policy_file_is_type_checked(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "grants.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(GrantPolicyError) as info:
        GrantPolicy.from_toml(path)
    assert not isinstance(info.value, ManifestError)
    assert info.value.problems


def test_grant_policy_file_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "grants.toml"
    path.write_text('[grants.a]\nenv = { K = 1 }\n[grants.b]\nsockets = 1\nhost-interfaces = "x"\n')
    with pytest.raises(GrantPolicyError) as info:
        GrantPolicy.from_toml(path)
    assert len(info.value.problems) == 3


def test_grant_policy_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "grants.toml"
    path.write_text(
        '[grants."acme:*"]\nfilesystem = { "/d" = "/srv/d", "/o" = "/srv/o:rw" }\n'
        'env = { K = "v" }\nhost-interfaces = ["a:b/c@1.0.0"]\n'
    )
    grants = GrantPolicy.from_toml(path).grants["acme:*"]
    assert grants.filesystem["/o"].mode == "rw"
    assert grants.env == {"K": "v"}


# -- the one atomic-write helper --------------------------------------------------------


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing_tool() -> None:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("tool failed")

    with pytest.raises(RuntimeError):
        failing_tool()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
