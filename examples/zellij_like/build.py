"""Build, pack and sign the zellij_like pane plugins.

Each plugin under ``plugins/`` is a Python app built with componentize-py against
``wit/`` by :func:`wasmplug.authoring.build_python`, which caches by content in the
user cache (the first build takes ~10 s per plugin, later ones milliseconds).
:func:`prepare` then embeds each plugin's ``wasmplug.toml`` (:func:`wasmplug.authoring.pack`,
as ``wasmplug pack`` does) and signs the result with a demo key kept in
``STATE_DIR/keys`` (:func:`wasmplug.authoring.sign`). The application trusts that key
for the plugin names only (:func:`demo_trusted_key`). :func:`precompile` compiles the
signed plugins into the host's compile cache (10-30 s each the first time).

State lives under the user data dir (:func:`default_state_dir`), never in the current
directory. Run ``python -m examples.zellij_like.build [STATE_DIR]`` to do it from the
command line.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from pathlib import Path

import platformdirs

from wasmplug import Manifest, PluginHost, PublicKey, SecretKey, TrustedKey
from wasmplug.authoring import BuiltComponent, ProgressBoard, build_python, keygen, pack, sign

__all__ = [
    "PLUGINS",
    "WIT_DIR",
    "build_plugins",
    "default_state_dir",
    "demo_trusted_key",
    "manifest",
    "precompile",
    "prepare",
]

HERE = Path(__file__).resolve().parent
WIT_DIR = HERE / "wit"
PLUGINS: dict[str, Path] = {
    name: HERE / "plugins" / name.replace("-", "_")
    for name in ("status-bar", "tab-bar", "clock", "file-browser", "todo", "misbehaving", "fetch")
}
"""Plugin name -> its directory (``app.py`` + ``wasmplug.toml``)."""

DEMO_KEY_NAME = "zellij_like demo"


def default_state_dir() -> Path:
    """``user_data_dir("wasmplug")/examples/zellij_like``: keys, packed plugins, pane data."""
    return Path(platformdirs.user_data_dir("wasmplug")) / "examples" / "zellij_like"


def manifest(name: str) -> Manifest:
    """The plugin's manifest (its ``wasmplug.toml``)."""
    return Manifest.from_path(PLUGINS[name] / "wasmplug.toml")


def _world(name: str) -> str:
    # "wasmplug-demo:zellij/plugin@0.1.0" -> "plugin"
    world = str(manifest(name).world)
    return world.split("/", 1)[1].split("@", 1)[0]


def build_one(name: str, progress: ProgressBoard | None = None) -> BuiltComponent:
    """Build one plugin (cached by content)."""
    return build_python(
        PLUGINS[name], wit=WIT_DIR, world=_world(name), name=name, progress=progress
    )


def build_plugins(
    names: list[str] | None = None, progress: ProgressBoard | None = None
) -> dict[str, BuiltComponent]:
    """Build plugins in parallel (cached). Returns name -> the raw component."""
    names = list(PLUGINS) if names is None else names
    workers = max(1, min(len(names), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="build") as pool:
        futures = {n: pool.submit(build_one, n, progress) for n in names}
        return {n: f.result() for n, f in futures.items()}


def demo_keypair(state_dir: Path) -> tuple[Path, PublicKey]:
    """The demo signing key ``state_dir/keys/demo.sec`` (mode 0600), created on first use.

    Returns:
        The secret key file and the public key.
    """
    keys = Path(state_dir) / "keys"
    sec_path = keys / "demo.sec"
    if not sec_path.is_file():
        try:
            keygen(keys / "demo.pub", sec_path)
        except FileExistsError:
            pass  # created meanwhile by another process: its key wins
    return sec_path, SecretKey.from_bytes(sec_path.read_bytes()).public_key


def demo_trusted_key(state_dir: Path) -> TrustedKey:
    """The demo key, trusted for the demo plugin names only."""
    return TrustedKey(demo_keypair(state_dir)[1], scopes=tuple(PLUGINS), name=DEMO_KEY_NAME)


def pack_and_sign(name: str, raw: Path, state_dir: Path) -> Path:
    """Embed the manifest, sign with the demo key; writes ``state_dir/packed/NAME.wasm``
    (and the unsigned ``state_dir/unsigned/NAME.wasm``)."""
    secret_key, _ = demo_keypair(state_dir)
    out = Path(state_dir) / "packed" / f"{name}.wasm"
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Both steps rewrite the file only when its bytes change (Ed25519 is deterministic),
    # so --watch sees a change only when a plugin really changed.
    unsigned = Path(state_dir) / "unsigned" / f"{name}.wasm"
    packed = pack(raw, PLUGINS[name] / "wasmplug.toml", output=unsigned)
    sign(packed.path, secret_key, output=out)
    return out


def prepare(
    state_dir: Path, names: list[str] | None = None, progress: ProgressBoard | None = None
) -> dict[str, Path]:
    """Build, pack and sign the plugins. Returns name -> signed ``.wasm`` path."""
    built = build_plugins(names, progress)
    return {name: pack_and_sign(name, b.path, state_dir) for name, b in built.items()}


def precompile(
    host: PluginHost, plugins: dict[str, Path], progress: ProgressBoard | None = None
) -> None:
    """Compile the signed plugins into ``host``'s compile cache, in parallel.

    A cache hit takes ~0.1 s and is not shown; a first compile takes 10-30 s per
    plugin and is shown on ``progress`` with its elapsed time.
    """

    def compile_one(name: str) -> None:
        if progress is None:
            host.precompile([plugins[name]])
            return
        with progress.task(name, "compiling (first time ~10-30 s)..."):
            host.precompile([plugins[name]])

    if not plugins:
        return
    with concurrent.futures.ThreadPoolExecutor(len(plugins), thread_name_prefix="compile") as pool:
        list(pool.map(compile_one, plugins))


def main(argv: list[str]) -> int:
    state_dir = Path(argv[1]).resolve() if len(argv) > 1 else default_state_dir()
    with ProgressBoard(title="zellij_like plugins") as board:
        plugins = prepare(state_dir, progress=board)
        with PluginHost() as host:
            precompile(host, plugins, board)
    for name, path in plugins.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
