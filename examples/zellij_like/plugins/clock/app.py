"""clock: redraws on timer events (set-timeout), like Zellij plugins that poll with timers.

Config: ``interval-ms`` (default 1000).
"""

import time

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_Timer, EventKind

BOLD, RESET = "\x1b[1m", "\x1b[0m"

state = {"ticks": 0, "interval": 1000}


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        state["interval"] = int(dict(cfg).get("interval-ms", "1000"))
        host.subscribe([EventKind.TIMER])
        host.set_timeout(state["interval"])

    def update(self, ev):
        if isinstance(ev, Event_Timer):
            state["ticks"] += 1
            host.set_timeout(state["interval"])
            return True
        return False

    def render(self, rows, cols):
        now = time.strftime("%H:%M:%S", time.gmtime())
        return f"{BOLD}{now} UTC{RESET}\ntick {state['ticks']}"

    def pipe(self, msg):
        return False
