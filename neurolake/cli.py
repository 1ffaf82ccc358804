"""The ``neurolake`` command. Thin: every verb parses its arguments and calls the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from neurolake.errors import NeurolakeError, is_storage_error, one_line, root_cause
from neurolake.ingest import DEFAULT_MAX_DURATION_S

DEFAULT_LAKE = "./lake"
MODEL_SPECS = "demo, wav2letter:PATH, wav2vec2:BUNDLE_OR_PATH, hf:ID_OR_PATH or python:MODULE:FACTORY"


def _lake_url(args: argparse.Namespace) -> str:
    return args.lake or os.environ.get("NEUROLAKE_LAKE") or DEFAULT_LAKE


def _add_limit_args(p: argparse.ArgumentParser) -> None:
    from neurolake.query import DEFAULT_TIMEOUT_S

    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"stop a query after S seconds; 0 for no limit (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="DuckDB's memory limit, e.g. 8GB (default: half of this machine's memory)",
    )


def _add_gpus_arg(p: argparse.ArgumentParser, actors: str) -> None:
    p.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help=f"GPUs the {actors} actors use in all (default: those the cluster has now; give it where "
        "an autoscaler adds GPU nodes on demand; 0: the models run on CPUs)",
    )


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

    run_demo(_lake_url(args), out=sys.stdout, utterances=args.utterances)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from neurolake.render import format_runs_table
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    infos = lake.run_infos()
    if args.format == "json":
        print(json.dumps([i.to_dict() for i in infos], indent=2))
    else:
        print(format_runs_table(infos))
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from neurolake.models import load_model
    from neurolake.render import format_table

    adapter = load_model(args.spec)
    layers = adapter.select_layers(args.layers) if args.layers else adapter.capturable_layers()
    print(
        f"{args.spec}: {len(adapter.tokens)} tokens, {adapter.frame_rate_hz:g} frames/s, weights sha256 {adapter.spec['weights_sha256'][:12]}"
    )
    print(format_table(("layer", "units"), [(layer.name, layer.units) for layer in layers]))
    return 0


def _connect_for_workers(args: argparse.Namespace) -> None:
    """With ``--workers N`` (N > 1): join the cluster given (or $RAY_ADDRESS), else start a local Ray."""
    if args.workers and args.workers > 1:
        from neurolake.cluster.ray_env import connect

        connect(args.ray_address)


def comma_list(value: str) -> list[str]:
    """An argument ``a,b,c`` as ``["a", "b", "c"]`` (blanks dropped): every comma list of the CLI."""
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def cmd_ingest(args: argparse.Namespace) -> int:
    from neurolake.ingest.pipeline import default_run_id, ingest, plan_ingest
    from neurolake.render import format_dry_run, format_summary

    if args.dry_run:
        _, planned = plan_ingest(
            args.corpus,
            args.model,
            args.layers,
            part_rows=args.part_rows,
            max_duration_s=args.max_duration,
            alignments=args.alignments,
            ray_address=args.ray_address,
            progress=None if not args.quiet else False,
        )
        print(format_dry_run(planned, args.run or default_run_id(args.corpus, args.model)))
        return 0
    summary = ingest(
        _lake_url(args),
        args.corpus,
        args.model,
        layers=args.layers,
        run_id=args.run,
        ray_address=args.ray_address,
        actors=args.actors,
        threads=args.threads,
        gpus=args.gpus,
        part_rows=args.part_rows,
        progress=None if not args.quiet else False,
        max_duration_s=args.max_duration,
        relevance=True if args.relevance else None,
        alignments=args.alignments,
    )
    print(format_summary(summary))
    return 1 if summary.parts_failed else 0


def cmd_mine(args: argparse.Namespace) -> int:
    from neurolake.mining.mine import mine
    from neurolake.render import format_mining
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    if args.run:
        from neurolake.query.groups import get_group

        for name in (args.target, args.background):
            if get_group(lake, name).run_id != args.run:
                from neurolake.errors import GroupError

                raise GroupError(f"group {name!r} does not belong to run {args.run!r}")
    _connect_for_workers(args)
    result = mine(
        lake,
        args.target,
        args.background,
        layers=args.layers,
        binarization=args.binarize,
        algo=args.algo,
        min_support=args.min_support,
        max_size=args.max_size,
        workers=args.workers,
    )
    print(format_mining(result, top=args.top))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from neurolake.introspect.scan import scan
    from neurolake.render import format_scan
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    _connect_for_workers(args)
    result = scan(
        lake,
        args.run,
        layers=args.layers,
        algo=args.algo,
        binarization=args.binarize,
        min_support=args.min_support,
        max_size=args.max_size,
        min_frames=args.min_frames,
        max_slices=args.max_slices,
        confident=args.confident,
        low=args.low,
        columns=args.columns,
        workers=args.workers,
    )
    print(format_scan(result, top=args.top))
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    from neurolake.introspect.blocks import blocks
    from neurolake.render import format_block
    from neurolake.store import Lake

    block = blocks(
        Lake.open(_lake_url(args)),
        args.finding,
        depth=args.depth,
        per_layer=args.per_layer,
        z=args.z,
        max_utterances=args.utterances,
        controls=args.controls,
        seed=args.seed,
    )
    print(format_block(block))
    return 0


def cmd_naps(args: argparse.Namespace) -> int:
    from neurolake.errors import SpecError
    from neurolake.introspect.naps import gradnaps, naps
    from neurolake.render import format_naps
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    if args.relevance:
        if not args.layers or args.window is not None:
            raise SpecError("--relevance (GradNAPs) needs --layers and takes no --window")
        result = gradnaps(
            lake,
            args.run,
            groups=args.groups,
            by=args.by,
            layers=args.layers,
            weighted=args.weighted,
            max_groups=args.max_groups,
            token=args.token,
        )
    else:
        if args.token != "predicted":
            raise SpecError("--token reference goes with --relevance")
        result = naps(
            lake,
            args.run,
            groups=args.groups,
            by=args.by,
            layers=args.layers,
            window=args.window,
            weighted=args.weighted,
            max_groups=args.max_groups,
        )
    print(format_naps(result, top=args.top))
    if args.cluster is not None or args.cluster_threshold is not None:
        from neurolake.introspect.clustering import cluster_naps
        from neurolake.render import format_nap_clusters

        clusters = cluster_naps(lake, result, k=args.cluster, threshold=args.cluster_threshold, metric=args.metric)
        print()
        print(format_nap_clusters(clusters))
    return 0


def cmd_phonetics(args: argparse.Namespace) -> int:
    from neurolake.introspect.phonetics import phonetic_layers
    from neurolake.render import format_table
    from neurolake.store import Lake

    rows = phonetic_layers(
        Lake.open(_lake_url(args)),
        args.run,
        layers=args.layers,
        min_frames=args.min_frames,
        permutations=args.permutations,
        out_dir=args.out,
        image_format=args.format,
    )
    print(
        f"phoneme NAP clustering (cosine, average linkage) against articulatory distance (panphon), "
        f"{rows[0]['n_phones']} phonemes, {args.permutations} permutations:"
    )
    print(
        format_table(
            ("layer", "cophenetic r", "p", "variance by phoneme", "by grapheme"),
            [
                (
                    r["layer"],
                    f"{r['r']:.3f}",
                    f"{r['p_value']:.4f}",
                    f"{r['eta2_phoneme']:.3f}",
                    f"{r['eta2_grapheme']:.3f}",
                )
                for r in rows
            ],
        )
    )
    if args.out:
        print(f"figures: {args.out}/phonetic-agreement.png and one dendrogram-LAYER.png per layer")
    return 0


def cmd_topomap(args: argparse.Namespace) -> int:
    from neurolake.introspect.topomap import topomap
    from neurolake.render import format_table
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    mark: list[int] = []
    if args.finding:
        from neurolake.introspect.scan import get_finding

        items = get_finding(lake, args.finding)["items"]
        mark = [int(i.rsplit(":", 1)[1]) for i in items if i.rsplit(":", 1)[0] == args.layer]
    maps = topomap(
        lake,
        args.run,
        args.layer,
        groups=args.groups,
        by=args.by,
        methods=args.methods,
        size=args.size,
        seed=args.seed,
        out_dir=args.out,
        mark=mark,
        refine=args.refine,
    )
    print(f"topographic maps of {args.layer} ({maps[0].units.size} responding units, {len(maps[0].groups)} groups):")
    print(
        format_table(
            ("layout", "topomap_id", "smoothness (lower is smoother)", "seconds", "figure"),
            [
                (
                    m.method + (f" + {m.refine}" if m.refine else ""),
                    m.topomap_id,
                    f"{m.smoothness:.3f}",
                    f"{m.seconds:.2f}" + (" (reused)" if m.reused else ""),
                    m.figure or "-",
                )
                for m in maps
            ],
        )
    )
    ids = ", ".join(f"'{m.topomap_id}'" for m in maps)
    print(f'unit positions: neurolake sql "SELECT * FROM topomaps WHERE topomap_id IN ({ids})"')
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neurolake.report import report
    from neurolake.store import Lake

    out = args.out or f"neurolake-report-{args.run}"
    result = report(Lake.open(_lake_url(args)), args.run, out, embed=args.embed, lake_arg=_lake_url(args))
    print(
        f"report of run {args.run}: {len(result.sections)} sections ({', '.join(result.sections)}), "
        f"{result.figures} figures, {result.seconds:.1f} s"
    )
    print(f"open: {result.path.resolve()}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from neurolake.introspect.ranking import rank_neurons
    from neurolake.render import format_ranking
    from neurolake.store import Lake

    result = rank_neurons(
        Lake.open(_lake_url(args)),
        args.run,
        args.target,
        level=args.level,
        layers=args.layers,
        max_frames=args.max_frames,
        min_per_class=args.min_per_class,
        share=args.share,
        draws=args.draws,
        redundancy=args.redundancy,
        ablate=args.ablate,
        ablate_class=args.ablate_class,
        controls=args.controls,
        max_utterances=args.max_utterances,
        workers=args.workers,
        gpus=args.gpus,
        seed=args.seed,
        out_dir=args.out,
    )
    split = "split by speaker (no speaker in both)" if result.split == "speaker-disjoint" else f"split {result.split}"
    n_train = int(result.layers[0]["n_train"]) if result.layers else 0
    print(
        f"neuron rankings for {args.target} at {args.level} level, run {args.run}: {n_train:,} training examples, "
        f"{split}"
        + (f"; a seeded sample of {args.max_frames:,} frames" if result.sampled else "")
        + (" (reused)" if result.reused else "")
    )
    if result.dropped:
        print(
            f"left out (< {args.min_per_class} training examples): "
            + ", ".join(f"{c} ({n})" for c, n in sorted(result.dropped.items()))
        )
    print(format_ranking(result, args.top, args.share))
    print(f"tables: neuron_rankings, ranking_curves (ranking_id {result.ranking_id})")
    if args.out:
        for summary in result.layers:
            print(f"figure: {args.out}/ranking-{args.target}-{summary['layer']}.png")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from neurolake.introspect.probe import probe
    from neurolake.render import format_table
    from neurolake.store import Lake

    result = probe(
        Lake.open(_lake_url(args)),
        args.run,
        args.target,
        level=args.level,
        layers=args.layers,
        max_frames=args.max_frames,
        min_per_class=args.min_per_class,
        l1_ratio=args.l1_ratio,
        seed=args.seed,
        out_dir=args.out,
    )
    rows = result.table.to_pylist()
    split = (
        "split by speaker (no speaker in both)"
        if rows[0]["split"] == "speaker-disjoint"
        else f"split {rows[0]['split']}"
    )
    print(
        f"linear probes ({'elastic net' if args.l1_ratio else 'L2'} logistic regression) of {args.target} at "
        f"{args.level} level, run {args.run}: {rows[0]['n_classes']} classes, {rows[0]['n_train']:,} train / "
        f"{rows[0]['n_test']:,} test examples, {split}"
        + (f"; a seeded sample of {args.max_frames:,} frames" if result.sampled else "")
    )
    if result.dropped:
        print(
            f"left out (< {args.min_per_class} training examples): "
            + ", ".join(f"{c} ({n})" for c, n in sorted(result.dropped.items()))
        )
    print(
        format_table(
            ("layer", "accuracy", "macro-F1", "majority baseline", "control task", "selectivity"),
            [
                (
                    r["layer"],
                    f"{r['accuracy']:.3f}",
                    f"{r['macro_f1']:.3f}",
                    f"{r['baseline']:.3f}",
                    f"{r['control_accuracy']:.3f}",
                    f"{r['selectivity']:+.3f}",
                )
                for r in rows
            ],
        )
    )
    if args.out:
        print(f"figure: {args.out}/probe-{args.target}-{args.level}.png")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    run_ids = [args.run] if args.run else lake.list_runs()
    problems = []
    for run_id in run_ids:
        found = lake.run(run_id).verify()
        if found and args.repair:
            from neurolake.ingest.pipeline import repair
            from neurolake.render import format_summary

            for p in found:
                print(p)
            parts, summary = repair(lake.url, run_id, ray_address=args.ray_address)
            print(f"run {run_id}: re-did {len(parts)} damaged part(s): {', '.join(parts)}")
            if summary is not None:
                print(format_summary(summary))
            found = lake.run(run_id).verify()
        problems += found
    for p in problems:
        print(p)
    print(f"{len(run_ids)} run(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_compact(args: argparse.Namespace) -> int:
    from neurolake.cluster.progress import progress_bar
    from neurolake.store import Lake
    from neurolake.store.compact import compact

    run = Lake.open(_lake_url(args)).run(args.run)
    with progress_bar(3 * len(run.commits()), f"compact {args.run}", unit="part") as bar:
        summary = compact(run, rows_per_file=args.rows_per_file, prune=args.prune, on_part=lambda _: bar.update(1))
    rows = ", ".join(f"{name} {n:,}" for name, n in summary.rows.items())
    if summary.changed:
        print(
            f"run {summary.run_id}: compacted {summary.parts} part(s) into generation {summary.generation}: "
            f"{summary.files_before} table files -> {summary.files_after} ({rows} rows)"
        )
    else:
        print(
            f"run {summary.run_id}: already compact (generation {summary.generation}, "
            f"{summary.files_after} table files for {summary.parts} part(s))"
        )
    if args.prune:
        print(f"removed {summary.pruned} superseded file(s)")
    return 0


def cmd_corpus_synth(args: argparse.Namespace) -> int:
    from neurolake.corpora.synth import synthesize_corpus

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


def cmd_corpus_textgrids(args: argparse.Namespace) -> int:
    from neurolake.corpora.synth import export_textgrids

    n = export_textgrids(args.corpus, args.out)
    print(f"wrote {n} TextGrids (words and ARPAbet phones tiers, MFA layout) to {args.out}")
    print(f"use them: neurolake ingest --corpus {args.corpus} --alignments {args.out} ...")
    return 0


def cmd_corpus_lhotse(args: argparse.Namespace) -> int:
    from neurolake.corpora.synth import export_lhotse

    n = export_lhotse(args.corpus, args.out, cuts=args.cuts)
    kind = "cuts" if args.cuts else "recordings and supervisions"
    print(f"wrote {n} utterances as lhotse {kind} (phone and word alignments) to {args.out}")
    print(f"use them: neurolake ingest --corpus {args.out} ...")
    return 0


def _print_arrow(table, fmt: str, out: str | None) -> None:
    from neurolake.render import write_table

    write_table(table, fmt, out, sys.stdout)


def cmd_sql(args: argparse.Namespace) -> int:
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake

    with QueryEngine(
        Lake.open(_lake_url(args)), timeout_s=args.timeout or None, memory_limit=args.memory_limit
    ) as engine:
        table = engine.arrow(args.query)
    _print_arrow(table, args.format, args.out)
    return 0


def cmd_group_create(args: argparse.Namespace) -> int:
    from neurolake.query.groups import create_group
    from neurolake.store import Lake

    g = create_group(
        Lake.open(_lake_url(args)),
        args.name,
        args.run,
        args.where,
        replace=args.replace,
        timeout_s=args.timeout or None,
        memory_limit=args.memory_limit,
    )
    print(f"group {g.name}: {g.n_frames} frames of run {g.run_id} where {g.predicate}")
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    from neurolake.query.groups import list_groups
    from neurolake.render import format_table
    from neurolake.store import Lake

    groups = list_groups(Lake.open(_lake_url(args)))
    if not groups:
        print("no groups yet")
        return 0
    print(
        format_table(
            ("group", "run", "frames", "created", "predicate"),
            [(g.name, g.run_id, g.n_frames, g.created_at, g.predicate) for g in groups],
        )
    )
    return 0


def cmd_group_show(args: argparse.Namespace) -> int:
    from neurolake.query.engine import QueryEngine
    from neurolake.query.groups import get_group
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    g = get_group(lake, args.name)
    print(f"group {g.name}: run {g.run_id}, {g.n_frames} frames, created {g.created_at}")
    print(f"predicate: {g.predicate}")
    with QueryEngine(lake) as engine:
        sample = engine.arrow(
            "SELECT f.frame_id, f.utterance_id, f.frame_index, f.ref_token, f.pred_token, f.phoneme, f.word, f.word_error "
            "FROM frames f JOIN group_frames g USING (run_id, frame_id) WHERE g.name = ? ORDER BY hash(f.frame_id) LIMIT ?",
            [g.name, args.sample],
        )
    print(f"sample of {sample.num_rows} frames:")
    _print_arrow(sample, "table", None)
    return 0


def cmd_group_export(args: argparse.Namespace) -> int:
    import posixpath

    from neurolake.errors import SpecError
    from neurolake.query.output import export_activations
    from neurolake.store import Lake

    if not posixpath.splitext(args.out.rstrip("/"))[1]:  # a directory: a Hugging Face datasets dataset
        from neurolake.query.export import export_datasets

        result = export_datasets(
            _lake_url(args), args.out, group=args.name, layers=args.layers, columns=args.columns, dtype=args.dtype
        )
        print(
            f"wrote {result.rows} frames of group {args.name!r} ({', '.join(result.layers)}"
            f"{', ' + ', '.join(result.columns) if result.columns else ''}; {result.bytes / 1e6:.1f} MB) "
            f"as a datasets dataset to {result.path} (datasets.load_from_disk reads it)"
        )
        return 0
    if args.columns or args.dtype != "float16":
        raise SpecError("--columns and --dtype are for a datasets export (an --out directory)")
    lake = Lake.open(_lake_url(args))
    written = export_activations(lake, args.name, args.layers, args.out)
    print(f"wrote {written}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from neurolake.errors import SpecError
    from neurolake.introspect.ablation import ablate, pattern_units
    from neurolake.render import format_ablation
    from neurolake.store import Lake

    lake = Lake.open(_lake_url(args))
    _connect_for_workers(args)
    given = [x for x in (args.units, args.pattern, args.finding) if x is not None]
    if len(given) != 1:
        raise SpecError(
            "give the units to ablate with one of --units L:U,.., --pattern MINING_ID/PATTERN_ID "
            "or --finding SCAN_ID/FINDING_ID"
        )
    if args.finding:
        from neurolake.introspect.scan import get_finding

        row = get_finding(lake, args.finding)
        run_id, units, slice_predicate = str(row["run_id"]), list(row["items"]), str(row["target"])
    else:
        run_id, units = (args.run, args.units) if args.units else pattern_units(lake, args.pattern)
        slice_predicate = None
    if args.run and run_id != args.run:
        what = f"finding {args.finding!r}" if args.finding else f"pattern {args.pattern!r}"
        raise SpecError(f"{what} belongs to run {run_id!r}, not {args.run!r}")
    if not run_id:
        raise SpecError("give --run with --units")
    result = ablate(
        lake,
        run_id,
        units,
        mode=args.mode,
        slice=slice_predicate,
        patch_group=args.patch_group,
        max_utterances=args.utterances,
        controls=args.controls,
        seed=args.seed,
        workers=args.workers,
        gpus=args.gpus,
    )
    print(format_ablation(result))
    return 0


def cmd_neurons(args: argparse.Namespace) -> int:
    from neurolake.errors import SpecError
    from neurolake.query.neurons import neuron_statistics
    from neurolake.render import format_neurons
    from neurolake.store import Lake

    options = {}
    if args.quantile_frames is not None:
        if args.quantile_frames < 0:
            raise SpecError(
                f"--quantile-frames must be 0 (every frame) or a number of frames, got {args.quantile_frames}"
            )
        options["quantile_rows"] = args.quantile_frames
    table = neuron_statistics(Lake.open(_lake_url(args)), args.run, args.layers, **options)
    print(format_neurons(table, args.run))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from neurolake.doctor import main_exit_code, run_doctor

    print(f"neurolake doctor: checking the installation and the lake {_lake_url(args)}", flush=True)
    findings = run_doctor(_lake_url(args), sys.stdout, constraints=args.constraints)
    return main_exit_code(findings)


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
    p.add_argument("--utterances", type=int, default=100, metavar="N", help="synthetic utterances (default 100)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "corpus", help="make synthetic speech corpora with ground-truth timings (ingest --dry-run inspects any corpus)"
    )
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
        "--holdout-accent",
        default="en-029",
        metavar="ACCENT",
        help="accent spoken only in the test-holdout split; '' for none (default en-029)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at OUT")
    p.set_defaults(func=cmd_corpus_synth)
    p = corpus.add_parser("textgrids", help="write a synthetic corpus's ground-truth timings as MFA-style TextGrids")
    p.add_argument("corpus", metavar="CORPUS", help="a corpus made by `neurolake corpus synth`")
    p.add_argument("out", metavar="OUT", help="output directory: OUT/SPEAKER/UTTERANCE.TextGrid")
    p.set_defaults(func=cmd_corpus_textgrids)

    p = corpus.add_parser("lhotse", help="write a synthetic corpus with its ground-truth timings as lhotse manifests")
    p.add_argument("corpus", metavar="CORPUS", help="a corpus made by `neurolake corpus synth`")
    p.add_argument("out", metavar="OUT", help="output directory: synth_{recordings,supervisions}_<split>.jsonl.gz")
    p.add_argument("--cuts", action="store_true", help="write one synth_cuts_<split>.jsonl.gz per split instead")
    p.set_defaults(func=cmd_corpus_lhotse)

    p = sub.add_parser("models", help="inspect models")
    models = p.add_subparsers(dest="models_verb", metavar="VERB")
    models.required = True
    p = models.add_parser("show", help="capturable layers of a model with their units")
    p.add_argument("spec", metavar="SPEC", help=MODEL_SPECS)
    p.add_argument("--layers", type=comma_list, metavar="GLOB,..", help="only layers matching these globs")
    p.set_defaults(func=cmd_models_show)

    p = sub.add_parser("ingest", help="stream a corpus through a model on Ray into the lake (resumes)")
    _add_lake_arg(p)
    p.add_argument(
        "--corpus",
        required=True,
        metavar="SPEC",
        help="LibriSpeech split/parent directory or URL, a .jsonl/.csv/.parquet manifest, or lhotse manifests "
        "(a .jsonl.gz file or their directory)",
    )
    p.add_argument("--model", required=True, metavar="SPEC", help=MODEL_SPECS)
    p.add_argument(
        "--layers",
        type=comma_list,
        metavar="GLOB,..",
        help="layers to capture (default: the model's blocks, see `models show`)",
    )
    p.add_argument("--run", metavar="ID", help="run id (default: <model>-<corpus>); an existing run resumes")
    p.add_argument("--ray-address", metavar="A", help="Ray cluster to use (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument(
        "--actors",
        type=int,
        metavar="N",
        help="model actors (default: one per GPU, else half the CPUs); more than the GPUs share them",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per actor (default: the CPUs shared out among the actors; 1 on GPU)",
    )
    _add_gpus_arg(p, "model")
    p.add_argument("--part-rows", type=int, metavar="ROWS", help="frames per part (default: ~256 MB of activations)")
    p.add_argument(
        "--max-duration",
        type=float,
        default=DEFAULT_MAX_DURATION_S,
        metavar="S",
        help=f"longest utterance ingested, in seconds; longer ones become errors rows "
        f"(default {DEFAULT_MAX_DURATION_S:g}: a model's memory grows with the audio)",
    )
    p.add_argument(
        "--relevance",
        action="store_true",
        help="also store each output-grid layer's per-frame relevance (gradient x activation of the predicted "
        "token), for GradNAPs without re-running the model",
    )
    p.add_argument(
        "--alignments",
        metavar="DIR",
        help="Montreal Forced Aligner TextGrids (one per utterance, named after it): ground-truth phonemes and words",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan (utterances, hours, frames, parts, bytes) and stop"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("runs", help="list the runs of a lake with status, progress and sizes")
    _add_lake_arg(p)
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("sql", help="run a read-only SQL query over the lake's views")
    _add_lake_arg(p)
    p.add_argument(
        "query",
        metavar="SQL",
        help="one SELECT statement over runs, layers, utterances, frames, errors, neurons, groups, group_frames, patterns",
    )
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of stdout (needed for parquet)")
    _add_limit_args(p)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("group", help="contrast groups: named sets of frames chosen by SQL")
    group = p.add_subparsers(dest="group_verb", metavar="VERB")
    group.required = True
    p = group.add_parser("create", help="materialise the frames of a run that satisfy a predicate")
    _add_lake_arg(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument(
        "--where", required=True, metavar="PREDICATE", help="SQL predicate over frames joined with utterances"
    )
    p.add_argument("--replace", action="store_true", help="replace a group of the same name")
    _add_limit_args(p)
    p.set_defaults(func=cmd_group_create)
    p = group.add_parser("list", help="the groups of the lake")
    _add_lake_arg(p)
    p.set_defaults(func=cmd_group_list)
    p = group.add_parser("show", help="size, predicate and a sample of a group's frames")
    _add_lake_arg(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--sample", type=int, default=10, metavar="N")
    p.set_defaults(func=cmd_group_show)
    p = group.add_parser("export", help="write a group's activations to .npy/.npz or .parquet")
    _add_lake_arg(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--layers", required=True, type=comma_list, metavar="L1,L2", help="comma-separated layer names")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE_OR_DIR",
        help=".npy (one layer), .npz or .parquet; a directory (no suffix) gets a Hugging Face datasets dataset",
    )
    p.add_argument(
        "--columns",
        type=comma_list,
        default=[],
        metavar="C1,C2",
        help="frames or utterances columns to add (datasets export), e.g. phoneme,word,speaker_id",
    )
    p.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="of the activations (datasets export)"
    )
    p.set_defaults(func=cmd_group_export)

    p = sub.add_parser("neurons", help="compute per-neuron statistics (mean, std, quantiles, active rate)")
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="comma-separated layer names (default: all)")
    p.add_argument(
        "--quantile-frames",
        type=int,
        metavar="N",
        help="quantiles of runs with more frames come from an even sample of N frames (default 65,536; "
        "0: every frame, about twice the time)",
    )
    p.set_defaults(func=cmd_neurons)

    p = sub.add_parser(
        "ablate", help="re-decode a run's utterances with units held fixed, against random units of the same size"
    )
    _add_lake_arg(p)
    p.add_argument("--run", metavar="ID", help="the run (with --units; checked against a --pattern's run)")
    p.add_argument("--units", type=comma_list, metavar="L:U,..", help="units to ablate, e.g. conv7:12,conv7:40")
    p.add_argument("--pattern", metavar="MINING_ID/PATTERN_ID", help="the units of a mined pattern (the patterns view)")
    p.add_argument("--finding", metavar="SCAN_ID/FINDING_ID", help="the units of a scan's finding (the findings view)")
    p.add_argument(
        "--mode",
        choices=("zero", "mean", "patch"),
        default="zero",
        help="set the units to 0, to their mean over the run, or to their mean over --patch-group (default zero)",
    )
    p.add_argument("--patch-group", metavar="NAME", help="with --mode patch: the group whose mean the units get")
    p.add_argument(
        "--utterances", type=int, default=100, metavar="N", help="committed utterances to decode (default 100)"
    )
    p.add_argument("--controls", type=int, default=5, metavar="N", help="random unit sets of the same size (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="decode on N Ray model actors (default with --gpus: one per GPU; more than the GPUs share them)",
    )
    _add_gpus_arg(p, "decoding")
    p.add_argument(
        "--ray-address", metavar="A", help="Ray cluster for --workers (default: $RAY_ADDRESS, else a local Ray)"
    )
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("mine", help="find groups of neurons active together in a target group and not in a background")
    _add_lake_arg(p)
    p.add_argument("--run", metavar="ID", help="the run (checked against the groups' run)")
    p.add_argument("--target", required=True, metavar="GROUP")
    p.add_argument("--background", required=True, metavar="GROUP")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers whose units are the items (default: all)")
    p.add_argument("--algo", choices=["lcm", "diffnorm"], default="lcm")
    p.add_argument(
        "--binarize",
        default="quantile:0.9",
        metavar="SPEC",
        help="quantile:Q (Q in 0.5, 0.9, 0.99), topk:K, zscore:Z or absolute:T (default quantile:0.9)",
    )
    p.add_argument(
        "--min-support", type=float, default=0.1, metavar="F", help="fraction of the target frames (default 0.1)"
    )
    p.add_argument("--max-size", type=int, default=4, metavar="N", help="largest pattern reported (default 4)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N Ray workers: LCM splits its search space, DiffNorm its usage counting",
    )
    p.add_argument(
        "--ray-address", metavar="A", help="Ray cluster for --workers (default: $RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument("--top", type=int, default=10, metavar="N", help="patterns to print (default 10)")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser(
        "scan", help="find the slices of frames where the model errs and the neuron patterns that single them out"
    )
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers whose units are the items (default: all)")
    p.add_argument(
        "--algo",
        choices=["lcm", "diffnorm"],
        default="lcm",
        help="LCM closed patterns per slice, or DiffNorm over all slices at once (default lcm)",
    )
    p.add_argument("--binarize", default="quantile:0.9", metavar="SPEC", help="as for mine (default quantile:0.9)")
    p.add_argument(
        "--min-support", type=float, default=0.2, metavar="F", help="fraction of a slice's frames (default 0.2)"
    )
    p.add_argument("--max-size", type=int, default=4, metavar="N", help="largest pattern (default 4)")
    p.add_argument("--min-frames", type=int, default=10, metavar="N", help="least frames of a slice (default 10)")
    p.add_argument("--max-slices", type=int, default=40, metavar="N", help="slices mined, largest first (default 40)")
    p.add_argument(
        "--columns",
        type=comma_list,
        default=["speaker_id"],
        metavar="C1,C2",
        help="utterance columns whose values may form slices (default speaker_id)",
    )
    p.add_argument(
        "--confident",
        type=float,
        default=0.8,
        metavar="P",
        help="least greedy-token probability of a background frame (right, and confident; default 0.8)",
    )
    p.add_argument(
        "--low",
        type=float,
        default=0.5,
        metavar="P",
        help="greedy-token probability under which a speech frame is in the low-confidence slice (default 0.5)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="N Ray workers mining slices in parallel")
    p.add_argument(
        "--ray-address", metavar="A", help="Ray cluster for --workers (default: $RAY_ADDRESS, else a local Ray)"
    )
    p.add_argument("--top", type=int, default=10, metavar="N", help="findings to print (default 10)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("blocks", help="connect a finding's units across the captured layers and ablate the whole block")
    _add_lake_arg(p)
    p.add_argument("--finding", required=True, metavar="SCAN_ID/FINDING_ID", help="a finding of neurolake scan")
    p.add_argument("--depth", type=int, default=2, metavar="N", help="layers to follow each way (default 2)")
    p.add_argument("--per-layer", type=int, default=8, metavar="N", help="most units added per layer (default 8)")
    p.add_argument("--z", type=float, default=4.0, help="robust z-score a unit needs to join (default 4)")
    p.add_argument("--utterances", type=int, default=20, metavar="N", help="slice utterances used (default 20)")
    p.add_argument("--controls", type=int, default=3, metavar="N", help="random unit sets for the ablation (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_blocks)

    p = sub.add_parser("naps", help="neuron activation profiles: each group's mean response per unit, and contrasted")
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--groups", type=comma_list, metavar="G1,G2", help="named groups to profile")
    p.add_argument("--by", metavar="COLUMN", help="one group per value of a frames or utterances column")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers to profile (default: all)")
    p.add_argument("--window", type=int, metavar="W", help="with --by: event-aligned at offsets -W..W frames")
    p.add_argument("--weighted", action="store_true", help="contrast against the size-weighted mean of the groups")
    p.add_argument(
        "--relevance",
        action="store_true",
        help="GradNAPs: profile gradient x activation of the predicted token (re-runs the groups' utterances)",
    )
    p.add_argument(
        "--token",
        choices=("predicted", "reference"),
        default="predicted",
        help="with --relevance: the token whose log-probability is differentiated (default predicted)",
    )
    p.add_argument("--max-groups", type=int, default=200, metavar="N", help="most values --by may have (default 200)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="most set-apart units shown per group (default 5)")
    p.add_argument("--cluster", type=int, metavar="K", help="cluster the groups' profiles per layer into K clusters")
    p.add_argument(
        "--cluster-threshold", type=float, metavar="T", help="cluster the groups, cutting the tree at merge distance T"
    )
    p.add_argument(
        "--metric", default="cosine", metavar="M", help="distance between profiles: cosine (default) or euclidean"
    )
    p.set_defaults(func=cmd_naps)

    p = sub.add_parser(
        "phonetics", help="per layer: does the clustering of phoneme NAPs follow articulatory similarity?"
    )
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers (default: all)")
    p.add_argument("--min-frames", type=int, default=20, metavar="N", help="least frames of a phoneme (default 20)")
    p.add_argument("--permutations", type=int, default=999, metavar="N", help="for the p-value (default 999)")
    p.add_argument("--out", metavar="DIR", help="write the dendrograms and the per-layer curve here")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="image format of --out (default png)")
    p.set_defaults(func=cmd_phonetics)

    p = sub.add_parser("topomap", help="lay a layer's units out in 2D by their activation profiles and map each group")
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--layer", required=True, metavar="L")
    p.add_argument("--groups", type=comma_list, metavar="G1,G2", help="named groups to compare")
    p.add_argument("--by", metavar="COLUMN", help="one group per value of a frames or utterances column")
    p.add_argument(
        "--methods",
        type=comma_list,
        default=["som", "force", "pca", "tsne", "umap"],
        metavar="M1,M2",
        help="layouts among som, force, pca, tsne, umap (default: all)",
    )
    p.add_argument("--size", type=int, default=32, metavar="N", help="map side in cells (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write one PNG per layout (a panel per group) here")
    p.add_argument("--finding", metavar="SCAN_ID/FINDING_ID", help="circle a scan finding's units of this layer")
    p.add_argument(
        "--refine",
        metavar="pso",
        help="refine every layout: pso (a particle swarm that smooths the maps, keeping neighbours alike)",
    )
    p.set_defaults(func=cmd_topomap)

    p = sub.add_parser(
        "probe", help="linear probes per layer of a frames or utterances column (speaker-disjoint split)"
    )
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument(
        "--target", required=True, metavar="COLUMN", help="e.g. phoneme, ref_segment, word_error, speaker_id"
    )
    p.add_argument("--level", choices=("frame", "utterance"), default="frame")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers (default: all)")
    p.add_argument("--max-frames", type=int, default=50_000, metavar="N", help="frame-level sample (default 50000)")
    p.add_argument("--min-per-class", type=int, default=10, metavar="N", help="least training examples of a class")
    p.add_argument("--l1-ratio", type=float, default=0.0, metavar="F", help="elastic-net mixing (0: L2, fast)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write the per-layer accuracy curve (PNG) here")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("report", help="write an HTML report of a run, with figures, of what the lake holds")
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--out", metavar="DIR", help="folder of index.html (default ./neurolake-report-RUN)")
    p.add_argument("--embed", action="store_true", help="put the figures inside index.html (one file)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "rank",
        help="rank a layer's units for a frames or utterances column (probe weights, class means, mutual "
        "information), minimal subsets, redundancy, ablation in the model",
    )
    _add_lake_arg(p)
    p.add_argument("--run", required=True, metavar="ID")
    p.add_argument("--target", required=True, metavar="COLUMN", help="e.g. phoneme, ref_segment, speaker_id")
    p.add_argument("--level", choices=("frame", "utterance"), default="frame")
    p.add_argument("--layers", type=comma_list, metavar="L1,L2", help="layers (default: all)")
    p.add_argument("--max-frames", type=int, default=20_000, metavar="N", help="frame-level sample (default 20000)")
    p.add_argument("--min-per-class", type=int, default=10, metavar="N", help="least training examples of a class")
    p.add_argument(
        "--share", type=float, default=0.9, metavar="F", help="minimal subset: share of the full accuracy (0.9)"
    )
    p.add_argument("--draws", type=int, default=3, metavar="N", help="random subsets per k (default 3)")
    p.add_argument(
        "--redundancy", type=float, default=0.8, metavar="R", help="units correlated at |r| >= R are redundant"
    )
    p.add_argument("--ablate", type=int, metavar="K", help="zero the top K probe units in the model, against random K")
    p.add_argument("--ablate-class", metavar="CLASS", help="with --ablate: the top K units of this class")
    p.add_argument("--controls", type=int, default=5, metavar="N", help="random unit sets for --ablate (default 5)")
    p.add_argument("--max-utterances", type=int, default=50, metavar="N", help="utterances --ablate decodes")
    p.add_argument("--workers", type=int, metavar="N", help="decode --ablate on N Ray actors")
    _add_gpus_arg(p, "decoding")
    p.add_argument("--top", type=int, default=10, metavar="N", help="units shown per ranking (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write the accuracy-against-k curve per layer (PNG) here")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("verify", help="check committed parts against their checksums and report missing data")
    _add_lake_arg(p)
    p.add_argument("--run", metavar="ID", help="check only this run")
    p.add_argument(
        "--repair",
        action="store_true",
        help="re-do exactly the damaged parts with the run's own model, corpus and plan",
    )
    p.add_argument(
        "--ray-address", metavar="A", help="Ray cluster for --repair (default: $RAY_ADDRESS, else a local Ray)"
    )
    p.set_defaults(func=cmd_verify)

    from neurolake.store.compact import DEFAULT_ROWS_PER_FILE

    p = sub.add_parser(
        "compact",
        help="merge a run's per-part table files into a few large ones, switched in atomically",
    )
    _add_lake_arg(p)
    p.add_argument("--run", metavar="ID", required=True, help="the run to compact")
    p.add_argument(
        "--rows-per-file",
        type=int,
        default=DEFAULT_ROWS_PER_FILE,
        metavar="N",
        help=f"rows per compacted file at most (a part is never split; default {DEFAULT_ROWS_PER_FILE:,})",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="after the switch, delete the files it superseded (readers opened before must refresh)",
    )
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser(
        "doctor", help="check the installation (torchaudio, Ray, DuckDB httpfs, espeak-ng, numba, GPU) and the lake"
    )
    _add_lake_arg(p)
    p.add_argument(
        "--constraints",
        metavar="FILE",
        help="also check that every installed package has the version this lock file pins",
    )
    p.set_defaults(func=cmd_doctor)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    from neurolake.cluster.progress import announce_compiles

    announce_compiles()
    try:
        return func(args)
    except NeurolakeError as exc:
        print(f"neurolake: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Storage that cannot be reached or written (a closed endpoint, a missing directory) is
        # the user's to fix: one line, the traceback only with -v.
        if args.verbose or not is_storage_error(exc):
            raise
        inner = root_cause(exc)
        print(
            f"neurolake: error: {type(inner).__name__}: {one_line(inner, 400)} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("neurolake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
