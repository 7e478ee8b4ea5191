"""Capabilities and grant decisions: denied without a grant, prompts, remembered answers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from support import http as support_http
from support.plugins import GREETER_HOST_INTERFACE
from wasmplug import (
    DirGrant,
    ErrorResult,
    FilesystemRequest,
    Grants,
    LinkError,
    Manifest,
    Plugin,
    PluginHost,
)
from wasmplug._sandbox.capabilities import (
    BUILTIN,
    Capability,
    capability_for_import,
    requested_permissions,
)
from wasmplug._sandbox.grantstore import GrantPolicy, GrantStore, PermissionRequest
from wasmplug._sandbox.http import HTTP_INTERFACE

Loader = Callable[..., Plugin]

SENSITIVE = "demo:x/secret@1.0.0"
SENSITIVE_WAT = b"""
(component
  (import "demo:x/secret@1.0.0" (instance $h (export "peek" (func (result u32)))))
  (core func $peek (canon lower (func $h "peek")))
  (core module $m
    (import "h" "peek" (func $p (result i32)))
    (func (export "run") (result i32) call $p)
  )
  (core instance $hi (export "peek" (func $peek)))
  (core instance $i (instantiate $m (with "h" (instance $hi))))
  (func (export "run") (result u32) (canon lift (core func $i "run")))
)
"""


def greeter_manifest(**kwargs: object) -> Manifest:
    return Manifest(name="greeter", host_interfaces=(GREETER_HOST_INTERFACE,), **kwargs)  # type: ignore[arg-type]


def _filesystem_read(load: Loader, tmp: Path, granted: bool) -> bool:
    (tmp / "f.txt").write_text("hi")
    m = greeter_manifest(filesystem=(FilesystemRequest("/data", "ro"),))
    plugin = load(manifest=m, grants=Grants(filesystem={"/data": tmp}) if granted else Grants())
    try:
        return bool(plugin.call("read-file", "/data/f.txt") == "hi")
    except ErrorResult:
        return False


def _filesystem_write(load: Loader, tmp: Path, granted: bool) -> bool:
    m = greeter_manifest(filesystem=(FilesystemRequest("/data", "rw"),))
    mode = "rw" if granted else "ro"
    plugin = load(manifest=m, grants=Grants(filesystem={"/data": DirGrant(tmp, mode)}))
    try:
        plugin.call("write-file", "/data/out.txt", "x")
    except ErrorResult:
        return False
    return (tmp / "out.txt").read_text() == "x"


def _environment(load: Loader, tmp: Path, granted: bool) -> bool:
    m = greeter_manifest(env=("TOKEN",))
    plugin = load(manifest=m, grants=Grants(env={"TOKEN": "s3cret"}) if granted else Grants())
    return bool(plugin.call("get-env", "TOKEN") == "s3cret")


def _http(load: Loader, tmp: Path, granted: bool) -> bool:
    """A real request to a loopback server: "works" means the server received it."""
    with support_http.running_server() as server, PluginHost(cache_dir=tmp / "http-cache") as host:
        allowed = (server.url,)
        manifest = Manifest(
            name="fetcher", host_interfaces=(HTTP_INTERFACE,), allowed_outbound_hosts=allowed
        )
        grants = Grants(allowed_outbound_hosts=allowed) if granted else Grants()
        try:
            plugin = host.load(
                support_http.COMPONENT, allow_unsigned=True, manifest=manifest, grants=grants
            )
            support_http.send(plugin, server.url + "/probe")
        except (LinkError, ErrorResult):
            pass
        seen = server.paths()
    assert seen in ([], ["/probe"])
    return seen == ["/probe"]


def _host_interface(load: Loader, tmp: Path, granted: bool) -> bool:
    with PluginHost(cache_dir=tmp / "cache") as host:
        host.provide(SENSITIVE, {"peek": lambda: 7}, sensitive=True)
        grants = Grants(host_interfaces={SENSITIVE}) if granted else Grants()
        try:
            plugin = host.load(
                SENSITIVE_WAT,
                allow_unsigned=True,
                manifest=Manifest(name="s", host_interfaces=(SENSITIVE,)),
                grants=grants,
            )
        except LinkError:
            return False
        return bool(plugin.call("run") == 7)


SCENARIOS = {
    Capability.FILESYSTEM_READ: _filesystem_read,
    Capability.FILESYSTEM_WRITE: _filesystem_write,
    Capability.ENVIRONMENT: _environment,
    Capability.HTTP: _http,
    Capability.HOST_INTERFACE: _host_interface,
}


@pytest.mark.parametrize("capability", BUILTIN, ids=lambda c: c.value)
def test_every_capability_is_denied_without_a_grant(
    capability: Capability, load_greeter: Loader, tmp_path: Path
) -> None:
    scenario = SCENARIOS[capability]  # a new capability must get a scenario here
    assert scenario(load_greeter, tmp_path, False) is False
    assert scenario(load_greeter, tmp_path, True) is True


@pytest.mark.parametrize("capability", BUILTIN, ids=lambda c: c.value)
def test_every_capability_has_a_display_name(capability: Capability) -> None:
    assert capability.display_name
    assert capability.display_name[0].isupper()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wasi:filesystem/types@0.2.0", Capability.FILESYSTEM_READ),
        ("wasi:cli/environment@0.2.0", Capability.ENVIRONMENT),
        ("wasmplug:host/http@0.1.0", Capability.HTTP),
        ("acme:db/query@1.0.0", Capability.HOST_INTERFACE),
        ("wasi:clocks/wall-clock@0.2.0", None),
        ("wasi:random/random@0.2.0", None),
        ("wasi:sockets/tcp@0.2.0", None),
        ("wasi:http/outgoing-handler@0.2.0", None),
    ],
    ids=lambda v: str(v),
)
def test_import_table(name: str, expected: Capability | None) -> None:
    assert capability_for_import(name) is expected


def request_for(manifest: Manifest, sha: str = "aa" * 32) -> PermissionRequest:
    perms = requested_permissions(manifest)
    return PermissionRequest(manifest.name, manifest.version, "k1", "Acme", sha, perms, perms)


def test_prompt_is_asked_once_and_remembered(tmp_path: Path) -> None:
    asked: list[PermissionRequest] = []

    def prompt(req: PermissionRequest) -> Grants:
        asked.append(req)
        return Grants(env={"A": "1"})

    policy = GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "grants.json"))
    m = Manifest(name="p", env=("A",))
    assert policy.decide(request_for(m)).env == {"A": "1"}
    assert policy.decide(request_for(m)).env == {"A": "1"}
    assert len(asked) == 1
    assert [p.description for p in asked[0].permissions] == ["Read an environment variable: A"]
    assert (tmp_path / "grants.json").stat().st_mode & 0o777 == 0o600

    # A new binary (different sha256) asks again: grants are not inherited.
    policy.decide(request_for(m, sha="bb" * 32))
    assert len(asked) == 2

    # Asking for more asks again, and says what is new.
    bigger = Manifest(name="p", env=("A", "B"))
    policy.decide(request_for(bigger))
    assert len(asked) == 3
    assert [p.target for p in asked[2].new] == ["B"]

    # A fresh policy over the same file remembers.
    again = GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "grants.json"))
    again.decide(request_for(bigger))
    assert len(asked) == 3


def test_denial_is_remembered_and_grants_nothing(tmp_path: Path) -> None:
    calls = []
    policy = GrantPolicy(
        prompt=lambda req: calls.append(req), store=GrantStore(tmp_path / "g.json")
    )
    m = Manifest(name="p", env=("A",))
    assert policy.decide(request_for(m)) == Grants()
    assert policy.decide(request_for(m)) == Grants()
    assert len(calls) == 1


def test_static_grants_win_without_prompting(tmp_path: Path) -> None:
    def prompt(req: PermissionRequest) -> Grants:
        raise AssertionError("must not prompt")

    policy = GrantPolicy(grants={"acme:*": Grants(env={"A": "x"})}, prompt=prompt, store=False)
    assert policy.decide(request_for(Manifest(name="acme:tool", env=("A",)))).env == {"A": "x"}


def test_grant_store_list_and_revoke(tmp_path: Path) -> None:
    store = GrantStore(tmp_path / "g.json")
    policy = GrantPolicy(prompt=lambda req: Grants(env={"A": "1"}), store=store)
    policy.decide(request_for(Manifest(name="p", env=("A",))))
    policy.decide(request_for(Manifest(name="q", env=("A",))))
    assert [d.plugin for d in store.list()] == ["p", "q"]
    assert store.revoke("p") == 1
    assert [d.plugin for d in store.list()] == ["q"]


def test_policy_from_toml(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "grants.toml"
    config.write_text(
        f'[grants."acme:*"]\nfilesystem = {{ "/data" = "{data}:rw" }}\nenv = {{ K = "v" }}\n'
    )
    policy = GrantPolicy.from_toml(config, store=False)
    g = policy.decide(request_for(Manifest(name="acme:x")))
    assert g.filesystem["/data"] == DirGrant(data, "rw")
    assert g.env == {"K": "v"}


def test_host_uses_its_policy(shared_host: PluginHost, greeter_wasm: Path, tmp_path: Path) -> None:
    asked: list[PermissionRequest] = []

    def prompt(req: PermissionRequest) -> Grants:
        asked.append(req)
        return Grants(env={"TOKEN": "t"})

    with PluginHost(
        policy=GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "g.json"))
    ) as host:
        host.provide(GREETER_HOST_INTERFACE, {"log": lambda m: None, "get-config": lambda k: None})
        for _ in range(2):
            plugin = host.load(
                greeter_wasm, allow_unsigned=True, manifest=greeter_manifest(env=("TOKEN",))
            )
            assert plugin.call("get-env", "TOKEN") == "t"
    assert len(asked) == 1
    assert asked[0].publisher is None  # unsigned
    assert os.path.exists(tmp_path / "g.json")
