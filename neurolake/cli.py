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


def cmd_corpus_synth(args: argparse.Namespace) -> int:
    from neurolake.ingest.synth import synthesize_corpus

    summary = synthesize_corpus(
        args.out,
        n_utterances=args.utterances,
        seed=args.seed,
        holdout_accent=args.holdout_accent or None,
        overwrite=args.overwrite,
    )
    splits = ", ".join(f"{name}: {n}" for name, n in sorted(summary.splits.items()))
    print(
        f"wrote {summary.n_utterances} utterances ({summary.audio_seconds / 60:.1f} min of audio, "
        f"{len(summary.speakers)} speakers) to {summary.url} in {summary.wall_seconds:.1f} s — {splits}"
    )
    if summary.holdout_accent:
        print(f"held-out accent: {summary.holdout_accent} (split test-holdout)")
    return 0


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

    p = sub.add_parser("corpus", help="make or inspect speech corpora")
    corpus = p.add_subparsers(dest="corpus_verb", metavar="VERB")
    corpus.required = True
    p = corpus.add_parser(
        "synth",
        help="synthesise a LibriSpeech-layout corpus with espeak-ng (FLAC, transcripts, phoneme timings)",
    )
    p.add_argument("out", metavar="OUT", help="output directory or URL (must be empty or new)")
    p.add_argument("--utterances", type=int, default=200, metavar="N", help="number of utterances (default 200)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same bytes (default 0)")
    p.add_argument(
        "--holdout-accent", default="en-029", metavar="ACCENT",
        help="accent spoken only in the test-holdout split; '' for none (default en-029)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at OUT")
    p.set_defaults(func=cmd_corpus_synth)

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
