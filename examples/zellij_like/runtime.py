"""One pane's plugin: its wasmplug Plugin, subscriptions, permissions and host calls.

Every call into a pane's plugin runs on that pane's own worker thread, so a
plugin stuck in a loop blocks nothing but itself until its time limit ends the
call. Host functions run on that thread too, inside the plugin's call: they
only record what the plugin asked for (:attr:`Pane.effects`); the application
acts on it on the event loop once the call has returned. That is also the rule
wasmplug sets: a host function must not call back into a plugin.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import attrs

from wasmplug import Err, Grants, Plugin, PluginHost, Variant, WasmplugError, current_plugin

from .layout import PaneSpec
from .permissions import CALL_NEEDS, PERMISSIONS, holds

__all__ = ["HOST_INTERFACE", "TYPES_INTERFACE", "WIT_DIR", "HostImpl", "Pane", "current_pane"]

HOST_INTERFACE = "wasmplug-demo:zellij/host@0.1.0"
TYPES_INTERFACE = "wasmplug-demo:zellij/types@0.1.0"
WIT_DIR = Path(__file__).parent / "wit"
"""The WIT package both interfaces come from: the host offers exactly what it defines."""

_tls = threading.local()
_PANES: weakref.WeakKeyDictionary[Plugin, Pane] = weakref.WeakKeyDictionary()


def current_pane() -> Pane:
    """The pane whose plugin is calling: found from :func:`wasmplug.current_plugin`
    (the guest may run on a wasmplug call thread), else the pane that
    :meth:`Pane.call_sync` set on this thread."""
    plugin = current_plugin()
    pane = _PANES.get(plugin) if plugin is not None else None
    if pane is None:
        pane = getattr(_tls, "pane", None)
    if pane is None:
        raise RuntimeError("host function called outside a pane call")
    return pane  # type: ignore[no-any-return]


class Pane:
    """A plugin running in a pane."""

    def __init__(self, spec: PaneSpec, path: Path) -> None:
        self.spec = spec
        self.id = spec.id
        self.path = path
        self.plugin: Plugin | None = None
        self.subscriptions: set[str] = set()
        self.granted: set[str] = set()  # workspace permissions the user granted at run time
        self.loaded_with: Grants | None = None  # the grants the running plugin was loaded with
        self.pending_permission = False
        self.held: list[Variant] = []
        self.effects: list[tuple[Any, ...]] = []
        self.error: Exception | None = None  # the fault (or load failure) the pane shows
        self.error_at = 0.0  # time.monotonic() of the last fault
        self.output = ""
        self.timers: list[Any] = []  # Textual timer handles, or fire callbacks in manual mode
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=spec.id)
        self.tab: int | None = None
        self.reloads = 0  # how often --watch swapped in a new .wasm
        self.outbound: tuple[str, ...] = ()  # the hosts the manifest declares (seen at load)

    # -- lifecycle ---------------------------------------------------------------------

    def open(self, host: PluginHost) -> None:
        """Load (verify, compile, instantiate) the plugin; blocking.

        A plugin whose manifest declares outbound hosts is loaded again with
        them granted if ``web-access`` is already granted (pre-granted in the
        layout, or answered before a reload).
        """
        self.plugin = self._load(host)
        self.outbound = tuple(self.plugin.manifest.allowed_outbound_hosts)
        if self.grants_stale():
            self.plugin.close()
            self.plugin = self._load(host)

    def _load(self, host: PluginHost) -> Plugin:
        grants = self.grants()
        plugin = host.load(
            self.path,
            grants=grants,
            limits=self.spec.limits,
            restart_policy=self.spec.restart,
            isolation=self.spec.isolation,
        )
        self.loaded_with = grants
        _PANES[plugin] = self
        return plugin

    def grants(self) -> Grants:
        """The layout's grants, plus every workspace permission granted (pre-granted in
        the layout or answered by the user), plus the declared outbound hosts once
        ``web-access`` is granted. The plugin holds only what its manifest declares."""
        names = self.spec.permissions | self.granted
        grants = attrs.evolve(self.spec.grants, capabilities={PERMISSIONS[n].id for n in names})
        if "web-access" in names and self.outbound:
            grants = attrs.evolve(grants, allowed_outbound_hosts=self.outbound)
        return grants

    def grants_stale(self) -> bool:
        """Something was granted since the running plugin was loaded (grants are fixed
        when a plugin is loaded, so it must be loaded again to hold it)."""
        return self.plugin is not None and self.grants() != self.loaded_with

    def holds(self, name: str) -> bool:
        """Whether the running plugin holds workspace permission ``name``."""
        return holds(self.plugin, name)

    def forget_state(self) -> None:
        """What a fresh instance starts without (it subscribes and asks again in load)."""
        self.subscriptions.clear()
        self.held.clear()
        self.effects.clear()
        self.pending_permission = False
        for timer in self.timers:  # the old instance's timers must not reach the new one
            stop = getattr(timer, "stop", None)
            if stop is not None:
                stop()
        self.timers.clear()

    def close(self) -> None:
        if self.plugin is not None:
            self.plugin.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- calls -------------------------------------------------------------------------

    def call_sync(self, export: str, *args: Any) -> Any:
        """Call an export on this thread, as the current pane. Raises wasmplug errors."""
        if self.plugin is None:
            raise RuntimeError(f"pane {self.id}: plugin not loaded")
        prev = getattr(_tls, "pane", None)
        _tls.pane = self
        try:
            return self.plugin.call(export, *args)
        finally:
            _tls.pane = prev

    def guarded(self, export: str, *args: Any) -> tuple[bool, Any]:
        """Run on the pane's thread: (True, result), or (False, exception) after a fault.

        Calls queued behind a fault are skipped (the pane shows its error until restarted).
        """
        if self.error is not None and export != "load":
            return False, None
        if self.plugin is None:  # being loaded again (see Workspace.resolve_permission)
            return False, None
        try:
            return True, self.call_sync(export, *args)
        except WasmplugError as e:
            self.error = e
            self.error_at = time.monotonic()
            return False, e


class HostImpl:
    """``wasmplug-demo:zellij/host``: one instance serves every pane (see :func:`current_pane`)."""

    def subscribe(self, kinds: list[str]) -> None:
        current_pane().subscriptions.update(kinds)

    def unsubscribe(self, kinds: list[str]) -> None:
        current_pane().subscriptions.difference_update(kinds)

    def request_permission(self, permissions: list[str]) -> None:
        pane = current_pane()
        pane.pending_permission = True  # hold events back from now on
        pane.effects.append(("permission", list(permissions)))

    def set_timeout(self, ms: int) -> None:
        current_pane().effects.append(("timer", ms))

    @staticmethod
    def _check(call: str) -> Pane:
        pane = current_pane()
        need = CALL_NEEDS[call]
        if not pane.holds(need):
            raise Err(f"permission {need} not granted")
        return pane

    def post_message(self, to: str, name: str, payload: str) -> None:
        self._check("post-message").effects.append(("message", to, name, payload))

    def run_command(self, argv: list[str], id: int) -> None:
        if not argv:
            raise Err("empty command")
        self._check("run-command").effects.append(("command", list(argv), id))

    def switch_tab(self, position: int) -> None:
        self._check("switch-tab").effects.append(("switch-tab", position))

    def open_file(self, path: str) -> None:
        self._check("open-file").effects.append(("open-file", path))
