"""Package names to registries: the user config, ``.well-known/wasm-pkg`` discovery, tags."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from support.oci_registry import RunningRegistry, plugin_bytes
from wasmplug import ArtifactNotFoundError, DistributionError, PluginHost
from wasmplug._cli.main import main
from wasmplug._distribution.names import (
    DistributionConfig,
    discover_registry,
    select_tag,
    split_package,
)
from wasmplug._distribution.operations import Session
from wasmplug._trust import signing
from wasmplug._trust.registry import Registry


class _WellKnown(BaseHTTPRequestHandler):
    body: bytes = b"{}"
    status: int = 200
    paths: list[str] = []  # noqa: RUF012 - one server per test

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        if self.path != "/.well-known/wasm-pkg/registry.json":
            self.send_error(404)
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def well_known() -> Iterator[type[_WellKnown]]:
    """A local HTTP server on 127.0.0.1 serving ``/.well-known/wasm-pkg/registry.json``."""
    handler = type("Handler", (_WellKnown,), {"paths": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    handler.domain = f"127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def write_config(isolated_user: Path, text: str) -> None:
    (isolated_user / "config" / "wasmplug").mkdir(parents=True, exist_ok=True)
    (isolated_user / "config" / "wasmplug" / "distribution.toml").write_text(text)


def push_versions(
    host: str, repository: str, name: str, versions: list[str], pair: signing.KeyPair
) -> None:
    with Session() as s:
        for i, version in enumerate(versions):
            s.push(plugin_bytes(name, version, n=i + 1, pair=pair), f"{host}/{repository}")


def test_split_package() -> None:
    assert split_package("acme:tool@1.2") == ("acme", "tool", "1.2")
    assert split_package("acme:tool") == ("acme", "tool", None)
    assert split_package("./acme:tool") is None
    assert split_package("Acme:tool") is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, "1.10.0"),
        ("1.2", "1.10.0"),
        ("=1.2.0", "1.2.0"),
        ("0.9", "0.9.1"),
        ("2.0.0-rc.1", "2.0.0-rc.1"),
    ],
    ids=["highest-release", "caret", "exact", "zero-major", "pre-release"],
)
def test_select_tag_follows_the_registry_semver_rules(spec: str | None, expected: str) -> None:
    tags = ["latest", "0.9.1", "1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "sha256-abc.sig"]
    assert select_tag(tags, spec, "repo") == expected


def test_select_tag_reports_the_versions_seen() -> None:
    with pytest.raises(ArtifactNotFoundError, match=r"matching '3' \(versions: 1.0.0, 1.1.0\)"):
        select_tag(["1.0.0", "1.1.0", "latest"], "3", "repo")


def test_install_package_name_through_a_prefix_mapping(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    trust_file: Path,
    isolated_user: Path,
) -> None:
    prefix = repo.split("/")[0]
    push_versions(
        oci_registry.host,
        f"{prefix}/tool",
        "acme:tool",
        ["1.1.0", "1.2.5", "1.10.0", "2.0.0"],
        pair,
    )
    write_config(isolated_user, f'[namespace-registries]\nacme = "{oci_registry.host}/{prefix}"\n')
    reg = tmp_path / "reg"
    code, _, err = main_out(
        capsys, "install", "acme:tool@1.2", "--registry", str(reg), "--trust-store", str(trust_file)
    )
    assert code == 0, err
    [info] = Registry(reg).list()
    assert info.version == "1.10.0"  # highest 1.x, under Cargo rules
    assert info.reference == f"{oci_registry.host}/{prefix}/tool:1.10.0"


def main_out(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_install_package_name_discovered_through_well_known(
    tmp_path: Path,
    oci_registry: RunningRegistry,
    repo: str,
    pair: signing.KeyPair,
    isolated_user: Path,
    well_known: type[_WellKnown],
) -> None:
    prefix = repo.split("/")[0]
    push_versions(
        oci_registry.host, f"{prefix}/wk/acme/tool", "acme:tool", ["0.1.0", "0.2.0"], pair
    )
    well_known.body = json.dumps(
        {
            "preferredProtocol": "oci",
            "oci": {"registry": oci_registry.host, "namespacePrefix": f"{prefix}/wk/"},
        }
    ).encode()
    domain = well_known.domain  # type: ignore[attr-defined]
    write_config(isolated_user, f'[namespace-registries]\nacme = "{domain}"\n')
    with PluginHost(cache_dir=tmp_path / "cc", trusted_keys=[pair.public_key]) as host:
        info = host.install("acme:tool", registry=Registry(tmp_path / "reg"))
    assert info.version == "0.2.0"
    assert info.reference == f"{oci_registry.host}/{prefix}/wk/acme/tool:0.2.0"
    assert well_known.paths == ["/.well-known/wasm-pkg/registry.json"]


def test_well_known_legacy_keys_and_fallbacks(well_known: type[_WellKnown]) -> None:
    domain = well_known.domain  # type: ignore[attr-defined]
    well_known.body = b'{"ociRegistry": "r.example.com", "ociNamespacePrefix": "p/"}'
    assert discover_registry(domain) == ("r.example.com", "p/")
    well_known.body = b'{"warg": {"url": "https://warg.example.com"}}'
    with pytest.raises(DistributionError, match="names no OCI registry"):
        discover_registry(domain)
    well_known.status = 404
    assert discover_registry(domain) == (domain, "")
    well_known.status = 200
    well_known.body = b"[" * 60_000  # deep nesting: RecursionError becomes a typed error
    with pytest.raises(DistributionError, match="not JSON"):
        discover_registry(domain)
    well_known.body = b" " * 70_000
    with pytest.raises(DistributionError, match="larger than"):
        discover_registry(domain)


def test_discovery_is_https_only_for_remote_domains() -> None:
    import httpx

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(DistributionError):
        discover_registry("registry.example.com", transport=httpx.MockTransport(handler))
    assert seen == ["https://registry.example.com/.well-known/wasm-pkg/registry.json"]


def test_config_problems_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "distribution.toml"
    path.write_text("typo = 1\nmax-blob-bytes = -1\n[namespace-registries]\nacme = 5\n")
    with pytest.raises(DistributionError) as info:
        DistributionConfig.load(path)
    for problem in ("typo: unknown key", "max-blob-bytes", "namespace-registries.acme"):
        assert problem in str(info.value)


def test_insecure_hosts_from_the_config(tmp_path: Path) -> None:
    from wasmplug._distribution.operations import Session

    path = tmp_path / "distribution.toml"
    path.write_text('insecure = ["registry.internal:5000"]\nmax-blob-bytes = 1024\n')
    config = DistributionConfig.load(path)
    with Session(config=config) as s:
        assert s.client("registry.internal:5000").options.insecure
        assert not s.client("registry.example.com").options.insecure
        assert s.client("registry.example.com").options.max_blob_bytes == 1024
