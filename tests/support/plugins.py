"""Real componentize-py test plugins, built on demand and cached by content.

The first build of a plugin takes ~10 s (componentize-py) and the result is
cached under ``platformdirs.user_cache_dir("wasmplug")/builds``; later calls
return the cached path in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

from wasmplug.authoring import KeyFiles, build_js, build_python, keygen, pack, sign

PLUGINS_DIR = Path(__file__).parent.parent / "plugins"
GREETER_DIR = PLUGINS_DIR / "greeter"
GREETER_WORLD = "greeter"
GREETER_HOST_INTERFACE = "demo:plugin/host@0.1.0"
GREETER_API_INTERFACE = "demo:plugin/api@0.1.0"


def build_greeter() -> Path:
    """Build (or fetch from the build cache) the ``greeter`` test plugin.

    Returns:
        Path of the ~18 MB component file in the build cache.
    """
    return build_python(GREETER_DIR, wit=GREETER_DIR / "wit", world=GREETER_WORLD).path


GREETER_JS_DIR = PLUGINS_DIR / "greeter-js"
GREETER_JS_WORLD = "greeter-js"


def build_greeter_js() -> Path:
    """Build (or fetch from the build cache) the ``greeter-js`` componentize-js test plugin.

    The first call installs the pinned componentize-js with npm (~30 s, once per
    machine) and builds (~10-40 s); both need ``node`` and ``npm`` on ``PATH``.

    Returns:
        Path of the ~12 MB component file in the build cache.
    """
    return build_js(
        GREETER_JS_DIR / "app.js", wit=GREETER_JS_DIR / "wit", world=GREETER_JS_WORLD
    ).path


PROBER_DIR = PLUGINS_DIR / "prober"
PROBER_WORLD = "prober"


def build_prober() -> Path:
    """Build (or fetch from the build cache) the ``prober`` test plugin: a componentize-py
    guest that renames, symlinks and creates files inside its grants, then traps.

    Returns:
        Path of the ~18 MB component file in the build cache.
    """
    return build_python(PROBER_DIR, wit=PROBER_DIR / "wit", world=PROBER_WORLD).path


def packed_and_signed(directory: Path, wat: str, manifest: str) -> tuple[Path, KeyFiles]:
    """A component written as WAT, packed with ``manifest`` (TOML text) and signed
    with a new key pair, through the public authoring API.

    Returns:
        The signed file and the key pair (trust ``keys.public_key``).
    """
    raw = directory / "component.wasm"
    raw.write_bytes(wasmtime.wat2wasm(wat))
    (directory / "wasmplug.toml").write_text(manifest)
    packed = pack(raw, directory / "wasmplug.toml", output=directory / "packed.wasm")
    keys = keygen(directory / "k.pub", directory / "k.sec")
    return sign(packed.path, keys.secret_key_path, output=directory / "signed.wasm").path, keys
