"""Store throughput: activations written through the lake versus raw ``.npy`` files.

Writes the same float16 activation bytes twice to the same disk in one run (``--data
synthetic``: ReLU-like, about half zeros, random mantissas - a hard case for compression;
``--data demo``: the bundled model's real activations on synthetic speech, ~90 % zeros), each timed until the data is on disk (``sync``; the page cache alone
makes raw writes swing between 0.6 and 1.5 GB/s) — once through ``neurolake.store`` (Zarr v3, zero-mask or zstd chunks, sharded, with tables and
commit markers), once as one raw ``.npy`` file per shard — and prints MB/s for both, their
ratio (target >= 0.5), and the compression ratio. Then gathers a random 5 % of rows per
layer with ``Run.read_rows`` versus reading the same chunks whole (target >= 0.5).

    python benchmarks/store_throughput.py [--data demo,synthetic] [--gb 1.0] [--codec zeromask|zstd] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.store import Lake, LayerSpec, plan_parts

UNITS = 512
N_LAYERS = 4
ROWS_PER_SHARD = 4096
CHUNK_ROWS = 256
PART_ROWS = 32768


def activation_pool(n_blocks: int, rows: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Per layer, distinct ReLU-like float16 blocks ``[rows, UNITS]`` with per-unit scales
    (about half zeros, random mantissas: hard to compress)."""
    rng = np.random.default_rng(seed)
    scale = rng.gamma(2.0, 0.5, UNITS).astype(np.float32)
    blocks = [
        (np.maximum(rng.standard_normal((rows, UNITS), dtype=np.float32), 0) * scale).astype(np.float16)
        for _ in range(n_blocks)
    ]
    return [blocks[layer * 7 % n_blocks :] + blocks[: layer * 7 % n_blocks] for layer in range(N_LAYERS)]


def demo_model_pool(rows: int, n_blocks: int, base: Path) -> tuple[list[LayerSpec], list[list[np.ndarray]]]:
    """Per layer of the bundled demo model, blocks of its real activations on synthetic speech."""
    import torch

    from neurolake.corpora import open_corpus
    from neurolake.corpora.audio import load_audio
    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.ingest.pipeline import default_layers
    from neurolake.models import load_model

    adapter = load_model("demo")
    layers = default_layers(adapter)
    need = rows * n_blocks
    corpus = str(base / "corpus")
    synthesize_corpus(corpus, n_utterances=need // 60 + 20, seed=5)  # ~100 frames each
    parts: dict[str, list[np.ndarray]] = {layer.name: [] for layer in layers}
    got = 0
    for utt in open_corpus(corpus):
        audio = torch.from_numpy(load_audio(utt.audio_uri, adapter.sample_rate))[None]
        out = adapter.forward(audio, torch.tensor([audio.shape[1]]), layers, capture_dtype=torch.float16)
        for layer in layers:
            parts[layer.name].append(out.captured[layer.name][0].numpy())
        got += int(out.frame_lengths[0])
        if got >= need:
            break
    if got < need:
        raise SystemExit(f"the synthetic corpus gave {got} frames, {need} needed")
    specs = [LayerSpec(layer.name, layer.units) for layer in layers]
    pools = []
    for layer in layers:
        whole = np.concatenate(parts[layer.name])[:need]
        pools.append([whole[i * rows : (i + 1) * rows] for i in range(n_blocks)])
    return specs, pools


def block_for(pool: list[list[np.ndarray]], layer: int, shard: int) -> np.ndarray:
    return pool[layer][shard % len(pool[layer])]


def part_tables(unit) -> tuple[pa.Table, pa.Table]:
    """Plausible ``utterances`` and ``frames`` rows of a part."""
    utts = unit.utterances
    utterances = pa.table(
        {
            "utterance_id": [u.utterance_id for u in utts],
            "speaker_id": ["s"] * len(utts),
            "chapter_id": ["c"] * len(utts),
            "audio_uri": ["a"] * len(utts),
            "duration_s": [u.n_frames / 50 for u in utts],
            "n_frames": [u.n_frames for u in utts],
            "first_frame_id": [u.first_row for u in utts],
            "reference": [""] * len(utts),
            "hypothesis": [""] * len(utts),
            "wer": [0.0] * len(utts),
            "cer": [0.0] * len(utts),
            "n_word_errors": [0] * len(utts),
        }
    )
    n = unit.rows_used
    frames = pa.table(
        {
            "frame_id": np.arange(unit.row_start, unit.used_stop),
            "utterance_id": np.repeat([u.utterance_id for u in utts], [u.n_frames for u in utts]),
            "frame_index": np.concatenate([np.arange(u.n_frames) for u in utts]),
            "start_s": np.zeros(n),
            "end_s": np.zeros(n),
            "ref_token": ["A"] * n,
            "pred_token": ["A"] * n,
            "pred_prob": np.ones(n, np.float32),
            "phoneme": ["AH"] * n,
            "word": ["A"] * n,
            "word_index": np.zeros(n, np.int32),
            "word_error": np.zeros(n, bool),
            "token_error": np.zeros(n, bool),
        }
    )
    return utterances, frames


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="activation gigabytes to write (default 1.0)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved write runs of each kind (default 3)")
    ap.add_argument(
        "--zstd-level",
        type=int,
        default=1,
        help="zstd level of the run (default 1, the store default; negative = fast modes)",
    )
    ap.add_argument(
        "--codec", default="zeromask", choices=("zeromask", "zstd"), help="how chunks are stored (default: the lake's)"
    )
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    ap.add_argument(
        "--data",
        default="demo,synthetic",
        help="comma-separated (default both): demo = the bundled model's 9 layers on synthetic "
        "speech (real ReLU activations, ~90%% zeros); synthetic = 4 layers x 512 units, half "
        "zeros, random mantissas (a hard case for compression)",
    )
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    for kind in args.data.split(","):
        measure(kind.strip(), args)


def measure(kind: str, args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="nl-bench-", dir=args.dir))
    try:
        if kind == "demo":
            layers, pool = demo_model_pool(ROWS_PER_SHARD, 16, base)
        elif kind == "synthetic":
            layers, pool = [LayerSpec(f"layer{i}", UNITS) for i in range(N_LAYERS)], activation_pool(16, ROWS_PER_SHARD)
        else:
            raise SystemExit(f"unknown --data {kind!r}: give demo, synthetic or both, comma-separated")
        bytes_per_row = sum(layer.units for layer in layers) * 2
        rows = int(np.ceil(args.gb * 1e9 / bytes_per_row / ROWS_PER_SHARD)) * ROWS_PER_SHARD
        n_shards = rows // ROWS_PER_SHARD
        total_bytes = rows * bytes_per_row
        print(
            f"\n{kind} data ({args.codec}): {len(layers)} layers, {bytes_per_row // 2} units in all, x {rows} rows float16 = "
            f"{total_bytes / 1e9:.2f} GB"
        )

        lengths = [(f"utt{i:06d}", 1024) for i in range(rows // 1024)]
        plan = plan_parts(lengths, rows_per_shard=ROWS_PER_SHARD, part_rows=PART_ROWS, chunk_rows=CHUNK_ROWS)
        assert plan.total_rows == rows
        lake = Lake.create(str(base / "lake"))
        # The rows of the tables are made before the clock starts: building Python lists of
        # strings is this script's cost, not the store's; encoding and writing them is timed.
        tables = {unit.part_id: part_tables(unit) for unit in plan.parts}

        def write_raw() -> float:
            raw_dir = base / "raw"
            shutil.rmtree(raw_dir, ignore_errors=True)
            raw_dir.mkdir()
            os.sync()
            t0 = time.perf_counter()
            for layer in range(len(layers)):
                for s in range(n_shards):
                    np.save(raw_dir / f"l{layer}_s{s}.npy", block_for(pool, layer, s))
            os.sync()
            return time.perf_counter() - t0

        def write_store() -> float:
            shutil.rmtree(base / "lake" / "runs" / "bench", ignore_errors=True)
            os.sync()
            t0 = time.perf_counter()
            run = lake.create_run(
                "bench",
                model={"spec": "bench"},
                corpus={"spec": "bench"},
                layers=layers,
                plan=plan,
                zstd_level=args.zstd_level,
                codec=args.codec,
            )
            for unit in plan.parts:
                writer = run.part_writer(unit.part_id)
                for li, layer in enumerate(layers):
                    for s in range(unit.row_start // ROWS_PER_SHARD, unit.row_stop // ROWS_PER_SHARD):
                        writer.append(layer.name, block_for(pool, li, s))
                utterances, frames = tables[unit.part_id]
                writer.write_table("utterances", utterances)
                writer.write_table("frames", frames)
                writer.commit()
            os.sync()
            return time.perf_counter() - t0

        # Alternate the two, several times: the page cache of a virtual disk makes single
        # raw timings swing by 2x; medians of interleaved runs compare like with like.
        raw_times, store_times = [], []
        for _ in range(args.repeats):
            raw_times.append(write_raw())
            store_times.append(write_store())
        raw_s, store_s = float(np.median(raw_times)), float(np.median(store_times))
        stored = dir_bytes(base / "lake" / "runs" / "bench" / "activations.zarr")

        raw_mbs = total_bytes / raw_s / 1e6
        store_mbs = total_bytes / store_s / 1e6
        print(
            f"write  raw .npy : median {raw_s:6.2f} s  {raw_mbs:8.1f} MB/s   (runs: {', '.join(f'{total_bytes / t / 1e6:.0f}' for t in raw_times)} MB/s)"
        )
        print(
            f"write  store    : median {store_s:6.2f} s  {store_mbs:8.1f} MB/s   (runs: {', '.join(f'{total_bytes / t / 1e6:.0f}' for t in store_times)} MB/s; activations + tables + commits)"
        )
        print(f"write  ratio store/raw = {store_mbs / raw_mbs:.2f}   (target >= 0.5)")
        print(f"compression ratio = {total_bytes / stored:.2f}  ({total_bytes / 1e6:.0f} MB -> {stored / 1e6:.0f} MB)")

        # ---- gather 5 % of rows versus reading the same chunks whole
        run = lake.run("bench")
        rng = np.random.default_rng(1)
        ids = np.sort(rng.choice(run.committed_frame_ids(), size=rows // 20, replace=False))
        chunks = np.unique(ids // CHUNK_ROWS)
        t0 = time.perf_counter()
        for layer in layers:
            got = run.read_rows(layer.name, ids)
        gather_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for layer in layers:
            arr = run._array(layer.name)
            whole = (
                arr.get_orthogonal_selection(
                    (np.concatenate([np.arange(c * CHUNK_ROWS, (c + 1) * CHUNK_ROWS) for c in chunks]), slice(None))
                )
                if chunks.size < rows // CHUNK_ROWS
                else arr[:]
            )
        chunks_s = time.perf_counter() - t0
        li = len(layers) - 1
        shard_of = ids // ROWS_PER_SHARD
        expect = np.stack([block_for(pool, li, s)[r % ROWS_PER_SHARD] for s, r in zip(shard_of, ids, strict=False)])
        assert np.array_equal(got, expect), "gathered rows differ from what was written"
        assert whole.shape[1] == layers[-1].units
        print(
            f"gather 5% rows : {gather_s:7.2f} s for {ids.size} rows x {len(layers)} layers "
            f"({chunks.size}/{rows // CHUNK_ROWS} chunks touched)"
        )
        print(f"read same chunks whole: {chunks_s:7.2f} s")
        print(f"gather ratio chunks-whole/gather = {chunks_s / gather_s:.2f}   (target >= 0.5)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
