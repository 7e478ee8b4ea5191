"""User code that must type-check under ``mypy --strict`` (see tests/test_typing.py).

It is never run; it pins the public API's static types from the user's side.
"""

from __future__ import annotations

from pathlib import Path

from wasmplug import (
    DirGrant,
    Err,
    ErrorResult,
    Grants,
    Limits,
    Manifest,
    Ok,
    Plugin,
    PluginCrashed,
    PluginFault,
    PluginHost,
    PluginMetrics,
    RestartPolicy,
    Variant,
    WasmplugError,
)


def app(path: Path) -> int:
    with PluginHost(
        limits=Limits(timeout_ms=100), restart_policy=RestartPolicy(max_faults=3)
    ) as host:
        host.provide("demo:plugin/host@0.1.0", {"log": print})
        plugin: Plugin = host.load(
            path,
            allow_unsigned=True,
            manifest=Manifest(name="demo", host_interfaces=("demo:plugin/host@0.1.0",)),
            grants=Grants(filesystem={"/data": DirGrant(Path("data"), "rw")}, env={"K": "v"}),
            pool_size=2,
        )
        try:
            greeting = plugin.call("greet", "world")
            print(greeting, plugin.exports.greet("again"))
        except ErrorResult as e:
            print("err", e.value, e.plugin, e.export)
        except PluginFault as e:
            print(e.fault, e.wasm_backtrace)
        except WasmplugError:
            return 1
        metrics: PluginMetrics = plugin.metrics()
        faults: int = metrics.total_faults
        values: list[object] = [Ok(1), Err("x"), Variant("case", 3)]
        print(values, faults, plugin.sha256, plugin.limits.timeout_ms)
        plugin.reset()
        plugin.close()
    return 0


def isolated_app(path: Path) -> object:
    with PluginHost(isolation="process", spare_workers=1) as host:
        plugin = host.load(path, allow_unsigned=True, isolation="inprocess")
        try:
            return plugin.call("greet", "worker")
        except PluginCrashed as e:
            return (e.signal, e.exit_code, e.fault)


async def async_app(plugin: Plugin) -> object:
    return await plugin.acall("greet", "async")
