"""Query latency on large frames tables, and gather throughput.

Generates runs whose ``frames`` tables hold 10 M and 100 M rows (written through the
store, in the lake format: per-unit Parquet files with commit markers) and times
group-defining queries through ``QueryEngine``: filter frames, join utterances, count,
and materialise the frame ids (target at 100 M rows on 2 cores: <= 2 s per query; <= 1 s for
the ids of a group). With ``--compact``, each run is then compacted (``neurolake compact``: row-
ordered files of 1 M rows) and the group ids are timed again. Then times gathering a random
5 %-of-rows group of one layer versus reading the whole layer (``--gather-rows 0`` skips it).

    python benchmarks/query_latency.py [--rows 10000000,100000000] [--compact] [--gather-rows N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.query.engine import QueryEngine
from neurolake.query.gather import gather_activations
from neurolake.query.groups import create_group, group_frame_ids, group_relation
from neurolake.store import Lake, LayerSpec, plan_parts
from neurolake.store.compact import compact

FRAMES_PER_UTT = 750  # 15 s at 50 frames/s
PHONES = [
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
]
LETTERS = ["-", " ", "'"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
WORDS = [f"W{i}" for i in range(5000)]


def _dict(indices: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values))


def build_run(lake: Lake, run_id: str, n_rows: int, units: int, seed: int) -> None:
    n_utts = n_rows // FRAMES_PER_UTT
    plan = plan_parts(
        ((f"{run_id}-{i:08d}", FRAMES_PER_UTT) for i in range(n_utts)), rows_per_shard=4096, part_rows=262144
    )
    run = lake.create_run(
        run_id, model={"spec": "bench"}, corpus={"spec": "bench"}, layers=[LayerSpec("layer", units)], plan=plan
    )
    rng = np.random.default_rng(seed)
    wer_of = rng.beta(1.2, 5.0, n_utts)
    for unit in plan.parts:
        n, utts = unit.rows_used, unit.utterances
        first = int(utts[0].utterance_id.rsplit("-", 1)[1])
        u_idx = np.repeat(np.arange(len(utts)), FRAMES_PER_UTT)
        frame_index = np.tile(np.arange(FRAMES_PER_UTT, dtype=np.int32), len(utts))
        word_error = rng.random(n) < np.repeat(wer_of[first : first + len(utts)], FRAMES_PER_UTT)
        writer = run.part_writer(unit.part_id)
        block = (
            rng.standard_normal((n, units), dtype=np.float32).astype(np.float16)
            if units > 1
            else np.zeros((n, 1), np.float16)
        )
        writer.append("layer", block)
        ids = [u.utterance_id for u in utts]
        writer.write_table(
            "utterances",
            {
                "utterance_id": ids,
                "speaker_id": [i[:-4] for i in ids],
                "chapter_id": ["1"] * len(ids),
                "audio_uri": [f"s3://corpus/{i}.flac" for i in ids],
                "duration_s": np.full(len(ids), FRAMES_PER_UTT / 50),
                "n_frames": np.full(len(ids), FRAMES_PER_UTT),
                "first_frame_id": [u.first_row for u in utts],
                "reference": ["REF"] * len(ids),
                "hypothesis": ["HYP"] * len(ids),
                "wer": wer_of[first : first + len(utts)],
                "cer": wer_of[first : first + len(utts)] / 2,
                "n_word_errors": np.zeros(len(ids), np.int32),
            },
        )
        writer.write_table(
            "frames",
            pa.table(
                {
                    "frame_id": np.arange(unit.row_start, unit.used_stop, dtype=np.int64),
                    "utterance_id": _dict(u_idx, ids),
                    "frame_index": frame_index,
                    "start_s": frame_index / 50.0,
                    "end_s": (frame_index + 1) / 50.0,
                    "ref_token": _dict(rng.integers(0, len(LETTERS), n), LETTERS),
                    "pred_token": _dict(rng.integers(0, len(LETTERS), n), LETTERS),
                    "pred_prob": rng.random(n, dtype=np.float32),
                    "phoneme": _dict(rng.integers(0, len(PHONES), n), PHONES),
                    "word": _dict(rng.integers(0, len(WORDS), n), WORDS),
                    "word_index": (frame_index // 25).astype(np.int32),
                    "word_error": word_error,
                    "token_error": rng.random(n) < 0.1,
                }
            ),
        )
        writer.commit()


QUERIES = {
    "count frames in misrecognised words": "SELECT count(*) FROM frames WHERE run_id = '{r}' AND word_error",
    "count frames of utterances with WER > 0.3 (join)": "SELECT count(*) FROM frames JOIN utterances USING (run_id, utterance_id) WHERE run_id = '{r}' AND wer > 0.3",
    "count frames of one phoneme": "SELECT count(*) FROM frames WHERE run_id = '{r}' AND phoneme = 'AH'",
}
# Materialising groups' ids exactly as `neurolake group create` does (query + sort), for
# the README's example groups: a frames filter, a join with utterances, a phoneme.
GROUPS = {
    "materialise ids: frames in misrecognised words": "word_error",
    "materialise ids: frames of utterances, WER > 0.3": "wer > 0.3",
    "materialise ids: error frames in utterances WER > 0.3": "word_error AND wer > 0.3",
    "materialise ids: frames of phoneme AH": "phoneme = 'AH'",
}


def time_groups(q: QueryEngine, run_id: str, n_rows: int) -> None:
    """Time materialising each group's ids (median of 3), checked against the plain join up to 10 M rows."""
    for name, predicate in GROUPS.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            ids = group_frame_ids(q, run_id, predicate)
            times.append(time.perf_counter() - t0)
        print(
            f"  {name:55s} best {min(times):6.2f} s  median {sorted(times)[1]:6.2f} s  -> {ids.size:,} ids  (target <= 1 s at 100 M)"
        )
        if n_rows <= 10_000_000:  # the same ids as the plain join of frames and utterances
            joined = np.sort(
                q.rows(lambda r=run_id, p=predicate: group_relation(q, r, p)).column("frame_id").to_numpy()
            )
            assert np.array_equal(ids, joined), f"{predicate}: ids differ from the join"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="10000000,100000000", help="comma-separated frames-table sizes")
    ap.add_argument("--gather-rows", type=int, default=1_048_576, help="rows of the layer used for the gather test")
    ap.add_argument("--dir", default=None, help="directory for the lakes (default: a temp dir)")
    ap.add_argument("--compact", action="store_true", help="time the group ids again after compacting each run")
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="nl-query-", dir=args.dir))
    try:
        lake = Lake.create(str(base / "lake"))
        for n_rows in (int(x) for x in args.rows.split(",")):
            run_id = f"r{n_rows // 1_000_000}m"
            t0 = time.perf_counter()
            build_run(lake, run_id, n_rows, units=1, seed=n_rows % 97)
            print(f"\n{run_id}: wrote {n_rows:,} frames in {time.perf_counter() - t0:.0f} s")
            with QueryEngine(lake) as q:
                for name, sql in QUERIES.items():
                    times, result = [], None
                    for _ in range(3):
                        t0 = time.perf_counter()
                        result = q.arrow(sql.format(r=run_id))
                        times.append(time.perf_counter() - t0)
                    shown = result.column(0)[0].as_py() if result.num_rows == 1 else f"{result.num_rows:,} ids"
                    print(
                        f"  {name:55s} best {min(times):6.2f} s  median {sorted(times)[1]:6.2f} s  -> {shown}  (target <= 2 s at 100 M)"
                    )
                time_groups(q, run_id, n_rows)
            if args.compact:
                t0 = time.perf_counter()
                summary = compact(lake.run(run_id))
                print(
                    f"  compacted in {time.perf_counter() - t0:.0f} s: {summary.files_before:,} table files -> "
                    f"{summary.files_after}; the ids again:"
                )
                with QueryEngine(lake) as q:
                    time_groups(q, run_id, n_rows)
        if args.gather_rows <= 0:
            return
        run_id = "gather"
        build_run(lake, run_id, args.gather_rows, units=256, seed=5)
        run = lake.run(run_id)
        t0 = time.perf_counter()
        group = create_group(lake, "five-percent", run_id, "hash(frame_id) % 20 = 0")
        t_group = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = gather_activations(lake, ["layer"], group="five-percent")
        t_gather = time.perf_counter() - t0
        t0 = time.perf_counter()
        whole = run.layer_dask("layer").compute()
        t_whole = time.perf_counter() - t0
        assert np.array_equal(got.layers["layer"], whole[group.frame_ids()])
        mb = whole[: run.plan.n_frames].nbytes / 1e6
        print(f"\ngather: {group.n_frames:,} of {run.plan.n_frames:,} rows x 256 units (group made in {t_group:.2f} s)")
        print(f"  gather 5% group : {t_gather:6.2f} s")
        print(f"  read whole layer: {t_whole:6.2f} s  ({mb / t_whole:.0f} MB/s)")
        print(f"  ratio whole/gather = {t_whole / t_gather:.2f}  (the gather touches nearly every chunk at 5 %)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
