"""Fixtures for the OCI distribution tests: an isolated user, fresh repository names.

The registries (``oci_registry``, ``oci_mirror``, ``oci_auth_registry``) are
session fixtures of ``support.oci_registry``, registered in ``tests/conftest.py``.
Each test gets its own repository names, so tests do not see each other's tags.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from wasmplug import TrustedKey, TrustStore
from wasmplug._trust import signing

_counter = itertools.count()


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
