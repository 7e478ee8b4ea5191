"""``wasmplug grants list|revoke``: remembered grant decisions."""

from __future__ import annotations

import argparse
import datetime
import json

from wasmplug._sandbox.capabilities import show_grants
from wasmplug._sandbox.grantstore import GrantStore, grants_to_json

__all__ = ["add_commands"]


def cmd_grants_list(args: argparse.Namespace) -> int:
    store = GrantStore(args.store)
    decisions = store.list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "plugin": d.plugin,
                        "publisher": d.publisher,
                        "sha256": d.sha256,
                        "answered": sorted(d.answered),
                        "grants": grants_to_json(d.grants, masked=not args.show_values),
                        "decided-at": d.decided_at,
                    }
                    for d in decisions
                ],
                indent=2,
            )
        )
        return 0
    if not decisions:
        print(f"no remembered decisions in {store.path}")
    for d in decisions:
        when = datetime.datetime.fromtimestamp(d.decided_at).isoformat(timespec="seconds")
        print(f"{d.plugin}  publisher {d.publisher or 'unsigned'}  sha256 {d.sha256[:16]}…  {when}")
        granted = show_grants(d.grants, show_values=args.show_values)
        print("  granted: " + (", ".join(granted) if granted else "nothing"))
    return 0


def cmd_grants_revoke(args: argparse.Namespace) -> int:
    count = GrantStore(args.store).revoke(args.plugin, args.sha256)
    print(f"forgot {count} decision(s) for {args.plugin}; it will be asked again")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``grants list`` and ``grants revoke``."""
    grants = sub.add_parser("grants", help="list or revoke remembered grant decisions")
    gsub = grants.add_subparsers(dest="grants_command", required=True)
    p = gsub.add_parser("list", help="show remembered decisions")
    p.add_argument("--json", action="store_true")
    p.add_argument("--show-values", action="store_true", help="print granted env values")
    p.add_argument("--store", help="grants file (default: the user data dir)")
    p.set_defaults(func=cmd_grants_list)
    p = gsub.add_parser("revoke", help="forget the decisions for a plugin")
    p.add_argument("plugin")
    p.add_argument("--sha256", help="only the decision for this binary")
    p.add_argument("--store", help="grants file (default: the user data dir)")
    p.set_defaults(func=cmd_grants_revoke)
