"""``python -m examples.zellij_like [--layout FILE] [--state-dir DIR] [--watch]``.

Before the workspace opens, a start-up screen shows each plugin being built and
compiled (a few minutes on the first run, seconds later). Keys, signed plugins and
pane data live in ``--state-dir``, by default under the user data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from wasmplug import GrantStore, PluginHost
from wasmplug.authoring import ProgressBoard

from . import build
from .app import Workspace, quiet_plugin_logs
from .layout import DEFAULT_LAYOUT, load_layout


def make_app(
    *,
    layout_path: Path = DEFAULT_LAYOUT,
    state_dir: Path | None = None,
    host: PluginHost | None = None,
    manual_timers: bool = False,
    progress: ProgressBoard | None = None,
    precompile: bool = False,
) -> Workspace:
    """Build and sign the plugins the layout needs, then create the workspace.

    Args:
        state_dir: Keys, signed plugins and pane data (default:
            :func:`build.default_state_dir`, under the user data dir).
        progress: Shows each build (and compile) live.
        precompile: Compile every plugin now (10-30 s each the first time) rather
            than when its pane opens.
    """
    state_dir = Path(state_dir if state_dir is not None else build.default_state_dir()).resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout = load_layout(layout_path, state_dir=state_dir)
    names = sorted({p.plugin for p in layout.panes()})
    plugins = build.prepare(state_dir, names, progress=progress)
    key = build.demo_trusted_key(state_dir)
    host = host or PluginHost(trusted_keys=[key])
    if precompile:
        build.precompile(host, plugins, progress)
    return Workspace(
        layout,
        plugins,
        host=host,
        trusted_key=key,
        grant_store=GrantStore(state_dir / "permissions.json"),
        manual_timers=manual_timers,
    )


Changes = set[tuple[Any, str]]
"""One batch of file changes, as ``watchfiles.awatch`` yields them: ``{(Change, path)}``."""


async def apply_changes(app: Workspace, state_dir: Path, changes: Changes) -> list[str]:
    """Handle one batch of file changes; returns the ids of the panes reloaded.

    A signed ``.wasm`` in ``state_dir/packed`` that changed (and still exists)
    reloads every pane running that plugin, once per batch. A plugin source
    (``.py``) that changed is rebuilt and re-signed, which the next batch sees.
    """
    packed = state_dir / "packed"
    sources = {str(path): name for name, path in build.PLUGINS.items()}
    wasm: dict[Path, None] = {}
    rebuild: dict[str, None] = {}
    for _change, changed in changes:
        path = Path(changed)
        if path.parent == packed and path.suffix == ".wasm":
            wasm[path] = None
        elif path.suffix == ".py":
            name = next((n for d, n in sources.items() if changed.startswith(d)), None)
            if name is not None and app.panes_for_plugin(name):
                rebuild[name] = None
    reloaded = []
    for path in wasm:
        if not path.is_file():  # deleted, or the temporary name of an atomic write
            continue
        for spec in app.panes_for_plugin(path.stem):
            await app.reload(spec.id, path)
            reloaded.append(spec.id)
    for name in rebuild:
        app.notify(f"rebuilding {name}...", title="--watch")
        try:
            await asyncio.to_thread(build.prepare, state_dir, [name])
        except Exception as e:  # a broken plugin source must not end the app
            app.notify(f"{name}: {e}", title="build failed", severity="error")
    return reloaded


async def watch(
    app: Workspace,
    state_dir: Path,
    *,
    changes: AsyncIterator[Changes] | None = None,
    sources: bool = True,
    debounce_ms: int = 300,
) -> None:
    """``--watch``: rebuild a plugin when its source changes, reload it when its
    signed ``.wasm`` changes.

    Args:
        changes: Batches of changes to handle instead of watching the file
            system with watchfiles (for tests).
        sources: Also watch the plugins' source folders (else ``packed/`` only).
    """
    if changes is None:
        import watchfiles

        paths = [state_dir / "packed"]
        if sources:
            paths += [path for path in build.PLUGINS.values() if path.is_dir()]
        changes = watchfiles.awatch(*paths, debounce=debounce_ms)
    async for batch in changes:
        await apply_changes(app, state_dir, batch)


def enable_watch(app: Workspace, state_dir: Path, **kw: Any) -> None:
    """Start :func:`watch` as a worker once the app runs (``--watch``)."""
    state_dir = Path(state_dir).resolve()
    app.call_later(lambda: app.run_worker(watch(app, state_dir, **kw), exclusive=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.zellij_like", description=__doc__)
    parser.add_argument("--layout", type=Path, default=DEFAULT_LAYOUT)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=build.default_state_dir(),
        help="keys, signed plugins and pane data (default: %(default)s)",
    )
    parser.add_argument("--watch", action="store_true", help="reload plugins when they change")
    args = parser.parse_args(argv)
    title = "zellij_like: preparing the plugins (first run: a few minutes; then seconds)"
    with ProgressBoard(title=title) as board:
        app = make_app(
            layout_path=args.layout, state_dir=args.state_dir, progress=board, precompile=True
        )
    if args.watch:
        enable_watch(app, args.state_dir)
    quiet_plugin_logs()
    with app.host:
        app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
