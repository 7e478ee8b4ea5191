"""Fixtures for the OCI distribution tests: real registries and an isolated user.

Three ``docker-registry`` processes are started once per session (anonymous,
a second anonymous one for mirrors and sync, and one behind htpasswd auth) and
stopped at the end. Each test gets its own repository names, so tests do not
see each other's tags.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.oci_registry import RunningRegistry, registry_binary, start_registry
from wasmplug import TrustedKey, TrustStore
from wasmplug._trust import signing

_counter = itertools.count()


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, **auth: str) -> RunningRegistry:
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (scripts/test.sh installs it)")
    return start_registry(tmp_path_factory.mktemp(name), **auth)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """An anonymous registry on 127.0.0.1."""
    running = _start(tmp_path_factory, "oci-registry")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def oci_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A second anonymous registry (the mirror / the other site)."""
    running = _start(tmp_path_factory, "oci-mirror")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def oci_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A registry behind htpasswd (bcrypt) basic auth: user ``fleet``, password ``s3cret-pw``."""
    running = _start(tmp_path_factory, "oci-auth", username="fleet", password="s3cret-pw")
    yield running
    running.stop()


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses."""
    return f"t{next(_counter)}/plugin"


@pytest.fixture(autouse=True)
def isolated_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private config, cache and data dirs, and an empty Docker config, for every test."""
    home = tmp_path / "user"
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_DATA_HOME", "data"),
        ("DOCKER_CONFIG", "docker"),
    ):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    return home


@pytest.fixture
def pair() -> signing.KeyPair:
    return signing.generate_keypair()


@pytest.fixture
def trust_file(tmp_path: Path, pair: signing.KeyPair) -> Path:
    """A trust store file that trusts ``pair`` for every name."""
    path = tmp_path / "trust.json"
    store = TrustStore(path)
    store.add(TrustedKey(pair.public_key, ("*",), "Publisher"))
    store.save()
    return path
