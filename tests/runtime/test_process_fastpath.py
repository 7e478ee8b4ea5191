"""The process tier's generated per-export call functions (``process/fastpath.py``).

Every process-tier test calls through them too; these pin what is particular to
them: which exports get one, that what they refuse or cannot handle fails exactly
as on the general path, and the cases they hand over (a frame bigger than the
pipe, a call without a deadline, a fork).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wat as w
from support.interrupts import interrupt_every_c_call, interrupt_every_reset, served_elsewhere
from wasmplug import (
    Err,
    ErrorResult,
    Limits,
    Ok,
    Plugin,
    PluginHost,
    PluginTimeout,
    WitTypeError,
    WitValueError,
)
from wasmplug._runtime.plugin import find_export
from wasmplug._runtime.pool import InstancePool
from wasmplug._runtime.process.backend import ProcessBackend
from wasmplug._runtime.process.watchdog import WATCHDOG

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, /proc")

ADD = w.Func(
    "add",
    (("a", w.P("s32")), ("b", w.P("s32"))),
    w.P("s32"),
    "(i32.add (local.get 0) (local.get 1))",
)
EXPORTS = [
    ADD,
    w.Func("wide", (("v", w.P("u64")),), w.P("u64")),
    w.Func("real", (("x", w.P("f64")),), w.P("f64")),
    w.Func("single", (("x", w.P("f32")),), w.P("f32")),
    w.Func("flag", (("b", w.P("bool")),), w.P("bool")),
    w.Func("letter", (("c", w.P("char")),), w.P("char")),
    w.Func("text", (("s", w.P("string")),), w.P("string")),
    w.Func("blob", (("b", w.List(w.P("u8"))),), w.List(w.P("u8"))),
    w.Func(
        "outcome",
        (("r", w.Result(w.P("u32"), w.P("string"))),),
        w.Result(w.P("u32"), w.P("string")),
    ),
    w.Func("nothing", (), None, ""),
]
COMPONENT = w.component(EXPORTS).encode()


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Plugin]:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        yield host.load(COMPONENT, allow_unsigned=True)


def general(plugin: Plugin, name: str, *args: Any) -> Any:
    """The same call through the general path (``Plugin._invoke``)."""
    return plugin._invoke(find_export(plugin, name), args)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", fn(*args)
    except Exception as e:
        return type(e).__name__, str(e)


def test_handle_free_exports_get_a_generated_function(plugin: Plugin) -> None:
    assert plugin.call("add", 2, 3) == 5
    bound = find_export(plugin, "add").bound
    assert bound is not None
    assert bound.__name__ == "call_add"
    assert bound.__code__.co_filename.startswith("<wasmplug call ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("add", (2**31 - 1, -(2**31))),
        ("wide", (2**64 - 1,)),
        ("real", (1.5,)),
        ("real", (float("inf"),)),
        ("single", (0.1,)),  # rounded to float32 on the way in
        ("single", (1e300,)),
        ("flag", (True,)),
        ("letter", ("ü",)),
        ("text", ("",)),
        ("text", ("ascii only",)),
        ("text", ("héllo wörld ☃",)),
        ("blob", (b"\x00\xff" * 100,)),
        ("outcome", (Ok(7),)),
        ("nothing", ()),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_values_cross_as_on_the_general_path(plugin: Plugin, name: str, value: Any) -> None:
    assert outcome(plugin.call, name, *value) == outcome(
        functools.partial(general, plugin), name, *value
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("add", (True, 1)),  # a bool is not an s32
        ("add", (2**31, 1)),
        ("add", (1, -(2**31) - 1)),
        ("add", (1.0, 1)),
        ("add", (1,)),  # arity
        ("add", (1, 2, 3)),
        ("wide", (-1,)),
        ("real", (2,)),  # an int is a valid f64: the general path converts it
        ("real", ("1.5",)),
        ("flag", (1,)),
        ("letter", ("ab",)),
        ("text", ("\ud800",)),  # a lone surrogate cannot be UTF-8
        ("text", (b"bytes",)),
        ("blob", ("text",)),
        ("blob", ([1, 256],)),
    ],
    ids=repr,
)
def test_refused_arguments_fail_as_on_the_general_path(
    plugin: Plugin, name: str, args: tuple[Any, ...]
) -> None:
    got = outcome(plugin.call, name, *args)
    assert got == outcome(functools.partial(general, plugin), name, *args)
    if name != "real" or args != (2,):
        assert got[0] in (WitTypeError.__name__, WitValueError.__name__)


def test_an_err_result_is_error_result(plugin: Plugin) -> None:
    with pytest.raises(ErrorResult) as info:
        plugin.call("outcome", Err("no"))
    assert info.value.value == "no"


def test_a_frame_bigger_than_the_pipe_is_finished_by_the_channel(plugin: Plugin) -> None:
    """The frame's first ``os.write`` does not wait (the pipe's write end is
    non-blocking): what is left of an 8 MiB argument goes out with the deadline, and
    the reply is as big."""
    text = "0123456789abcdef" * (1 << 19)
    assert plugin.call("text", text) == text
    assert plugin.call("add", 1, 2) == 3


def test_a_plugin_without_a_deadline_never_arms_the_watchdog(tmp_path: Path) -> None:
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True, limits=Limits(timeout_ms=None))
        armed: list[object] = []
        real = type(WATCHDOG.armed)

        class Spy(real):  # type: ignore[misc,valid-type]
            def __setitem__(self, key: Any, value: Any) -> None:
                armed.append(key)
                super().__setitem__(key, value)

        saved, WATCHDOG.armed = WATCHDOG.armed, Spy(WATCHDOG.armed)
        try:
            assert plugin.call("add", 1, 2) == 3
        finally:
            WATCHDOG.armed = saved
        assert armed == []


def test_the_watchdog_starts_afresh_in_a_forked_child(plugin: Plugin) -> None:
    """``os.register_at_fork`` resets it: the child has none of the parent's threads
    or calls, and its first call starts its own thread."""
    assert plugin.call("add", 1, 2) == 3
    assert WATCHDOG.started
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only
        os._exit(0 if not WATCHDOG.started and not WATCHDOG.armed else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("half", [False, True], ids=["nothing-taken", "half-taken"])
def test_a_frame_the_pipe_does_not_take_at_once_is_finished_by_the_channel(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch, half: bool
) -> None:
    """The generated function's one ``os.write`` finds the pipe full (nothing taken) or
    takes part of the frame: the channel sends the rest."""
    assert plugin.call("add", 1, 2) == 3
    bound = find_export(plugin, "add").bound
    assert bound is not None
    real = bound.__globals__["write"]
    refused: list[int] = []

    def refusing(fd: int, data: bytes) -> int:
        if not refused:
            refused.append(fd)
            if not half:
                raise BlockingIOError
            return int(real(fd, data[: len(data) // 2]))
        return int(real(fd, data))

    monkeypatch.setitem(bound.__globals__, "write", refusing)
    assert plugin.call("add", 2, 3) == 5
    assert len(refused) == 1
    assert plugin.call("add", 3, 4) == 7


def test_a_worker_killed_at_its_deadline_while_the_frame_went_out_is_a_timeout(
    plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the watchdog's kill ends a send that waits for room with ``EPIPE``,
    which the call took for a worker that had died while idle: it counted a crash and
    made the call again on a fresh worker, with a fresh deadline."""
    assert plugin.call("add", 1, 2) == 3
    assert plugin._backend is not None
    [worker] = plugin._backend.pool.live()
    bound = find_export(plugin, "add").bound
    assert bound is not None

    def killed_meanwhile(fd: int, data: bytes) -> int:
        worker.overdue = True  # what the watchdog does before it kills
        worker.kill()
        raise BrokenPipeError

    monkeypatch.setitem(bound.__globals__, "write", killed_meanwhile)
    with pytest.raises(PluginTimeout, match="worker process was killed"):
        plugin.call("add", 2, 3)
    monkeypatch.undo()
    assert plugin.metrics().faults == {"timeout": 1}
    assert plugin.call("add", 3, 4) == 7


@pytest.mark.parametrize("pool_size", [1, 2])
def test_an_interrupt_after_any_c_call_leaves_no_worker_held(
    tmp_path: Path, pool_size: int
) -> None:
    """Ctrl-C landing right after any C call of the generated function leaves the
    plugin usable: no worker's lock or slot is left held (after the request went
    out, the worker is killed and replaced, as on the general path)."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True, pool_size=pool_size)
        assert plugin.call("add", 1, 2) == 3
        bound = find_export(plugin, "add").bound
        assert bound is not None
        assert interrupt_every_c_call(plugin, {bound.__code__}, pool_size, timeout_s=60.0) > 4
        assert served_elsewhere(plugin, timeout_s=60.0)
        assert plugin._backend is not None
        pool = plugin._backend.pool
        assert pool._slots.qsize() == pool_size
        assert not any(worker.lock.locked() for worker in pool.live())


@pytest.mark.parametrize("pool_size", [1, 2])
def test_an_interrupt_anywhere_in_the_general_path_leaves_no_worker_held_or_lost(
    tmp_path: Path, pool_size: int
) -> None:
    """The same for the process tier's general path (``ProcessBackend.invoke``): every
    C call of the pool's frames and of the call's own, each try making its worker.
    Regression: it took its worker with ``InstancePool.checkout`` (see the in-process
    test in test_fastcall.py)."""
    codes = {
        InstancePool.run.__code__,
        InstancePool._new.__code__,
        InstancePool._discard.__code__,
        InstancePool.ready_solo.__code__,
        ProcessBackend._invoke_once.__code__,
        ProcessBackend._invoke_on.__code__,
    }
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True, pool_size=pool_size)
        assert plugin.call("add", 1, 2) == 3
        found = interrupt_every_c_call(
            plugin, codes, pool_size, timeout_s=60.0, general=True, fresh=True
        )
        assert found > 2


def test_an_interrupt_during_reset_leaves_no_worker_held(tmp_path: Path) -> None:
    """The same for ``ProcessBackend.reset``, which took each idle worker's lock with
    ``acquire(blocking=False)`` before the ``try`` that released it."""
    with PluginHost(cache_dir=tmp_path / "cache", isolation="process", spare_workers=0) as host:
        plugin = host.load(COMPONENT, allow_unsigned=True, pool_size=2)
        codes = {ProcessBackend.reset.__code__, ProcessBackend._reset.__code__}
        assert interrupt_every_reset(plugin, codes, 2) >= 2
