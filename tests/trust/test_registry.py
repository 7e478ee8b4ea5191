"""The plugin registry: install/list/remove/get, refusals that change nothing on disk,
interrupted and concurrent installs, discovery, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime.component import Component

import wasmplug
from wasmplug import (
    InvalidComponentError,
    LinkError,
    ManifestError,
    PluginHost,
    RevokedError,
    SignatureInvalidError,
    TrustedKey,
    TrustStore,
    UnsignedPluginError,
    UntrustedKeyError,
)
from wasmplug._cli.main import main
from wasmplug._errors import (
    NameConflictError,
    PluginNotFoundError,
    RegistryError,
    RollbackError,
    VersionConflictError,
)
from wasmplug._sandbox.manifest import MANIFEST_SECTION
from wasmplug._semver import matches_spec, version_key
from wasmplug._trust import signing as _signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.registry import Registry

HOST_IFACE = "demo:plugin/host@0.1.0"


def component(n: int = 1, imports: tuple[str, ...] = ()) -> bytes:
    decls = "\n".join(f'(import "{name}" (instance))' for name in imports)
    return bytes(
        wasmtime.wat2wasm(f"""
(component
  {decls}
  (core module $m (func (export "one") (result i32) i32.const {n}))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)""")
    )


def manifest_toml(name: str, version: str, host_interfaces: tuple[str, ...] = ()) -> str:
    ifaces = ", ".join(f'"{i}"' for i in host_interfaces)
    return (
        f'[plugin]\nname = "{name}"\nversion = "{version}"\ndescription = "test {name}"\n'
        f"[capabilities]\nhost-interfaces = [{ifaces}]\n"
    )


def packed(
    name: str,
    version: str = "1.0.0",
    *,
    n: int = 1,
    imports: tuple[str, ...] = (),
    host_interfaces: tuple[str, ...] = (),
) -> bytes:
    text = manifest_toml(name, version, host_interfaces).encode()
    return ws.with_custom_section(component(n, imports), MANIFEST_SECTION, text)


def signed(data: bytes, pair: _signing.KeyPair) -> bytes:
    return _signing.sign(data, pair.secret_key, key_id=pair.key_id)


def snapshot(root: Path) -> tuple[list[tuple[str, str]], bytes | None]:
    """A recursive listing (with file digests) and the index bytes."""
    listing = sorted(
        (
            p.relative_to(root).as_posix(),
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
        )
        for p in root.rglob("*")
    )
    index = root / "index.json"
    return listing, index.read_bytes() if index.exists() else None


@pytest.fixture
def pair() -> _signing.KeyPair:
    return _signing.generate_keypair()


@pytest.fixture
def store(tmp_path: Path, pair: _signing.KeyPair) -> TrustStore:
    s = TrustStore(tmp_path / "trust.json")
    s.add(TrustedKey(pair.public_key, ("*",), "Tester"))
    s.save()
    return s


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
def install(reg: Registry, store: TrustStore) -> Callable[..., Any]:
    def run(source: Any, **kwargs: Any) -> Any:
        return reg.install(source, trust_store=kwargs.pop("trust_store", store), **kwargs)

    return run


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_install_list_get_remove(
    tmp_path: Path, reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    data = signed(packed("acme:tool", "1.0.0"), pair)
    info = install(write(tmp_path, "tool.wasm", data))
    assert (info.name, info.version, info.source) == ("acme:tool", "1.0.0", "registry")
    assert info.signed
    assert info.key_id == pair.key_id.hex()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.path == reg.root / "plugins" / "acme+tool" / "1.0.0" / "plugin.wasm"
    assert info.path.read_bytes() == data
    assert info.exports == ("one",)
    assert info.imports == ()
    assert info.manifest.description == "test acme:tool"
    assert reg.list() == [info]
    assert reg.get("acme:tool") == info
    assert (reg.root.stat().st_mode & 0o777) == 0o700
    entry = json.loads(reg.index_path.read_text())["plugins"]["acme:tool"]["versions"]["1.0.0"]
    assert entry["signed"] is True
    assert entry["key-id"] == pair.key_id.hex()

    assert reg.remove("acme:tool") == [info]
    assert reg.list() == []
    assert not (reg.root / "plugins" / "acme+tool").exists()
    with pytest.raises(PluginNotFoundError):
        reg.remove("acme:tool")
    with pytest.raises(PluginNotFoundError, match="installed versions: none"):
        reg.get("acme:tool")


def test_installed_plugin_loads_in_a_host(
    tmp_path: Path, reg: Registry, install: Any, pair: _signing.KeyPair
) -> None:
    install(signed(packed("acme:tool", n=7), pair))
    info = reg.get("acme:tool")
    assert info.path is not None
    with PluginHost(cache_dir=tmp_path / "cache", trusted_keys=[pair.public_key]) as host:
        assert host.load(info.path).call("one") == 7


def test_several_versions_and_get_selection(install: Any, reg: Registry, pair: Any) -> None:
    for v in ["0.1.0", "0.2.0", "0.2.5", "1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1"]:
        install(signed(packed("tool", v), pair))
    assert [i.version for i in reg.list()] == [
        "0.1.0", "0.2.0", "0.2.5", "1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1",
    ]  # fmt: skip
    assert reg.get("tool").version == "2.0.0"  # the highest release
    assert reg.get("tool", "1").version == "1.10.0"
    assert reg.get("tool", "1.2").version == "1.10.0"
    assert reg.get("tool", "^1.2.0").version == "1.10.0"
    assert reg.get("tool", "=1.2.0").version == "1.2.0"
    assert reg.get("tool", "0.2").version == "0.2.5"
    assert reg.get("tool", "0.1").version == "0.1.0"
    assert reg.get("tool", "2.1.0-beta.1").version == "2.1.0-beta.1"
    with pytest.raises(PluginNotFoundError, match="matching '3'"):
        reg.get("tool", "3")
    with pytest.raises(ValueError, match="version spec"):
        reg.get("tool", ">=1")
    reg.remove("tool", "2.0.0")
    assert reg.get("tool").version == "1.10.0"


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("1.2.3", "1", True),
        ("1.2.3", "1.3", False),
        ("2.0.0", "1", False),
        ("0.3.9", "0.3", True),
        ("0.4.0", "0.3", False),
        ("0.0.3", "0.0.3", True),
        ("0.0.4", "0.0.3", False),
        ("0.9.0", "0", True),
        ("1.0.0-rc.1", "1", False),
        ("1.0.0-rc.2", "1.0.0-rc.1", True),
        ("1.0.0+build.5", "=1.0.0", True),
    ],
)
def test_version_specs(version: str, spec: str, ok: bool) -> None:
    assert matches_spec(version, spec) is ok


def test_version_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    ordered += ["1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0"]
    shuffled = ordered[3:] + ordered[:3]
    assert sorted(shuffled, key=version_key) == ordered


def test_rollback_refused_then_forced(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("tool", "2.0.0"), pair))
    before = snapshot(reg.root)
    with pytest.raises(RollbackError, match=r"1\.0\.0 is lower than 2\.0\.0"):
        install(signed(packed("tool", "1.0.0"), pair))
    assert snapshot(reg.root) == before
    info = install(signed(packed("tool", "1.0.0"), pair), force=True)
    assert [i.version for i in reg.list()] == ["1.0.0", "2.0.0"]
    assert reg.get("tool").version == "2.0.0"
    assert json.loads(reg.index_path.read_text())["plugins"]["tool"]["versions"]["1.0.0"]["forced"]
    # The highest version is remembered after removal...
    reg.remove("tool")
    with pytest.raises(RollbackError):
        install(signed(packed("tool", "1.5.0"), pair))
    # ...until forgotten.
    reg.remove("tool", forget=True)
    assert install(signed(packed("tool", "1.5.0"), pair)).version == "1.5.0"
    assert info.version == "1.0.0"


def test_same_version_different_bytes(install: Any, reg: Registry, pair: Any) -> None:
    first = install(signed(packed("tool", "1.0.0", n=1), pair))
    before = snapshot(reg.root)
    assert install(signed(packed("tool", "1.0.0", n=1), pair)) == first  # identical: a no-op
    assert snapshot(reg.root) == before
    with pytest.raises(VersionConflictError, match="different content"):
        install(signed(packed("tool", "1.0.0", n=2), pair))
    assert snapshot(reg.root) == before
    second = install(signed(packed("tool", "1.0.0", n=2), pair), force=True)
    assert [i.sha256 for i in reg.list()] == [second.sha256] != [first.sha256]
    assert second.path is not None
    assert second.path.exists()
    files = list((reg.root / "plugins").rglob("*.wasm"))
    assert files == [second.path]  # the replaced file is gone


def test_unsigned_refused_unless_allowed(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("other"), pair))
    before = snapshot(reg.root)
    with pytest.raises(UnsignedPluginError):
        install(packed("tool"))
    assert snapshot(reg.root) == before
    info = install(packed("tool"), allow_unsigned=True)
    assert (info.signed, info.key_id) == (False, None)
    entry = json.loads(reg.index_path.read_text())["plugins"]["tool"]["versions"]["1.0.0"]
    assert entry["signed"] is False
    assert entry["key-id"] is None


def _tampered(pair: _signing.KeyPair) -> bytes:
    data = signed(packed("tool"), pair)
    text = manifest_toml("tool", "1.0.0", ("demo:evil/x@1.0.0",)).encode()
    return ws.with_custom_section(data, MANIFEST_SECTION, text)


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("untrusted", UntrustedKeyError, "none of which is trusted"),
        ("out-of-scope", UntrustedKeyError, "trusted only for acme:"),
        ("tampered", SignatureInvalidError, None),
        ("revoked-digest", RevokedError, "revoked"),
        ("revoked-key", RevokedError, "revoked"),
    ],
)
def test_trust_refusals_change_nothing(
    tmp_path: Path, reg: Registry, pair: _signing.KeyPair, case: str, error: type, message: Any
) -> None:
    store = TrustStore(tmp_path / "t.json")
    store.add(TrustedKey(pair.public_key, ("*",)))
    reg.install(signed(packed("existing"), pair), trust_store=store)
    data = signed(packed("tool"), pair)
    if case == "untrusted":
        data = signed(packed("tool"), _signing.generate_keypair())
    elif case == "out-of-scope":
        store.add(TrustedKey(pair.public_key, ("acme:*",)))
    elif case == "tampered":
        data = _tampered(pair)
    elif case == "revoked-digest":
        store.revoke_digest(hashlib.sha256(data).hexdigest())
    else:
        store.revoke_key(pair.key_id.hex())
    before = snapshot(reg.root)
    with pytest.raises(error, match=message):
        reg.install(data, trust_store=store)
    assert snapshot(reg.root) == before
    if case.startswith("revoked"):  # revoked stays refused even for unsigned installs
        with pytest.raises(RevokedError):
            reg.install(data, trust_store=store, allow_unsigned=True)
        assert snapshot(reg.root) == before


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("truncated", InvalidComponentError, None),
        ("garbage", InvalidComponentError, "magic"),
        ("empty", InvalidComponentError, "header"),
        ("core-module", InvalidComponentError, "core WebAssembly module"),
        ("no-manifest", ManifestError, "wasmplug pack"),
        ("bad-manifest", ManifestError, "plugin.name"),
        ("not-utf8-manifest", ManifestError, "UTF-8"),
        ("not-toml-manifest", ManifestError, "not valid TOML"),
        ("missing-file", InvalidComponentError, "cannot read"),
    ],
)
def test_malformed_files_change_nothing(
    tmp_path: Path, reg: Registry, install: Any, pair: Any, case: str, error: type, message: Any
) -> None:
    install(signed(packed("existing"), pair))
    good = signed(packed("tool"), pair)
    data = {
        "truncated": good[: len(good) // 2],
        "garbage": b"this is not wasm at all",
        "empty": b"",
        "core-module": bytes(wasmtime.wat2wasm("(module)")),
        "no-manifest": signed(component(), pair),
        "bad-manifest": ws.with_custom_section(
            component(), MANIFEST_SECTION, b'[plugin]\nname = "Bad Name"\nversion = "1"\n'
        ),
        "not-utf8-manifest": ws.with_custom_section(component(), MANIFEST_SECTION, b"\xff\xfe"),
        "not-toml-manifest": ws.with_custom_section(component(), MANIFEST_SECTION, b"[[[ nope"),
        "missing-file": b"",
    }[case]
    source: Path = tmp_path / ("absent.wasm" if case == "missing-file" else "bad.wasm")
    if case != "missing-file":
        source.write_bytes(data)
    before = snapshot(reg.root)
    for allow_unsigned in (False, True):
        with pytest.raises(error, match=message):
            install(source, allow_unsigned=allow_unsigned)
        assert snapshot(reg.root) == before


def test_static_check_needs_declared_semver_compatible_imports(
    install: Any, reg: Registry, pair: Any
) -> None:
    imports = ("demo:plugin/host@0.1.2", "wasi:random/random@0.2.0")
    install(signed(packed("existing"), pair))
    before = snapshot(reg.root)
    with pytest.raises(LinkError) as info:
        install(signed(packed("tool", imports=imports), pair))
    assert "demo:plugin/host@0.1.2: imported but not declared" in str(info.value)
    assert "wasi:" not in str(info.value)
    newer = packed("tool", imports=imports, host_interfaces=("demo:plugin/host@0.2.0",))
    with pytest.raises(LinkError):  # 0.2 is not compatible with 0.1
        install(signed(newer, pair))
    assert snapshot(reg.root) == before
    ok = install(signed(packed("tool", imports=imports, host_interfaces=(HOST_IFACE,)), pair))
    assert ok.imports == imports


def test_compile_runs_before_anything_is_written(install: Any, reg: Registry, pair: Any) -> None:
    install(signed(packed("existing"), pair))
    before = snapshot(reg.root)
    engine = wasmtime.Engine()
    seen: list[int] = []

    def compile_ok(data: bytes) -> None:
        assert snapshot(reg.root) == before
        seen.append(len(Component(engine, data).type.exports(engine)))

    def compile_fails(data: bytes) -> None:
        raise InvalidComponentError("refused by the compiler")

    with pytest.raises(InvalidComponentError, match="compiler"):
        install(signed(packed("tool"), pair), compile=compile_fails)
    assert snapshot(reg.root) == before
    install(signed(packed("tool"), pair), compile=compile_ok)
    assert seen == [1]


def test_name_conflict_between_publishers(
    tmp_path: Path, reg: Registry, store: TrustStore, pair: Any
) -> None:
    other = _signing.generate_keypair()
    store.add(TrustedKey(other.public_key, ("*",), "Other"))
    reg.install(signed(packed("tool", "1.0.0"), pair), trust_store=store)
    before = snapshot(reg.root)
    with pytest.raises(NameConflictError, match=pair.key_id.hex()):
        reg.install(signed(packed("tool", "2.0.0"), other), trust_store=store)
    with pytest.raises(NameConflictError, match="unsigned build"):
        reg.install(packed("tool", "2.0.0"), trust_store=store, allow_unsigned=True)
    assert snapshot(reg.root) == before
    info = reg.install(signed(packed("tool", "2.0.0"), other), trust_store=store, force=True)
    assert info.key_id == other.key_id.hex()
    # The name is now pinned to the new publisher.
    with pytest.raises(NameConflictError):
        reg.install(signed(packed("tool", "3.0.0"), pair), trust_store=store)


@pytest.mark.parametrize(
    "damage",
    [
        "{ not json",
        '{"format": 99, "plugins": {}}',
        '{"format": 1, "plugins": {"tool": {"versions": {"not-semver": {}}}}}',
        '{"format": 1, "plugins": {"tool": {"versions": {"1.0.0": {"file": "/etc/x"}}}}}',
    ],
)
def test_damaged_index_is_never_overwritten(
    install: Any, reg: Registry, pair: Any, damage: str
) -> None:
    install(signed(packed("tool"), pair))
    reg.index_path.write_text(damage)
    before = snapshot(reg.root)
    with pytest.raises(RegistryError, match="damaged"):
        install(signed(packed("other"), pair))
    with pytest.raises(RegistryError):
        reg.list()
    with pytest.raises(RegistryError):
        reg.remove("tool")
    assert snapshot(reg.root) == before


# -- interrupted and concurrent installs (real processes) ---------------------------------

CHILD = textwrap.dedent("""
    import pathlib, sys, time
    from wasmplug._trust.registry import Registry
    from wasmplug._trust.store import TrustStore
    root, store, source, ready, hook, delay = sys.argv[1:7]
    original = getattr(Registry, hook)
    def paused(self, *args):
        if hook == "_stage_file":
            original(self, *args)
        pathlib.Path(ready).write_text("ready")
        time.sleep(float(delay))
        if hook != "_stage_file":
            original(self, *args)
    setattr(Registry, hook, paused)
    Registry(root).install(source, trust_store=TrustStore(store))
""")


def spawn(reg: Registry, store: TrustStore, source: Path, ready: Path, hook: str, delay: float):  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(Path(wasmplug.__file__).parent.parent)}
    args = [str(reg.root), str(store.path), str(source), str(ready), hook, str(delay)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env)


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, "the child exited early"
        assert time.monotonic() < deadline, "the child never reached the hook"
        time.sleep(0.01)


def referenced_files(reg: Registry) -> tuple[set[Path], set[Path]]:
    on_disk = set((reg.root / "plugins").rglob("*.wasm"))
    return on_disk, {i.path for i in reg.list() if i.path is not None}


@pytest.mark.parametrize("hook", ["_stage_file", "_commit_index"])
def test_killed_install_leaves_the_registry_unchanged(
    tmp_path: Path, reg: Registry, store: TrustStore, install: Any, pair: Any, hook: str
) -> None:
    install(signed(packed("existing"), pair))
    before, listed = snapshot(reg.root), reg.list()
    source = write(tmp_path, "tool.wasm", signed(packed("tool"), pair))
    proc = spawn(reg, store, source, tmp_path / "ready", hook, 60)
    try:
        wait_for(tmp_path / "ready", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    after = snapshot(reg.root)
    assert after[1] == before[1]  # index bytes
    assert reg.list() == listed
    assert any(p.startswith(".staging/") for p, _ in after[0])  # it did get that far
    if hook == "_stage_file":
        assert [e for e in after[0] if e[0].startswith("plugins")] == [
            e for e in before[0] if e[0].startswith("plugins")
        ]
    else:  # the file was placed but never committed: an unreferenced orphan
        on_disk, referenced = referenced_files(reg)
        assert on_disk - referenced
    # The next change cleans up after the killed one and works.
    assert install(source).name == "tool"
    assert list((reg.root / ".staging").iterdir()) == []
    on_disk, referenced = referenced_files(reg)
    assert on_disk == referenced
    assert {i.name for i in reg.list()} == {"existing", "tool"}


def test_two_processes_install_at_once(
    tmp_path: Path, reg: Registry, store: TrustStore, pair: Any
) -> None:
    procs = []
    for name in ("alpha", "beta"):
        source = write(tmp_path, f"{name}.wasm", signed(packed(name), pair))
        procs.append(spawn(reg, store, source, tmp_path / f"{name}.ready", "_stage_file", 0.3))
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    index = json.loads(reg.index_path.read_text())
    assert sorted(index["plugins"]) == ["alpha", "beta"]
    assert {i.name for i in reg.list()} == {"alpha", "beta"}
    on_disk, referenced = referenced_files(reg)
    assert on_disk == referenced


# -- discovery ---------------------------------------------------------------------------


def test_discover_from_a_directory(tmp_path: Path, reg: Registry, pair: Any) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "a.wasm", signed(packed("acme:a", "1.2.0"), pair))
    write(plugins, "b.wasm", packed("b", "0.1.0", imports=(HOST_IFACE,)))
    write(plugins, "garbage.wasm", b"nope")
    write(plugins, "bare.wasm", component())
    write(plugins, "notes.txt", b"ignored")
    errors: list[str] = []
    found = reg.discover(
        [plugins, tmp_path / "absent"],
        entry_points=False,
        on_error=lambda where, e: errors.append(f"{Path(where).name}: {type(e).__name__}"),
    )
    assert [(i.name, i.version, i.source, i.signed) for i in found] == [
        ("acme:a", "1.2.0", "dir", True),
        ("b", "0.1.0", "dir", False),
    ]
    assert found[0].key_id == pair.key_id.hex()  # claimed, not verified
    assert found[1].imports == (HOST_IFACE,)
    assert found[1].manifest.name == "b"
    assert sorted(errors) == [
        "absent: FileNotFoundError",
        "bare.wasm: ManifestError",
        "garbage.wasm: InvalidComponentError",
    ]
    assert len(reg.discover(str(plugins), entry_points=False, on_error=print)) == 2
    assert not reg.root.exists()  # discovery writes nothing


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pair: Any) -> Iterator[Path]:
    """A throwaway distribution on sys.path shipping a signed plugin as package data."""
    site = tmp_path / "site"
    pkg = site / "wasmplug_test_dist_pkg"
    pkg.mkdir(parents=True)
    (pkg / "hello.wasm").write_bytes(signed(packed("hello", "1.0.0"), pair))
    (pkg / "__init__.py").write_text(
        "from importlib.resources import files\n"
        "PLUGIN = files(__name__) / 'hello.wasm'\n"
        "def plugin():\n    return str(files(__name__) / 'hello.wasm')\n"
    )
    meta = site / "wasmplug_test_dist-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wasmplug-test-dist\nVersion: 1.0\n"
    )
    (meta / "entry_points.txt").write_text(
        "[wasmplug.plugins]\n"
        "hello = wasmplug_test_dist_pkg:PLUGIN\n"
        "hello-callable = wasmplug_test_dist_pkg:plugin\n"
        "broken = wasmplug_test_dist_pkg:missing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield pkg
    sys.modules.pop("wasmplug_test_dist_pkg", None)


def test_discover_and_install_from_entry_points(
    dist: Path, tmp_path: Path, reg: Registry, install: Any, pair: Any
) -> None:
    errors: list[str] = []
    found = [
        i
        for i in reg.discover(on_error=lambda where, e: errors.append(where))
        if i.origin.endswith("(wasmplug-test-dist)")
    ]
    assert [(i.name, i.source, i.path) for i in found] == [
        ("hello", "entry-point", dist / "hello.wasm"),
        ("hello", "entry-point", dist / "hello.wasm"),
    ]
    assert any("broken" in e for e in errors)
    info = install("hello")  # NAME resolved by discovery
    assert (info.name, info.source) == ("hello", "registry")
    assert info.sha256 == found[0].sha256
    with pytest.raises(PluginNotFoundError, match="no plugin 'nothing-here'"):
        install("nothing-here")
    # A directory offering a different build of the same version makes NAME ambiguous.
    other = tmp_path / "other"
    other.mkdir()
    write(other, "hello.wasm", packed("hello", "1.0.0", n=2))
    with pytest.raises(NameConflictError, match="different files"):
        install("hello", search_dirs=[other])
    write(other, "hello.wasm", signed(packed("hello", "1.1.0", n=2), pair))
    assert install("hello@1", search_dirs=[other]).version == "1.1.0"


# -- CLI ---------------------------------------------------------------------------------


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
