"""examples/zellij_like: headless Textual pilot tests of the plugin workspace.

The seven plugins are built once (componentize-py, cached by content in the user
cache; ~1-4 min the first time) and signed with a demo key in a session
directory. Timers are fired explicitly (``manual_timers=True``).
"""

from __future__ import annotations

import asyncio
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import platformdirs
import pytest
from examples.zellij_like import build
from examples.zellij_like.__main__ import enable_watch, make_app
from examples.zellij_like.app import PaneView, PermissionScreen, Workspace

from wasmplug import PluginHost, Variant
from wasmplug._fsutil import write_atomic

pytestmark = [pytest.mark.slow, pytest.mark.anyio]
ROOT = Path(__file__).resolve().parents[2]
SIZE = (140, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture(scope="session")
def state_dir() -> Path:
    # Kept in the user cache, with its demo key, so that the signed files (and
    # therefore wasmtime's compile cache entries) are the same in every session.
    state = Path(platformdirs.user_cache_dir("wasmplug")) / "zellij_like-tests"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    build.prepare(state)  # build (cached) + pack + sign every plugin
    return state


@pytest.fixture(scope="session")
def host(state_dir: Path):
    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as h:
        yield h


def write_layout(tmp: Path, *, browser_grants: str = '"open-files"') -> Path:
    browse = tmp / "browse"
    (browse / "docs").mkdir(parents=True, exist_ok=True)
    (browse / "notes.txt").write_text("first line of notes\n")
    (browse / "docs" / "readme.md").write_text("# inside docs\n")
    path = tmp / "layout.toml"
    path.write_text(
        f"""
[top]
plugin = "tab-bar"
permissions = ["read-application-state"]
[bottom]
plugin = "status-bar"
permissions = ["read-application-state"]
[[tabs]]
name = "main"
columns = 2
[[tabs.panes]]
plugin = "file-browser"
title = "files"
dirs = {{ "/host" = "browse" }}
permissions = [{browser_grants}]
[[tabs.panes]]
plugin = "todo"
permissions = ["message-plugins"]
dirs = {{ "/data" = "data/todo:rw" }}
[[tabs.panes]]
plugin = "clock"
[[tabs.panes]]
plugin = "misbehaving"
limits = {{ memory-mib = 32, timeout-ms = 1500 }}
restart = {{ max-faults = 2, window-s = 60 }}
isolation = "process"
[[tabs]]
name = "second"
[[tabs.panes]]
plugin = "clock"
id = "clock-2"
"""
    )
    return path


def new_app(
    tmp: Path, state_dir: Path, host: PluginHost, layout: Path | None = None, **kw: str
) -> Workspace:
    # A per-test state dir that shares the session's signed plugins and key.
    local = tmp / "state"
    if not local.exists():
        local.mkdir()
        for sub in ("keys", "packed"):
            shutil.copytree(state_dir / sub, local / sub)
    return make_app(
        layout_path=layout or write_layout(tmp, **kw),
        state_dir=local,
        host=host,
        manual_timers=True,
    )


def screen_text(app: Workspace) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def pane_text(app: Workspace, pane_id: str) -> str:
    return str(app.view(app.panes[pane_id]).render())


async def settled(app: Workspace, pilot) -> str:
    await app.settle()
    await pilot.pause()
    return screen_text(app)


async def test_startup_focus_and_status_bar(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        text = await settled(app, pilot)
        assert "ERROR IN PLUGIN" not in text
        assert "NORMAL" in text
        assert "pane: files" in text
        assert re.search(r"calls: clock \d+, ", text)  # PluginHost.stats(), sent by the host
        assert "1:main" in text
        assert "2:second" in text
        assert "tick 0" in text  # clock
        assert isinstance(app.focused, PaneView)
        assert app.focused.pane.id == "file-browser"
        await pilot.press("tab")
        text = await settled(app, pilot)
        assert app.focused.pane.id == "todo"
        assert "pane: todo" in text
        await pilot.press("shift+tab", "shift+tab")
        text = await settled(app, pilot)
        assert app.focused.pane.id == "misbehaving"
        assert "pane: misbehaving" in text
        await pilot.press("ctrl+g")
        text = await settled(app, pilot)
        assert "LOCKED" in text


async def test_clock_updates_on_timer_events(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        assert "tick 0" in pane_text(app, "clock")
        assert app.fire_timers("clock") == 1
        await settled(app, pilot)
        assert "tick 1" in pane_text(app, "clock")
        assert app.fire_timers("clock") == 1  # the plugin set a new timeout
        text = await settled(app, pilot)
        assert "tick 2" in text


async def test_file_browser_sees_the_granted_folder_only(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        text = await settled(app, pilot)
        files = pane_text(app, "file-browser")
        assert "/host" in files
        assert "docs/" in files
        assert "notes.txt" in files
        assert "open-files: granted" in files
        await pilot.press("enter")  # into docs/
        await settled(app, pilot)
        assert "/host/docs" in pane_text(app, "file-browser")
        assert "readme.md" in pane_text(app, "file-browser")
        await pilot.press("backspace", "backspace")  # up, and never above /host
        await settled(app, pilot)
        files = pane_text(app, "file-browser")
        assert "/host/docs" not in files
        assert "notes.txt" in files
        await pilot.press("down", "enter")  # open notes.txt
        await settled(app, pilot)
        files = pane_text(app, "file-browser")
        assert "opened /host/notes.txt" in files
        assert "first line of notes" in files
        assert app.opened == [("file-browser", "/host/notes.txt")]
        await pilot.press("e")  # /etc/passwd does not exist inside the sandbox
        text = await settled(app, pilot)
        assert "/etc/passwd: FileNotFoundError" in pane_text(app, "file-browser")
        assert "root:" not in text


async def test_permission_prompt_is_answered_and_remembered(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host, browser_grants="")
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        assert isinstance(app.screen, PermissionScreen)
        await pilot.pause()
        text = str(app.screen.query_one("#question").render())
        assert "file-browser 0.1.0 (pane file-browser, signed by zellij_like demo)" in text
        assert "Open files: ask the workspace to open files" in text
        assert "open-files: pending" in pane_text(app, "file-browser")
        app.fire_timers("clock")  # other panes keep working while the prompt is up
        await pilot.press("y")
        await settled(app, pilot)
        assert not isinstance(app.screen, PermissionScreen)
        assert "open-files: granted" in pane_text(app, "file-browser")
        assert "tick 1" in pane_text(app, "clock")
    decisions = app.policy.store.list()
    assert [d.plugin for d in decisions] == ["file-browser"]

    again = new_app(tmp_path, state_dir, host, browser_grants="")
    async with again.run_test(size=SIZE) as pilot:
        await settled(again, pilot)
        assert not isinstance(again.screen, PermissionScreen)  # remembered: no prompt
        assert "open-files: granted" in pane_text(again, "file-browser")


async def test_denied_permission_blocks_the_host_call(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host, browser_grants="")
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("n")
        await settled(app, pilot)
        assert "open-files: denied" in pane_text(app, "file-browser")
        await pilot.press("down", "enter")  # notes.txt: the host refuses to open it
        await settled(app, pilot)
        assert "cannot open: permission open-files not granted" in pane_text(app, "file-browser")
        assert app.opened == []


async def test_a_permission_the_manifest_does_not_declare_is_never_held(tmp_path, state_dir, host):
    """The layout grants the clock run-commands, but its manifest does not declare it
    (wasmplug's declared ∩ granted), while the status bar, which declares it, holds it."""
    layout = tmp_path / "undeclared.toml"
    layout.write_text(
        """
[bottom]
plugin = "status-bar"
permissions = ["read-application-state", "run-commands"]
[[tabs]]
name = "main"
[[tabs.panes]]
plugin = "clock"
permissions = ["run-commands", "read-application-state"]
"""
    )
    app = new_app(tmp_path, state_dir, host, layout=layout)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        clock, bar = app.panes["clock"], app.panes["status-bar"]
        assert "wasmplug-demo:run-commands" in clock.loaded_with.capabilities
        assert clock.plugin.manifest.application == ()
        assert clock.plugin.sandbox.capabilities == frozenset()
        assert not clock.holds("run-commands")
        assert "wasmplug-demo:run-commands" in bar.plugin.manifest.application
        assert bar.holds("run-commands")
        assert bar.holds("read-application-state")


async def test_panic_shows_error_pane_and_r_restarts(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("shift+tab")  # focus the misbehaving pane
        await pilot.press("x")
        await settled(app, pilot)
        assert "keys seen: 1" in pane_text(app, "misbehaving")
        await pilot.press("p")
        await settled(app, pilot)
        err = pane_text(app, "misbehaving")
        assert "ERROR IN PLUGIN" in err
        assert "PluginTrapped" in err
        assert "panic on key p" in err
        # The status bar shows each plugin's calls, faults and restarts (PluginHost.stats()).
        assert re.search(r"misbehaving \d+ \(1 faults, 0 restarts\)", screen_text(app))
        app.fire_timers("clock")  # the other panes keep updating
        await pilot.press("shift+tab", "shift+tab", "a", "enter", "tab", "tab")  # todo works
        await settled(app, pilot)
        assert "tick 1" in pane_text(app, "clock")
        assert "[ ] a" in pane_text(app, "todo")
        await pilot.press("r")
        await settled(app, pilot)
        assert "keys seen: 0" in pane_text(app, "misbehaving")  # a fresh instance
        # A second fault within the window quarantines it (RestartPolicy max-faults = 2).
        await pilot.press("p")
        await settled(app, pilot)
        await pilot.press("r")
        await settled(app, pilot)
        err = pane_text(app, "misbehaving")
        assert "PluginQuarantinedError" in err
        assert "press R" in err
        await pilot.press("R")
        await settled(app, pilot)
        assert "keys seen: 0" in pane_text(app, "misbehaving")


async def test_infinite_loop_times_out_without_freezing_the_ui(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("shift+tab")
        # What pressing "l" does (pilot.press would wait for the app to be idle):
        app.spawn(app.deliver(app.panes["misbehaving"], Variant("key", "l")))
        await asyncio.sleep(0.05)  # the plugin now spins until its 1500 ms limit
        app.action_focus_pane(1)  # the UI still answers meanwhile
        app.fire_timers("clock")  # and the other plugins still run
        await eventually(lambda: "tick 1" in pane_text(app, "clock"), "the clock never ticked")
        answered_at = time.monotonic()
        assert app.focused.pane.id == "file-browser"
        await settled(app, pilot)
        err = pane_text(app, "misbehaving")
        assert "ERROR IN PLUGIN" in err
        assert "PluginTimeout" in err
        assert answered_at < app.panes["misbehaving"].error_at  # before the loop ended
        assert "tick 1" in pane_text(app, "clock")


async def test_todo_survives_restarts_and_messages_the_status_bar(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("tab", *"buy milk", "enter", *"write docs", "enter", "ctrl+o")
        text = await settled(app, pilot)
        todo = pane_text(app, "todo")
        assert "[ ] buy milk" in todo
        assert "[x] write docs" in todo
        assert "todo: 1 open" in text  # post-message to the status-bar's pipe
    saved = tmp_path / "data" / "todo" / "todo.json"
    assert "buy milk" in saved.read_text()
    again = new_app(tmp_path, state_dir, host)
    async with again.run_test(size=SIZE) as pilot:
        await settled(again, pilot)
        assert "[ ] buy milk" in pane_text(again, "todo")


async def test_tabs_switch_and_save_a_screenshot(tmp_path, state_dir, host):
    app = new_app(tmp_path, state_dir, host)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        await pilot.press("ctrl+t")
        text = await settled(app, pilot)
        assert app.active_tab == 1
        assert app.focused.pane.id == "clock-2"
        assert "clock-2" in text
        # The misbehaving pane (tab 1) is hidden; the status bar's stats line still names it.
        assert "keys seen" not in text
        panes = [line for line in text.splitlines() if "calls: " not in line]
        assert "misbehaving" not in "\n".join(panes)
        svg = app.export_screenshot()
        assert svg.startswith("<svg")
        assert "second" in svg


class TextServer(http.server.ThreadingHTTPServer):
    """A local HTTP server (127.0.0.1, a free port) answering every GET with one text."""

    def __init__(self, text: str) -> None:
        self.text = text.encode()
        self.paths: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(server.text)))
                self.end_headers()
                self.wfile.write(server.text)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def __enter__(self) -> TextServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def write_fetch_layout(tmp: Path, url: str, *, granted: bool) -> Path:
    tmp.mkdir(exist_ok=True)
    path = tmp / "fetch-layout.toml"
    perms = '"web-access"' if granted else ""
    path.write_text(
        f"""
[[tabs]]
name = "web"
[[tabs.panes]]
plugin = "fetch"
config = {{ url = "{url}" }}
permissions = [{perms}]
"""
    )
    return path


async def test_fetch_plugin_needs_web_access_for_http(tmp_path, state_dir, host):
    """The web-plugin world: wasmplug:host/http is allowed only after web-access is granted."""
    with TextServer("hello from the local server\nsecond line\n") as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/hello.txt"
        layout = write_fetch_layout(tmp_path, url, granted=True)
        app = new_app(tmp_path, state_dir, host, layout=layout)
        async with app.run_test(size=SIZE) as pilot:
            await settled(app, pilot)
            assert not isinstance(app.screen, PermissionScreen)  # pre-granted in the layout
            text = pane_text(app, "fetch")
            assert "web-access: granted" in text
            assert "status 200: hello from the local server" in text
            assert "second line" not in text
            sandbox = app.panes["fetch"].plugin.sandbox
            assert sandbox.allowed_outbound_hosts == ("http://127.0.0.1:*",)
        assert server.paths == ["/hello.txt"]

        server.paths.clear()
        layout = write_fetch_layout(tmp_path / "denied", url, granted=False)
        app = new_app(tmp_path / "denied", state_dir, host, layout=layout)
        async with app.run_test(size=SIZE) as pilot:
            await settled(app, pilot)
            assert isinstance(app.screen, PermissionScreen)
            assert "Web access: make web requests" in str(
                app.screen.query_one("#question").render()
            )
            await pilot.press("n")
            await settled(app, pilot)
            text = pane_text(app, "fetch")
            assert "web-access: denied" in text
            assert "error: denied" in text
            assert "127.0.0.1" in text
            assert app.panes["fetch"].plugin.sandbox.allowed_outbound_hosts == ()
            await pilot.press("f")  # asking again changes nothing
            await settled(app, pilot)
            assert "fetches: 2" in pane_text(app, "fetch")
            assert "error: denied" in pane_text(app, "fetch")
        assert server.paths == []  # nothing reached the server

        # Allowed at the prompt: the pane is loaded again with the HTTP grant.
        layout = write_fetch_layout(tmp_path / "allowed", url, granted=False)
        app = new_app(tmp_path / "allowed", state_dir, host, layout=layout)
        async with app.run_test(size=SIZE) as pilot:
            await settled(app, pilot)
            await pilot.press("y")
            await settled(app, pilot)
            assert "status 200: hello from the local server" in pane_text(app, "fetch")
        assert server.paths == ["/hello.txt"]


def replace_wasm(path: Path) -> None:
    """What a rebuild does to a signed plugin: an atomic write of (here the same) bytes."""
    write_atomic(path, path.read_bytes())


async def eventually(condition, what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def clock_at_tick_2(app: Workspace, pilot) -> None:
    await settled(app, pilot)
    for _ in range(2):
        app.fire_timers("clock")
        await settled(app, pilot)
    assert "tick 2" in pane_text(app, "clock")


async def test_watch_reloads_a_changed_plugin_simulated(tmp_path, state_dir, host):
    """--watch, with the file events fed in by the test (no file system watcher)."""
    batches: asyncio.Queue[set[tuple[object, str]]] = asyncio.Queue()

    async def changes():
        while True:
            yield await batches.get()

    app = new_app(tmp_path, state_dir, host)
    local = tmp_path / "state"
    enable_watch(app, local, changes=changes())
    clock_wasm = local / "packed" / "clock.wasm"
    async with app.run_test(size=SIZE) as pilot:
        await clock_at_tick_2(app, pilot)
        old = app.panes["clock"].plugin
        # An atomic write shows up as its temporary file plus the final name,
        # sometimes twice: each pane reloads once.
        replace_wasm(clock_wasm)
        await batches.put(
            {
                ("added", str(clock_wasm)),
                ("modified", str(clock_wasm)),
                ("deleted", str(local / "packed" / ".clock.wasm.tmp")),
            }
        )
        # both panes run the clock plugin
        await eventually(lambda: app.panes["clock-2"].reloads > 0, "clock-2 was not reloaded")
        await settled(app, pilot)
        clock = app.panes["clock"]
        assert clock.reloads == 1
        assert clock.plugin is not None
        assert clock.plugin is not old
        assert "tick 0" in pane_text(app, "clock")  # a fresh instance...
        assert app.view(clock).border_subtitle == "reloaded 1x"
        assert app.fire_timers("clock") == 1  # ...that set its timer again in load
        await pilot.press("tab", *"still here", "enter")  # the other panes kept running
        await settled(app, pilot)
        assert "tick 1" in pane_text(app, "clock")
        assert "[ ] still here" in pane_text(app, "todo")
        assert {p.id: p.reloads for p in app.panes.values() if p.reloads} == {
            "clock": 1,
            "clock-2": 1,
        }
        assert "ERROR IN PLUGIN" not in screen_text(app)


async def test_watch_reloads_a_changed_plugin_through_watchfiles(tmp_path, state_dir, host):
    """--watch for real: watchfiles sees the signed .wasm replaced and the pane reloads."""
    app = new_app(tmp_path, state_dir, host)
    local = tmp_path / "state"
    enable_watch(app, local, sources=False, debounce_ms=50)
    clock_wasm = local / "packed" / "clock.wasm"
    async with app.run_test(size=SIZE) as pilot:
        await clock_at_tick_2(app, pilot)
        # The watcher starts in a worker; until it runs, a change can go unseen,
        # so replace the file again every 0.5 s (each write is one more event).
        deadline = time.monotonic() + 5
        while app.panes["clock-2"].reloads == 0:  # both panes run the clock plugin
            assert time.monotonic() < deadline, "the panes were not reloaded"
            replace_wasm(clock_wasm)
            for _ in range(50):
                if app.panes["clock-2"].reloads:
                    break
                await asyncio.sleep(0.01)
        await settled(app, pilot)
        assert app.panes["clock"].reloads >= 1
        assert "tick 0" in pane_text(app, "clock")  # a fresh instance
        await pilot.press("tab", *"go on", "enter")  # the other panes kept running
        await settled(app, pilot)
        assert "[ ] go on" in pane_text(app, "todo")
        assert app.panes["todo"].reloads == 0
        assert "ERROR IN PLUGIN" not in screen_text(app)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tmux_smoke(tmp_path, state_dir):
    """Run the real app in a real terminal (tmux), press keys, read the screen."""
    local = tmp_path / "state"
    local.mkdir()
    for sub in ("keys", "packed"):
        shutil.copytree(state_dir / sub, local / sub)
    layout = write_layout(tmp_path)
    session = f"zellij-like-{time.monotonic_ns()}"
    cmd = (
        f"cd {ROOT} && {sys.executable} -m examples.zellij_like "
        f"--layout {layout} --state-dir {local}"
    )
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "140", "-y", "40", cmd], check=True
    )

    def capture() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout

    def wait_for(needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = capture()
            if needle in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} not on screen:\n{capture()}")

    try:
        # Start-up packs, signs and loads seven 18 MB plugins from the compile cache:
        # ~35 s on a loaded 2-core machine, well past the 30 s each key press may take.
        wait_for("keys seen: 0", timeout=180.0)
        subprocess.run([*tmux, "send-keys", "-t", session, "BTab"], check=True)
        wait_for("pane: misbehaving")
        subprocess.run([*tmux, "send-keys", "-t", session, "p"], check=True)
        wait_for("ERROR IN PLUGIN")
        subprocess.run([*tmux, "send-keys", "-t", session, "r"], check=True)
        screen = wait_for("keys seen: 0")
        assert "ERROR IN PLUGIN" not in screen
        subprocess.run([*tmux, "send-keys", "-t", session, "C-q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run([*tmux, "has-session", "-t", session], capture_output=True)
            if alive.returncode != 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the app did not quit on ctrl+q")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
