"""``wasmplug new|build|bindgen``: the plugin author kit's commands.

The work is done by :mod:`wasmplug.authoring`; these commands parse flags and print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasmplug._errors import BuildError
from wasmplug._fsutil import write_atomic
from wasmplug.authoring._project import LANGUAGES, WORLDS, build_project, new_project

__all__ = ["add_commands"]


# -- commands ---------------------------------------------------------------------------


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_new(args: argparse.Namespace) -> int:
    path = new_project(
        args.name, world=args.world, language=args.language, output_dir=args.output_dir,
        namespace=args.namespace, template=args.template,
    )  # fmt: skip
    print(f"created {path}")
    print(f"next: cd {path} && wasmplug build && python -m pytest")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    try:
        dest = build_project(args.project, output=args.output, progress=_progress)
    except BuildError as e:
        if e.output:  # the tool's own diagnosis, in full, before the one-line error
            print(e.output.rstrip(), file=sys.stderr)
            raise BuildError(str(e).split("\n", 1)[0]) from None
        raise
    print(dest)
    return 0


def cmd_bindgen(args: argparse.Namespace) -> int:
    from wasmplug.authoring._bindgen import generate_bindings

    code = generate_bindings(Path(args.component), cache_dir=args.cache_dir)
    if args.output in (None, "-"):
        sys.stdout.write(code)
    else:
        write_atomic(Path(args.output), code.encode("utf-8"))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the new/build/bindgen sub-commands."""
    p = sub.add_parser("new", help="create a plugin project from the template")
    p.add_argument("name", help="plugin name, kebab-case (e.g. word-count)")
    p.add_argument("--world", choices=WORLDS, default="minimal", help="WIT world to start from")
    p.add_argument("--language", choices=LANGUAGES, default="python", help="guest language")
    p.add_argument("--namespace", default="acme", help="WIT package namespace (default: acme)")
    p.add_argument("-o", "--output-dir", default=".", help="parent directory (default: .)")
    p.add_argument("--template", default=None, help="another cookiecutter template directory")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("build", help="build a plugin project and embed its manifest")
    p.add_argument("project", nargs="?", default=".", help="project directory (default: .)")
    p.add_argument("-o", "--output", default=None, help="default: dist/NAME-VERSION.wasm")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("bindgen", help="generate typed Python bindings for a component")
    p.add_argument("component", help="the .wasm component")
    p.add_argument("-o", "--output", default=None, help="module to write (default: stdout)")
    p.set_defaults(func=cmd_bindgen)
