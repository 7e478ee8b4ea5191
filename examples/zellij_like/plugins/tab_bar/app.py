"""tab-bar: the workspace's tabs (Zellij's tab-bar). Needs ``read-application-state``."""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_PermissionResult, Event_TabUpdate, EventKind, Permission

BOLD, REV, RESET = "\x1b[1m", "\x1b[7m", "\x1b[0m"

tabs = []
denied = [False]
title = ["zellij-like"]


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        title[0] = dict(cfg).get("title", title[0])
        host.request_permission([Permission.READ_APPLICATION_STATE])
        host.subscribe([EventKind.TAB_UPDATE, EventKind.PERMISSION_RESULT])

    def update(self, ev):
        if isinstance(ev, Event_TabUpdate):
            tabs[:] = ev.value
        elif isinstance(ev, Event_PermissionResult):
            denied[0] = not ev.value
        return True

    def render(self, rows, cols):
        out = [f"{BOLD}{title[0]}{RESET} "]
        if denied[0]:
            out.append("(tabs hidden: permission denied)")
        for t in tabs:
            label = f" {t.position + 1}:{t.name} "
            out.append(f"{REV}{BOLD}{label}{RESET}" if t.active else label)
        return "".join(out)

    def pipe(self, msg):
        return False
