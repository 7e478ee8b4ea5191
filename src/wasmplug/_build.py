"""Build WebAssembly components from Python source with componentize-py, cached by content.

A build takes ~10 s and produces a ~18 MB component, so results are cached under
``platformdirs.user_cache_dir("wasmplug")/builds/<sha256>.wasm``, keyed by
:func:`build_cache_key`. Files are written atomically (temporary file in the same
directory, ``fsync``, ``os.replace``): an interrupted build never leaves a
truncated component behind.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import platformdirs

from ._errors import BuildError

__all__ = ["build_cache_key", "build_python_component", "find_componentize_py"]

_log = logging.getLogger("wasmplug.build")

_TOOL = "componentize-py"
_TIMEOUT_S = 300.0
_SCRIPT = "import sys; from componentize_py import script; sys.exit(script())"


def find_componentize_py() -> list[str]:
    """Locate componentize-py: on ``PATH``, else run by the current interpreter.

    Returns:
        The argument vector prefix that runs componentize-py.

    Raises:
        BuildError: componentize-py is not installed (or does not run).
    """
    exe = shutil.which(_TOOL)
    python = [[sys.executable, "-m", "componentize_py"], [sys.executable, "-c", _SCRIPT]]
    for cmd in ([[exe]] if exe else []) + python:
        try:
            _tool_version(tuple(cmd))
        except BuildError:
            continue
        return cmd
    raise BuildError("componentize-py was not found; install it with `pip install componentize-py`")


@functools.lru_cache(maxsize=8)
def _tool_version(cmd: tuple[str, ...]) -> str:
    """Return the tool's ``--version`` line (cached per command), or raise BuildError."""
    try:
        proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"cannot run {' '.join(cmd)}: {e}") from e
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version.startswith(_TOOL):
        raise BuildError(f"{' '.join(cmd)} --version failed", output=proc.stdout + proc.stderr)
    return version


def _tree_files(root: Path, pattern: str) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative POSIX path, path)`` for files under ``root`` matching ``pattern``."""
    if root.is_file():
        yield root.name, root
        return
    for path in root.rglob(pattern):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path


def build_cache_key(
    app_dir: Path, *, wit_path: Path, world: str, module: str, stub_wasi: bool, tool_version: str
) -> str:
    """Compute the content hash that identifies a build.

    Args:
        app_dir: App directory; every ``*.py`` file under it (recursively) is hashed.
        wit_path: WIT directory (every file under it is hashed) or single WIT file.
        world: WIT world name.
        module: Python module name of the app.
        stub_wasi: Whether WASI imports are stubbed out.
        tool_version: componentize-py's ``--version`` output.

    Returns:
        64 lowercase hex digits (SHA-256).
    """
    h = hashlib.sha256()

    def field(data: bytes) -> None:  # length-prefixed, so fields cannot run together
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    for text in ("wasmplug-build-1", tool_version, world, module, str(bool(stub_wasi))):
        field(text.encode())
    for label, root, pattern in (("wit", wit_path, "*"), ("app", app_dir, "*.py")):
        for rel, path in sorted(_tree_files(root, pattern)):
            field(f"{label}/{rel}".encode())
            field(path.read_bytes())
    return h.hexdigest()


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0o700."""
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        p.mkdir(mode=0o700, exist_ok=True)


def _temp_path(directory: Path, stem: str) -> Path:
    """Create an empty temporary file (mode 0o600) in ``directory`` and return its path."""
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=directory)
    os.close(fd)
    return Path(name)


def _commit(tmp: Path, dest: Path) -> None:
    """Fsync ``tmp``, atomically rename it to ``dest`` (same directory), fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    try:
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # directories cannot be fsynced everywhere (e.g. Windows)
        pass


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` so that ``dest`` is either untouched or complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(dest.parent, dest.name)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        _commit(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _report(progress: Callable[[str], None] | None, msg: str) -> None:
    """Log ``msg`` at INFO level and pass it to ``progress`` if given."""
    _log.info("%s", msg)
    if progress is not None:
        progress(msg)


def build_python_component(
    app_dir: Path,
    *,
    wit_path: Path,
    world: str,
    module: str = "app",
    output: Path | None = None,
    cache_dir: Path | None = None,
    stub_wasi: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build a Python app into a WebAssembly component with componentize-py, cached.

    Runs ``componentize-py -d WIT -w WORLD componentize MODULE -p APP_DIR -o TMP``
    (plus ``--stub-wasi``) with a 300 s timeout, unless a build with the same
    :func:`build_cache_key` is cached. A cache hit costs about 1 ms (plus one
    ~0.1 s ``--version`` probe per process).

    Args:
        app_dir: Directory containing the app module and its pure-Python dependencies.
        wit_path: WIT directory or file describing ``world``.
        world: Name of the WIT world to target.
        module: Name of the Python module implementing the world (must differ from
            the world's name).
        output: If given, the component is also copied (atomically) to this path.
        cache_dir: Cache directory; defaults to ``user_cache_dir("wasmplug")/builds``.
            Missing directories are created with mode 0o700.
        stub_wasi: Replace all WASI imports with trapping stubs (``--stub-wasi``).
        progress: Called with human-readable status messages, which are also logged
            to the ``wasmplug.build`` logger at INFO level. Sizes are in MB (10**6 bytes).

    Returns:
        ``output`` if given, else the path of the cached component.

    Raises:
        BuildError: componentize-py is missing, failed, or ran past the timeout;
            ``.output`` holds the tool's combined stdout/stderr.
    """
    app_dir, wit_path = Path(app_dir).resolve(), Path(wit_path).resolve()
    cmd = find_componentize_py()
    version = _tool_version(tuple(cmd))
    key = build_cache_key(
        app_dir, wit_path=wit_path, world=world, module=module, stub_wasi=stub_wasi,
        tool_version=version,
    )  # fmt: skip
    if cache_dir is None:
        cache_dir = Path(platformdirs.user_cache_dir("wasmplug")) / "builds"
    _make_private_dirs(Path(cache_dir))
    cached = Path(cache_dir) / f"{key}.wasm"
    if cached.is_file():
        _log.debug("using cached build of %s: %s", world, cached)
    else:
        argv = [*cmd, "-d", str(wit_path), "-w", world, "componentize", module]
        argv += ["-p", str(app_dir)] + (["--stub-wasi"] if stub_wasi else [])
        _run_build(argv, world, cached, progress)
    if output is None:
        return cached
    _copy_atomic(cached, Path(output))
    return Path(output)


def _run_build(
    argv: list[str], world: str, dest: Path, progress: Callable[[str], None] | None
) -> None:
    """Run ``argv -o TMP`` with TMP next to ``dest``, then atomically move TMP to ``dest``."""
    _report(progress, f"building {world} with componentize-py (first time, ~10 s)...")
    tmp = _temp_path(dest.parent, dest.stem)
    start = time.monotonic()
    try:
        try:
            proc = subprocess.run(
                [*argv, "-o", str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", timeout=_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            out = e.output or ""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            raise BuildError(f"componentize-py timed out after {_TIMEOUT_S:.0f} s", out) from e
        except OSError as e:
            raise BuildError(f"cannot run componentize-py: {e}") from e
        if proc.returncode != 0:
            msg = f"componentize-py failed to build {world} (exit status {proc.returncode})"
            raise BuildError(msg, output=proc.stdout)
        if tmp.stat().st_size == 0:
            raise BuildError(f"componentize-py produced no output for {world}", proc.stdout)
        _commit(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size_mb = dest.stat().st_size / 1e6
    _report(progress, f"built {world} in {time.monotonic() - start:.1f} s ({size_mb:.1f} MB)")
