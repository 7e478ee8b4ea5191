"""Build, pack and sign the zellij_like pane plugins.

Each plugin under ``plugins/`` is a Python app built with componentize-py against
``wit/`` by :func:`wasmplug.authoring._build.build_python_component`, which caches by
content in the user cache (the first build takes ~10 s per plugin, later ones
~1 ms). :func:`prepare` then embeds each plugin's ``wasmplug.toml`` (as
``wasmplug pack`` does) and signs the result with a demo key kept in
``STATE_DIR/keys`` (as ``wasmplug sign`` does). The application trusts that key
for the plugin names only (:func:`demo_trusted_key`).

Run ``python -m examples.zellij_like.build [STATE_DIR]`` to do it from the command line.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Callable
from pathlib import Path

from wasmplug import TrustedKey
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest
from wasmplug._trust.signing import PublicKey, SecretKey, generate_keypair, load_secret_key, sign
from wasmplug._trust.wasm_sections import with_custom_section
from wasmplug.authoring._build import build_python_component

__all__ = ["PLUGINS", "WIT_DIR", "build_plugins", "demo_trusted_key", "manifest", "prepare"]

HERE = Path(__file__).resolve().parent
WIT_DIR = HERE / "wit"
PLUGINS: dict[str, Path] = {
    name: HERE / "plugins" / name.replace("-", "_")
    for name in ("status-bar", "tab-bar", "clock", "file-browser", "todo", "misbehaving", "fetch")
}
"""Plugin name -> its directory (``app.py`` + ``wasmplug.toml``)."""

DEMO_KEY_NAME = "zellij_like demo"
Progress = Callable[[str], None]


def manifest(name: str) -> tuple[Manifest, bytes]:
    """The plugin's manifest, parsed and as bytes."""
    path = PLUGINS[name] / "wasmplug.toml"
    text = path.read_bytes()
    return Manifest.from_toml(text.decode("utf-8"), source=str(path)), text


def _world(name: str) -> str:
    # "wasmplug-demo:zellij/plugin@0.1.0" -> "plugin"
    world = manifest(name)[0].world
    return world.split("/", 1)[1].split("@", 1)[0]


def build_one(name: str, progress: Progress | None = None) -> Path:
    """Build one plugin (cached by content); returns the raw component's path."""
    return build_python_component(
        PLUGINS[name], wit_path=WIT_DIR, world=_world(name), progress=progress
    )


def build_plugins(
    names: list[str] | None = None, progress: Progress | None = None
) -> dict[str, Path]:
    """Build plugins in parallel (cached). Returns name -> raw component path."""
    names = list(PLUGINS) if names is None else names
    workers = max(1, min(len(names), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="build") as pool:
        futures = {n: pool.submit(build_one, n, progress) for n in names}
        return {n: f.result() for n, f in futures.items()}


def demo_keypair(state_dir: Path) -> tuple[SecretKey, PublicKey]:
    """The demo signing key ``state_dir/keys/demo.sec``, created (mode 0600) on first use."""
    sec_path = Path(state_dir) / "keys" / "demo.sec"
    if not sec_path.is_file():
        sec_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pair = generate_keypair()
        write_atomic(sec_path, pair.secret_key.to_wasmsign2_bytes(), mode=0o600)
    sk = load_secret_key(sec_path.read_bytes())
    return sk, sk.public_key


def demo_trusted_key(state_dir: Path) -> TrustedKey:
    """The demo key, trusted for the demo plugin names only."""
    return TrustedKey(demo_keypair(state_dir)[1], scopes=tuple(PLUGINS), name=DEMO_KEY_NAME)


def pack_and_sign(name: str, raw: Path, state_dir: Path) -> Path:
    """Embed the manifest, sign with the demo key; writes ``state_dir/packed/NAME.wasm``."""
    sk, _ = demo_keypair(state_dir)
    data = with_custom_section(raw.read_bytes(), MANIFEST_SECTION, manifest(name)[1])
    signed = sign(data, sk, key_id=sk.key_id)  # deterministic: same input, same file
    out = Path(state_dir) / "packed" / f"{name}.wasm"
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not out.is_file() or out.read_bytes() != signed:
        write_atomic(out, signed)
    return out


def prepare(
    state_dir: Path, names: list[str] | None = None, progress: Progress | None = None
) -> dict[str, Path]:
    """Build, pack and sign the plugins. Returns name -> signed ``.wasm`` path."""
    raw = build_plugins(names, progress)
    return {name: pack_and_sign(name, path, state_dir) for name, path in raw.items()}


def main(argv: list[str]) -> int:
    state_dir = Path(argv[1] if len(argv) > 1 else ".zellij_like_state").resolve()
    for name, path in prepare(state_dir, progress=print).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
