"""Promises made in the docs, each checked on a real component.

One test (or a few) per sentence of ``docs/`` that no other test checked; the docstring of
each test quotes the page it holds to. Tiny WAT components where they suffice, the
componentize-py ``greeter`` test plugin where a real guest runtime is the point.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wasmtime

import wat as w
from wasmplug import (
    HostFunctionError,
    InstantiationError,
    Limits,
    Manifest,
    Plugin,
    PluginHost,
    PluginTrapped,
    ResourceLimitExceeded,
    RestartPolicy,
    StaleResourceError,
)
from wasmplug._sandbox import stdio

Loader = Callable[..., Plugin]
PLUGIN_LOGGER = "wasmplug.plugin.greeter"

# -- security.md: "Guest output" ---------------------------------------------------------


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == PLUGIN_LOGGER and r.levelno == level
    ]


def test_guest_output_is_rate_limited_per_stream(
    load_greeter: Loader, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security.md: "Each stream of each instance is rate-limited to 100 lines per second;
    the excess is counted and reported once per window as (N lines suppressed by rate
    limit)"."""
    # The limiter's clock stands still, then jumps one window: on a loaded machine the
    # 150 lines could otherwise straddle two windows.
    now = [1_000.0]
    monkeypatch.setattr(stdio, "time", SimpleNamespace(monotonic=lambda: now[0]))
    plugin = load_greeter()
    caplog.set_level(logging.INFO, logger=PLUGIN_LOGGER)
    plugin.call("print-stdout", "\n".join(f"line {i}" for i in range(150)))
    for level in (logging.INFO, logging.WARNING):  # stdout, stderr: each has its own budget
        assert _lines(caplog, level) == [f"line {i}" for i in range(100)]
    now[0] += 1.0  # the next window
    caplog.clear()
    plugin.call("print-stdout", "after")
    for level in (logging.INFO, logging.WARNING):
        assert _lines(caplog, level) == ["(50 lines suppressed by rate limit)", "after"]


def test_discarded_output_still_recognises_an_out_of_memory_abort(
    load_greeter: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    """security.md: "A manifest with stdio = "discard" drops the output (the last 2 KiB are
    still kept to recognise an out-of-memory abort)"."""
    from conftest import greeter_manifest

    caplog.set_level(logging.DEBUG, logger=PLUGIN_LOGGER)
    plugin = load_greeter(
        manifest=greeter_manifest(stdio="discard"), limits=Limits(memory_bytes=48 * 2**20)
    )
    plugin.call("print-stdout", "dropped")
    with pytest.raises(ResourceLimitExceeded):
        plugin.call("hog", 64)  # MemoryError on the guest's stderr, then a trap
    assert [r for r in caplog.records if r.name == PLUGIN_LOGGER] == []


# -- security.md: the sandbox table ------------------------------------------------------


def test_argv_is_plugin_and_stdin_is_empty(load_greeter: Loader) -> None:
    """security.md: "argv is ["plugin"]" and "stdin: empty"."""
    plugin = load_greeter()
    assert plugin.call("argv") == ["plugin"]
    assert plugin.call("read-stdin") == ""


# -- host-guide.md: grants ----------------------------------------------------------------


def test_declared_but_not_granted_is_logged_at_info(
    load_greeter: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    """host-guide.md: "What was declared but not granted is logged at INFO on the wasmplug
    logger (plugin greeter: env HOME: not granted)"."""
    from conftest import greeter_manifest

    caplog.set_level(logging.INFO, logger="wasmplug")
    plugin = load_greeter(manifest=greeter_manifest(env=("HOME",)))
    assert plugin.call("get-env", "HOME") is None
    records = [r for r in caplog.records if r.name == "wasmplug" and "not granted" in r.message]
    assert [r.levelno for r in records] == [logging.INFO]
    assert "plugin greeter: env HOME: not granted" in records[0].getMessage()


# -- host-guide.md: pool_size, threads ------------------------------------------------------

ADD = w.component([w.Func("add", (("a", w.P("s32")), ("b", w.P("s32"))), w.P("s32"),
                          "(i32.add (local.get 0) (local.get 1))")])  # fmt: skip


@pytest.mark.parametrize("pool_size", [0, -1])
def test_pool_size_below_one_is_a_value_error(host: PluginHost, pool_size: int) -> None:
    """host-guide.md: "ValueError is raised for pool_size < 1"."""
    with pytest.raises(ValueError, match="pool_size"):
        host.load(ADD.encode(), allow_unsigned=True, pool_size=pool_size)


RAISES = """
(component
  (import "demo:x/raise@0.1.0" (instance $h (export "fail" (func (param "n" u32)))))
  (core func $fail (canon lower (func $h "fail")))
  (core module $M
    (import "h" "fail" (func $fail (param i32)))
    (func (export "run") (param i32) (call $fail (local.get 0))))
  (core instance $m (instantiate $M (with "h" (instance (export "fail" (func $fail))))))
  (func (export "run") (param "n" u32) (canon lift (core func $m "run")))
)
"""


class Numbered(Exception):
    """Raised by the host function with the number the guest passed."""


def test_host_function_exceptions_never_leak_between_threads(host: PluginHost) -> None:
    """DESIGN/host-guide: a host function's exception is kept per call, so concurrent calls
    on other threads each get their own exception as ``__cause__``."""
    entered = threading.Barrier(4, timeout=10)

    def fail(n: int) -> None:
        if n < 4:
            entered.wait()  # all four calls are inside their host function at once
        raise Numbered(n)

    host.provide("demo:x/raise@0.1.0", {"fail": fail})
    plugin = host.load(
        RAISES.encode(), allow_unsigned=True, pool_size=4,
        restart_policy=RestartPolicy(max_faults=10**6),  # 200 faults, on purpose
        manifest=Manifest(name="raise", host_interfaces=("demo:x/raise@0.1.0",)),
    )  # fmt: skip
    wrong: list[tuple[int, object]] = []

    def worker(k: int) -> None:
        for i in range(50):
            n = k if i == 0 else 100 + k * 1000 + i  # the first call meets the barrier
            try:
                plugin.call("run", n)
            except HostFunctionError as e:
                cause = e.__cause__
                if not (isinstance(cause, Numbered) and cause.args == (n,)):
                    wrong.append((n, cause))
            else:
                wrong.append((n, None))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []


# -- crash-isolation.md / host-guide.md: start-up ------------------------------------------

STARTS = """
(component
  (import "demo:x/init@0.1.0" (instance $h (export "init" (func))))
  (core func $init (canon lower (func $h "init")))
  (core module $M
    (import "h" "init" (func $init))
    (func $start (call $init))
    (start $start)
    (func (export "boom") unreachable)
    (func (export "one") (result i32) (i32.const 1)))
  (core instance $m (instantiate $M (with "h" (instance (export "init" (func $init))))))
  (func (export "boom") (canon lift (core func $m "boom")))
  (func (export "one") (result u32) (canon lift (core func $m "one")))
)
"""


def test_instantiation_error_at_the_call_that_needed_a_replacement(host: PluginHost) -> None:
    """crash-isolation.md: start-up failures raise InstantiationError "at load, or at the
    call that needed a replacement instance"; host-guide.md: "after a fault, the
    replacement instance failed to start"."""
    starts: list[int] = []

    def init() -> None:
        starts.append(1)
        if len(starts) > 1:
            raise RuntimeError("the database is gone")

    host.provide("demo:x/init@0.1.0", {"init": init})
    plugin = host.load(
        STARTS.encode(), allow_unsigned=True,
        manifest=Manifest(name="starts", host_interfaces=("demo:x/init@0.1.0",)),
    )  # fmt: skip
    assert plugin.call("one") == 1
    with pytest.raises(PluginTrapped):
        plugin.call("boom")  # the instance is discarded
    with pytest.raises(InstantiationError) as info:
        plugin.call("one")  # ...and its replacement fails to start
    assert "starts" in str(info.value)
    assert len(starts) == 2


SPINS_AT_START = """
(component
  (core module $M
    (func $start (loop $l (br $l)))
    (start $start)
    (func (export "one") (result i32) (i32.const 1)))
  (core instance $m (instantiate $M))
  (func (export "one") (result u32) (canon lift (core func $m "one")))
)
"""


@pytest.mark.slow
def test_start_up_code_has_a_deadline(host: PluginHost) -> None:
    """host-guide.md: "Start-up code gets a deadline of ten times timeout_ms, and at least
    10 s"."""
    start = time.monotonic()
    with pytest.raises(InstantiationError):
        host.load(SPINS_AT_START.encode(), allow_unsigned=True, limits=Limits(timeout_ms=50))
    assert 10.0 <= time.monotonic() - start < 30.0


# -- types.md / crash-isolation.md: resources ------------------------------------------------

# A guest resource that knows which instance created it: each instance gets an id from
# the host at start-up (``next-id``), a thing's rep is the id of the instance that
# constructed it, and ``whoami`` answers the id of the instance running the method.
OWNED = """
(component
  (type $thing (resource (rep i32)))
  (core func $new (canon resource.new $thing))
  (import "demo:x/hold@0.1.0" (instance $h
    (export "hold" (func))
    (export "next-id" (func (result u32)))))
  (core func $hold (canon lower (func $h "hold")))
  (core func $next-id (canon lower (func $h "next-id")))
  (core module $M
    (import "r" "new" (func $new (param i32) (result i32)))
    (import "h" "hold" (func $hold))
    (import "h" "next-id" (func $next-id (result i32)))
    (global $id (mut i32) (i32.const 0))
    (func $start (global.set $id (call $next-id)))
    (start $start)
    (func (export "ctor") (result i32) (call $new (global.get $id)))
    (func (export "whoami") (param i32) (result i32) (global.get $id))
    (func (export "born") (param i32) (result i32) (local.get 0))
    (func (export "hold") (call $hold)))
  (core instance $m (instantiate $M (with "r" (instance (export "new" (func $new))))
    (with "h" (instance (export "hold" (func $hold)) (export "next-id" (func $next-id))))))
  (func $ctor (result (own $thing)) (canon lift (core func $m "ctor")))
  (func $whoami (param "self" (borrow $thing)) (result u32)
    (canon lift (core func $m "whoami")))
  (func $born (param "self" (borrow $thing)) (result u32) (canon lift (core func $m "born")))
  (func $hold-f (canon lift (core func $m "hold")))
  (component $Api
    (import "t" (type $t (sub resource)))
    (import "ctor" (func $ctor (result (own $t))))
    (import "whoami" (func $whoami (param "self" (borrow $t)) (result u32)))
    (import "born" (func $born (param "self" (borrow $t)) (result u32)))
    (export $te "thing" (type $t))
    (export "[constructor]thing" (func $ctor) (func (result (own $te))))
    (export "[method]thing.whoami" (func $whoami)
      (func (param "self" (borrow $te)) (result u32)))
    (export "[method]thing.born" (func $born)
      (func (param "self" (borrow $te)) (result u32))))
  (instance $api (instantiate $Api (with "t" (type $thing)) (with "ctor" (func $ctor))
    (with "whoami" (func $whoami)) (with "born" (func $born))))
  (export "demo:x/api@0.1.0" (instance $api))
  (export "hold" (func $hold-f))
)
"""
API = "demo:x/api@0.1.0#"
CTOR, WHOAMI, BORN = (API + "[constructor]thing", API + "[method]thing.whoami",
                      API + "[method]thing.born")  # fmt: skip


def _owned(host: PluginHost, hold: Callable[[], None], **kwargs: Any) -> Plugin:
    ids = iter(range(1, 1000))
    host.provide("demo:x/hold@0.1.0", {"hold": hold, "next-id": lambda: next(ids)})
    manifest = Manifest(name="owned", host_interfaces=("demo:x/hold@0.1.0",))
    return host.load(OWNED.encode(), allow_unsigned=True, manifest=manifest, **kwargs)


def test_a_resource_method_runs_on_its_owning_instance(host: PluginHost) -> None:
    """types.md: "A handle belongs to the instance that created it: a call that receives
    it as an argument runs on that instance even with pool_size > 1"."""
    busy, release = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        assert release.wait(timeout=10)

    plugin = _owned(host, hold, pool_size=2)
    things = []
    for _ in range(10):  # until handles were made on both instances
        busy.clear()
        release.clear()
        holder = threading.Thread(target=plugin.call, args=("hold",))
        holder.start()
        assert busy.wait(timeout=10)  # one instance is busy: the other makes the thing
        things.append(plugin.call(CTOR))
        release.set()
        holder.join(timeout=10)
        if len({plugin.call(BORN, t) for t in things}) == 2:
            break
    born = [plugin.call(BORN, t) for t in things]
    assert set(born) == {1, 2}, "handles were made on two instances"
    for _ in range(10):  # both instances are free: each handle picks its own
        assert [plugin.call(WHOAMI, t) for t in things] == born


def test_dropping_a_resource_of_the_running_instance_never_re_enters_it(
    host: PluginHost,
) -> None:
    """crash-isolation.md: dropping a handle of the instance running the current call
    "never re-enters it: the destructor is deferred to the start of that instance's next
    call" (types.md)."""
    handles: list[Any] = []

    def hold() -> None:
        handles[0].drop()  # from a host function, on the handle's own (running) instance
        assert not handles[0].alive

    plugin = _owned(host, hold)
    handles.append(plugin.call(CTOR))
    plugin.call("hold")  # no ReentrantCallError, no trap
    assert plugin.metrics().total_faults == 0
    with pytest.raises(StaleResourceError):
        plugin.call(WHOAMI, handles[0])
    assert plugin.call(WHOAMI, plugin.call(CTOR)) == 1  # the instance is healthy


# -- host-guide.md: "Manifests" -------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("My Plugin.wasm", "my-plugin"),
        ("calc.wasm", "calc"),
        ("2fast.wasm", "plugin-2fast"),
        ("ACME_Tool v2.wasm", "acme-tool-v2"),
    ],
)
def test_default_manifest_is_named_after_the_file(
    host: PluginHost, tmp_path: Path, filename: str, name: str
) -> None:
    """host-guide.md: "an empty manifest (no capabilities at all) named after the file:
    My Plugin.wasm becomes my-plugin; a name that does not start with a letter gets a
    plugin- prefix; bytes without a path are named plugin"."""
    path = tmp_path / filename
    path.write_bytes(wasmtime.wat2wasm(ADD))
    plugin = host.load(path, allow_unsigned=True)
    assert plugin.name == name
    assert plugin.manifest == Manifest(name=name)
    assert host.load(ADD.encode(), allow_unsigned=True).name == "plugin"


def test_manifest_precedence(host: PluginHost, tmp_path: Path) -> None:
    """host-guide.md: "wasmplug looks for it in this order and uses the first one found":
    explicit, embedded (wasmplug pack), sidecar wasmplug.toml, default."""
    from wasmplug._cli.main import main  # the public CLI's pack command

    d = tmp_path / "plugins"
    d.mkdir()
    (d / "raw.wasm").write_bytes(wasmtime.wat2wasm(ADD))
    (tmp_path / "embedded.toml").write_text('[plugin]\nname = "embedded"\nversion = "1.0.0"\n')
    packed = d / "packed.wasm"
    assert main(["pack", str(d / "raw.wasm"), "-m", str(tmp_path / "embedded.toml"),
                 "-o", str(packed)]) == 0  # fmt: skip
    assert host.load(d / "raw.wasm", allow_unsigned=True).name == "raw"  # default
    (d / "wasmplug.toml").write_text('[plugin]\nname = "sidecar"\nversion = "1.0.0"\n')
    assert host.load(d / "raw.wasm", allow_unsigned=True).name == "sidecar"
    assert host.load(packed, allow_unsigned=True).name == "embedded"  # beats the sidecar
    explicit = Manifest(name="explicit")
    assert host.load(packed, allow_unsigned=True, manifest=explicit).name == "explicit"
