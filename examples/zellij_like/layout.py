"""The layout file: which plugins run where, with what configuration, grants and limits.

```toml
[top]                          # a one-line bar above the tabs (optional)
plugin = "tab-bar"
permissions = ["read-application-state"]     # pre-granted: no prompt

[bottom]                       # a bar below (optional)
plugin = "status-bar"

[[tabs]]
name = "main"
columns = 2                    # panes fill a grid, left to right

[[tabs.panes]]
plugin = "todo"
id = "todo"                    # default: the plugin name (post-message addresses it)
config = { key = "value" }     # passed to the plugin's load()
permissions = ["message-plugins"]
dirs = { "/data" = "{state}/todo:rw" }       # wasmplug filesystem grants
limits = { memory-mib = 48, timeout-ms = 500 }
restart = { max-faults = 3, window-s = 60 }
isolation = "process"          # run it in a worker process (default "inprocess")
```

Relative ``dirs`` are relative to the layout file; ``{state}`` is the state directory.
Read-write directories are created if missing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs

from wasmplug import DirGrant, Grants, Limits, RestartPolicy

from .permissions import PERMISSIONS

__all__ = ["Layout", "LayoutError", "PaneSpec", "TabSpec", "load_layout"]

DEFAULT_LAYOUT = Path(__file__).resolve().parent / "layout.toml"


class LayoutError(ValueError):
    """The layout file is invalid."""


@attrs.frozen
class PaneSpec:
    id: str
    plugin: str
    title: str
    config: tuple[tuple[str, str], ...] = ()
    permissions: frozenset[str] = frozenset()
    grants: Grants = attrs.field(factory=Grants)
    limits: Limits = attrs.field(factory=Limits)
    restart: RestartPolicy = attrs.field(factory=RestartPolicy)
    isolation: Literal["inprocess", "process"] = "inprocess"


@attrs.frozen
class TabSpec:
    name: str
    columns: int
    panes: tuple[PaneSpec, ...]


@attrs.frozen
class Layout:
    tabs: tuple[TabSpec, ...]
    top: PaneSpec | None = None
    bottom: PaneSpec | None = None

    def panes(self) -> list[PaneSpec]:
        out = [p for p in (self.top, self.bottom) if p is not None]
        return out + [p for t in self.tabs for p in t.panes]


_PANE_KEYS = {
    "plugin",
    "id",
    "title",
    "config",
    "permissions",
    "dirs",
    "limits",
    "restart",
    "isolation",
}


def _pane(table: dict[str, Any], where: str, base: Path, state_dir: Path) -> PaneSpec:
    unknown = set(table) - _PANE_KEYS
    if unknown:
        raise LayoutError(f"{where}: unknown keys {sorted(unknown)}")
    if "plugin" not in table:
        raise LayoutError(f"{where}: 'plugin' is required")
    perms = frozenset(table.get("permissions", ()))
    bad = perms - set(PERMISSIONS)
    if bad:
        raise LayoutError(
            f"{where}: unknown permissions {sorted(bad)} (known: {list(PERMISSIONS)})"
        )
    dirs: dict[str, DirGrant] = {}
    for guest, spec in table.get("dirs", {}).items():
        text = str(spec).replace("{state}", str(state_dir))
        host_path, _, mode = text.rpartition(":")
        if mode not in ("ro", "rw") or not host_path:
            host_path, mode = text, "ro"
        path = (base / host_path).resolve()
        if mode == "rw":
            path.mkdir(parents=True, exist_ok=True)
        dirs[guest] = DirGrant(path, mode)  # type: ignore[arg-type]
    lim = table.get("limits", {})
    limits = Limits(
        timeout_ms=lim.get("timeout-ms", 1000),
        memory_bytes=int(lim.get("memory-mib", 64) * 2**20),
    )
    isolation = table.get("isolation", "inprocess")
    if isolation not in ("inprocess", "process"):
        raise LayoutError(f"{where}: isolation must be 'inprocess' or 'process'")
    rs = table.get("restart", {})
    restart = RestartPolicy(max_faults=rs.get("max-faults", 3), window_s=rs.get("window-s", 60.0))
    pane_id = table.get("id", table["plugin"])
    return PaneSpec(
        id=pane_id,
        plugin=table["plugin"],
        title=table.get("title", pane_id),
        config=tuple((str(k), str(v)) for k, v in table.get("config", {}).items()),
        permissions=perms,
        grants=Grants(filesystem=dirs),
        limits=limits,
        restart=restart,
        isolation=isolation,
    )


def load_layout(path: Path | None = None, *, state_dir: Path) -> Layout:
    """Read and check a layout file (default: ``layout.toml`` next to this module)."""
    path = Path(path or DEFAULT_LAYOUT)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise LayoutError(f"{path}: {e}") from None
    base = path.resolve().parent
    bars = {k: _pane(data[k], k, base, state_dir) for k in ("top", "bottom") if k in data}
    tabs = []
    for i, t in enumerate(data.get("tabs", ())):
        panes = tuple(
            _pane(p, f"tabs[{i}].panes[{j}]", base, state_dir)
            for j, p in enumerate(t.get("panes", ()))
        )
        tabs.append(TabSpec(t.get("name", f"tab {i + 1}"), int(t.get("columns", 1)), panes))
    if not tabs:
        raise LayoutError(f"{path}: no [[tabs]]")
    layout = Layout(tuple(tabs), bars.get("top"), bars.get("bottom"))
    ids = [p.id for p in layout.panes()]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise LayoutError(f"{path}: duplicate pane ids {dupes} (set 'id')")
    return layout
