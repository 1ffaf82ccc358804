"""The ``neurolake`` command. Thin: every verb parses its arguments and calls the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable, Sequence

from neurolake.errors import NeurolakeError

DEFAULT_LAKE = "./lake"


def _lake_url(args: argparse.Namespace) -> str:
    return args.lake or os.environ.get("NEUROLAKE_LAKE") or DEFAULT_LAKE


def _add_lake_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lake",
        metavar="URL",
        default=None,
        help=f"lake location: a directory, file://, memory://, s3:// or gs:// URL "
        f"(default: $NEUROLAKE_LAKE or {DEFAULT_LAKE})",
    )


# ---------------------------------------------------------------- verbs


def cmd_demo(args: argparse.Namespace) -> int:
    from neurolake.demo import run_demo

    run_demo(_lake_url(args), out=sys.stdout)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from neurolake.store import Lake
    from neurolake.store.report import format_runs_table

    lake = Lake.open(_lake_url(args))
    infos = lake.run_infos()
    if args.format == "json":
        print(json.dumps([i.to_dict() for i in infos], indent=2))
    else:
        print(format_runs_table(infos))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    run_ids = [args.run] if args.run else lake.list_runs()
    problems = []
    for run_id in run_ids:
        problems += lake.run(run_id).verify()
    for p in problems:
        print(p)
    print(f"{len(run_ids)} run(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurolake",
        description="An activation data lake and query engine for debugging speech-recognition networks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    p = sub.add_parser("demo", help="run the main job end to end on embedded defaults")
    _add_lake_arg(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("runs", help="list the runs of a lake with status, progress and sizes")
    _add_lake_arg(p)
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "verify", help="check committed units against their checksums and report missing data"
    )
    _add_lake_arg(p)
    p.add_argument("--run", metavar="ID", help="check only this run")
    p.set_defaults(func=cmd_verify)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except NeurolakeError as exc:
        print(f"neurolake: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurolake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
