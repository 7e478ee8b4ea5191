"""Build, pack, sign and install the db_wrapper demo plugins.

The three plugins under ``plugins/`` are Python apps built with componentize-py
against ``wit/`` (cached by content: the first build takes ~10 s per plugin,
later ones ~1 ms). :func:`prepare` then makes each one a single installable
file, the way a publisher would with ``wasmplug pack`` and ``wasmplug sign``:
the manifest (``wasmplug.toml``) is embedded as the ``wasmplug-manifest``
section and the file is signed with a demo key kept in ``STATE_DIR/keys``.

The application must trust that key for the three plugin names, and provide
the interfaces the plugins import (``types`` has no functions, but wasmplug
still wants it declared and provided)::

    from wasmplug import Grants, PluginHost
    import build

    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as host:
        host.provide("wasmplug-demo:fdw/types@0.1.0", {}, wit=build.WIT_DIR)
        host.provide("wasmplug-demo:fdw/host@0.1.0", services, wit=build.WIT_DIR)
        registry = build.prepare(state_dir, host)
        csv_source = host.load_installed(
            "csv-source", registry=registry, grants=Grants(filesystem={"/data": data_dir})
        )

``demo_trusted_key(state_dir)`` is
``TrustedKey(demo_pub, scopes=("csv-source", "json-http-source", "misbehaving"),
name="wasmplug demo")``, creating the key pair on first use. The compile cache
is keyed by the signed file's SHA-256, so a new state directory (a new key)
means compiling again (~10 s per plugin); reuse one where you can.

Run ``python examples/db_wrapper/build.py [STATE_DIR]`` to do it all from the
command line (default STATE_DIR: ``.db_wrapper_state`` in the current directory).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wasmplug import (
    PluginHost,
    PluginNotFoundError,
    Registry,
    TrustedKey,
    UntrustedKeyError,
    push_plugin,
)
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import MANIFEST_SECTION, Manifest
from wasmplug._trust.signing import (
    PublicKey,
    SecretKey,
    generate_keypair,
    load_public_key,
    load_secret_key,
    sign,
)
from wasmplug._trust.wasm_sections import with_custom_section
from wasmplug.authoring._build import build_python_component

__all__ = ["PLUGINS", "WIT_DIR", "build_plugins", "demo_keypair", "demo_trusted_key", "prepare"]

HERE = Path(__file__).resolve().parent
WIT_DIR = HERE / "wit"
"""The WIT package every plugin is built against (``wasmplug-demo:fdw@0.1.0``)."""

PLUGINS: dict[str, Path] = {
    "csv-source": HERE / "plugins" / "csv_source",
    "json-http-source": HERE / "plugins" / "json_http_source",
    "misbehaving": HERE / "plugins" / "misbehaving",
}
"""Plugin (manifest) name -> plugin directory (``app.py`` + ``wasmplug.toml``)."""

DEMO_KEY_NAME = "wasmplug demo"

Progress = Callable[[str], None]


def _manifest(name: str) -> tuple[Manifest, bytes]:
    path = PLUGINS[name] / "wasmplug.toml"
    text = path.read_bytes()
    manifest = Manifest.from_toml(text.decode("utf-8"), source=str(path))
    if manifest.name != name:
        raise ValueError(f"{path}: plugin.name is {manifest.name!r}, expected {name!r}")
    if not manifest.world:
        raise ValueError(f"{path}: plugin.world is needed to build the plugin")
    return manifest, text


def _build_one(name: str, progress: Progress | None) -> Path:
    manifest, _ = _manifest(name)
    assert manifest.world is not None  # checked by _manifest

    def report(msg: str) -> None:
        if progress is not None:
            progress(f"{name}: {msg}")

    return build_python_component(
        PLUGINS[name], wit_path=WIT_DIR, world=manifest.world, progress=report
    )


def build_plugins(progress: Progress | None = print) -> dict[str, Path]:
    """Build every plugin with componentize-py (cached by content), in parallel.

    Returns:
        Plugin name -> path of the raw component in the build cache (no manifest
        section, unsigned; do not modify it).

    Raises:
        wasmplug.BuildError: componentize-py is missing or a build failed
            (``.output`` holds its output).
    """
    workers = max(1, min(len(PLUGINS), os.cpu_count() or 1))
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="build") as pool:
        futures = {name: pool.submit(_build_one, name, progress) for name in PLUGINS}
        paths = {name: fut.result() for name, fut in futures.items()}
    elapsed = time.perf_counter() - start
    if progress is not None and elapsed > 1:
        progress(f"built {len(paths)} plugins in {elapsed:.1f} s")
    return paths


def demo_keypair(state_dir: Path) -> tuple[SecretKey, PublicKey]:
    """The demo signing key, ``state_dir/keys/demo.sec`` + ``demo.pub``, created on first use.

    Both files are written atomically with mode 0600 (in a 0700 directory).
    """
    keys = Path(state_dir) / "keys"
    sec_path, pub_path = keys / "demo.sec", keys / "demo.pub"
    if not sec_path.is_file():
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        keys.mkdir(mode=0o700, exist_ok=True)
        pair = generate_keypair()
        # Written aside, then hard-linked into place: if another process (a
        # parallel test worker) got there first, its key wins and stays valid.
        tmp = keys / f".demo.sec.{os.getpid()}.{threading.get_ident()}"
        write_atomic(tmp, pair.secret_key.to_wasmsign2_bytes(), mode=0o600)
        try:
            os.link(tmp, sec_path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    sk = load_secret_key(sec_path.read_bytes())
    if not pub_path.is_file() or load_public_key(pub_path.read_bytes()).raw != sk.public_key.raw:
        write_atomic(pub_path, sk.public_key.to_wasmsign2_bytes(), mode=0o600)
    return sk, sk.public_key


def demo_trusted_key(state_dir: Path) -> TrustedKey:
    """The demo key as the host must trust it: scoped to the three demo plugin names."""
    _, pk = demo_keypair(state_dir)
    return TrustedKey(pk, scopes=tuple(PLUGINS), name=DEMO_KEY_NAME)


def prepare(
    state_dir: Path,
    host: PluginHost,
    *,
    progress: Progress | None = print,
    registry_prefix: str | None = None,
) -> Registry:
    """Build, pack, sign, precompile and install every demo plugin.

    Writes ``state_dir/packed/<name>.wasm`` (manifest embedded, signed with the
    demo key) and installs them into ``Registry(state_dir / "registry")``.
    Repeated calls are cheap (well under a second when everything is cached) and install
    nothing new unless a plugin's source or manifest changed.

    With ``registry_prefix`` (an OCI ``host[:port]/path``), each signed file is first
    pushed to ``<prefix>/<name>:<version>`` (:func:`wasmplug.push_plugin`) and then
    installed from there (``host.install(reference)``), as a fleet machine would:
    the download is digest-checked, then verified like a file.

    Args:
        state_dir: The demo's private state directory (created 0700 if missing).
        host: Compiles the plugins (into its cache) and installs them; it must
            trust :func:`demo_trusted_key`.
        progress: Called with status messages; ``None`` for silence.

    Returns:
        The registry holding the plugins (``host.load_installed(name, registry=...)``).

    Raises:
        wasmplug.BuildError: a build failed.
        wasmplug.UntrustedKeyError: ``host`` does not trust the demo key.
    """
    say = progress or (lambda _msg: None)
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sk, _ = demo_keypair(state_dir)
    raw = build_plugins(progress)

    packed_dir = state_dir / "packed"
    packed_dir.mkdir(mode=0o700, exist_ok=True)
    packed: dict[str, Path] = {}
    for name, path in raw.items():
        _, toml_bytes = _manifest(name)
        data = with_custom_section(path.read_bytes(), MANIFEST_SECTION, toml_bytes)
        # Ed25519 signatures are deterministic: the same input gives the same file.
        signed = sign(data, sk, key_id=sk.key_id)
        out = packed_dir / f"{name}.wasm"
        if not out.is_file() or out.read_bytes() != signed:
            write_atomic(out, signed)
        packed[name] = out

    # A cache hit takes ~0.1 s per plugin; announce only a real compile (~10 s each).
    start = time.perf_counter()
    notice = threading.Timer(
        1.0, say, [f"compiling {len(packed)} plugins in parallel (first time ~10 s each)..."]
    )
    notice.daemon = True
    notice.start()
    try:
        shas = dict(zip(packed, host.precompile(list(packed.values())), strict=True))
    finally:
        notice.cancel()
    elapsed = time.perf_counter() - start
    if elapsed > 1:
        say(f"compiled {len(packed)} plugins in {elapsed:.1f} s")

    registry = Registry(state_dir / "registry")
    for name, path in packed.items():
        version = _manifest(name)[0].version
        try:
            installed = registry.get(name, f"={version}")
        except PluginNotFoundError:
            installed = None
        source: str | Path = path
        if registry_prefix is not None:
            pushed = push_plugin(path, f"{registry_prefix.rstrip('/')}/{name}:{version}")
            say(f"pushed {name} {version} to {pushed.reference} ({pushed.manifest_digest})")
            source = str(pushed.reference)
            if installed is not None and installed.manifest_digest == pushed.manifest_digest:
                continue
        elif installed is not None and installed.sha256 == shas[name]:
            continue
        # Demo convenience: a rebuilt plugin keeps its version, which the registry
        # would refuse as a VersionConflictError; force=True replaces the entry
        # instead. A real publisher bumps the version for every release.
        force = installed is not None and installed.sha256 != shas[name]
        try:
            host.install(source, registry=registry, force=force)
        except UntrustedKeyError as e:
            e.add_note(
                "create the host with PluginHost(trusted_keys=[demo_trusted_key(state_dir)])"
            )
            raise
        where = f" from {source}" if registry_prefix is not None else ""
        say(f"{'re' if force else ''}installed {name} {version}{where}")
    return registry


def main(argv: list[str]) -> int:
    state_dir = Path(argv[1] if len(argv) > 1 else ".db_wrapper_state").resolve()
    with PluginHost(trusted_keys=[demo_trusted_key(state_dir)]) as host:
        registry = prepare(state_dir, host)
        for info in registry.list():
            print(f"{info.name} {info.version}  sha256 {info.sha256[:16]}  {info.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
