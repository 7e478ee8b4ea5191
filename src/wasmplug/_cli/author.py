"""``wasmplug new|build|bindgen``: the plugin author kit's commands.

The work is done by :mod:`wasmplug.authoring`; these commands parse flags and print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasmplug._errors import BuildError
from wasmplug.authoring import ProgressBoard, bindgen, build_project, new_project
from wasmplug.authoring._project import LANGUAGES, WORLDS

__all__ = ["add_commands"]


# -- commands ---------------------------------------------------------------------------


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
        with ProgressBoard() as board:
            packed = build_project(args.project, output=args.output, progress=board)
    except BuildError as e:
        if e.output:  # the tool's own diagnosis, in full, before the one-line error
            print(e.output.rstrip(), file=sys.stderr)
            raise BuildError(str(e).split("\n", 1)[0]) from None
        raise
    print(f"{packed.size / 1e6:.1f} MB, sha256 {packed.sha256[:16]}...", file=sys.stderr)
    print(packed.path)
    return 0


def cmd_bindgen(args: argparse.Namespace) -> int:
    with (
        ProgressBoard(show_after_s=1.0) as board,
        board.task(Path(args.component).name, "compiling to read its types (first time ~10 s)"),
    ):
        out = None if args.output in (None, "-") else Path(args.output)
        bindings = bindgen(Path(args.component), output=out, cache_dir=args.cache_dir)
    if out is None:
        sys.stdout.write(bindings.code)
    else:
        print(f"wrote {out}", file=sys.stderr)
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
