"""``wasmplug lock`` and ``wasmplug sync``: a fleet gets exactly the pinned digests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from support.oci_registry import RunningRegistry, plugin_bytes
from wasmplug import LockfileError
from wasmplug._cli.main import EXIT_REGISTRY, main
from wasmplug._distribution.lockfile import read_lock
from wasmplug._distribution.operations import Session
from wasmplug._trust import signing
from wasmplug._trust.registry import Registry


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def published(
    tmp_path: Path,
    oci_registry: RunningRegistry,
    oci_mirror: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
) -> dict[str, str]:
    """Two plugins pushed to the registry and, unchanged, to the mirror."""
    digests = {}
    for name, version in (("acme:alpha", "1.0.0"), ("acme:beta", "0.2.0")):
        file = tmp_path / f"{name.replace(':', '-')}.wasm"
        file.write_bytes(plugin_bytes(name, version, pair=pair))
        ref = f"{repo}-{name.split(':')[1]}"
        for host in (oci_registry.host, oci_mirror.host):
            with Session() as s:
                digests[(host, name)] = s.push(file.read_bytes(), f"{host}/{ref}").manifest_digest
    return {name: digests[(oci_registry.host, name)] for _, name in digests}


def test_lock_then_sync_into_a_second_registry_and_data_dir(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    oci_mirror: RunningRegistry,
    repo: str,
    trust_file: Path,
    published: dict[str, str],
) -> None:
    site_a = tmp_path / "site-a"
    for suffix in ("alpha", "beta"):
        code, _, err = cli(
            capsys, "install", f"{oci_registry.host}/{repo}-{suffix}", "--registry", str(site_a),
            "--trust-store", str(trust_file),
        )  # fmt: skip
        assert code == 0, err
    lock = tmp_path / "wasmplug.lock"
    code, out, err = cli(capsys, "lock", "-o", str(lock), "--registry", str(site_a))
    assert code == 0, err
    doc = tomllib.loads(lock.read_text())
    assert doc["version"] == 1
    rows = {p["name"]: p for p in doc["plugin"]}
    assert set(rows) == {"acme:alpha", "acme:beta"}
    assert rows["acme:alpha"]["manifest-digest"] == published["acme:alpha"]
    assert rows["acme:alpha"]["source"] == f"{oci_registry.host}/{repo}-alpha:1.0.0"
    installed_a = {i.name: i for i in Registry(site_a).list()}
    assert rows["acme:beta"]["layer-digest"] == f"sha256:{installed_a['acme:beta'].sha256}"

    # the other site: an empty data dir, fetching from the mirror (same digests)
    site_b = tmp_path / "site-b"
    args = ("sync", str(lock), "--mirror", oci_mirror.host, "--registry", str(site_b),
            "--trust-store", str(trust_file))  # fmt: skip
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert "2 installed" in out
    installed_b = {i.name: i for i in Registry(site_b).list()}
    for name in ("acme:alpha", "acme:beta"):
        assert installed_b[name].sha256 == installed_a[name].sha256
        assert installed_b[name].manifest_digest == rows[name]["manifest-digest"]
        assert installed_b[name].reference is not None
        assert installed_b[name].reference.startswith(oci_mirror.host)

    # idempotent, and without the network: both registries' hosts are now wrong
    code, out, err = cli(capsys, "sync", str(lock), "--mirror", "127.0.0.1:9", "--registry",
                         str(site_b), "--trust-store", str(trust_file))  # fmt: skip
    assert code == 0, err
    assert "0 installed" in out
    assert out.count("up to date") == 2


def test_sync_refuses_a_registry_that_differs_and_installs_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
    published: dict[str, str],
) -> None:
    site_a = tmp_path / "site-a"
    for suffix in ("alpha", "beta"):
        assert cli(capsys, "install", f"{oci_registry.host}/{repo}-{suffix}", "--registry",
                   str(site_a), "--trust-store", str(trust_file))[0] == 0  # fmt: skip
    lock = tmp_path / "wasmplug.lock"
    assert cli(capsys, "lock", "-o", str(lock), "--registry", str(site_a))[0] == 0
    # the layer pinned for beta is not the one its manifest names
    text = lock.read_text()
    beta_layer = next(e.layer_digest for e in read_lock(lock) if e.name == "acme:beta")
    lock.write_text(text.replace(beta_layer, "sha256:" + "ab" * 32))
    site_b = tmp_path / "site-b"
    code, _, err = cli(capsys, "sync", str(lock), "--registry", str(site_b), "--trust-store",
                       str(trust_file))  # fmt: skip
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert "lockfile pins sha256:" + "ab" * 32 in err
    assert not site_b.exists() or Registry(site_b).list() == []  # alpha was not installed either


def test_lock_refuses_plugins_installed_from_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pair: signing.KeyPair, trust_file: Path
) -> None:
    file = tmp_path / "local.wasm"
    file.write_bytes(plugin_bytes("acme:local", "1.0.0", pair=pair))
    reg = tmp_path / "reg"
    assert cli(capsys, "install", str(file), "--registry", str(reg), "--trust-store",
               str(trust_file))[0] == 0  # fmt: skip
    code, _, err = cli(capsys, "lock", "-o", str(tmp_path / "l.lock"), "--registry", str(reg))
    assert code == EXIT_REGISTRY
    assert "acme:local 1.0.0" in err
    code, out, _ = cli(capsys, "lock", "-o", str(tmp_path / "l.lock"), "--registry", str(reg),
                       "--skip-local")  # fmt: skip
    assert code == 0
    assert "0 plugin(s)" in out


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version = 2\n", "version must be 1"),
        ("not toml [", "cannot read lockfile"),
        ('version = 1\n[[plugin]]\nname = "a:b"\n', "needs string fields"),
        (
            'version = 1\n[[plugin]]\nname = "a:b"\nversion = "1.0.0"\nsource = "h.io/a/b:1"\n'
            'manifest-digest = "sha256:12"\nlayer-digest = "md5:00"\nextra = 1\n',
            "unknown keys extra",
        ),
    ],
    ids=["version", "not-toml", "missing-fields", "bad-digests"],
)
def test_malformed_lockfiles_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    lock = tmp_path / "wasmplug.lock"
    lock.write_text(text)
    with pytest.raises(LockfileError, match=problem):
        read_lock(lock)


def test_sync_checks_every_signature_before_installing_anything(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
    published: dict[str, str],
) -> None:
    from wasmplug import TrustedKey, TrustStore

    site_a = tmp_path / "site-a"
    for suffix in ("alpha", "beta"):
        assert cli(capsys, "install", f"{oci_registry.host}/{repo}-{suffix}", "--registry",
                   str(site_a), "--trust-store", str(trust_file))[0] == 0  # fmt: skip
    lock = tmp_path / "wasmplug.lock"
    assert cli(capsys, "lock", "-o", str(lock), "--registry", str(site_a))[0] == 0
    # the other machine trusts the publisher for acme:alpha only
    narrow = TrustStore(tmp_path / "narrow.json")
    narrow.add(TrustedKey(pair.public_key, ("acme:alpha",), "Publisher"))
    narrow.save()
    site_b = tmp_path / "site-b"
    code, _, err = cli(capsys, "sync", str(lock), "--registry", str(site_b), "--trust-store",
                       str(tmp_path / "narrow.json"))  # fmt: skip
    assert code == 3
    assert "acme:beta" in err
    assert not site_b.exists() or Registry(site_b).list() == []  # alpha waited for beta's check
