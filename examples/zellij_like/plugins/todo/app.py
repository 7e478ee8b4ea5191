"""todo: a todo list saved in the read-write folder granted as ``/data``.

Type to write an item, ``enter`` adds it, ``up``/``down`` select, ``ctrl+o``
marks the selected item done (or not), ``delete`` removes it. The list is saved
to ``/data/todo.json`` after every change and read back on load, so it
survives restarts. With ``message-plugins`` it tells the status bar how many
items are open.
"""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_Key, Event_PermissionResult, EventKind, Permission

BOLD, REV, DIM, RESET = "\x1b[1m", "\x1b[7m", "\x1b[2m", "\x1b[0m"
PATH = "/data/todo.json"

state = {"items": [], "draft": "", "sel": 0, "msg": "", "can_message": False}


def save():
    try:
        with open(PATH, "w", encoding="utf-8") as f:
            json.dump(state["items"], f)
    except OSError as e:
        state["msg"] = f"cannot save: {e}"
    announce()


def announce():
    if not state["can_message"]:
        return
    count = sum(1 for it in state["items"] if not it["done"])
    try:
        host.post_message("status-bar", "todo-count", str(count))
    except Exception:
        pass


def on_key(key):
    items = state["items"]
    state["msg"] = ""
    if key == "enter":
        if state["draft"].strip():
            items.append({"text": state["draft"].strip(), "done": False})
            state["draft"] = ""
            state["sel"] = len(items) - 1
            save()
    elif key == "backspace":
        state["draft"] = state["draft"][:-1]
    elif key == "up":
        state["sel"] = max(0, state["sel"] - 1)
    elif key == "down":
        state["sel"] = min(len(items) - 1, state["sel"] + 1) if items else 0
    elif key == "ctrl+o" and items:
        item = items[state["sel"]]
        item["done"] = not item["done"]
        save()
    elif key == "delete" and items:
        del items[state["sel"]]
        state["sel"] = max(0, min(state["sel"], len(items) - 1))
        save()
    elif len(key) == 1:
        state["draft"] += key
    else:
        return False
    return True


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        try:
            with open(PATH, encoding="utf-8") as f:
                state["items"] = json.load(f)
        except FileNotFoundError:
            state["items"] = []
        except (OSError, ValueError) as e:
            state["msg"] = f"cannot read {PATH}: {e}"
        host.request_permission([Permission.MESSAGE_PLUGINS])
        host.subscribe([EventKind.KEY, EventKind.PERMISSION_RESULT])

    def update(self, ev):
        if isinstance(ev, Event_PermissionResult):
            state["can_message"] = ev.value
            announce()
            return False
        if isinstance(ev, Event_Key):
            return on_key(ev.value)
        return False

    def render(self, rows, cols):
        lines = []
        for i, it in enumerate(state["items"]):
            mark = "[x]" if it["done"] else "[ ]"
            text = f"{mark} {it['text']}"[:cols]
            lines.append(f"{REV}{text}{RESET}" if i == state["sel"] else text)
        if not lines:
            lines.append(f"{DIM}(nothing to do){RESET}")
        lines.append(f"> {state['draft']}_")
        if state["msg"]:
            lines.append(state["msg"])
        return "\n".join(lines[-rows:] if rows else lines)

    def pipe(self, msg):
        return False
