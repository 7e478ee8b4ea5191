"""Fixtures of the outbound-HTTP tests (test_http*.py): the server and a plugin loader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.http import COMPONENT, Loader, Server, running_server
from wasmplug import Grants, Limits, Manifest, Plugin, PluginHost
from wasmplug._sandbox.http import HTTP_INTERFACE, HttpCapability


@pytest.fixture(scope="module")
def server_instance() -> Iterator[Server]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def server(server_instance: Server) -> Server:
    with server_instance.lock:
        server_instance.log.clear()
    return server_instance


@pytest.fixture(scope="module")
def http_host() -> Iterator[PluginHost]:
    """One host for the module: the component compiles once (no disk cache)."""
    with PluginHost(cache_dir=False) as h:
        yield h


@pytest.fixture
def load(http_host: PluginHost, server: Server) -> Iterator[Loader]:
    """``load(allowed, granted=allowed, capability=None, limits=None)`` -> Plugin.

    ``allowed`` is what the manifest declares (default: the test server's
    origin); ``granted`` what the application grants (default: the same).
    """
    loaded: list[Plugin] = []
    capabilities: list[HttpCapability] = []

    def load_(
        allowed: tuple[str, ...] | None = None,
        granted: tuple[str, ...] | None = None,
        capability: HttpCapability | None = None,
        limits: Limits | None = None,
        pool_size: int = 1,
    ) -> Plugin:
        allowed = (server.url,) if allowed is None else allowed
        capability = capability or HttpCapability()
        capabilities.append(capability)
        http_host.provide(HTTP_INTERFACE, capability)
        plugin = http_host.load(
            COMPONENT,
            allow_unsigned=True,
            manifest=Manifest(
                name="fetcher", host_interfaces=(HTTP_INTERFACE,), allowed_outbound_hosts=allowed
            ),
            grants=Grants(allowed_outbound_hosts=allowed if granted is None else granted),
            limits=limits,
            pool_size=pool_size,
        )
        loaded.append(plugin)
        return plugin

    yield load_
    for plugin in loaded:
        plugin.close()
    for capability in capabilities:
        capability.close()
