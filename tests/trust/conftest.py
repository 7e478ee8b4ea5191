"""Fixtures for the trust and registry tests: a key pair, a trust store that trusts
it, a registry in a temporary directory, and ``install``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wasmplug import Registry, TrustedKey, TrustStore
from wasmplug._trust import signing as _signing


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
