"""Build WebAssembly components from source, cached by content.

Python apps are built with componentize-py (~10 s, ~18 MB component) and
JavaScript modules with componentize-js (~10-35 s, ~12 MB), so results are cached
under ``platformdirs.user_cache_dir("wasmplug")/builds/<sha256>.wasm``, keyed by
a content hash of the sources, the WIT and the tool version. Files are written
atomically (temporary file in the same directory, ``fsync``, ``os.replace``): an
interrupted build never leaves a truncated component behind.

componentize-js is installed on first use with npm, at pinned versions, into a
private directory ``user_cache_dir("wasmplug")/npm/<hash of the pins>/`` (about
400 MB, ~30 s), and run from a small node script through its JavaScript API.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

import attrs
import platformdirs

from wasmplug._errors import BuildError
from wasmplug._fsutil import atomic_path, file_lock, fsync_dir

__all__ = [
    "BuiltComponent",
    "ProgressCallback",
    "ProgressEvent",
    "build_cache_key",
    "build_js",
    "build_python",
    "find_componentize_py",
    "js_build_cache_key",
]

_log = logging.getLogger("wasmplug.build")

_TOOL = "componentize-py"
_TIMEOUT_S = 600.0
"""Longest one build may take, in seconds. Idle builds take 10-40 s; the limit only
catches a hung tool, so it leaves room for a loaded machine (builds of different
plugins still run in parallel)."""
_LOCK_GRACE_S = 30.0
"""How much longer than :data:`_TIMEOUT_S` a caller waits for another process's build."""
_SCRIPT = "import sys; from componentize_py import script; sys.exit(script())"

_NPM_PINS = {"@bytecodealliance/componentize-js": "0.23.0"}
"""npm packages (exact versions) installed for :func:`build_js`."""
_NPM_TIMEOUT_S = 600.0
_NODE_MIN_MAJOR = 18
_NODE_HINT = f"building JavaScript components needs Node.js >= {_NODE_MIN_MAJOR} with npm"
_NODE_SCRIPT_NAME = "componentize.mjs"
_NODE_SCRIPT = """\
// Written by wasmplug: node componentize.mjs SOURCE WIT WORLD -o OUT
import { readFile, writeFile } from "node:fs/promises";
import { componentize } from "@bytecodealliance/componentize-js";
import oxc from "oxc-parser"; // componentize-js's own parser: show where syntax errors are

const [sourcePath, witPath, worldName, , out] = process.argv.slice(2);
try {
  const { component } = await componentize({ sourcePath, witPath, worldName });
  await writeFile(out, component);
} catch (e) {
  console.error(e?.stack ?? String(e));
  const { errors } = await oxc.parseAsync(sourcePath, await readFile(sourcePath, "utf8"));
  errors.forEach((err) => console.error(err.codeframe ?? err.message));
  process.exit(1);
}
"""
_NPM_TOOLS_ID = hashlib.sha256(
    json.dumps([_NPM_PINS, _NODE_SCRIPT], sort_keys=True).encode()
).hexdigest()[:16]


@attrs.frozen
class ProgressEvent:
    """One step of a long authoring operation, passed to a ``progress`` callback.

    ``str(event)`` is the human-readable message, so ``progress=print`` works.

    Attributes:
        target: What is being worked on: the plugin (or world) name given by the caller.
        action: ``"install-tools"`` (npm installs componentize-js, ~30 s once),
            ``"build"`` (componentize-py ~10 s, componentize-js ~10-40 s) or ``"pack"``.
        status: ``"started"``, ``"finished"`` or ``"failed"``. Every ``"started"`` is
            followed by a ``"finished"`` or a ``"failed"`` for the same target and action.
        message: One line for a person, e.g. ``built clock in 9.8 s (18.2 MB)``.
        elapsed_s: Seconds since the matching ``"started"`` (0.0 for ``"started"``).
    """

    target: str
    action: Literal["install-tools", "build", "pack"]
    status: Literal["started", "finished", "failed"]
    message: str
    elapsed_s: float = 0.0

    def __str__(self) -> str:
        return self.message


ProgressCallback = Callable[[ProgressEvent], object]
"""The type of a ``progress`` argument: called from the building thread."""


@attrs.frozen
class BuiltComponent:
    """A component built from source (or found in the build cache).

    Attributes:
        path: The component: ``output`` if one was given, else the cached file
            (shared: do not modify it).
        sha256: SHA-256 of the component, 64 lowercase hex digits.
        size: Its size in bytes.
        world: The WIT world it targets.
        tool: The tool and its version, e.g. ``componentize-py 0.25.1``.
        cached: True if the build cache already held it (nothing was run).
        seconds: Wall time of the build tool, in seconds (0.0 when cached).
    """

    path: Path
    sha256: str
    size: int
    world: str
    tool: str
    cached: bool
    seconds: float


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
    """Yield ``(relative POSIX path, path)`` for files under ``root`` matching ``pattern``.

    Files under a ``node_modules`` directory are skipped.
    """
    if root.is_file():
        yield root.name, root
        return
    for path in root.rglob(pattern):
        rel = path.relative_to(root)
        if path.is_file() and "node_modules" not in rel.parts:
            yield rel.as_posix(), path


def _content_hash(fields: Iterable[str], trees: Iterable[tuple[str, Path, str]]) -> str:
    """SHA-256 (hex) of ``fields``, then of every ``(label, root, pattern)`` file tree.

    Each field, and each file's ``label/relative-path`` and bytes, is length-prefixed,
    so that fields cannot run together.
    """
    h = hashlib.sha256()

    def field(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    for text in fields:
        field(text.encode())
    for label, root, pattern in trees:
        for rel, path in sorted(_tree_files(root, pattern)):
            field(f"{label}/{rel}".encode())
            field(path.read_bytes())
    return h.hexdigest()


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
    fields = ("wasmplug-build-1", tool_version, world, module, str(bool(stub_wasi)))
    return _content_hash(fields, (("wit", wit_path, "*"), ("app", app_dir, "*.py")))


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0o700."""
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        p.mkdir(mode=0o700, exist_ok=True)


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` so that ``dest`` is either untouched or complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest, mode=0o644) as tmp:
        shutil.copyfile(src, tmp)


def _report(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    """Pass ``event`` to ``progress``; log it (INFO, or DEBUG when ``progress`` shows it)."""
    _log.log(logging.INFO if progress is None else logging.DEBUG, "%s", event.message)
    if progress is not None:
        progress(event)


def _result(
    cached: Path, output: Path | None, world: str, tool: str, seconds: float | None
) -> BuiltComponent:
    """Deliver ``cached`` to ``output`` (if given) and describe it."""
    data = cached.read_bytes()
    path = _deliver(cached, output)
    sha = hashlib.sha256(data).hexdigest()
    return BuiltComponent(path, sha, len(data), world, tool, seconds is None, seconds or 0.0)


def build_python(
    app_dir: str | os.PathLike[str],
    *,
    wit: str | os.PathLike[str],
    world: str,
    module: str = "app",
    output: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    stub_wasi: bool = False,
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> BuiltComponent:
    """Build a Python app into a WebAssembly component with componentize-py, cached.

    Runs ``componentize-py -d WIT -w WORLD componentize MODULE -p APP_DIR -o TMP``
    (plus ``--stub-wasi``) with a 600 s timeout, unless a build with the same
    content hash (``build_cache_key``) is cached. A cache hit costs the SHA-256 of the component
    (~30 ms for 18 MB) and one ~0.1 s ``--version`` probe per process.

    Args:
        app_dir: Directory containing the app module and its pure-Python dependencies.
        wit: WIT directory or file describing ``world``.
        world: Name of the WIT world to target.
        module: Name of the Python module implementing the world (must differ from
            the world's name).
        output: If given, the component is also copied (atomically) to this path.
        cache_dir: Cache directory; defaults to ``user_cache_dir("wasmplug")/builds``.
            Missing directories are created with mode 0o700.
        stub_wasi: Replace all WASI imports with trapping stubs (``--stub-wasi``).
        name: What to call the build in progress events (default: ``world``).
        progress: Called with a :class:`ProgressEvent` when a real build starts and
            when it finishes or fails (a cache hit reports nothing). Without it,
            the messages go to the ``wasmplug.build`` logger at INFO level; with
            it, at DEBUG. Sizes are in MB (10**6 bytes).

    Returns:
        The component (at ``output`` if given, else in the cache) and how it was made.

    Raises:
        BuildError: componentize-py is missing, failed, or ran past the timeout;
            ``.output`` holds the tool's combined stdout/stderr.
    """
    app_dir, wit_path = Path(app_dir).resolve(), Path(wit).resolve()
    cmd = find_componentize_py()
    version = _tool_version(tuple(cmd))
    key = build_cache_key(
        app_dir, wit_path=wit_path, world=world, module=module, stub_wasi=stub_wasi,
        tool_version=version,
    )  # fmt: skip
    cached = _cache_path(cache_dir, key)
    seconds = None
    if cached.is_file():
        _log.debug("using cached build of %s: %s", world, cached)
    else:
        argv = [*cmd, "-d", str(wit_path), "-w", world, "componentize", module]
        argv += ["-p", str(app_dir)] + (["--stub-wasi"] if stub_wasi else [])
        seconds = _run_build(argv, _TOOL, name or world, cached, progress, eta="~10 s")
    out = Path(output) if output is not None else None
    return _result(cached, out, world, version, seconds)


def _cache_path(cache_dir: str | os.PathLike[str] | None, key: str) -> Path:
    """Path of the cached build ``key`` (creating the cache directory, mode 0o700)."""
    directory = (
        Path(cache_dir)
        if cache_dir is not None
        else Path(platformdirs.user_cache_dir("wasmplug")) / "builds"
    )
    _make_private_dirs(directory)
    return directory / f"{key}.wasm"


def _deliver(cached: Path, output: Path | None) -> Path:
    """Return ``cached``, or copy it atomically to ``output`` and return that."""
    if output is None:
        return cached
    _copy_atomic(cached, Path(output))
    return Path(output)


def _run_tool(
    argv: list[str], tool: str, doing: str, *, timeout: float, cwd: Path | None = None
) -> str:
    """Run ``argv``; return its combined stdout/stderr, or raise BuildError."""
    try:
        proc = subprocess.run(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        out = e.output or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise BuildError(f"{tool} timed out after {timeout:.0f} s", out) from e
    except OSError as e:
        raise BuildError(f"cannot run {tool}: {e}") from e
    if proc.returncode != 0:
        msg = f"{tool} failed to {doing} (exit status {proc.returncode})"
        raise BuildError(msg, output=proc.stdout)
    return proc.stdout


def _run_build(
    argv: list[str],
    tool: str,
    name: str,
    dest: Path,
    progress: ProgressCallback | None,
    *,
    eta: str,
) -> float | None:
    """Run ``argv -o TMP`` with TMP next to ``dest``, then atomically move TMP to ``dest``.

    One build per cache entry at a time, across processes: the build holds
    ``dest``'s lock file, and a caller that waited for it finds ``dest`` built.
    The lock file is removed before the lock is released, so the cache holds only
    components; after a failed build a waiter and a newcomer may then each build
    (the results are identical and each lands atomically).

    Returns:
        The build's wall time in seconds, or ``None`` if another process built
        ``dest`` meanwhile.

    Raises:
        BuildError: the tool failed or ran past :data:`_TIMEOUT_S`, or another
            process's build of ``dest`` held the lock longer than that.
    """
    with _one_build(dest, name) as built_meanwhile:
        if built_meanwhile:
            _log.debug("%s was built by another process meanwhile: %s", name, dest)
            return None
        return _build_now(argv, tool, name, dest, progress, eta)


@contextlib.contextmanager
def _one_build(dest: Path, name: str) -> Iterator[bool]:
    """Hold ``dest``'s build lock (see :func:`_run_build`); yield whether ``dest``
    exists already (another process built it while this one waited)."""
    lock = dest.with_name(f".{dest.name}.lock")
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(lock, timeout_s=_TIMEOUT_S + _LOCK_GRACE_S))
        except TimeoutError:
            raise BuildError(
                f"another process has been building {name} for over {_TIMEOUT_S:.0f} s "
                f"(it holds {lock})"
            ) from None
        try:
            yield dest.is_file()
        finally:
            lock.unlink(missing_ok=True)


def _build_now(
    argv: list[str], tool: str, name: str, dest: Path, progress: ProgressCallback | None, eta: str
) -> float:
    msg = f"building {name} with {tool} (first time, {eta})..."
    _report(progress, ProgressEvent(name, "build", "started", msg))
    start = time.monotonic()
    try:
        with atomic_path(dest, mode=0o600) as tmp:  # a private cache entry
            out = _run_tool([*argv, "-o", str(tmp)], tool, f"build {name}", timeout=_TIMEOUT_S)
            if tmp.stat().st_size == 0:
                raise BuildError(f"{tool} produced no output for {name}", out)
    except BaseException as e:
        elapsed = time.monotonic() - start
        why = str(e).split("\n", 1)[0] or type(e).__name__
        _report(progress, ProgressEvent(name, "build", "failed", f"{name}: {why}", elapsed))
        raise
    elapsed = time.monotonic() - start
    size_mb = dest.stat().st_size / 1e6
    msg = f"built {name} in {elapsed:.1f} s ({size_mb:.1f} MB)"
    _report(progress, ProgressEvent(name, "build", "finished", msg, elapsed))
    return elapsed


# -- JavaScript (componentize-js) -----------------------------------------------------


def _js_tools_dir() -> Path:
    """Where the pinned npm tooling lives: ``user_cache_dir/npm/<hash of the pins>``."""
    return Path(platformdirs.user_cache_dir("wasmplug")) / "npm" / _NPM_TOOLS_ID


def _find_node() -> str:
    """Return the path of ``node`` (>= 18), or raise BuildError."""
    node = shutil.which("node")
    if node is None:
        raise BuildError(f"node was not found on PATH; {_NODE_HINT} (https://nodejs.org)")
    version = _run_tool([node, "--version"], "node", "report its version", timeout=30).strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < _NODE_MIN_MAJOR:
        raise BuildError(f"{node} is Node.js {version!r}; {_NODE_HINT}")
    return node


def _install_js_tools(progress: ProgressCallback | None) -> Path:
    """Install the pinned npm packages into :func:`_js_tools_dir`, unless present.

    npm runs in a temporary sibling directory (``--ignore-scripts``: none of the
    packages needs install scripts), which is then renamed into place, so the
    directory exists only once complete. Concurrent installs are harmless: the
    first rename wins and the others discard their copy.
    """
    dest = _js_tools_dir()
    if (dest / _NODE_SCRIPT_NAME).is_file():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(f"npm was not found on PATH; {_NODE_HINT} (https://nodejs.org)")
    _make_private_dirs(dest.parent)
    pins = ", ".join(f"{name}@{version}" for name, version in _NPM_PINS.items())
    msg = f"installing {pins} with npm into {dest} (first time, ~30 s)..."
    _report(progress, ProgressEvent("componentize-js", "install-tools", "started", msg))
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        package = {"private": True, "dependencies": _NPM_PINS}
        (tmp / "package.json").write_text(json.dumps(package, indent=2) + "\n")
        argv = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"]
        argv += ["--no-update-notifier", "--loglevel=error"]
        _run_tool(argv, "npm", f"install {pins}", timeout=_NPM_TIMEOUT_S, cwd=tmp)
        (tmp / _NODE_SCRIPT_NAME).write_text(_NODE_SCRIPT)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if not (dest / _NODE_SCRIPT_NAME).is_file():
                raise BuildError(f"cannot move the npm tooling into {dest}: {e}") from e
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent install won the race
        fsync_dir(dest.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        elapsed = time.monotonic() - start
        msg = f"installing {pins} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        event = ProgressEvent("componentize-js", "install-tools", "failed", msg, elapsed)
        _report(progress, event)
        raise
    elapsed = time.monotonic() - start
    msg = f"installed {pins} in {elapsed:.1f} s"
    _report(progress, ProgressEvent("componentize-js", "install-tools", "finished", msg, elapsed))
    return dest


def js_build_cache_key(source: Path, *, wit_path: Path, world: str) -> str:
    """Compute the content hash that identifies a componentize-js build.

    It covers the pinned tool versions, ``world``, the entry module's name, every
    ``*.js``/``*.mjs`` file in the entry module's directory tree (except under
    ``node_modules``: componentize-js resolves relative imports only) and every
    file under ``wit_path``. It needs neither node nor npm.

    Returns:
        64 lowercase hex digits (SHA-256).
    """
    fields = ("wasmplug-build-js-1", _NPM_TOOLS_ID, world, source.name)
    trees = [("wit", wit_path, "*")] + [(ext, source.parent, f"*.{ext}") for ext in ("js", "mjs")]
    return _content_hash(fields, trees)


def build_js(
    source: str | os.PathLike[str],
    *,
    wit: str | os.PathLike[str],
    world: str,
    output: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> BuiltComponent:
    """Build a JavaScript ES module into a WebAssembly component with componentize-js, cached.

    Unless a build with the same content hash (``js_build_cache_key``) is cached (a hit costs the
    SHA-256 of the component and needs neither node nor npm), installs the pinned
    componentize-js on first use (see the module docstring) and runs its ``componentize()`` API with
    node, with a 600 s timeout. The component embeds the StarlingMonkey engine; it
    imports ``wasi:cli``, ``wasi:clocks``, ``wasi:random``, ``wasi:filesystem`` and
    ``wasi:http/outgoing-handler`` (for ``fetch``) besides the world's imports.

    Args:
        source: The entry ES module; it may import sibling modules by relative path.
        wit: WIT directory or file describing ``world``.
        world: Name of the WIT world to target.
        output: If given, the component is also copied (atomically) to this path.
        cache_dir: Cache directory; defaults to ``user_cache_dir("wasmplug")/builds``.
        name: What to call the build in progress events (default: ``world``).
        progress: Called with a :class:`ProgressEvent` for the npm install and the
            build (started, then finished or failed), as in :func:`build_python`.

    Returns:
        The component (at ``output`` if given, else in the cache) and how it was made.

    Raises:
        BuildError: ``source`` is not a file; node (>= 18) or npm is missing; npm
            or componentize-js failed or timed out (``.output`` holds their output).
    """
    source, wit_path = Path(source).resolve(), Path(wit).resolve()
    if not source.is_file():
        raise BuildError(f"{source}: not a JavaScript file")
    cached = _cache_path(cache_dir, js_build_cache_key(source, wit_path=wit_path, world=world))
    seconds = None
    if cached.is_file():
        _log.debug("using cached build of %s: %s", world, cached)
    else:
        node = _find_node()
        script = _install_js_tools(progress) / _NODE_SCRIPT_NAME
        argv = [node, str(script), str(source), str(wit_path), world]
        label = name or world
        seconds = _run_build(argv, "componentize-js", label, cached, progress, eta="~10-40 s")
    tool = "componentize-js " + _NPM_PINS["@bytecodealliance/componentize-js"]
    out = Path(output) if output is not None else None
    return _result(cached, out, world, tool, seconds)
