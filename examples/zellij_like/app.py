"""The Textual workspace: tab bar, status bar and tabs of panes, each pane a Wasm plugin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, ContentSwitcher, Label, Static

from wasmplug import (
    GrantPolicy,
    Grants,
    GrantStore,
    PermissionRequest,
    PluginFault,
    PluginHost,
    PluginQuarantinedError,
    TrustedKey,
    Variant,
)

from .layout import Layout, PaneSpec
from .permissions import (
    EVENT_NEEDS,
    as_grants,
    as_permission,
    declared_names,
    granted_names,
    permission_name,
)
from .runtime import HOST_INTERFACE, TYPES_INTERFACE, WIT_DIR, HostImpl, Pane

__all__ = ["PermissionScreen", "Workspace", "quiet_plugin_logs"]


def quiet_plugin_logs() -> None:
    """Keep guests' log lines off the terminal UI (the running app calls this, not imports).

    What a guest writes to stderr reaches the error pane through PluginFault.guest_stderr;
    the log copy (``wasmplug.plugin.<name>``) would only scribble over the terminal UI.
    """
    logging.getLogger("wasmplug.plugin").addHandler(logging.NullHandler())
    logging.getLogger("wasmplug.plugin").propagate = False


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


def _last_exception_line(stderr: str) -> str | None:
    """The exception line of a guest's Python traceback (``ValueError: ...``), if any.

    componentize-py prints the traceback, then the Rust runtime's panic notes.
    """
    for line in reversed(stderr.splitlines()):
        if _EXC_LINE.match(line.strip()):
            return line.strip()
    return None


class PermissionScreen(ModalScreen[bool]):
    """Lists what a plugin asks for; ``y`` allows, ``n`` denies."""

    BINDINGS: ClassVar = [
        Binding("y", "answer(True)", "Allow"),
        Binding("n", "answer(False)", "Deny"),
    ]
    DEFAULT_CSS = """
    PermissionScreen { align: center middle; }
    #dialog { width: 72; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
    #buttons { height: auto; margin-top: 1; }
    #buttons Button { margin-right: 2; }
    """

    def __init__(self, pane_id: str, request: PermissionRequest) -> None:
        super().__init__()
        self.pane_id = pane_id
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        who = r.publisher_name or r.publisher or "unsigned"
        lines = [f"Plugin {r.plugin} {r.version} (pane {self.pane_id}, signed by {who}) asks to:"]
        for p in r.new:
            lines.append(f"  - {p.capability.display_name}: {p.capability.description}")
        lines.append("Your answer is remembered for this plugin file.")
        with Vertical(id="dialog"):
            yield Label("\n".join(lines), id="question")
            with Horizontal(id="buttons"):
                yield Button("Allow (y)", variant="success", id="allow")
                yield Button("Deny (n)", variant="error", id="deny")

    def action_answer(self, allow: bool) -> None:
        self.dismiss(allow)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "allow")


class PaneView(Static, can_focus=True):
    """Shows one plugin's render output, or its error."""

    DEFAULT_CSS = """
    PaneView { border: round $primary-darken-2; height: 1fr; padding: 0 1; }
    PaneView:focus { border: heavy $accent; }
    PaneView.crashed { border: heavy $error; }
    """

    def __init__(self, pane: Pane) -> None:
        super().__init__(id=f"pane-{pane.id}")
        self.pane = pane
        self.border_title = pane.spec.title

    def on_key(self, event: Any) -> None:
        app = self.app
        assert isinstance(app, Workspace)
        event.stop()
        event.prevent_default()
        if self.pane.error is not None and event.key in ("r", "R"):
            app.spawn(app.restart(self.pane, reset=event.key == "R"))
            return
        key = event.character if event.character and event.character.isprintable() else event.key
        app.spawn(app.deliver(self.pane, Variant("key", key)))

    def on_resize(self) -> None:
        app = self.app
        if isinstance(app, Workspace) and self.pane.plugin is not None:
            app.spawn(app.render_pane(self.pane))


class BarView(Static):
    DEFAULT_CSS = "BarView { height: auto; max-height: 3; background: $boost; }"

    def __init__(self, pane: Pane) -> None:
        super().__init__(id=f"pane-{pane.id}")
        self.pane = pane


class Workspace(App[None]):
    """The workspace. ``plugins`` maps plugin names to signed ``.wasm`` files.

    Args:
        manual_timers: Do not schedule plugin timers; tests fire them with :meth:`fire_timers`.
    """

    TITLE = "zellij_like"
    CSS = "ContentSwitcher { height: 1fr; } Grid { grid-gutter: 0; }"
    BINDINGS: ClassVar = [
        Binding("tab", "focus_pane(1)", "Next pane", priority=True),
        Binding("shift+tab", "focus_pane(-1)", "Previous pane", priority=True),
        Binding("ctrl+t", "next_tab", "Next tab", priority=True),
        Binding("ctrl+g", "toggle_lock", "Lock", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        layout: Layout,
        plugins: dict[str, Path],
        *,
        host: PluginHost,
        trusted_key: TrustedKey,
        grant_store: GrantStore,
        manual_timers: bool = False,
    ) -> None:
        super().__init__()
        self.layout_spec = layout
        self.host = host
        self.trusted_key = trusted_key
        self.policy = GrantPolicy(prompt=self._prompt_from_thread, store=grant_store)
        self.manual_timers = manual_timers
        self._stats_sent = ""
        self.mode = "normal"
        self.active_tab = 0
        self.opened: list[tuple[str, str]] = []  # (pane id, path) from open-file
        self.panes: dict[str, Pane] = {}
        for spec in layout.panes():
            self.panes[spec.id] = Pane(spec, plugins[spec.plugin])
        for i, tab in enumerate(layout.tabs):
            for spec in tab.panes:
                self.panes[spec.id].tab = i
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prompting = 0
        host.provide(TYPES_INTERFACE, {}, wit=WIT_DIR)
        host.provide(HOST_INTERFACE, HostImpl(), wit=WIT_DIR)

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        if self.layout_spec.top is not None:
            yield BarView(self.panes[self.layout_spec.top.id])
        with ContentSwitcher(initial="tab-0"):
            for i, tab in enumerate(self.layout_spec.tabs):
                grid = Grid(id=f"tab-{i}")
                grid.styles.grid_size_columns = max(1, tab.columns)
                with grid:
                    for spec in tab.panes:
                        yield PaneView(self.panes[spec.id])
        if self.layout_spec.bottom is not None:
            yield BarView(self.panes[self.layout_spec.bottom.id])

    def view(self, pane: Pane) -> PaneView | BarView:
        return self.query_one(f"#pane-{pane.id}", Static)  # type: ignore[return-value]

    async def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        views = list(self.query(PaneView))
        if views:
            views[0].focus()
        self.spawn(self._startup())

    async def _startup(self) -> None:
        await asyncio.gather(*(self.start(p) for p in self.panes.values()))
        await self.broadcast_state()
        await self.send_stats()
        if not self.manual_timers:
            self.set_interval(1.0, lambda: self.spawn(self.send_stats()))

    async def send_stats(self) -> None:
        """Send every plugin's calls, faults and restarts (from ``PluginHost.stats()``)
        to the status bar's ``pipe`` as a ``plugin-stats`` message."""
        spec = self.layout_spec.bottom
        bar = self.panes.get(spec.id) if spec is not None else None
        if bar is None or bar.error is not None or bar.plugin is None:
            return
        parts = []
        for s in self.host.stats():
            part = f"{s.name} {s.calls}"
            if s.total_faults or s.restarts:
                part += f" ({s.total_faults} faults, {s.restarts} restarts)"
            parts.append(part)
        payload = "calls: " + ", ".join(parts)
        if payload == self._stats_sent:
            return
        self._stats_sent = payload
        msg = {"source": "host", "name": "plugin-stats", "payload": payload}
        ok, changed = await self._call(bar, "pipe", msg)
        if ok and changed:
            await self.render_pane(bar)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, tracked so that :meth:`settle` can wait for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait until no plugin call or host action is in flight, or until a
        permission prompt is waiting for an answer (for tests)."""
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            if self._prompting and isinstance(self.screen, PermissionScreen):
                break
            await asyncio.wait(pending, timeout=0.02)
        await asyncio.sleep(0)

    # -- plugin calls ------------------------------------------------------------------

    async def _call(self, pane: Pane, export: str, *args: Any) -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        ok, value = await loop.run_in_executor(pane.executor, pane.guarded, export, *args)
        if not ok and value is not None:
            self.show_error(pane)
        else:
            await self.apply_effects(pane)
        return ok, value

    async def start(self, pane: Pane) -> None:
        """Load the plugin (first time) and call its ``load`` export, then render it."""
        try:
            if pane.plugin is None:
                await asyncio.to_thread(pane.open, self.host)
        except Exception as e:  # a plugin that cannot load is shown like a crashed one
            pane.error = e
            self.show_error(pane)
            return
        pane.forget_state()
        ok, _ = await self._call(pane, "load", list(pane.spec.config))
        if ok:
            if pane.tab is not None:
                await self.deliver(pane, Variant("visible", pane.tab == self.active_tab))
            await self.render_pane(pane)

    async def restart(self, pane: Pane, *, reset: bool = False) -> None:
        """``r``: a fresh instance and ``load`` again; ``R`` also lifts quarantine."""
        if reset and pane.plugin is not None:
            pane.plugin.reset()
        pane.error = None
        self.view(pane).remove_class("crashed")
        await self.start(pane)
        if pane.error is None:
            await self.broadcast_state()

    async def deliver(self, pane: Pane, event: Variant) -> None:
        """Send an event if the pane subscribed to it and may see it; hold it while
        a permission request is unanswered."""
        kind = event.case
        if pane.error is not None or pane.plugin is None or kind not in pane.subscriptions:
            return
        if pane.pending_permission and kind != "permission-result":
            pane.held.append(event)
            return
        need = EVENT_NEEDS.get(kind)
        if need is not None and not pane.holds(need):
            return
        ok, changed = await self._call(pane, "update", event)
        if ok and changed:
            await self.render_pane(pane)

    async def render_pane(self, pane: Pane) -> None:
        if pane.error is not None or pane.plugin is None:
            return
        view = self.view(pane)
        size = view.content_region.size
        rows, cols = (size.height or 20), (size.width or 80)
        ok, out = await self._call(pane, "render", rows, cols)
        if ok and pane.error is None:
            pane.output = out
            view.update(Text.from_ansi(out))

    def show_error(self, pane: Pane) -> None:
        error = pane.error
        assert error is not None
        metrics = pane.plugin.metrics() if pane.plugin is not None else None
        lines = ["ERROR IN PLUGIN", f"{type(error).__name__}: {error}"]
        guest = _last_exception_line(error.guest_stderr) if isinstance(error, PluginFault) else None
        if guest is not None:
            lines.append(f"guest: {guest}")
        lines.append("")
        if metrics is not None:
            lines.append(f"faults: {metrics.total_faults}, restarts: {metrics.restarts}")
        if isinstance(error, PluginQuarantinedError):
            lines.append("quarantined: press R to reset and restart")
        else:
            lines.append("press r to restart")
        text = Text("\n".join(lines))
        text.stylize("bold red", 0, len("ERROR IN PLUGIN"))
        view = self.view(pane)
        view.update(text)
        view.add_class("crashed")
        self.spawn(self.broadcast_panes())
        self.spawn(self.send_stats())

    # -- host actions ------------------------------------------------------------------

    async def apply_effects(self, pane: Pane) -> None:
        effects, pane.effects = pane.effects, []
        for effect in effects:
            kind = effect[0]
            if kind == "permission":
                self.spawn(self.resolve_permission(pane, effect[1]))
            elif kind == "timer":
                self.add_timer(pane, effect[1])
            elif kind == "message":
                _, to, name, payload = effect
                self.spawn(self.post_message_to(pane, to, name, payload))
            elif kind == "command":
                self.spawn(self.run_command(pane, effect[1], effect[2]))
            elif kind == "switch-tab":
                self.spawn(self.switch_tab(effect[1]))
            elif kind == "open-file":
                self.opened.append((pane.id, effect[1]))
                self.notify(f"{pane.id}: open {effect[1]}", title="open-files")

    def add_timer(self, pane: Pane, ms: int) -> None:
        set_at = time.monotonic()

        def fire() -> None:
            elapsed = time.monotonic() - set_at
            self.spawn(self.deliver(pane, Variant("timer", elapsed)))

        if self.manual_timers:
            pane.timers.append(fire)
        else:
            pane.timers.append(self.set_timer(ms / 1000, fire))

    def fire_timers(self, pane_id: str) -> int:
        """Fire a pane's pending timers now (manual-timer mode). Returns how many."""
        pane = self.panes[pane_id]
        due, pane.timers = pane.timers, []
        for fire in due:
            fire()
        return len(due)

    async def resolve_permission(self, pane: Pane, wanted: list[str]) -> None:
        """Ask for what the plugin declares and does not hold yet: remembered answers,
        else the modal prompt. What its manifest does not declare is never asked for
        (and never held: the answer is false). An answer that grants something loads
        the plugin again with it (grants are fixed at load); its load() asks again and
        is answered at once."""
        plugin = pane.plugin
        declared = declared_names(plugin.manifest) if plugin is not None else set()
        need = [p for p in wanted if p in declared and not pane.holds(p)]
        if need and plugin is not None:
            perms = tuple(as_permission(p) for p in need)
            request = PermissionRequest(
                plugin=plugin.name,
                version=plugin.manifest.version,
                publisher=self.trusted_key.key_id,
                publisher_name=self.trusted_key.name,
                sha256=plugin.sha256,
                permissions=perms,
                new=perms,
            )
            grants = await asyncio.to_thread(self.policy.decide, request)
            pane.granted |= granted_names(grants) & set(need)
        pane.pending_permission = False
        if pane.grants_stale():
            old, pane.plugin = pane.plugin, None
            if old is not None:  # after any call still running on the pane's thread
                await asyncio.get_running_loop().run_in_executor(pane.executor, old.close)
            await self.start(pane)
            return
        allowed = all(pane.holds(p) for p in wanted)
        await self.deliver(pane, Variant("permission-result", allowed))
        held, pane.held = pane.held, []
        for event in held:
            await self.deliver(pane, event)
        await self.broadcast_state(pane)

    def _prompt_from_thread(self, request: PermissionRequest) -> Grants | None:
        """GrantPolicy's prompt: runs on a worker thread, waits for the modal's answer."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._ask(request), self._loop)
        allowed = fut.result()
        if not allowed:
            return None
        previous = self.policy.store.get(  # type: ignore[union-attr]
            request.plugin, request.publisher, request.sha256
        )
        names = {permission_name(p) for p in request.permissions}
        if previous is not None:
            names |= granted_names(previous.grants)
        return as_grants(names)

    async def _ask(self, request: PermissionRequest) -> bool:
        pane_id = next(
            (p.id for p in self.panes.values() if p.plugin and p.plugin.sha256 == request.sha256),
            request.plugin,
        )
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._prompting += 1
        try:
            self.push_screen(
                PermissionScreen(pane_id, request),
                callback=lambda ok: answer.done() or answer.set_result(bool(ok)),
            )
            return await answer
        finally:
            self._prompting -= 1

    async def post_message_to(self, source: Pane, to: str, name: str, payload: str) -> None:
        msg = {"source": source.id, "name": name, "payload": payload}
        if to == "*":
            for pane in self.panes.values():
                if pane is not source:
                    await self.deliver(pane, Variant("custom-message", msg))
            return
        target = self.panes.get(to)
        if target is None or target.error is not None or target.plugin is None:
            return
        ok, changed = await self._call(target, "pipe", msg)
        if ok and changed:
            await self.render_pane(target)

    async def run_command(self, pane: Pane, argv: list[str], cmd_id: int) -> None:
        out: dict[str, Any] = {"id": cmd_id, "exit_code": None, "stdout": "", "stderr": ""}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
            out.update(exit_code=proc.returncode, stdout=stdout.decode(errors="replace"))
            out["stderr"] = stderr.decode(errors="replace")
        except (OSError, TimeoutError) as e:
            out["stderr"] = str(e)
        await self.deliver(pane, Variant("command-result", out))

    # -- application state -------------------------------------------------------------

    def tab_infos(self) -> list[dict[str, Any]]:
        return [
            {"position": i, "name": t.name, "active": i == self.active_tab}
            for i, t in enumerate(self.layout_spec.tabs)
        ]

    def pane_infos(self) -> list[dict[str, Any]]:
        focused = self.focused.pane.id if isinstance(self.focused, PaneView) else None
        return [
            {
                "id": p.id,
                "title": p.spec.title,
                "focused": p.id == focused,
                "crashed": bool(p.error),
            }
            for p in self.panes.values()
        ]

    async def broadcast_state(self, only: Pane | None = None) -> None:
        targets = [only] if only is not None else list(self.panes.values())
        for pane in targets:
            await self.deliver(pane, Variant("mode-update", self.mode))
            await self.deliver(pane, Variant("tab-update", self.tab_infos()))
            await self.deliver(pane, Variant("pane-update", self.pane_infos()))

    async def broadcast_panes(self) -> None:
        for pane in list(self.panes.values()):
            await self.deliver(pane, Variant("pane-update", self.pane_infos()))

    async def switch_tab(self, position: int) -> None:
        if not 0 <= position < len(self.layout_spec.tabs) or position == self.active_tab:
            return
        old, self.active_tab = self.active_tab, position
        self.query_one(ContentSwitcher).current = f"tab-{position}"
        views = [v for v in self.query(PaneView) if v.pane.tab == position]
        if views:
            views[0].focus()
        for pane in self.panes.values():
            if pane.tab in (old, position):
                await self.deliver(pane, Variant("visible", pane.tab == position))
        await self.broadcast_state()

    def _forward_to_focused(self, key: str) -> bool:
        if self.mode == "locked" and isinstance(self.focused, PaneView):
            self.spawn(self.deliver(self.focused.pane, Variant("key", key)))
            return True
        return False

    def action_focus_pane(self, step: int) -> None:
        if self._forward_to_focused("tab" if step > 0 else "shift+tab"):
            return
        views = [v for v in self.query(PaneView) if v.pane.tab == self.active_tab]
        if not views:
            return
        current = views.index(self.focused) if self.focused in views else -1
        views[(current + step) % len(views)].focus()
        self.spawn(self.broadcast_panes())

    def action_next_tab(self) -> None:
        if self._forward_to_focused("ctrl+t"):
            return
        self.spawn(self.switch_tab((self.active_tab + 1) % len(self.layout_spec.tabs)))

    def action_toggle_lock(self) -> None:
        self.mode = "locked" if self.mode == "normal" else "normal"
        self.spawn(self.broadcast_modes())

    async def broadcast_modes(self) -> None:
        for pane in list(self.panes.values()):
            await self.deliver(pane, Variant("mode-update", self.mode))

    async def action_quit(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(self.deliver(p, Variant("before-close")) for p in self.panes.values())
                ),
                timeout=1.0,
            )
        self.exit()

    async def on_unmount(self) -> None:
        for pane in self.panes.values():
            pane.close()

    # -- dev mode ----------------------------------------------------------------------

    async def reload(self, pane_id: str, path: Path) -> None:
        """Swap in a new ``.wasm`` for a pane without restarting the app (``--watch``)."""
        pane = self.panes[pane_id]
        old = pane.plugin
        pane.path, pane.plugin, pane.error = path, None, None
        pane.reloads += 1
        view = self.view(pane)
        view.remove_class("crashed")
        view.border_subtitle = f"reloaded {pane.reloads}x"
        if old is not None:
            await asyncio.to_thread(old.close)
        await self.start(pane)
        self.notify(f"reloaded {pane_id}", title="--watch")

    def panes_for_plugin(self, plugin: str) -> list[PaneSpec]:
        return [p.spec for p in self.panes.values() if p.spec.plugin == plugin]
