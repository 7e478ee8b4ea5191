"""Push, pull and install against a real registry (docker-registry, distribution 2.8)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.oci_registry import RunningRegistry, plugin_bytes
from wasmplug import PluginHost, TrustStore
from wasmplug._cli.main import EXIT_REFUSED, EXIT_REGISTRY, EXIT_USAGE, main
from wasmplug._distribution.artifact import CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from wasmplug._distribution.cache import BlobCache
from wasmplug._distribution.operations import Session
from wasmplug._trust import signing
from wasmplug._trust.component_info import read_component_info
from wasmplug._trust.registry import Registry


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def push(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, ref: str) -> str:
    """``wasmplug push`` a plugin; returns the printed manifest digest."""
    file = tmp_path / f"push-{len(list(tmp_path.glob('push-*')))}.wasm"
    file.write_bytes(data)
    code, out, err = cli("push", str(file), ref, capsys=capsys)
    assert code == 0, err
    return out.strip()


def test_push_pull_round_trip_is_byte_identical(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
) -> None:
    data = plugin_bytes("acme:tool", "1.0.0", pair=pair)
    digest = push(tmp_path, capsys, data, f"{oci_registry.host}/{repo}:1.0.0")
    assert digest.startswith("sha256:")
    assert len(digest) == 71
    out_file = tmp_path / "pulled.wasm"
    code, out, err = cli(
        "pull", f"{oci_registry.host}/{repo}:1.0.0", "-o", str(out_file), capsys=capsys
    )
    assert code == 0, err
    assert out.strip() == digest
    assert out_file.read_bytes() == data
    # by digest, with the oci:// form, gives the same bytes
    code, _, err = cli(
        "pull", f"oci://{oci_registry.host}/{repo}@{digest}", "-o", str(out_file), capsys=capsys
    )
    assert code == 0, err
    assert out_file.read_bytes() == data


def test_raw_manifest_follows_the_wasm_oci_artifact_layout(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
) -> None:
    data = plugin_bytes("acme:tool", "2.1.0", pair=pair)
    digest = push(tmp_path, capsys, data, f"{oci_registry.host}/{repo}")  # tag = version
    base = f"http://{oci_registry.host}/v2/{repo}"
    resp = httpx.get(f"{base}/manifests/2.1.0", headers={"Accept": MANIFEST_MEDIA_TYPE})
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Type"] == MANIFEST_MEDIA_TYPE
    manifest = json.loads(resp.content)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/wasm" == LAYER_MEDIA_TYPE
    assert layer["size"] == len(data)
    assert manifest["annotations"]["org.opencontainers.image.version"] == "2.1.0"
    blob = httpx.get(f"{base}/blobs/{layer['digest']}", follow_redirects=True).content
    assert blob == data  # the signed component, byte for byte
    config_resp = httpx.get(f"{base}/blobs/{manifest['config']['digest']}", follow_redirects=True)
    assert len(config_resp.content) == manifest["config"]["size"]
    config = json.loads(config_resp.content)
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert config["architecture"] == "wasm"
    assert config["os"] == "wasip2"
    assert config["layerDigests"] == [layer["digest"]]
    info = read_component_info(data)
    assert config["component"] == {"exports": info.export_names, "imports": info.import_names}
    assert config["component"]["exports"] == ["one"]
    assert "created" in config


def test_install_by_tag_and_by_digest_records_source(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    v1 = plugin_bytes("acme:tool", "1.0.0", pair=pair)
    v2 = plugin_bytes("acme:tool", "1.1.0", n=2, pair=pair)
    d1 = push(tmp_path, capsys, v1, f"{oci_registry.host}/{repo}:1.0.0")
    d2 = push(tmp_path, capsys, v2, f"{oci_registry.host}/{repo}:1.1.0")
    reg = tmp_path / "reg"
    common = ("--registry", str(reg), "--trust-store", str(trust_file))
    code, out, err = cli("install", f"{oci_registry.host}/{repo}@{d1}", *common, capsys=capsys)
    assert code == 0, err
    assert "installed acme:tool 1.0.0" in out
    code, out, err = cli(
        "install", f"oci://{oci_registry.host}/{repo}:1.1.0", *common, capsys=capsys
    )
    assert code == 0, err
    installed = {i.version: i for i in Registry(reg).list()}
    assert installed["1.0.0"].reference == f"{oci_registry.host}/{repo}@{d1}"
    assert installed["1.0.0"].manifest_digest == d1
    assert installed["1.1.0"].reference == f"{oci_registry.host}/{repo}:1.1.0"
    assert installed["1.1.0"].manifest_digest == d2
    assert installed["1.1.0"].path is not None
    assert installed["1.1.0"].path.read_bytes() == v2
    # no tag: the highest version tag
    code, out, err = cli("install", f"{oci_registry.host}/{repo}", *common, capsys=capsys)
    assert code == 0, err
    assert "from cache" in out  # the same digest again: nothing downloaded
    code, out, _ = cli("list", "--json", "--registry", str(reg), "--no-entry-points", capsys=capsys)
    rows = {r["version"]: r for r in json.loads(out)}
    assert rows["1.1.0"]["manifest-digest"] == d2


def test_second_install_of_same_digest_downloads_nothing(
    tmp_path: Path,
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    data = plugin_bytes("acme:cached", "1.0.0", pair=pair)
    cache = BlobCache(tmp_path / "blobs")
    with Session(cache=cache) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}")
        ref = f"{oci_registry.host}/{repo}@{pushed.manifest_digest}"
        first = s.install(
            ref, registry=Registry(tmp_path / "a"), trust_store=TrustStore(trust_file)
        )[1]
        second = s.install(
            ref, registry=Registry(tmp_path / "b"), trust_store=TrustStore(trust_file)
        )[1]
    assert first.downloaded > len(data)  # manifest + layer
    assert second.downloaded == 0


def test_host_install_accepts_a_reference(
    tmp_path: Path, oci_registry: RunningRegistry, repo: str, pair: signing.KeyPair
) -> None:
    data = plugin_bytes("acme:hosted", "0.3.0", pair=pair)
    with Session() as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:0.3.0")
    with PluginHost(cache_dir=tmp_path / "cc", trusted_keys=[pair.public_key]) as host:
        reg = Registry(tmp_path / "reg")
        info = host.install(f"oci://{oci_registry.host}/{repo}:0.3.0", registry=reg)
        assert (info.name, info.version, info.manifest_digest) == (
            "acme:hosted",
            "0.3.0",
            pushed.manifest_digest,
        )
        plugin = host.load_installed("acme:hosted", registry=reg)
        assert plugin.call("one") == 1


def _flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])  # same size: only the digest can tell


@pytest.mark.parametrize(
    "tamper",
    [_flip_last_bit, lambda d: d[:-16], lambda d: d + b"\x00" * 16, lambda d: b""],
    ids=["bit-flipped", "truncated", "grown", "emptied"],
)
def test_tampered_blob_in_registry_storage_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
    tamper: Callable[[bytes], bytes],
) -> None:
    data = plugin_bytes("acme:tampered", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "pusher-cache")) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    stored = oci_registry.blob_path(pushed.layer_digest)
    original = stored.read_bytes()
    assert original == data
    stored.write_bytes(tamper(original))
    reg = tmp_path / "reg"
    try:
        code, _, err = cli(
            "install", f"{oci_registry.host}/{repo}:1.0.0", "--registry", str(reg),
            "--trust-store", str(trust_file), capsys=capsys,
        )  # fmt: skip
    finally:
        stored.write_bytes(original)
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert err.startswith("wasmplug: error: ")
    assert "digest" in err
    assert pushed.layer_digest in err
    assert not reg.exists() or Registry(reg).list() == []
    assert BlobCache().get(pushed.layer_digest) is None  # nothing cached either
    assert not list((BlobCache().root / "partial").rglob("*.partial"))


def test_grown_blob_is_refused(
    tmp_path: Path,
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    from wasmplug import DigestMismatchError

    data = plugin_bytes("acme:grown", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "c1")) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    stored = oci_registry.blob_path(pushed.layer_digest)
    stored.write_bytes(data + b"\x00" * 4096)
    try:
        with (
            Session(cache=BlobCache(tmp_path / "c2")) as s,
            pytest.raises(DigestMismatchError, match="more than"),
        ):
            s.pull(f"{oci_registry.host}/{repo}:1.0.0")
    finally:
        stored.write_bytes(data)


def test_tag_moved_to_older_version_is_refused_as_rollback(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    ref = f"{oci_registry.host}/{repo}:stable"
    reg = tmp_path / "reg"
    common = ("--registry", str(reg), "--trust-store", str(trust_file))
    push(tmp_path, capsys, plugin_bytes("acme:roll", "2.0.0", pair=pair), ref)
    assert cli("install", ref, *common, capsys=capsys)[0] == 0
    push(tmp_path, capsys, plugin_bytes("acme:roll", "1.9.0", pair=pair), ref)  # the tag moves back
    code, _, err = cli("install", ref, *common, capsys=capsys)
    assert code == EXIT_REFUSED
    assert "rollback" in err
    assert "1.9.0" in err
    assert err.count("\n") == 1
    assert [i.version for i in Registry(reg).list()] == ["2.0.0"]


def test_tag_moved_to_untrusted_key_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    ref = f"{oci_registry.host}/{repo}:latest"
    reg = tmp_path / "reg"
    common = ("--registry", str(reg), "--trust-store", str(trust_file))
    push(tmp_path, capsys, plugin_bytes("acme:keyed", "1.0.0", pair=pair), ref)
    assert cli("install", ref, *common, capsys=capsys)[0] == 0
    mallory = signing.generate_keypair()
    push(tmp_path, capsys, plugin_bytes("acme:keyed", "1.0.1", pair=mallory), ref)
    code, _, err = cli("install", ref, *common, capsys=capsys)
    assert code == EXIT_REFUSED
    assert mallory.key_id.hex() in err
    assert err.count("\n") == 1
    assert [i.version for i in Registry(reg).list()] == ["1.0.0"]


def test_registry_down_gives_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.oci_registry import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, _out, err = cli(
        "pull", f"{host}/x/y:1.0.0", "-o", str(tmp_path / "f.wasm"), capsys=capsys
    )
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert err.startswith(f"wasmplug: error: registry {host} is unreachable")
    assert not (tmp_path / "f.wasm").exists()


def test_not_found_gives_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], oci_registry: RunningRegistry, repo: str
) -> None:
    code, _, err = cli(
        "install",
        f"{oci_registry.host}/{repo}:9.9.9",
        "--registry",
        str(tmp_path / "r"),
        capsys=capsys,
    )
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert "not found" in err
    assert f"{repo}:9.9.9" in err


def test_bad_reference_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(
        "pull", "oci://127.0.0.1:5000/Upper/Case:1", "-o", str(tmp_path / "x"), capsys=capsys
    )
    assert code == EXIT_USAGE
    assert "repository" in err
    assert err.count("\n") == 1


def test_auth_without_credentials_and_with_wrong_password(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_auth_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    isolated_user: Path,
) -> None:
    host = oci_auth_registry.host
    file = tmp_path / "p.wasm"
    file.write_bytes(plugin_bytes("acme:secret", "1.0.0", pair=pair))
    code, _, err = cli("push", str(file), f"{host}/{repo}:1.0.0", capsys=capsys)
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert "requires authentication" in err
    assert f"wasmplug login {host}" in err

    # credentials from Docker's config.json (DOCKER_CONFIG): wrong password
    import base64

    docker = isolated_user / "docker" / "config.json"
    wrong = base64.b64encode(b"fleet:not-the-password").decode()
    docker.write_text(json.dumps({"auths": {host: {"auth": wrong}}}))
    code, _, err = cli("push", str(file), f"{host}/{repo}:1.0.0", capsys=capsys)
    assert code == EXIT_REGISTRY
    assert err.count("\n") == 1
    assert "rejected the credentials of user 'fleet'" in err
    assert str(docker) in err
    assert "not-the-password" not in err

    # right password in Docker's config: push and pull work
    right = base64.b64encode(b"fleet:s3cret-pw").decode()
    docker.write_text(json.dumps({"auths": {f"https://{host}": {"auth": right}}}))
    code, _out, err = cli("push", str(file), f"{host}/{repo}:1.0.0", capsys=capsys)
    assert code == 0, err
    docker.unlink()
    code, _, err = cli(
        "pull", f"{host}/{repo}:1.0.0", "-o", str(tmp_path / "o.wasm"), capsys=capsys
    )
    assert code == EXIT_REGISTRY
    assert "requires authentication" in err


def test_login_checks_and_saves_credentials(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    oci_auth_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
) -> None:
    import io

    host = oci_auth_registry.host
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    code, _, err = cli("login", host, "-u", "fleet", "--password-stdin", capsys=capsys)
    assert code == EXIT_REGISTRY
    assert "rejected the credentials" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pw\n"))
    code, out, err = cli("login", host, "-u", "fleet", "--password-stdin", capsys=capsys)
    assert code == 0, err
    saved = Path(out.strip().rsplit(" ", 1)[1])
    assert saved.stat().st_mode & 0o777 == 0o600
    assert "s3cret-pw" not in saved.read_text()  # base64, as Docker stores it, not in clear
    file = tmp_path / "p.wasm"
    data = plugin_bytes("acme:secret", "1.0.0", pair=pair)
    file.write_bytes(data)
    assert cli("push", str(file), f"{host}/{repo}", capsys=capsys)[0] == 0
    assert (
        cli("pull", f"{host}/{repo}:1.0.0", "-o", str(tmp_path / "o.wasm"), capsys=capsys)[0] == 0
    )
    assert (tmp_path / "o.wasm").read_bytes() == data
    assert cli("logout", host, capsys=capsys)[0] == 0
    code, _, err = cli(
        "pull", f"{host}/{repo}:1.0.0", "-o", str(tmp_path / "o.wasm"), capsys=capsys
    )
    assert code == EXIT_REGISTRY
    assert "requires authentication" in err


def test_download_resumes_from_a_partial_file_with_the_real_registry(
    tmp_path: Path, oci_registry: RunningRegistry, repo: str, pair: signing.KeyPair
) -> None:
    data = plugin_bytes("acme:resumed", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "pusher")) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    cache = BlobCache(tmp_path / "puller")
    half = len(data) // 2
    cache.partial(pushed.layer_digest).write_bytes(data[:half])  # an interrupted earlier pull
    with Session(cache=cache) as s:
        pulled = s.pull(f"{oci_registry.host}/{repo}:1.0.0")
    assert pulled.data == data
    manifest_size = len(cache.get(pushed.manifest_digest) or b"")
    assert pulled.downloaded == manifest_size + len(data) - half  # only the rest was fetched
    assert not cache.partial(pushed.layer_digest).exists()


def test_max_blob_bytes_from_the_user_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    isolated_user: Path,
) -> None:
    data = plugin_bytes("acme:big", "1.0.0", pair=pair)
    push(tmp_path, capsys, data, f"{oci_registry.host}/{repo}:1.0.0")
    config = isolated_user / "config" / "wasmplug" / "distribution.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"max-blob-bytes = {len(data) - 1}\n")
    code, _, err = cli(
        "pull", f"{oci_registry.host}/{repo}:1.0.0", "-o", str(tmp_path / "o.wasm"), capsys=capsys
    )
    assert code == EXIT_REGISTRY
    assert f"{len(data)} bytes, more than the {len(data) - 1}-byte maximum" in err


def test_concurrent_pulls_of_one_digest_share_the_cache(
    tmp_path: Path, oci_registry: RunningRegistry, repo: str, pair: signing.KeyPair
) -> None:
    import threading

    data = plugin_bytes("acme:shared", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "pusher")) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    results: list[object] = []

    def pull() -> None:
        try:
            with Session(cache=BlobCache(tmp_path / "shared")) as s:
                results.append(s.pull(f"{oci_registry.host}/{repo}@{pushed.manifest_digest}"))
        except Exception as e:  # reported below
            results.append(e)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert all(getattr(r, "data", None) == data for r in results), results
    manifest_size = len(BlobCache(tmp_path / "shared").get(pushed.manifest_digest) or b"")
    # the layer crossed the network once: the others waited on its lock, then hit the cache
    assert sum(getattr(r, "downloaded", 0) for r in results) <= 4 * manifest_size + len(data)


def test_bearer_token_flow_with_the_real_registry(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_token_registry: tuple[RunningRegistry, object],
    repo: str,
    pair: signing.KeyPair,
    isolated_user: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64
    import io

    registry, tokens = oci_token_registry
    host = registry.host
    file = tmp_path / "p.wasm"
    data = plugin_bytes("acme:tokened", "1.0.0", pair=pair)
    file.write_bytes(data)
    code, _, err = cli("push", str(file), f"{host}/{repo}", capsys=capsys)
    assert code == EXIT_REGISTRY
    assert "requires authentication" in err

    docker = isolated_user / "docker" / "config.json"
    docker.write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(b"fleet:nope").decode()}}})
    )
    code, _, err = cli("push", str(file), f"{host}/{repo}", capsys=capsys)
    assert code == EXIT_REGISTRY
    assert "rejected the credentials of user 'fleet'" in err
    docker.unlink()

    monkeypatch.setattr("sys.stdin", io.StringIO("t0ken-pw\n"))
    assert cli("login", host, "-u", "fleet", "--password-stdin", capsys=capsys)[0] == 0
    code, _out, err = cli("push", str(file), f"{host}/{repo}", capsys=capsys)
    assert code == 0, err
    code, _, err = cli(
        "pull", f"{host}/{repo}:1.0.0", "-o", str(tmp_path / "o.wasm"), capsys=capsys
    )
    assert code == 0, err
    assert (tmp_path / "o.wasm").read_bytes() == data
    import urllib.parse

    actions: set[str] = set()
    for path in tokens.requests:  # type: ignore[attr-defined]
        for scope in urllib.parse.parse_qs(urllib.parse.urlparse(path).query).get("scope", []):
            if scope.startswith(f"repository:{repo}:"):
                actions |= set(scope.rsplit(":", 1)[1].split(","))
    assert {"pull", "push"} <= actions  # tokens were asked for the repository's scopes


def test_tampered_manifest_in_registry_storage_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
) -> None:
    data = plugin_bytes("acme:manifested", "1.0.0", pair=pair)
    with Session(cache=BlobCache(tmp_path / "pusher")) as s:
        pushed = s.push(data, f"{oci_registry.host}/{repo}:1.0.0")
    stored = oci_registry.blob_path(pushed.manifest_digest)
    original = stored.read_bytes()
    stored.write_bytes(original.replace(b"1.0.0", b"6.6.6"))  # same size, still valid JSON
    reg = tmp_path / "reg"
    try:
        code, _, err = cli(
            "install", f"{oci_registry.host}/{repo}:1.0.0", "--registry", str(reg),
            "--trust-store", str(trust_file), capsys=capsys,
        )  # fmt: skip
    finally:
        stored.write_bytes(original)
    assert code == EXIT_REGISTRY
    assert "manifest with digest sha256:" in err
    assert pushed.manifest_digest in err
    assert not reg.exists() or Registry(reg).list() == []


def test_air_gapped_copy_keeps_the_digests(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    oci_mirror: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
) -> None:
    """pull from one registry, push the file to another: the same manifest digest."""
    data = plugin_bytes("acme:gapped", "3.1.4", pair=pair)
    digest = push(tmp_path, capsys, data, f"{oci_registry.host}/{repo}")
    copy = tmp_path / "carried.wasm"
    assert cli("pull", f"{oci_registry.host}/{repo}:3.1.4", "-o", str(copy), capsys=capsys)[0] == 0
    code, out, err = cli("push", str(copy), f"{oci_mirror.host}/{repo}", capsys=capsys)
    assert code == 0, err
    assert out.strip() == digest
    assert "not signed" not in err


def test_push_notes_an_unsigned_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], oci_registry: RunningRegistry, repo: str
) -> None:
    file = tmp_path / "unsigned.wasm"
    file.write_bytes(plugin_bytes("acme:unsigned", "1.0.0"))
    code, _, err = cli("push", str(file), f"{oci_registry.host}/{repo}", capsys=capsys)
    assert code == 0
    assert "is not signed; installing it will need --allow-unsigned" in err
