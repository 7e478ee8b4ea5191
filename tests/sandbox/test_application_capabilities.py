"""Application-defined capabilities end to end: declared in the manifest TOML (or in
code, through the same rules), packed, signed and read back, asked for, granted and
remembered, shown by the CLI, and checked by what the application provides: the
plugin holds declared ∩ granted, never a capability it did not declare."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

import wasmplug.authoring as authoring
from support.plugins import packed_and_signed
from wasmplug import (
    Capability,
    GrantPolicy,
    Grants,
    GrantStore,
    Manifest,
    ManifestError,
    PermissionRequest,
    PluginHost,
    current_plugin,
)
from wasmplug._cli.main import _parse_grant
from wasmplug._cli.main import main as cli

SHELL = Capability("test:shell", "Run commands", "run programs on this computer")
SHELL_INTERFACE = "acme:tools/shell@1.0.0"

# Calls the application's shell interface; returns what it returned.
COMPONENT = f"""(component
  (import "{SHELL_INTERFACE}" (instance $shell (export "run" (func (result u32)))))
  (core func $run (canon lower (func $shell "run")))
  (core module $m
    (import "host" "run" (func $run (result i32)))
    (func (export "go") (result i32) (call $run)))
  (core instance $i (instantiate $m (with "host" (instance (export "run" (func $run))))))
  (func (export "go") (result u32) (canon lift (core func $i "go"))))"""

MANIFEST = f"""
[plugin]
name = "runner"
version = "1.0.0"

[capabilities]
host-interfaces = ["{SHELL_INTERFACE}"]
application = ["test:shell", "test:never-defined"]
"""


def run() -> int:
    """The application's ``run``: works only for a plugin that holds the capability."""
    plugin = current_plugin()
    return int(plugin is not None and SHELL.granted_in(plugin.sandbox))


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, authoring.KeyFiles]:
    return packed_and_signed(tmp_path, COMPONENT, MANIFEST)


def test_declared_in_toml_and_in_code_by_the_same_rules() -> None:
    m = Manifest.from_toml(MANIFEST)
    assert m.application == ("test:shell", "test:never-defined")
    same = Manifest(
        name="runner",
        version="1.0.0",
        host_interfaces=[SHELL_INTERFACE],
        application=["test:shell", "test:never-defined"],
    )
    assert m == same
    bad = MANIFEST.replace('"test:shell"', '"Shell", 7, "test:shell"')
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(bad)
    assert "capabilities.application[1]: must be a string, got int" in info.value.problems
    assert (
        "capabilities.application[0]: 'Shell' is not a capability id like 'acme:run-commands'"
        in info.value.problems
    )
    with pytest.raises(ManifestError, match=r"capabilities.application\[0\]: 'shell' is not"):
        Manifest(name="runner", application=["shell"])
    with pytest.raises(ManifestError, match=r"capabilities\.application: must be an array"):
        Manifest.from_toml(MANIFEST.replace('["test:shell", "test:never-defined"]', '"test:shell"'))


def test_packed_signed_asked_granted_and_checked_by_the_application(
    signed: tuple[Path, authoring.KeyFiles], tmp_path: Path
) -> None:
    path, keys = signed
    asked: list[PermissionRequest] = []

    def prompt(request: PermissionRequest) -> Grants:
        asked.append(request)
        return Grants(capabilities={p.capability.id for p in request.new})

    policy = GrantPolicy(prompt=prompt, store=GrantStore(tmp_path / "grants.json"))
    with PluginHost(cache_dir=False, trusted_keys=[keys.public_key], policy=policy) as host:
        host.provide(SHELL_INTERFACE, {"run": run})
        plugin = host.load(path)
        assert plugin.manifest.application == ("test:shell", "test:never-defined")
        # An id the application never defined cannot be asked for, and is noted.
        assert [p.description for p in asked[0].permissions] == [
            "Run commands (run programs on this computer)"
        ]
        assert "capability test:never-defined: not defined by the application" in (
            plugin.sandbox.denied
        )
        assert plugin.sandbox.capabilities == {"test:shell"}
        assert plugin.call("go") == 1
        plugin.close()

        # Explicit grants: declared but not granted -> the application refuses.
        denied = host.load(path, grants=Grants())
        assert "capability test:shell: not granted" in denied.sandbox.denied
        assert denied.call("go") == 0
        denied.close()

        # Granted but not declared -> not held either.
        undeclared = Manifest(name="runner", host_interfaces=[SHELL_INTERFACE])
        sneaky = host.load(
            bytes(wasmtime.wat2wasm(COMPONENT)),
            allow_unsigned=True,
            manifest=undeclared,
            grants=Grants(capabilities={"test:shell"}),
        )
        assert not SHELL.granted_in(sneaky.sandbox)
        assert sneaky.call("go") == 0
        sneaky.close()
    assert len(asked) == 1


def test_the_cli_shows_and_grants_them(
    signed: tuple[Path, authoring.KeyFiles], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = signed
    assert cli(["--cache-dir", str(tmp_path / "cache"), "inspect", str(path)]) == 0
    assert "application: test:shell, test:never-defined" in capsys.readouterr().out

    granted: dict[str, object] = {}
    _parse_grant("cap:test:shell", granted)
    _parse_grant("cap:acme:db-write", granted)
    assert Grants(granted=granted) == Grants(capabilities={"test:shell", "acme:db-write"})

    store = GrantStore(tmp_path / "g.json")
    perms = (SHELL.permission(),)
    GrantPolicy(prompt=lambda r: Grants(capabilities={"test:shell"}), store=store).decide(
        PermissionRequest("runner", "1.0.0", None, "", "00", perms, perms)
    )
    assert cli(["grants", "list", "--store", str(store.path)]) == 0
    assert "granted: capability test:shell (Run commands)" in capsys.readouterr().out
