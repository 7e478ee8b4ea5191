"""Sphinx configuration for the wasmplug documentation.

Build (warnings are errors, every cross-reference must resolve)::

    python -m sphinx -W -n -b html docs docs/_build/html
"""

from __future__ import annotations

from importlib.metadata import version as _version

project = "wasmplug"
author = "wasmplug developers"
copyright = "wasmplug developers"
release = _version("wasmplug")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
# No sphinx.ext.intersphinx: the docs must build offline (CI has no network
# access beyond PyPI), so references to the standard library and to third-party
# packages cannot be resolved from their inventories. They are listed below in
# nitpick_ignore / nitpick_ignore_regex instead, each with the reason.

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

nitpicky = True

# -- MyST -----------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc / napoleon ---------------------------------------------------------------
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- HTML ---------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"wasmplug {release}"

# -- Cross-references that cannot resolve offline -------------------------------------------
# Each entry is one target that has no inventory to resolve against (no intersphinx, see
# above), kept as narrow as possible so that a broken reference to a wasmplug name still
# fails the build.
nitpick_ignore = [
    # Standard-library types named in signatures; their docs live on docs.python.org.
    ("py:class", "os.PathLike"),
    ("py:class", "Path"),  # pathlib.Path, as spelled in a string annotation (DirGrant)
    ("py:class", "pathlib.Path"),
    ("py:class", "collections.abc.Iterable"),
    ("py:class", "collections.abc.Sequence"),
    ("py:class", "collections.abc.Callable"),
    ("py:class", "collections.abc.Iterator"),
    ("py:class", "collections.abc.Mapping"),
    ("py:class", "ssl.SSLContext"),  # HttpCapability(ssl_context=...)
    ("py:class", "httpx.BaseTransport"),  # HttpCapability(transport=...), for tests
    # Registry.install(oci=...): the record PluginHost.install passes for OCI sources.
    ("py:class", "wasmplug._trust.index.OciOrigin"),
    # The type variable of the generic value classes Ok/Err/Some ("Bases: Generic[T]");
    # a private module-level TypeVar with no page of its own.
    ("py:obj", "wasmplug._bridge.values.T"),
    ("py:class", "T"),
]


# -- Every public name is documented ----------------------------------------------------------
def _check_public_names_documented(app: object, env: object) -> None:
    """Warn (an error under -W) for each name in ``wasmplug.__all__`` missing from api.md."""
    from sphinx.util import logging

    import wasmplug

    documented = env.get_domain("py").objects  # type: ignore[attr-defined]
    log = logging.getLogger("wasmplug.docs")
    for name in wasmplug.__all__:
        if f"wasmplug.{name}" not in documented:
            log.warning("wasmplug.%s is in wasmplug.__all__ but not documented in api.md", name)


def _hide_private_bases(
    app: object, name: str, obj: object, options: object, bases: list[type]
) -> None:
    """Leave private base classes out of "Bases:". ``Plugin``'s base ``CallPath`` (its
    in-process call path, ``wasmplug._runtime.callpath``) is an implementation seam, not
    API: public classes' ``__module__`` is ``wasmplug``, private ones' ``wasmplug._...``."""
    bases[:] = [b for b in bases if not b.__module__.startswith("wasmplug._")] or [object]


def setup(app: object) -> None:
    app.connect("env-check-consistency", _check_public_names_documented)  # type: ignore[attr-defined]
    app.connect("autodoc-process-bases", _hide_private_bases)  # type: ignore[attr-defined]
