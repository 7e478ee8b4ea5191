"""Capability definitions: every built-in one carries its manifest key, validation,
grant form, prompt text and CLI display, and applications define their own."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from wasmplug import (
    Capability,
    DirGrant,
    FilesystemRequest,
    GrantPolicy,
    Grants,
    GrantStore,
    LinkError,
    Manifest,
    ManifestError,
    PermissionRequest,
    PluginHost,
)
from wasmplug._sandbox.capabilities import (
    BUILTIN,
    DECLARABLE,
    GRANT_KINDS,
    declared_capabilities,
    requested_permissions,
    resolve,
    show_grants,
)
from wasmplug._sandbox.grantstore import grants_from_json, grants_to_json, merge_grants

# Per capability with a manifest key: a valid and an invalid declared value, and a grant.
DECLARED: dict[str, tuple[Any, Any, Any]] = {
    "filesystem": (
        (FilesystemRequest("/data", "rw"),),
        (FilesystemRequest("data"),),
        {"/data": DirGrant(Path("/srv/data"), "rw")},
    ),
    "env": (("API_KEY",), ("1BAD",), {"API_KEY": "secret"}),
    "allowed-outbound-hosts": (
        ("https://api.example.com",),
        ("ftp://x",),
        ("https://api.example.com",),
    ),
    "host-interfaces": (("acme:db/query@1.0.0",), ("Not An Interface",), {"acme:db/query@1.0.0"}),
    "application": (("test:run-commands",), ("Not An Id",), {"test:run-commands"}),
}
TOML_GRANT = {
    "filesystem": '{ "/data" = "/srv/data:rw" }',
    "env": '{ API_KEY = "secret" }',
    "allowed-outbound-hosts": '["https://api.example.com"]',
    "host-interfaces": '["acme:db/query@1.0.0"]',
    "capabilities": '["test:run-commands"]',
}


def test_ids_are_unique_and_every_declarable_one_is_covered() -> None:
    assert len({c.id for c in BUILTIN}) == len(BUILTIN)
    assert {c.manifest_key for c in DECLARABLE} == set(DECLARED)


@pytest.mark.parametrize("cap", BUILTIN, ids=lambda c: c.id)
def test_every_builtin_capability_has_prompt_text(cap: Capability) -> None:
    assert cap.display_name[0].isupper()
    assert cap.describe("x") == f"{cap.display_name}: x"
    assert Capability.get(cap.id) is cap
    assert pickle.loads(pickle.dumps(cap)) is cap
    assert cap in list(Capability)


@pytest.mark.parametrize("cap", DECLARABLE, ids=lambda c: c.id)
def test_every_manifest_key_is_validated_by_its_capability(cap: Capability) -> None:
    good, bad, _ = DECLARED[cap.manifest_key or ""]
    m = Manifest(name="tool", **{cap.manifest_attr: good})
    assert declared_capabilities(m)[cap.manifest_key or ""]
    assert requested_permissions(m, frozenset(good) if cap.id == "host-interface" else frozenset())
    with pytest.raises(ManifestError) as info:
        Manifest(name="tool", **{cap.manifest_attr: bad})
    assert info.value.problems[0].startswith(f"capabilities.{cap.manifest_key}[0]")


@pytest.mark.parametrize("cap", GRANT_KINDS, ids=lambda c: c.grant_key or c.id)
def test_every_grant_round_trips_merges_and_shows(cap: Capability) -> None:
    value = DECLARED[cap.grant_key or ""][2] if cap.grant_key in DECLARED else {"acme:x"}
    grants = Grants(**{cap.grant_attr: value})
    data = json.loads(json.dumps(grants_to_json(grants)))
    assert grants_from_json(data) == grants
    assert show_grants(grants)
    assert merge_grants(Grants(), grants) == grants
    assert merge_grants(grants, Grants()) == grants
    with pytest.raises(ValueError, match=cap.grant_key or ""):
        grants_from_json({cap.grant_key: 42})


@pytest.mark.parametrize("cap", GRANT_KINDS, ids=lambda c: c.grant_key or c.id)
def test_every_grant_reads_from_a_grants_file(cap: Capability, tmp_path: Path) -> None:
    path = tmp_path / "grants.toml"
    path.write_text(f'[grants."acme:*"]\n{cap.grant_key} = {TOML_GRANT[cap.grant_key or ""]}\n')
    grants = GrantPolicy.from_toml(path).grants["acme:*"]
    assert cap.granted_in(grants) or cap.grant_key == "capabilities"


@pytest.mark.parametrize("cap", DECLARABLE, ids=lambda c: c.id)
def test_every_capability_is_declared_and_granted_to_be_effective(
    cap: Capability, tmp_path: Path
) -> None:
    good, _, grant = DECLARED[cap.manifest_key or ""]
    if cap.manifest_key == "filesystem":
        grant = {"/data": DirGrant(tmp_path, "rw")}
    m = Manifest(name="tool", **{cap.manifest_attr: good})
    key = cap.grant_attr
    denied = resolve(m, Grants())
    granted = resolve(m, Grants(**{key: grant}))
    try:
        if cap.manifest_key != "host-interfaces":  # a link-time check, not a sandbox field
            assert not cap.granted_in(denied)
            assert denied.denied
            assert cap.granted_in(granted)
            assert not granted.denied
    finally:
        denied.close()
        granted.close()


# -- application-defined capabilities ------------------------------------------------------

RUN = Capability("test:run-commands", "Run commands", "run programs on this computer")
DB = Capability(
    "test:db-write", "Change the database", "write rows", imports=("acme:db/write@1.0.0",)
)


def test_an_application_capability_is_asked_remembered_and_checked(tmp_path: Path) -> None:
    asked: list[PermissionRequest] = []

    def prompt(request: PermissionRequest) -> Grants:
        asked.append(request)
        return Grants(capabilities={p.capability.id for p in request.new})

    policy = GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "g.json"))
    perms = (RUN.permission(),)
    request = PermissionRequest("p", "1.0.0", "k", "Acme", "00", perms, perms)
    grants = policy.decide(request)
    assert RUN.granted_in(grants)
    assert not DB.granted_in(grants)
    assert asked[0].new[0].description == "Run commands (run programs on this computer)"
    again = GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "g.json")).decide(request)
    assert RUN.granted_in(again)
    assert len(asked) == 1  # remembered
    assert "capability test:run-commands (Run commands)" in show_grants(again)


def test_an_application_capability_gates_the_imports_it_names(tmp_path: Path) -> None:
    wat = """(component
      (import "acme:db/write@1.0.0" (instance $db (export "put" (func (param "k" string)))))
      (core module $m (func (export "one") (result i32) i32.const 1))
      (core instance $i (instantiate $m))
      (func (export "one") (result u32) (canon lift (core func $i "one"))))"""
    manifest = Manifest(name="tool", host_interfaces=("acme:db/write@1.0.0",))
    assert [p.capability for p in requested_permissions(manifest)] == [DB]
    with PluginHost(cache_dir=False) as host:
        host.provide("acme:db/write@1.0.0", {"put": lambda k: None})
        with pytest.raises(LinkError, match="needs capability test:db-write"):
            host.load(wat.encode(), allow_unsigned=True, manifest=manifest)
        plugin = host.load(
            wat.encode(),
            allow_unsigned=True,
            manifest=manifest,
            grants=Grants(capabilities={"test:db-write"}),
        )
        assert DB.granted_in(plugin.sandbox)
        assert plugin.call("one") == 1


@pytest.mark.parametrize("bad", ["run", "Acme:Run", "acme:run\n", "", "acme:"])
def test_application_capability_ids_are_namespaced(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace:kebab-name"):
        Capability(bad, "X")


def test_an_id_cannot_be_defined_twice_differently() -> None:
    assert Capability("test:run-commands", "Run commands", "run programs on this computer") == RUN
    with pytest.raises(ValueError, match="already defined"):
        Capability("test:run-commands", "Something else")
    with pytest.raises(ValueError, match="namespace"):  # built-in ids are not namespaced
        Capability("http", "Not the built-in one")
