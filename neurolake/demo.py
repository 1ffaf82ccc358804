"""``neurolake demo``: the main job end to end on embedded defaults.

Synthesises a small corpus (with an accent held out of the demo model's training, so
there are errors to study), ingests it with the bundled model on a local Ray into the
lake, and prints what landed: runs, hours, frames, layers, WER and the worst utterances; then
mines the neurons active together inside misrecognised words, scans the run for failure slices
by themselves, and ablates the units of the top finding in the model, beside random units of the
same size, counting the finding's slice under each.
Running it again reuses the corpus and the committed parts.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from neurolake.render import format_runs_table, format_table
from neurolake.store import Lake

log = logging.getLogger(__name__)

DEMO_UTTERANCES = 100
DEMO_SEED = 7
DEMO_RUN = "demo"
DEMO_ABLATION_UTTERANCES = 40
DEMO_ABLATION_CONTROLS = 3


def mining_step(lake: Lake) -> tuple[str, list[str]]:
    """Frames inside misrecognised words versus frames of correctly recognised words, mined;
    returns the text and the units of the best pattern outside the output head (none if none)."""
    from neurolake.mining.mine import mine
    from neurolake.query.groups import create_group
    from neurolake.render import format_mining

    create_group(lake, "demo-error-words", DEMO_RUN, "word_error", replace=True)
    create_group(lake, "demo-correct-words", DEMO_RUN, "NOT word_error AND word IS NOT NULL", replace=True)
    result = mine(
        lake, "demo-error-words", "demo-correct-words", binarization="quantile:0.9", min_support=0.04, max_size=3
    )
    text = "neurons active together inside misrecognised words (LCM, units above their 90th percentile):\n"
    # The best pattern of hidden units: the head's units are the token logits themselves.
    hidden = [
        items for items in result.patterns.column("items").to_pylist() if not any(i.startswith("head:") for i in items)
    ]
    top = hidden[0] if hidden else []
    return text + format_mining(result, top=8), top


def scan_step(lake: Lake, progress: bool | None = None) -> tuple[str, dict | None]:
    """Failure slices found by themselves, and the hidden units that single each out; returns
    the text and the top finding (none if the scan found none)."""
    from neurolake.introspect.scan import scan
    from neurolake.render import format_scan

    hidden = [layer for layer in lake.run(DEMO_RUN).layer_names if layer != "head"]
    result = scan(lake, DEMO_RUN, layers=hidden, progress=progress)
    text = "failure slices found by themselves, and the hidden units that single each out (neurolake scan):\n"
    top = result.findings.slice(0, 1).to_pylist()[0] if result.findings.num_rows else None
    return text + format_scan(result, top=8), top


def ablation_step(lake: Lake, finding: dict | None) -> str:
    """Do the top finding's units matter to the model? Decode with them zeroed, beside random units."""
    from neurolake.introspect.ablation import ablate
    from neurolake.render import format_ablation

    if finding is None:
        return "no finding to ablate"
    result = ablate(
        lake,
        DEMO_RUN,
        finding["items"],
        slice=finding["target"],
        controls=DEMO_ABLATION_CONTROLS,
        max_utterances=DEMO_ABLATION_UTTERANCES,
    )
    return f"the top finding's units ({finding['slice']}), zeroed in the model:\n" + format_ablation(result)


def _report_dir(lake: Lake) -> Path:
    """Beside a local lake, else in the working directory."""
    url = str(lake.url)
    if "://" not in url or url.startswith("file://"):
        return Path(url.removeprefix("file://")) / "report"
    return Path("neurolake-report-demo")


def compiling_in_background() -> subprocess.Popen | None:
    """A process that compiles the search's kernels (:func:`~neurolake.mining.lcm.compile_kernels`)
    into numba's disk cache while the demo synthesises and ingests; the mining step waits for
    it and then loads them. On a fresh install of the 2-core machine the search's kernel alone
    took 38 s of the demo's 72 s to compile; with this process the demo from an empty cache
    took 80.1 and 76.7 s against 88.8 s without it, the same day. Where the kernels are cached
    already the process only loads them (about a second); None where no process can be
    started."""
    code = "from neurolake.mining.lcm import compile_kernels; compile_kernels()"
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        log.debug("the kernels are compiled when first used: no process to compile them beforehand (%s)", exc)
        return None


def wait_for_compiling(process: subprocess.Popen | None, timeout: float = 600) -> None:
    """Wait for :func:`compiling_in_background`'s process (telling a terminal why, if it is not
    done); should it fail or outlast ``timeout``, the kernels are compiled when first used."""
    if process is None:
        return
    if process.poll() is None:
        from neurolake.cluster.progress import tell_compiling

        tell_compiling()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode:
        log.debug("compiling the kernels beforehand failed (exit %s); they are compiled when used", process.returncode)


def run_demo(lake_url: str, out: TextIO, utterances: int = DEMO_UTTERANCES, progress: bool | None = None) -> Lake:
    """Synthesise, ingest and summarise; returns the lake."""
    warming = compiling_in_background()
    try:
        return _run_demo(lake_url, out, utterances, progress, warming)
    finally:
        if warming is not None and warming.poll() is None:
            warming.kill()
            warming.wait()


def _run_demo(
    lake_url: str, out: TextIO, utterances: int, progress: bool | None, warming: subprocess.Popen | None
) -> Lake:
    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.ingest.pipeline import ingest
    from neurolake.query.engine import QueryEngine

    lake = Lake.open(lake_url, create=True)
    out.write(f"lake: {lake.url}\n")
    corpus = lake.loc.child("corpora", "demo-synth")
    if corpus.exists("SPEAKERS.TXT"):
        out.write(f"corpus: {corpus.url} (already synthesised)\n")
    else:
        summary = synthesize_corpus(
            corpus.url, n_utterances=utterances, seed=DEMO_SEED, storage_options=lake.loc.storage_options or None
        )
        splits = ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items()))
        out.write(
            f"corpus: {summary.n_utterances} synthetic utterances, {summary.audio_seconds / 60:.1f} min "
            f"({splits}; held-out accent {summary.holdout_accent}) in {corpus.url}\n"
        )
    result = ingest(
        lake.url, corpus.url, "demo", run_id=DEMO_RUN, storage_options=lake.loc.storage_options, progress=progress
    )
    from neurolake.render import format_summary

    out.write(format_summary(result) + "\n\n")
    out.write(format_runs_table(lake.run_infos()) + "\n\n")
    with QueryEngine(lake) as q:
        overall = q.arrow(
            "SELECT count(*) AS utterances, round(sum(duration_s) / 3600, 3) AS hours, sum(n_frames) AS frames, "
            "round(sum(n_word_errors) / sum(n_reference_words), 3) AS wer, round(avg(cer), 3) AS mean_cer "
            "FROM utterances WHERE run_id = ?",
            [DEMO_RUN],
        ).to_pylist()[0]
        layers = q.arrow("SELECT layer, units FROM layers WHERE run_id = ? ORDER BY layer", [DEMO_RUN]).to_pylist()
        by_split = q.arrow(
            "SELECT regexp_extract(audio_uri, 'demo-synth/([^/]+)/', 1) AS split, count(*) AS utterances, "
            "round(sum(n_word_errors) / sum(n_reference_words), 3) AS wer, round(avg(cer), 3) AS cer "
            "FROM utterances WHERE run_id = ? GROUP BY split ORDER BY split",
            [DEMO_RUN],
        ).to_pylist()
        worst = q.arrow(
            "SELECT utterance_id, round(wer, 2) AS wer, reference, hypothesis FROM utterances "
            "WHERE run_id = ? ORDER BY wer DESC, utterance_id LIMIT 5",
            [DEMO_RUN],
        ).to_pylist()
        n_errors = q.arrow("SELECT count(*) AS n FROM errors WHERE run_id = ?", [DEMO_RUN]).column("n")[0].as_py()
        err_frames = q.arrow(
            "SELECT count(*) FILTER (WHERE word_error) AS e, count(*) AS n FROM frames WHERE run_id = ?", [DEMO_RUN]
        ).to_pylist()[0]
    layer_list = ", ".join(f"{row['layer']}[{row['units']}]" for row in layers)
    out.write(
        f"run {DEMO_RUN}: {overall['utterances']} utterances, {overall['hours']} h, {overall['frames']:,} frames, "
        f"{len(layers)} layers ({layer_list})\n"
        f"overall WER {overall['wer']}, mean CER {overall['mean_cer']}; {err_frames['e']:,} of {err_frames['n']:,} frames "
        f"inside misrecognised words; {n_errors} input errors\n\n"
    )
    out.write(
        format_table(
            ("split", "utterances", "WER", "CER"), [(r["split"], r["utterances"], r["wer"], r["cer"]) for r in by_split]
        )
        + "\n\n"
    )
    out.write("worst utterances:\n")
    out.write(
        format_table(
            ("utterance", "WER", "reference", "hypothesis"),
            [(w["utterance_id"], w["wer"], w["reference"], w["hypothesis"]) for w in worst],
        )
        + "\n"
    )
    wait_for_compiling(warming)
    mined, _ = mining_step(lake)
    out.write("\n" + mined + "\n")
    scanned, top = scan_step(lake, progress)
    out.write("\n" + scanned + "\n")
    out.write("\n" + ablation_step(lake, top) + "\n")
    from neurolake.report import report

    written = report(lake, DEMO_RUN, _report_dir(lake), lake_arg=lake.url)
    out.write(
        f"\nreport: {written.path} ({len(written.sections)} sections, {written.figures} figures; "
        "open it in a browser)\n"
    )
    out.write(
        '\nnext: neurolake sql "SELECT phoneme, avg(word_error::INT) AS err FROM frames GROUP BY phoneme ORDER BY err DESC" '
        f"--lake {lake.url}\n"
    )
    return lake
