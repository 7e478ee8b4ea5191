"""fetch: GETs the URL from its config through ``wasmplug:host/http`` and shows the result.

Asks for ``web-access``; once the answer arrives it fetches the URL and shows
the status and the first line of the body, or the error (``denied`` when the
permission, and therefore the outbound-host grant, was refused). ``f`` fetches
again.
"""

import wit_world
from wit_world.imports import host, http
from wit_world.imports.types import Event_Key, Event_PermissionResult, EventKind, Permission

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"

state = {"url": "", "perm": "pending", "result": "not fetched yet", "fetches": 0}


def describe_error(err):
    value = getattr(err, "value", None)
    name = type(err).__name__.removeprefix("HttpError_").lower()
    return f"error: {name}" + (f": {value}" if value is not None else "")


def fetch():
    state["fetches"] += 1
    if not state["url"]:
        state["result"] = "error: no url in the config"
        return
    req = http.Request(method="GET", url=state["url"], headers=[], body=None, timeout_ms=None)
    try:
        resp = http.send(req)
    except Exception as e:  # Err(http-error) from the host
        state["result"] = describe_error(getattr(e, "value", e))
        return
    body = bytes(resp.body).decode("utf-8", errors="replace")
    first = body.splitlines()[0] if body else ""
    state["result"] = f"status {resp.status}: {first}"


class WitWorld(wit_world.WitWorld):
    def load(self, cfg):
        state["url"] = dict(cfg).get("url", "")
        host.request_permission([Permission.WEB_ACCESS])
        host.subscribe([EventKind.KEY, EventKind.PERMISSION_RESULT])

    def update(self, ev):
        if isinstance(ev, Event_PermissionResult):
            state["perm"] = "granted" if ev.value else "denied"
            fetch()
            return True
        if isinstance(ev, Event_Key) and ev.value == "f":
            fetch()
            return True
        return False

    def render(self, rows, cols):
        lines = [
            f"{BOLD}GET {state['url']}{RESET}"[: cols + 8],
            f"{DIM}web-access: {state['perm']}, fetches: {state['fetches']}{RESET}",
            state["result"][:cols],
        ]
        return "\n".join(lines[:rows])

    def pipe(self, msg):
        return False
