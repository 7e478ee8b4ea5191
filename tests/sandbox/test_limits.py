"""Default limits bound the whole plugin instance, not each memory (issue 9 §6)."""

from __future__ import annotations

import math

import attrs
import pytest

from wasmplug import InstantiationError, Limits, Manifest, PluginHost

PAGE = 65536


def memories_component(n: int) -> bytes:
    """A component of ``n`` core modules, each with its own memory and an export
    ``grow<i>(pages) -> s32`` that runs ``memory.grow`` on it."""
    parts = ["(component"]
    for i in range(n):
        parts.append(f"""
  (core module $M{i}
    (memory (export "mem") 1)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
  (core instance $m{i} (instantiate $M{i}))
  (func $grow{i} (param "pages" u32) (result s32) (canon lift (core func $m{i} "grow")))
  (export "grow{i}" (func $grow{i}))""")
    parts.append(")")
    return "".join(parts).encode()


def _grow_all(host: PluginHost, n: int, limits: Limits | None = None) -> int:
    """Grow every memory as far as it goes (halving the request on refusal);
    return the total bytes held."""
    plugin = host.load(memories_component(n), allow_unsigned=True, limits=limits)
    total = 0
    for i in range(n):
        pages, step = 1, 1 << 16
        while step:
            if plugin.call(f"grow{i}", step) != -1:
                pages += step
            else:
                step //= 2
        total += pages * PAGE
    return total


def test_four_memories_cannot_exceed_the_default_total(host: PluginHost) -> None:
    """Under the default Limits() a component with four memories used to hold 4 x 256 MiB."""
    default = Limits()
    assert default.memory_bytes is not None
    with pytest.raises(InstantiationError, match=r"Limits\.memories=1"):
        host.load(memories_component(4), allow_unsigned=True)
    # Allowing four memories splits the same total between them.
    limits = Limits(memories=4)
    assert limits.per_memory_bytes == default.memory_bytes // 4
    assert _grow_all(host, 4, limits) <= default.memory_bytes


def test_one_memory_gets_the_whole_total(host: PluginHost) -> None:
    limits = Limits(memory_bytes=8 * 2**20)
    assert _grow_all(host, 1, limits) == 8 * 2**20


def test_defaults_bound_every_kind() -> None:
    default = Limits()
    for name in ("memory_bytes", "memories", "tables", "instances", "table_elements",
                 "max_result_bytes", "timeout_ms"):  # fmt: skip
        assert getattr(default, name) is not None, name
    assert all(v is None for v in attrs.asdict(Limits.unlimited()).values())


def test_manifest_limits_defer_to_the_application(host: PluginHost) -> None:
    """A manifest that says nothing about memories must not cap the application's choice."""
    manifest = Manifest.from_toml('[plugin]\nname = "m"\nversion = "1.0.0"\n[limits]\nfuel = 5\n')
    assert manifest.limits.memories is None
    effective = manifest.limits.capped_by(Limits(memories=4))
    assert effective.memories == 4
    assert effective.fuel == 5


def test_too_many_instances_or_tables_say_which_limit(host: PluginHost) -> None:
    with pytest.raises(InstantiationError, match=r"Limits\.instances"):
        host.load(
            memories_component(3), allow_unsigned=True, limits=Limits(instances=2, memories=3)
        )


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, -math.inf, True])
def test_limits_refuse_non_positive_and_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        Limits(timeout_ms=value)
