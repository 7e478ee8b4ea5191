"""``python -m examples.zellij_like [--layout FILE] [--state-dir DIR] [--watch]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from wasmplug import GrantStore, PluginHost

from . import build
from .app import Workspace
from .layout import DEFAULT_LAYOUT, load_layout

DEFAULT_STATE = Path(".zellij_like_state")


def make_app(
    *,
    layout_path: Path = DEFAULT_LAYOUT,
    state_dir: Path = DEFAULT_STATE,
    host: PluginHost | None = None,
    manual_timers: bool = False,
    progress: build.Progress | None = None,
) -> Workspace:
    """Build and sign the plugins the layout needs, then create the workspace."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout = load_layout(layout_path, state_dir=state_dir)
    names = sorted({p.plugin for p in layout.panes()})
    plugins = build.prepare(state_dir, names, progress=progress)
    key = build.demo_trusted_key(state_dir)
    host = host or PluginHost(trusted_keys=[key])
    return Workspace(
        layout,
        plugins,
        host=host,
        trusted_key=key,
        grant_store=GrantStore(state_dir / "permissions.json"),
        manual_timers=manual_timers,
    )


async def watch(app: Workspace, state_dir: Path) -> None:
    """``--watch``: rebuild a plugin when its source changes, reload it when its
    signed ``.wasm`` changes."""
    import watchfiles

    packed = state_dir / "packed"
    sources = {str(path): name for name, path in build.PLUGINS.items()}
    async for changes in watchfiles.awatch(packed, *sources, debounce=300):
        for _change, changed in changes:
            path = Path(changed)
            if path.parent == packed and path.suffix == ".wasm":
                for spec in app.panes_for_plugin(path.stem):
                    await app.reload(spec.id, path)
            elif path.suffix == ".py":
                name = next((n for d, n in sources.items() if changed.startswith(d)), None)
                if name is not None and app.panes_for_plugin(name):
                    app.notify(f"rebuilding {name}...", title="--watch")
                    try:
                        await asyncio.to_thread(build.prepare, state_dir, [name])
                    except Exception as e:  # a broken plugin source must not end the app
                        app.notify(f"{name}: {e}", title="build failed", severity="error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.zellij_like", description=__doc__)
    parser.add_argument("--layout", type=Path, default=DEFAULT_LAYOUT)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--watch", action="store_true", help="reload plugins when they change")
    args = parser.parse_args(argv)
    app = make_app(layout_path=args.layout, state_dir=args.state_dir, progress=print)
    if args.watch:
        state_dir = args.state_dir.resolve()
        app.call_later(lambda: app.run_worker(watch(app, state_dir), exclusive=True))
    with app.host:
        app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
