"""misbehaving: fails on purpose, to show crash isolation.

Keys: ``p`` panics (an uncaught exception: a trap), ``l`` loops forever (the
pane's time limit interrupts it), ``m`` allocates memory until the pane's memory
limit stops it. Any other key is counted.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_Key, EventKind

state = {"keys": 0}


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        host.subscribe([EventKind.KEY])

    def update(self, ev):
        if isinstance(ev, Event_Key):
            if ev.value == "p":
                raise RuntimeError("misbehaving: panic on key p")
            if ev.value == "l":
                n = 0
                while True:
                    n += 1
            if ev.value == "m":
                hog = []
                while True:
                    hog.append(bytearray(1 << 20))
            state["keys"] += 1
            return True
        return False

    def render(self, rows, cols):
        return (
            "I misbehave on purpose.\n"
            "p: panic   l: loop forever   m: eat memory\n"
            f"keys seen: {state['keys']}"
        )

    def pipe(self, msg):
        return False
