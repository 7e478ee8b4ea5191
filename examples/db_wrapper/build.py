"""Build, pack, sign and install the db_wrapper demo plugins.

The three plugins under ``plugins/`` are Python apps built with componentize-py
against ``wit/`` (cached by content: the first build takes ~10 s per plugin,
later ones milliseconds). :func:`prepare` then makes each one a single installable
file, the way a publisher would, with the public :mod:`wasmplug.authoring` API
(what ``wasmplug pack`` and ``wasmplug sign`` run): the manifest
(``wasmplug.toml``) is embedded as the ``wasmplug-manifest`` section and the file is
signed with a demo key kept in ``STATE_DIR/keys``. Pass a
:class:`~wasmplug.authoring.ProgressBoard` to see each build and first compile live.

The application must trust that key for the three plugin names, and provide
the interfaces the plugins import (``types`` has no functions, but wasmplug
still wants it declared and provided)::

    from wasmplug import Grants, PluginHost
    import build

    with PluginHost(trusted_keys=[build.demo_trusted_key(state_dir)]) as host:
        host.provide("wasmplug-demo:fdw/types@0.2.0", {}, wit=build.WIT_DIR)
        host.provide("wasmplug-demo:fdw/host@0.2.0", services, wit=build.WIT_DIR)
        registry = build.prepare(state_dir, host)
        csv_source = host.load_installed(
            "csv-source", registry=registry, grants=Grants(filesystem={"/data": data_dir})
        )

``demo_trusted_key(state_dir)`` is
``TrustedKey(demo_pub, scopes=("csv-source", "json-http-source", "misbehaving"),
name="wasmplug demo")``, creating the key pair on first use. The compile cache
is keyed by the signed file's SHA-256, so a new state directory (a new key)
means compiling again (~10 s per plugin); reuse one where you can.

Run ``python -m examples.db_wrapper.build [STATE_DIR]`` to do it all from the
command line (default STATE_DIR: the demo's directory under the user data dir).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from pathlib import Path

import platformdirs

from wasmplug import (
    Manifest,
    PluginHost,
    PluginNotFoundError,
    PublicKey,
    Registry,
    SecretKey,
    TrustedKey,
    UntrustedKeyError,
    push_plugin,
)
from wasmplug.authoring import BuiltComponent, ProgressBoard, build_python, keygen, pack, sign

__all__ = [
    "PLUGINS",
    "WIT_DIR",
    "build_plugins",
    "default_state_dir",
    "demo_keypair",
    "demo_trusted_key",
    "prepare",
]

HERE = Path(__file__).resolve().parent
WIT_DIR = HERE / "wit"
"""The WIT package every plugin is built against (``wasmplug-demo:fdw@0.2.0``)."""

PLUGINS: dict[str, Path] = {
    "csv-source": HERE / "plugins" / "csv_source",
    "json-http-source": HERE / "plugins" / "json_http_source",
    "misbehaving": HERE / "plugins" / "misbehaving",
}
"""Plugin (manifest) name -> plugin directory (``app.py`` + ``wasmplug.toml``)."""

DEMO_KEY_NAME = "wasmplug demo"


def default_state_dir() -> Path:
    """``user_data_dir("wasmplug")/examples/db_wrapper``: keys, packed plugins, registry, data."""
    return Path(platformdirs.user_data_dir("wasmplug")) / "examples" / "db_wrapper"


def _manifest(name: str) -> Manifest:
    path = PLUGINS[name] / "wasmplug.toml"
    manifest = Manifest.from_path(path)
    if manifest.name != name:
        raise ValueError(f"{path}: plugin.name is {manifest.name!r}, expected {name!r}")
    if not manifest.world:
        raise ValueError(f"{path}: plugin.world is needed to build the plugin")
    return manifest


def build_plugins(progress: ProgressBoard | None = None) -> dict[str, BuiltComponent]:
    """Build every plugin with componentize-py (cached by content), in parallel.

    Returns:
        Plugin name -> the raw component in the build cache (no manifest section,
        unsigned; do not modify the file).

    Raises:
        wasmplug.BuildError: componentize-py is missing or a build failed
            (``.output`` holds its output).
    """
    workers = max(1, min(len(PLUGINS), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="build") as pool:
        futures = {
            name: pool.submit(
                build_python,
                PLUGINS[name],
                wit=WIT_DIR,
                world=str(_manifest(name).world),
                name=name,
                progress=progress,
            )
            for name in PLUGINS
        }
        return {name: fut.result() for name, fut in futures.items()}


def demo_keypair(state_dir: Path) -> tuple[Path, PublicKey]:
    """The demo signing key, ``state_dir/keys/demo.sec`` + ``demo.pub``, created on first use.

    Returns:
        The secret key file (mode 0600, in a 0700 directory) and the public key.
    """
    keys = Path(state_dir) / "keys"
    sec_path, pub_path = keys / "demo.sec", keys / "demo.pub"
    if not sec_path.is_file():
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            keygen(pub_path, sec_path)
        except FileExistsError:
            pass  # a parallel process (a test worker) created it first: its key wins
    public = SecretKey.from_bytes(sec_path.read_bytes()).public_key
    if not pub_path.is_file() or PublicKey.from_bytes(pub_path.read_bytes()) != public:
        pub_path.write_bytes(public.to_wasmsign2_bytes())  # the race's loser wrote its own
    return sec_path, public


def demo_trusted_key(state_dir: Path) -> TrustedKey:
    """The demo key as the host must trust it: scoped to the three demo plugin names."""
    _, pk = demo_keypair(state_dir)
    return TrustedKey(pk, scopes=tuple(PLUGINS), name=DEMO_KEY_NAME)


def prepare(
    state_dir: Path,
    host: PluginHost,
    *,
    progress: ProgressBoard | None = None,
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
        progress: Shows each build and first compile (10-30 s each) live;
            ``None`` for silence.
        registry_prefix: Push to this OCI registry prefix, then install from it.

    Returns:
        The registry holding the plugins (``host.load_installed(name, registry=...)``).

    Raises:
        wasmplug.BuildError: a build failed.
        wasmplug.UntrustedKeyError: ``host`` does not trust the demo key.
    """

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_key, _ = demo_keypair(state_dir)
    built = build_plugins(progress)

    packed_dir = state_dir / "packed"
    packed_dir.mkdir(mode=0o700, exist_ok=True)
    packed: dict[str, Path] = {}
    for name, component in built.items():
        out = packed_dir / f"{name}.wasm"
        unsigned = pack(component.path, PLUGINS[name] / "wasmplug.toml", output=out)
        # Ed25519 signatures are deterministic: the same input gives the same file.
        packed[name] = sign(unsigned.path, secret_key, output=out).path or out

    # One compile per plugin, in parallel: a cache hit takes ~0.1 s (not shown), a
    # first compile ~10-30 s (shown live with its elapsed time).
    def compile_one(name: str) -> str:
        if progress is None:
            return host.precompile([packed[name]])[0]
        with progress.task(name, "compiling (first time ~10-30 s)..."):
            return host.precompile([packed[name]])[0]

    with concurrent.futures.ThreadPoolExecutor(len(packed), thread_name_prefix="compile") as pool:
        shas = dict(zip(packed, pool.map(compile_one, packed), strict=True))

    registry = Registry(state_dir / "registry")
    for name, path in packed.items():
        version = _manifest(name).version
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
    state_dir = Path(argv[1]).resolve() if len(argv) > 1 else default_state_dir()
    with (
        PluginHost(trusted_keys=[demo_trusted_key(state_dir)]) as host,
        ProgressBoard(title="db_wrapper plugins") as board,
    ):
        registry = prepare(state_dir, host, progress=board)
    for info in registry.list():
        print(f"{info.name} {info.version}  sha256 {info.sha256[:16]}  {info.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
