"""What host functions and fault handlers can learn about the plugin involved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from wasmplug import (
    Grants,
    Manifest,
    Plugin,
    PluginHost,
    PluginTrapped,
    current_plugin,
)
from wasmplug._sandbox.capabilities import requested_permissions
from wasmplug._sandbox.grantstore import GrantPolicy, GrantStore, PermissionRequest

IMPORTING = b"""
(component
  (import "demo:x/host@0.1.0" (instance $h (export "who" (func (result u32)))))
  (core func $who (canon lower (func $h "who")))
  (core module $m
    (import "h" "who" (func $w (result i32)))
    (func (export "run") (result i32) call $w)
  )
  (core instance $hi (export "who" (func $who)))
  (core instance $i (instantiate $m (with "h" (instance $hi))))
  (func (export "run") (result u32) (canon lift (core func $i "run")))
)
"""


def test_current_plugin_inside_a_host_function(host: PluginHost) -> None:
    seen: list[Plugin | None] = []

    def who() -> int:
        seen.append(current_plugin())
        return 1

    host.provide("demo:x/host@0.1.0", {"who": who})
    manifest = Manifest(name="first", host_interfaces=("demo:x/host@0.1.0",))
    a = host.load(IMPORTING, allow_unsigned=True, manifest=manifest)
    b = host.load(IMPORTING, allow_unsigned=True, manifest=manifest)
    a.call("run")
    b.call("run")
    assert seen == [a, b]
    assert current_plugin() is None  # outside any call
    assert a.publisher is None  # loaded unsigned


def test_a_trap_carries_the_guests_stderr(load_greeter: Callable[..., Plugin]) -> None:
    plugin = load_greeter()
    with pytest.raises(PluginTrapped) as info:
        plugin.call("panic", "the reason")
    assert "RuntimeError: the reason" in info.value.guest_stderr


def test_a_second_prompt_adds_to_the_first_answer(tmp_path: Path) -> None:
    answers = [Grants(env={"A": "1"}), Grants(env={"B": "2"})]
    policy = GrantPolicy(prompt=lambda req: answers.pop(0), store=GrantStore(tmp_path / "g.json"))

    def request(manifest: Manifest) -> PermissionRequest:
        perms = requested_permissions(manifest)
        return PermissionRequest(manifest.name, "1.0.0", None, "", "cd" * 32, perms, perms)

    assert policy.decide(request(Manifest(name="p", env=("A",)))).env == {"A": "1"}
    bigger = request(Manifest(name="p", env=("A", "B")))
    assert policy.decide(bigger).env == {"A": "1", "B": "2"}
    assert policy.decide(bigger).env == {"A": "1", "B": "2"}  # remembered, no third prompt
