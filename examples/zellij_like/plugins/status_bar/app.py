"""status-bar: the input mode, the focused pane and key hints (Zellij's status-bar).

Needs ``read-application-state`` (mode and pane updates). If the pane config has
``branch-command`` (e.g. ``git rev-parse --abbrev-ref HEAD``) it also asks for
``run-commands`` and shows the command's output. Other plugins may send it
``todo-count`` messages (``pipe``); the application sends ``plugin-stats`` (each
plugin's calls, faults and restarts, from ``PluginHost.stats()``).
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import (
    Event_CommandResult,
    Event_ModeUpdate,
    Event_PaneUpdate,
    Event_PermissionResult,
    EventKind,
    Permission,
)

BOLD, REV, DIM, RESET = "\x1b[1m", "\x1b[7m", "\x1b[2m", "\x1b[0m"

state = {
    "mode": "normal",
    "focused": "",
    "todo": None,
    "branch": "",
    "granted": None,
    "stats": "",
}
config = {}


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        config.update(cfg)
        perms = [Permission.READ_APPLICATION_STATE]
        if config.get("branch-command"):
            perms.append(Permission.RUN_COMMANDS)
        host.request_permission(perms)
        host.subscribe(
            [
                EventKind.MODE_UPDATE,
                EventKind.PANE_UPDATE,
                EventKind.PERMISSION_RESULT,
                EventKind.COMMAND_RESULT,
            ]
        )

    def update(self, ev):
        if isinstance(ev, Event_ModeUpdate):
            state["mode"] = ev.value
        elif isinstance(ev, Event_PaneUpdate):
            state["focused"] = next((p.title for p in ev.value if p.focused), "")
        elif isinstance(ev, Event_PermissionResult):
            state["granted"] = ev.value
            if ev.value and config.get("branch-command"):
                try:
                    host.run_command(config["branch-command"].split(), 1)
                except Exception as e:  # Err from the host: not allowed
                    state["branch"] = f"({e})"
        elif isinstance(ev, Event_CommandResult):
            out = ev.value
            state["branch"] = out.stdout.strip() if out.exit_code == 0 else ""
        return True

    def render(self, rows, cols):
        mode = state["mode"].upper()
        parts = [f"{REV}{BOLD} {mode} {RESET}"]
        if state["focused"]:
            parts.append(f"pane: {BOLD}{state['focused']}{RESET}")
        if state["todo"] is not None:
            parts.append(f"todo: {state['todo']} open")
        if state["branch"]:
            parts.append(f"branch: {state['branch']}")
        if state["granted"] is False:
            parts.append("(no permission to read application state)")
        line1 = " | ".join(parts)
        if state["mode"] == "locked":
            hints = "Ctrl+G unlock (all other keys go to the focused pane)"
        else:
            hints = (
                "Tab/Shift+Tab focus  Ctrl+T next tab  Ctrl+G lock  "
                "r restart crashed pane  R reset quarantine  Ctrl+Q quit"
            )
        stats = state["stats"][:cols] + "\n" if state["stats"] else ""
        return line1 + "\n" + stats + DIM + hints[:cols] + RESET

    def pipe(self, msg):
        if msg.name == "todo-count":
            state["todo"] = msg.payload
            return True
        if msg.name == "plugin-stats" and msg.source == "host":
            state["stats"] = msg.payload
            return True
        return False
