"""A filesystem grant is bound to the directory it named at load (issue 9 §1).

The attack: with ``/data -> D`` read-write and ``/cfg -> D/cfg`` read-only, a
plugin renames ``D/cfg`` away, puts a symlink ``D/cfg -> ../elsewhere`` in its
place and traps; the next instance used to preopen ``/cfg`` again *by path* and
read ``elsewhere``. These tests run the real attack with the componentize-py
``prober`` plugin (tests/plugins/prober), then variants of it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.plugins import build_prober
from wasmplug import (
    CapabilityError,
    DirGrant,
    ErrorResult,
    FilesystemRequest,
    Grants,
    Limits,
    LinkError,
    Manifest,
    Plugin,
    PluginHost,
    PluginTrapped,
)
from wasmplug._sandbox import bound_dir

Loader = Callable[..., Plugin]
SECRET = "SECRET: never granted"


@pytest.fixture(scope="session")
def prober_wasm() -> Path:
    return build_prober()


@pytest.fixture
def load_prober(shared_host: PluginHost, prober_wasm: Path) -> Iterator[Loader]:
    """``load_prober({"/guest": DirGrant(...)}) -> Plugin``; each grant is also declared."""
    loaded: list[Plugin] = []

    def load(grants: dict[str, DirGrant], **kwargs: Any) -> Plugin:
        manifest = Manifest(
            name="prober",
            filesystem=tuple(FilesystemRequest(g, d.mode) for g, d in grants.items()),
        )
        plugin = shared_host.load(
            prober_wasm,
            allow_unsigned=True,
            manifest=manifest,
            grants=Grants(filesystem=grants),
            **kwargs,
        )
        loaded.append(plugin)
        return plugin

    yield load
    for plugin in loaded:
        plugin.close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``D/cfg/settings.txt`` (granted) and ``elsewhere/settings.txt`` (never granted)."""
    (tmp_path / "D" / "cfg").mkdir(parents=True)
    (tmp_path / "D" / "cfg" / "settings.txt").write_text("colour = blue")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "settings.txt").write_text(SECRET)
    return tmp_path


def _trap(plugin: Plugin) -> None:
    with pytest.raises(PluginTrapped):
        plugin.call("panic", "make the host create a fresh instance")


def _assert_refused(plugin: Plugin) -> None:
    """The next instance is refused, counted, and never created; nothing leaks out."""
    with pytest.raises(CapabilityError, match="no longer names the directory") as info:
        plugin.call("read-file", "/cfg/settings.txt")
    assert SECRET not in str(info.value)
    metrics = plugin.metrics()
    assert metrics.faults.get("capability", 0) >= 1
    assert metrics.last_fault is not None
    assert metrics.last_fault.kind == "capability"
    assert metrics.instances == 0


def test_the_reported_attack_is_refused_at_load(load_prober: Loader, tree: Path) -> None:
    """One plugin with ``/data -> D`` rw and ``/cfg -> D/cfg`` ro: overlapping grants
    where the outer one is writable are refused, with a message saying why."""
    with pytest.raises(CapabilityError, match="lies inside the writable grant for '/data'"):
        load_prober(
            {"/data": DirGrant(tree / "D", "rw"), "/cfg": DirGrant(tree / "D" / "cfg", "ro")}
        )
    with pytest.raises(CapabilityError, match="is the same directory as the writable grant"):
        load_prober({"/a": DirGrant(tree / "D", "rw"), "/b": DirGrant(tree / "D", "ro")})


def test_guest_swaps_another_plugins_grant(load_prober: Loader, tree: Path) -> None:
    """The reported attack across two plugins: the writer replaces ``D/cfg`` with a
    symlink to ``../elsewhere``; the reader's next instance must not reach it."""
    writer = load_prober({"/data": DirGrant(tree / "D", "rw")})
    reader = load_prober({"/cfg": DirGrant(tree / "D" / "cfg", "ro")})
    assert reader.call("read-file", "/cfg/settings.txt") == "colour = blue"

    assert writer.call("move-path", "/data/cfg", "/data/cfg-old") is None
    assert writer.call("make-symlink", "../elsewhere", "/data/cfg") is None
    assert (tree / "D" / "cfg").resolve() == tree / "elsewhere"  # the attack worked on disk
    _trap(reader)
    _assert_refused(reader)
    _assert_refused(reader)  # every later attempt too, not only the first
    assert reader.metrics().faults == {"trap": 1, "capability": 2}
    # Putting the directory back makes the grant valid again.
    (tree / "D" / "cfg").unlink()
    (tree / "D" / "cfg-old").rename(tree / "D" / "cfg")
    reader.reset()
    assert reader.call("read-file", "/cfg/settings.txt") == "colour = blue"


def _swap_for_symlink(tree: Path) -> None:
    os.rename(tree / "D" / "cfg", tree / "D" / "cfg-old")
    os.symlink("../elsewhere", tree / "D" / "cfg")


def _swap_for_other_directory(tree: Path) -> None:
    os.rename(tree / "D" / "cfg", tree / "D" / "cfg-old")
    shutil.copytree(tree / "elsewhere", tree / "D" / "cfg")


def _swap_parent_for_symlink(tree: Path) -> None:
    """A symlink at a parent component: ``D`` itself now points somewhere else."""
    decoy = tree / "decoy"
    (decoy / "cfg").mkdir(parents=True)
    (decoy / "cfg" / "settings.txt").write_text(SECRET)
    os.rename(tree / "D", tree / "D-old")
    os.symlink(decoy, tree / "D")


def _rename_parent(tree: Path) -> None:
    """The parent is renamed and a look-alike tree put in its place."""
    os.rename(tree / "D", tree / "D-old")
    (tree / "D" / "cfg").mkdir(parents=True)
    (tree / "D" / "cfg" / "settings.txt").write_text(SECRET)


def _remove(tree: Path) -> None:
    shutil.rmtree(tree / "D" / "cfg")


@pytest.mark.parametrize(
    "swap",
    [_swap_for_symlink, _swap_for_other_directory, _swap_parent_for_symlink, _rename_parent,
     _remove],
    ids=["symlink", "other-directory", "symlinked-parent", "renamed-parent", "removed"],
)  # fmt: skip
def test_changed_identity_refuses_the_next_instance(
    load_prober: Loader, tree: Path, swap: Callable[[Path], None]
) -> None:
    plugin = load_prober({"/cfg": DirGrant(tree / "D" / "cfg", "rw")})
    assert plugin.call("list-dir", "/cfg") == ["settings.txt"]
    swap(tree)
    _trap(plugin)
    _assert_refused(plugin)
    assert (tree / "elsewhere" / "settings.txt").read_text() == SECRET


def test_process_tier_workers_check_the_identity_bound_at_load(
    load_prober: Loader, tree: Path
) -> None:
    """With ``isolation="process"`` the worker binds the path again: both the running
    worker's next instance and a freshly started worker refuse a swapped directory."""
    plugin = load_prober({"/cfg": DirGrant(tree / "D" / "cfg", "ro")}, isolation="process")
    assert plugin.call("read-file", "/cfg/settings.txt") == "colour = blue"
    _swap_for_symlink(tree)
    _trap(plugin)
    with pytest.raises(CapabilityError, match=r"now resolves to .*elsewhere"):
        plugin.call("read-file", "/cfg/settings.txt")
    plugin.reset()  # a new worker process binds the grant from scratch
    with pytest.raises(CapabilityError, match=r"now resolves to .*elsewhere"):
        plugin.call("read-file", "/cfg/settings.txt")
    assert plugin.metrics().faults.get("capability", 0) >= 2


def test_symlinked_grant_path_is_bound_to_its_target(load_prober: Loader, tree: Path) -> None:
    """An application may grant a path through its own symlink; retargeting that
    symlink later is a changed identity too."""
    (tree / "link").symlink_to(tree / "D" / "cfg")
    plugin = load_prober({"/cfg": DirGrant(tree / "link", "ro")})
    assert plugin.call("read-file", "/cfg/settings.txt") == "colour = blue"
    (tree / "link").unlink()
    (tree / "link").symlink_to(tree / "elsewhere")
    _trap(plugin)
    _assert_refused(plugin)


def test_swap_after_the_check_cannot_redirect_the_preopen(
    load_prober: Loader, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCTOU: the path is swapped right after the identity check passed. The preopen
    goes through the held descriptor, so the guest still sees the bound directory."""
    if not bound_dir._HAS_FD_DIR:
        pytest.skip("needs /proc/self/fd (Linux)")  # pragma: no cover
    plugin = load_prober({"/cfg": DirGrant(tree / "D" / "cfg", "ro")})
    check = bound_dir.BoundDir._check
    swapped: list[bool] = []

    def check_then_swap(self: bound_dir.BoundDir) -> None:
        check(self)
        if not swapped:
            swapped.append(True)
            _swap_for_symlink(tree)

    monkeypatch.setattr(bound_dir.BoundDir, "_check", check_then_swap)
    _trap(plugin)
    assert plugin.call("read-file", "/cfg/settings.txt") == "colour = blue"
    assert swapped


def test_read_only_outer_grant_may_contain_a_writable_one(load_prober: Loader, tree: Path) -> None:
    """``/project`` ro with ``/out`` rw inside it is allowed: nothing writable contains
    another grant, and the inner directory stays bound."""
    (tree / "D" / "out").mkdir()
    plugin = load_prober(
        {"/project": DirGrant(tree / "D", "ro"), "/out": DirGrant(tree / "D" / "out", "rw")}
    )
    assert plugin.call("write-file", "/out/result.txt", "42") is None
    assert plugin.call("read-file", "/project/out/result.txt") == "42"
    with pytest.raises(ErrorResult):
        plugin.call("write-file", "/project/cfg/settings.txt", "overwritten")
    with pytest.raises(ErrorResult):
        plugin.call("move-path", "/project/out", "/project/elsewhere")


def _open_fds(tree: Path) -> int:
    """Descriptors of this process that name ``tree`` or a path under it. Counts only
    those: descriptors of other tests' background workers come and go at any time."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd (Linux)")  # pragma: no cover
    root = str(tree.resolve())
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listdir and readlink
            continue
    return sum(1 for n in names if n == root or n.startswith(root + "/"))


def test_grant_descriptors_are_released_on_close(load_prober: Loader, tree: Path) -> None:
    before = _open_fds(tree)
    plugin = load_prober({"/cfg": DirGrant(tree / "D" / "cfg", "ro")})
    assert _open_fds(tree) > before, "the grant holds a directory descriptor while loaded"
    plugin.close()
    assert _open_fds(tree) == before
    with pytest.raises(CapabilityError):
        load_prober({"/cfg": DirGrant(tree / "missing", "ro")})
    assert _open_fds(tree) == before


# Imports a function of an interface no host provides.
_IMPORTS_UNPROVIDED = """(component
  (import "demo:missing/api@0.1.0" (instance $api (export "ping" (func))))
  (core func $ping (canon lower (func $api "ping")))
  (core module $m (import "h" "ping" (func)) (func (export "run") (call 0)))
  (core instance $i (instantiate $m (with "h" (instance (export "ping" (func $ping))))))
  (func (export "run") (canon lift (core func $i "run"))))"""
_ADD = """(component
  (core module $m (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add"))))"""


@pytest.mark.parametrize(
    ("wat", "limits", "refusal"),
    [
        (_ADD, Limits(fuel=1000), "fuel limit"),  # the host has no consume_fuel
        (_IMPORTS_UNPROVIDED, Limits(), "demo:missing/api"),  # nothing provides it
    ],
    ids=["fuel-without-metering", "unprovided-import"],
)
def test_a_load_refused_after_the_grant_was_bound_releases_it(
    shared_host: PluginHost, tree: Path, wat: str, limits: Limits, refusal: str
) -> None:
    """Refusals that come after the granted directory was opened and bound (the fuel
    check, the import plan) close it again, rather than leaving it to the collector:
    while the application holds the exception, its traceback keeps the frames alive."""
    manifest = Manifest(
        name="refused",
        filesystem=(FilesystemRequest("/cfg", "ro"),),
        host_interfaces=("demo:missing/api@0.1.0",),
        limits=limits,
    )
    before = _open_fds(tree)
    with pytest.raises((CapabilityError, LinkError), match=refusal) as refused:
        shared_host.load(
            wat.encode(),
            allow_unsigned=True,
            manifest=manifest,
            grants=Grants(filesystem={"/cfg": DirGrant(tree / "D" / "cfg", "ro")}),
        )
    assert refused.tb is not None
    assert _open_fds(tree) == before
