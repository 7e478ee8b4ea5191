"""file-browser: browses the read-only folder granted as ``/host`` (like Zellij's strider).

Asks for ``open-files``: ``enter`` on a file asks the host to open it (and
previews its first lines here); ``enter`` on a folder enters it; ``backspace``
or ``left`` goes up, never above ``/host``; ``up``/``down`` move. ``e`` tries to
read ``/etc/passwd`` to show that nothing outside the granted folder exists
for the plugin.
"""

import os

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Event_Key, Event_PermissionResult, EventKind, Permission

BOLD, REV, DIM, RESET = "\x1b[1m", "\x1b[7m", "\x1b[2m", "\x1b[0m"
ROOT = "/host"

state = {"cwd": ROOT, "sel": 0, "perm": "pending", "msg": "", "preview": []}


def entries():
    try:
        names = sorted(os.listdir(state["cwd"]))
    except OSError as e:
        state["msg"] = f"cannot list {state['cwd']}: {e}"
        return []
    out = []
    for n in names:
        is_dir = os.path.isdir(os.path.join(state["cwd"], n))
        out.append((n + "/" if is_dir else n, is_dir))
    return sorted(out, key=lambda e: (not e[1], e[0]))


def on_key(key):
    items = entries()
    state["msg"] = ""
    if key == "down" and items:
        state["sel"] = min(state["sel"] + 1, len(items) - 1)
    elif key == "up":
        state["sel"] = max(state["sel"] - 1, 0)
    elif key in ("backspace", "left"):
        if state["cwd"] != ROOT:
            state["cwd"] = os.path.dirname(state["cwd"])
            state["sel"], state["preview"] = 0, []
    elif key in ("enter", "right") and items:
        name, is_dir = items[min(state["sel"], len(items) - 1)]
        path = os.path.join(state["cwd"], name.rstrip("/"))
        if is_dir:
            state["cwd"], state["sel"], state["preview"] = path, 0, []
        else:
            try:
                host.open_file(path)
                state["msg"] = f"opened {path}"
            except Exception as e:  # Err from the host: permission denied
                state["msg"] = f"cannot open: {e.value if hasattr(e, 'value') else e}"
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    state["preview"] = f.read(2000).splitlines()[:5]
            except OSError as e:
                state["preview"] = [f"({e})"]
    elif key == "e":
        try:
            with open("/etc/passwd") as f:
                state["msg"] = "read /etc/passwd: " + f.readline().strip()
        except OSError as e:
            state["msg"] = f"/etc/passwd: {type(e).__name__}: {e.strerror or e}"
    else:
        return False
    return True


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        host.request_permission([Permission.OPEN_FILES])
        host.subscribe([EventKind.KEY, EventKind.PERMISSION_RESULT])

    def update(self, ev):
        if isinstance(ev, Event_PermissionResult):
            state["perm"] = "granted" if ev.value else "denied"
            return True
        if isinstance(ev, Event_Key):
            return on_key(ev.value)
        return False

    def render(self, rows, cols):
        lines = [f"{BOLD}{state['cwd']}{RESET}  {DIM}open-files: {state['perm']}{RESET}"]
        items = entries()
        for i, (name, _) in enumerate(items[: max(1, rows - 4 - len(state["preview"]))]):
            lines.append(f"{REV}{name}{RESET}" if i == state["sel"] else name)
        if not items:
            lines.append(f"{DIM}(empty){RESET}")
        lines.extend(f"{DIM}| {p[: cols - 2]}{RESET}" for p in state["preview"])
        if state["msg"]:
            lines.append(state["msg"][:cols])
        return "\n".join(lines)

    def pipe(self, msg):
        return False
