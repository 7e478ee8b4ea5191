"""Tools for plugin authors and publishers: build, pack, sign, keygen, bindgen.

A plugin ships as one ``.wasm`` component with its manifest embedded and signed::

    from wasmplug.authoring import build_project, keygen, sign

    keys = keygen("acme.pub", "acme.key")                    # once; keep acme.key private
    packed = build_project("hello")                          # componentize-py, cached; packed
    signed = sign(packed.path, "acme.key", output="hello.wasm")

Building needs the ``author`` extra (``pip install "wasmplug[author]"``: componentize-py,
cookiecutter, pytest, rich); JavaScript plugins also need Node.js >= 18 with npm.

* :func:`build_python`, :func:`build_js`: a component from source, cached by content
  (:class:`BuiltComponent`);
* :func:`read_project`, :func:`build_project`, :func:`new_project`: plugin projects
  (``wasmplug.toml`` + ``wit/`` + ``app.py`` or ``app.js``);
* :func:`pack`, :func:`sign`, :func:`keygen`: the embedded manifest, wasmsign2 signatures
  and keys (:class:`PackedComponent`, :class:`SignedComponent`, :class:`KeyFiles`);
* :func:`bindgen`: typed Python bindings for a component (:class:`Bindings`; the
  module is rendered by ``_bindgen``, its types and converters by ``_typegen``);
* :class:`ProgressBoard`: live progress for builds and first compiles
  (:class:`ProgressEvent` is what ``progress=`` callbacks receive).

May import: ``wasmplug._runtime`` and everything below it.
"""

from __future__ import annotations

from ._bindgen import Bindings as Bindings
from ._bindgen import bindgen as bindgen
from ._build import BuiltComponent as BuiltComponent
from ._build import ProgressCallback as ProgressCallback
from ._build import ProgressEvent as ProgressEvent
from ._build import build_js as build_js
from ._build import build_python as build_python
from ._package import KeyFiles as KeyFiles
from ._package import PackedComponent as PackedComponent
from ._package import SignedComponent as SignedComponent
from ._package import keygen as keygen
from ._package import pack as pack
from ._package import sign as sign
from ._progress import ProgressBoard as ProgressBoard
from ._progress import Task as Task
from ._project import PluginProject as PluginProject
from ._project import build_project as build_project
from ._project import new_project as new_project
from ._project import read_project as read_project

__all__ = [
    "Bindings",
    "BuiltComponent",
    "KeyFiles",
    "PackedComponent",
    "PluginProject",
    "ProgressBoard",
    "ProgressCallback",
    "ProgressEvent",
    "SignedComponent",
    "Task",
    "bindgen",
    "build_js",
    "build_project",
    "build_python",
    "keygen",
    "new_project",
    "pack",
    "read_project",
    "sign",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("wasmplug.authoring."):
        _obj.__module__ = __name__
del _name, _obj
