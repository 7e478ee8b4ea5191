"""A new kind of capability is one definition: this test defines one (program
arguments a plugin may be started with) and follows it through the manifest TOML,
pack, sign and read back, the prompt, the grant store, a grants file, the CLI
(`inspect`, `call --grant`, `grants list`) and the link step, without any other
code knowing about it."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import wasmtime
from wasmtime import WasiConfig

import wasmplug.authoring as authoring
from support.plugins import packed_and_signed
from support.wasi_wat import ENV_WAT
from wasmplug import (
    Capability,
    CapabilityError,
    GrantPolicy,
    GrantPolicyError,
    Grants,
    GrantStore,
    GrantStoreError,
    Manifest,
    ManifestError,
    Permission,
    PermissionRequest,
    PluginHost,
    WasiSettings,
)
from wasmplug._cli.main import main as cli
from wasmplug._sandbox.capabilities import sandbox_from_wire

_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


class _Arguments(Capability):
    """Program arguments: a plugin declares the flags it may be started with
    (``test-arguments = ["--fast"]``), the application grants some, and each
    instance's argv carries the granted ones."""

    manifest_key = "test-arguments"
    grant_key = "test-arguments"
    cli_prefix = "arg"
    cli_usage = "arg:--FLAG"

    def check_declared(self, item: str) -> str | None:
        return None if _FLAG.fullmatch(item) else f"{item!r} is not a flag like '--fast'"

    def configure_wasi(self, config: WasiConfig, effective: tuple[str, ...]) -> None:
        config.argv = list(effective)  # wasmtime appends them to argv[0], "plugin"


ARGUMENTS = _Arguments("test:arguments", "Start with arguments", "flags it runs with")

# Returns how many program arguments (wasi:cli/environment get-arguments) it sees.
ARGV_COUNTER = """(component
  (import "wasi:cli/environment@0.2.0" (instance $env
    (export "get-arguments" (func (result (list string))))))
  (core module $mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $m (instantiate $mem))
  (alias core export $m "memory" (core memory $memory))
  (alias core export $m "realloc" (core func $realloc))
  (core func $get (canon lower (func $env "get-arguments") (memory $memory) (realloc $realloc)))
  (core module $main
    (import "host" "get" (func $get (param i32)))
    (import "host" "memory" (memory 1))
    (func (export "count") (result i32)
      (call $get (i32.const 0))
      (i32.load offset=4 (i32.const 0))))
  (core instance $i (instantiate $main (with "host" (instance
    (export "get" (func $get)) (export "memory" (memory $memory))))))
  (func (export "argument-count") (result u32) (canon lift (core func $i "count"))))"""

MANIFEST = """
[plugin]
name = "argv-counter"
version = "1.0.0"

[capabilities]
test-arguments = ["--fast", "--verbose"]
"""


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, authoring.KeyFiles]:
    """The counter, packed with MANIFEST and signed."""
    path, keys = packed_and_signed(tmp_path, ARGV_COUNTER, MANIFEST)
    assert Manifest.from_toml(MANIFEST).declarations["test-arguments"] == ("--fast", "--verbose")
    return path, keys


def test_the_manifest_declares_it_and_its_rules_apply() -> None:
    m = Manifest.from_toml(MANIFEST)
    assert ARGUMENTS.declared_in(m) == ("--fast", "--verbose")
    assert m == Manifest(
        name="argv-counter", version="1.0.0", test_arguments=["--fast", "--verbose"]
    )
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(MANIFEST.replace('"--verbose"', '"verbose", 3'))
    assert list(info.value.problems) == [
        "capabilities.test-arguments[2]: must be a string, got int",
        "capabilities.test-arguments[1]: 'verbose' is not a flag like '--fast'",
    ]
    with pytest.raises(ManifestError, match=r"test-arguments\[0\]: 'x' is not a flag"):
        Manifest(name="t", test_arguments=["x"])
    with pytest.raises(ManifestError, match="contains duplicates"):
        Manifest(name="t", test_arguments=["--a", "--a"])


def test_it_flows_from_the_packed_manifest_to_the_instance(
    signed: tuple[Path, authoring.KeyFiles], tmp_path: Path
) -> None:
    path, keys = signed
    asked: list[PermissionRequest] = []

    def prompt(request: PermissionRequest) -> Grants:
        asked.append(request)
        return Grants(test_arguments={"--fast"})

    store = GrantStore(tmp_path / "grants.json")
    policy = GrantPolicy(prompt=prompt, store=store)
    with PluginHost(cache_dir=False, trusted_keys=[keys.public_key], policy=policy) as host:
        plugin = host.load(path)  # signed, read back, asked, granted
        assert [p.description for p in asked[0].permissions] == [
            "Start with arguments: --fast",
            "Start with arguments: --verbose",
        ]
        assert asked[0].permissions[0] == Permission(ARGUMENTS, "--fast")
        assert plugin.sandbox.effective["test-arguments"] == ("--fast",)
        assert "test:arguments --verbose: not granted" in plugin.sandbox.denied
        assert ARGUMENTS.granted_in(plugin.sandbox)
        assert plugin.call("argument-count") == 2  # "plugin", "--fast": linked per instance
        plugin.close()
        again = host.load(path)  # remembered: not asked again
        assert len(asked) == 1
        assert again.call("argument-count") == 2
        again.close()
        none = host.load(path, grants=Grants())
        assert not ARGUMENTS.granted_in(none.sandbox)
        assert none.call("argument-count") == 1
        none.close()

    stored = json.loads((tmp_path / "grants.json").read_text())
    (decision,) = stored["decisions"].values()
    assert decision["grants"] == {"test-arguments": ["--fast"]}
    assert store.list()[0].grants == Grants(test_arguments=["--fast"])


def test_grants_files_and_the_cli_know_it(
    signed: tuple[Path, authoring.KeyFiles], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = signed
    grants_file = tmp_path / "grants.toml"
    grants_file.write_text('[grants."argv-*"]\ntest-arguments = ["--fast", "--verbose"]\n')
    assert GrantPolicy.from_toml(grants_file).grants["argv-*"] == Grants(
        test_arguments={"--fast", "--verbose"}
    )
    grants_file.write_text('[grants."argv-*"]\ntest-arguments = "--fast"\n')
    with pytest.raises(ValueError, match=r"grants.argv-\*.test-arguments: expected an array"):
        GrantPolicy.from_toml(grants_file)

    assert cli(["--cache-dir", str(tmp_path / "cache"), "inspect", str(path)]) == 0
    assert "test-arguments: --fast, --verbose" in capsys.readouterr().out
    call = ["call", str(path), "argument-count", "--allow-unsigned", "--grant"]
    assert cli(["--cache-dir", str(tmp_path / "cache"), *call, "arg:--verbose"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert cli(["--cache-dir", str(tmp_path / "cache"), *call, "arg:"]) == 2
    assert "arg:--FLAG" in capsys.readouterr().err

    store = GrantStore(tmp_path / "g.json")
    policy = GrantPolicy(prompt=lambda r: Grants(test_arguments={"--fast"}), store=store)
    perms = (ARGUMENTS.permission("--fast"),)
    policy.decide(PermissionRequest("argv-counter", "1.0.0", None, "", "00", perms, perms))
    assert cli(["grants", "list", "--store", str(store.path)]) == 0
    assert "granted: test:arguments --fast" in capsys.readouterr().out


def test_a_kind_cannot_take_another_kinds_keys() -> None:
    class _Clash(Capability):
        manifest_key = "env"

    with pytest.raises(ValueError, match="manifest key 'env' is already used by 'environment'"):
        _Clash("test:clash", "Clash")
    with pytest.raises(KeyError):
        Capability.get("test:clash")  # nothing of it was registered

    class _Unnamed(Capability):
        grant_key = "test-arguments"

    with pytest.raises(ValueError, match="grant key 'test-arguments' is already used"):
        _Unnamed("test:unnamed", "Unnamed")


def test_grants_and_manifests_refuse_unknown_keywords() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'test_argument'"):
        Manifest(name="t", test_argument=["--fast"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'enviroment'"):
        Grants(enviroment={"A": "b"})
    with pytest.raises(TypeError, match="got a string"):
        Grants(test_arguments="--fast")  # not four one-letter flags


def test_a_kind_that_links_with_code_is_refused_for_a_worker_at_load(tmp_path: Path) -> None:
    """A worker process never runs the application's code, so a granted kind whose
    link step is code (configure_wasi) cannot be honoured there: the load fails before
    any worker starts and says what to do, rather than running without that part."""
    manifest = Manifest(name="c", test_arguments=["--fast"])
    component = bytes(wasmtime.wat2wasm(ARGV_COUNTER))
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as host:
        with pytest.raises(CapabilityError) as refused:
            host.load(
                component,
                allow_unsigned=True,
                manifest=manifest,
                grants=Grants(test_arguments={"--fast"}),
                isolation="process",
            )
        message = str(refused.value)
        assert "'test-arguments' (test:arguments) links into WASI with code" in message
        assert "_Arguments.configure_wasi" in message
        assert "wasi_settings()" in message
        assert host.plugins == []
        plugin = host.load(component, allow_unsigned=True, manifest=manifest, isolation="process")
        assert plugin.call("argument-count") == 1  # nothing of it granted: nothing to send


def test_the_refusal_leaves_no_temporary_compile_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a host without a compile cache writes the component to a temporary
    one for its workers; a load refused while the worker settings were made left that
    directory (and the compiled component in it) behind, once per attempt."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # count only this test's dirs
    component = bytes(wasmtime.wat2wasm(ARGV_COUNTER))
    with PluginHost(cache_dir=False, spare_workers=0) as host:
        for _ in range(2):
            with pytest.raises(CapabilityError, match="links into WASI with code"):
                host.load(
                    component,
                    allow_unsigned=True,
                    manifest=Manifest(name="c", test_arguments=["--fast"]),
                    grants=Grants(test_arguments={"--fast"}),
                    isolation="process",
                )
    assert list(temp.glob("wasmplug-compiled-*")) == []


class _Flags(Capability):
    """The same kind of grant as _Arguments, with its link step as data: the granted
    flags are program arguments, and ``FLAGS=<count>`` is in the environment."""

    manifest_key = "test-flags"
    grant_key = "test-flags"

    def wasi_settings(self, effective: tuple[str, ...]) -> WasiSettings:
        return WasiSettings(args=effective, env=[("FLAGS", str(len(effective)))])


FLAGS = _Flags("test:flags", "Start with flags")


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
def test_a_kind_that_links_as_data_works_in_both_tiers(tmp_path: Path, isolation: str) -> None:
    """A worker applies a WasiSettings it receives as data; in-process the default
    configure_wasi applies the same: each instance sees the same arguments and variables."""
    manifest = Manifest(name="f", test_flags=["--fast", "--verbose"], env=["HOME"])
    component = bytes(wasmtime.wat2wasm(ENV_WAT))
    grants = Grants(test_flags={"--fast", "--verbose"}, env={"HOME": "/nowhere"})
    assert FLAGS.links_wasi
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as host:
        plugin = host.load(
            component, allow_unsigned=True, manifest=manifest, grants=grants, isolation=isolation
        )
        # argv: "plugin", "--fast", "--verbose"; env: HOME (the env grant), FLAGS.
        assert (plugin.call("arg-count"), plugin.call("env-count")) == (3, 2)
        plugin.reset()  # a fresh instance links it again
        assert (plugin.call("arg-count"), plugin.call("env-count")) == (3, 2)
        bare = host.load(component, allow_unsigned=True, manifest=manifest, isolation=isolation)
        assert (bare.call("arg-count"), bare.call("env-count")) == (1, 0)  # nothing linked


def test_wasi_settings_check_their_data() -> None:
    settings = WasiSettings(args=["--a"], env=[("K", "v")])
    assert settings.args == ("--a",)
    assert settings.env == (("K", "v"),)
    assert WasiSettings.from_wire(settings.to_wire()) == settings
    with pytest.raises(TypeError, match="sequence of str"):
        WasiSettings(args="--a")
    with pytest.raises(TypeError, match="sequence of str"):
        WasiSettings(args=[1])
    with pytest.raises(ValueError, match="NUL"):
        WasiSettings(args=["a\0b"])
    with pytest.raises(ValueError, match="names without '='"):
        WasiSettings(env=[("A=B", "v")])
    with pytest.raises(ValueError, match="pairs"):
        WasiSettings(env=[("A", "v", "w")])
    with pytest.raises(CapabilityError, match="malformed WASI settings"):
        WasiSettings.from_wire([["--a"], [["K"]]])


@pytest.mark.parametrize(
    "settings",
    [
        {"args": ["\ud800"]},
        {"env": [("K\udc00", "v")]},
        {"env": [("K", "a\ud800")]},
        {"env": [("K", "a\0b")]},
    ],
    ids=["arg-surrogate", "env-name-surrogate", "env-value-surrogate", "env-value-nul"],
)
def test_wasi_settings_refuse_strings_wasi_cannot_carry(settings: dict[str, object]) -> None:
    """Regression: a lone surrogate passed the check and failed to encode only when an
    instance was made (a raw UnicodeEncodeError from load, or from the worker's codec)."""
    with pytest.raises(ValueError, match=r"lone surrogate|NUL"):
        WasiSettings(**settings)  # type: ignore[arg-type]
    with pytest.raises(CapabilityError, match="malformed WASI settings"):
        WasiSettings.from_wire([settings.get("args", []), settings.get("env", [])])


class _NotData(Capability):
    """A kind whose wasi_settings returns something that is not a WasiSettings."""

    manifest_key = "test-not-data"
    grant_key = "test-not-data"

    def wasi_settings(self, effective: tuple[str, ...]) -> WasiSettings:
        return {"args": list(effective)}  # type: ignore[return-value]


NOT_DATA = _NotData("test:not-data", "Not data")


@pytest.mark.parametrize("isolation", ["inprocess", "process"])
def test_a_kind_whose_link_step_is_not_wasi_settings_is_a_capability_error(
    tmp_path: Path, isolation: str
) -> None:
    """Regression: a raw AttributeError ('dict' object has no attribute 'apply' or
    'to_wire') came out of load."""
    manifest = Manifest(name="f", test_not_data=["--fast"])
    component = bytes(wasmtime.wat2wasm(ENV_WAT))
    grants = Grants(test_not_data={"--fast"})
    with PluginHost(cache_dir=tmp_path / "cache", spare_workers=0) as host:
        with pytest.raises(CapabilityError, match=r"_NotData\.wasi_settings\(\) returned a dict"):
            host.load(
                component,
                allow_unsigned=True,
                manifest=manifest,
                grants=grants,
                isolation=isolation,
            )


def test_a_worker_refuses_a_part_of_a_kind_it_does_not_define() -> None:
    with pytest.raises(CapabilityError, match="'test-flags' is not defined in the worker"):
        sandbox_from_wire({"kinds": {"test-flags": ["--fast"]}, "linked": []})


class _Broken(Capability):
    """A kind whose readers fail in ways they should not (a bug in an application's kind)."""

    manifest_key = "test-broken"
    grant_key = "test-broken"

    def parse_declared(self, value: object, where: str, problem: object) -> tuple[str, ...]:
        raise KeyError("a bug")

    def grant_from_data(self, value: object, where: str, *, toml: bool = False) -> object:
        raise AttributeError("a bug")


BROKEN = _Broken("test:broken", "Broken")


def test_a_kind_that_fails_to_read_its_data_gives_the_parsers_typed_errors(tmp_path: Path) -> None:
    text = '[plugin]\nname = "t"\nversion = "1.0.0"\n[capabilities]\ntest-broken = ["x"]\n'
    with pytest.raises(ManifestError, match="KeyError"):
        Manifest.from_toml(text)
    grants_file = tmp_path / "grants.toml"
    grants_file.write_text('[grants."t"]\ntest-broken = ["x"]\n')
    with pytest.raises(GrantPolicyError, match=r"grants\.t: AttributeError"):
        GrantPolicy.from_toml(grants_file)
    store = tmp_path / "grants.json"
    store.write_text(
        json.dumps(
            {
                "decisions": {
                    "t|unsigned|00": {
                        "plugin": "t",
                        "publisher": None,
                        "sha256": "00",
                        "answered": [],
                        "grants": {"test-broken": ["x"]},
                        "decided-at": 0.0,
                    }
                }
            }
        )
    )
    with pytest.raises(GrantStoreError, match="AttributeError"):
        GrantStore(store).list()
