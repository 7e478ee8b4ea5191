"""Plugin projects: create one from the template, read it, build it into one packed ``.wasm``.

:func:`new_project` renders the cookiecutter template ``templates/plugin/`` (non-interactive);
:func:`build_project` turns a project into one packed ``.wasm`` (componentize-py or
componentize-js through :mod:`wasmplug.authoring._build`, cached by content, then the
project's ``wasmplug.toml`` embedded as the ``wasmplug-manifest`` section).

A plugin project is a directory holding ``wasmplug.toml`` (whose ``[plugin]``
table names the ``world`` to build), ``wit/`` and either ``app.py``
(componentize-py) or ``app.js`` (componentize-js).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import attrs

from wasmplug._errors import BuildError
from wasmplug._fsutil import write_atomic
from wasmplug._sandbox.manifest import SIDECAR_NAME, Manifest

from ._build import ProgressCallback, build_js, build_python
from ._package import PackedComponent, pack_bytes

__all__ = [
    "LANGUAGES",
    "TEMPLATE_DIR",
    "WORLDS",
    "PluginProject",
    "build_project",
    "new_project",
    "read_project",
]

# Installed from a wheel, the template ships inside the package; in a source
# checkout (or an editable install) it is the repository's templates/plugin/.
_PACKAGED_TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "plugin"
TEMPLATE_DIR = (
    _PACKAGED_TEMPLATE
    if _PACKAGED_TEMPLATE.is_dir()
    else Path(__file__).resolve().parents[3] / "templates" / "plugin"
)
"""The cookiecutter template (in a source checkout or editable install)."""

WORLDS = ("minimal", "db-source", "pane")
"""``--world`` choices of ``wasmplug new`` (see ``templates/plugin/cookiecutter.json``)."""

LANGUAGES = ("python", "javascript")


@attrs.frozen
class PluginProject:
    """A plugin project on disk, as ``wasmplug build`` sees it.

    Attributes:
        root: The project directory.
        manifest: The parsed ``wasmplug.toml``.
        manifest_text: Its text, embedded verbatim by :func:`build_project`.
        language: ``"python"`` (``app.py``) or ``"javascript"`` (``app.js``).
        world: The WIT world to build (``[plugin] world`` in the manifest).
    """

    root: Path
    manifest: Manifest
    manifest_text: str
    language: Literal["python", "javascript"]
    world: str

    @property
    def wit(self) -> Path:
        """The project's WIT directory."""
        return self.root / "wit"

    @property
    def default_output(self) -> Path:
        """``dist/<name>-<version>.wasm`` (``:`` in the name becomes ``-``)."""
        name = self.manifest.name.replace(":", "-")
        return self.root / "dist" / f"{name}-{self.manifest.version}.wasm"


def read_project(root: str | os.PathLike[str]) -> PluginProject:
    """Read and check a plugin project directory.

    Raises:
        BuildError: no ``wasmplug.toml``, no ``wit/``, no (or two) app sources,
            or no ``[plugin] world`` in the manifest.
        ManifestError: the manifest is invalid.
    """
    root = Path(root).resolve()
    toml = root / SIDECAR_NAME
    if not toml.is_file():
        raise BuildError(f"{root}: not a plugin project (no {SIDECAR_NAME}); see `wasmplug new`")
    text = toml.read_text(encoding="utf-8")
    manifest = Manifest.from_toml(text, source=str(toml))
    if not (root / "wit").is_dir():
        raise BuildError(f"{root}: no wit/ directory")
    sources = [name for name in ("app.py", "app.js") if (root / name).is_file()]
    if len(sources) != 1:
        found = " and ".join(sources) or "neither"
        raise BuildError(f"{root}: expected one of app.py or app.js, found {found}")
    if not manifest.world:
        raise BuildError(f"{toml}: set `world` in [plugin] (the WIT world to build)")
    language: Literal["python", "javascript"] = "python" if sources[0] == "app.py" else "javascript"
    return PluginProject(root, manifest, text, language, manifest.world)


def build_project(
    root: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> PackedComponent:
    """Build a plugin project into one ``.wasm`` with its manifest embedded.

    The component build is cached by content (see :func:`build_python` and
    :func:`build_js`); the manifest is then embedded as the ``wasmplug-manifest``
    custom section and the file written atomically (only if its bytes changed). The
    result is unsigned: sign it with :func:`sign` or ``wasmplug sign``.

    Args:
        root: The project directory.
        output: Where to write; default :attr:`PluginProject.default_output`.
        cache_dir: Build cache directory (default: the user cache dir).
        progress: Called with a :class:`ProgressEvent` when a real build starts and
            ends (builds take 10-40 s uncached), named after the plugin.

    Returns:
        The packed component, with the build it came from in ``.built``.

    Raises:
        BuildError: the project is incomplete, or the build tool failed;
            ``.output`` holds the tool's own message (e.g. where the code and
            the WIT disagree).
        ManifestError: the project's ``wasmplug.toml`` is invalid.
    """
    project = read_project(root)
    name = project.manifest.name
    if project.language == "python":
        built = build_python(
            project.root, wit=project.wit, world=project.world, module="app",
            cache_dir=cache_dir, name=name, progress=progress,
        )  # fmt: skip
    else:
        built = build_js(
            project.root / "app.js", wit=project.wit, world=project.world,
            cache_dir=cache_dir, name=name, progress=progress,
        )  # fmt: skip
    data, manifest, _ = pack_bytes(
        built.path.read_bytes(), project.manifest_text, source=str(project.root / SIDECAR_NAME)
    )
    dest = Path(output) if output is not None else project.default_output
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_bytes() != data:
        write_atomic(dest, data)
    sha = hashlib.sha256(data).hexdigest()
    return PackedComponent(dest, sha, len(data), manifest, built=built)


def new_project(
    name: str,
    *,
    world: str = "minimal",
    language: str = "python",
    output_dir: str | Path = ".",
    namespace: str = "acme",
    template: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Render the plugin template into ``output_dir/<name>``, without prompting.

    Returns:
        The new project directory.

    Raises:
        BuildError: cookiecutter is not installed, the template is missing, or the
            directory exists (unless ``overwrite``).
    """
    if world not in WORLDS:
        raise BuildError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    if language not in LANGUAGES:
        raise BuildError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    try:
        from cookiecutter.exceptions import CookiecutterException  # type: ignore[import-untyped]
        from cookiecutter.main import cookiecutter  # type: ignore[import-untyped]
    except ImportError:
        raise BuildError("`wasmplug new` needs cookiecutter: pip install cookiecutter") from None
    template_dir = Path(template) if template is not None else TEMPLATE_DIR
    if not (template_dir / "cookiecutter.json").is_file():
        raise BuildError(f"plugin template not found at {template_dir}")
    context = {"plugin_name": name, "namespace": namespace, "world": world, "language": language}
    try:
        out = cookiecutter(
            str(template_dir), no_input=True, extra_context=context,
            output_dir=str(output_dir), overwrite_if_exists=overwrite,
        )  # fmt: skip
    except CookiecutterException as e:
        raise BuildError(f"cannot create the project: {type(e).__name__}: {e}") from None
    return Path(out)
