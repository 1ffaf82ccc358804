"""Read path: a layer read whole, a group gathered, neuron statistics streamed.

Builds one run of one wav2vec2-base-sized layer (768 units, float16, about 1 GB decoded) on
LibriSpeech-like utterance lengths, in the lake format as the lake writes it (chunks with
enough zeros in zero-mask form, the others zstd frames at level 1, or -1 for shards that
level 1 shrinks by under 10 %; ``--codec zstd``: zstd frames only; 256-row chunks in
4096-row shards), and the same bytes as raw ``.npy`` files. With the page cache warm
(every figure is the best of ``--repeats``), it prints in one run:

- **layer read**: ``Run.read_range`` (numpy) and ``Run.layer_dask`` (dask: its array's
  ``compute()``, and dask's own ``dask.compute`` of its graph) in GB/s of
  decoded float16, against raw ``.npy`` (target >= 0.8x), against Zarr's own read of the
  same array (the previous path), and against decoding the stored chunks alone (zstd or
  zero-mask) on one core times the cores (the ceiling of any reader of these bytes); target
  >= 1 GB/s on 2 cores; and dask's own cost: the same dask reads over the raw ``.npy``
  file (memory-mapped, one block per shard's rows), materialised and block by block; dask
  over the same blocks as ours read from the raw file into memory of their own (what
  materialising costs any source whose blocks are not views of the page cache); and dask
  over blocks of one shard each (the layout before blocks of several shards);
- **group gather**: a group of whole utterances holding 5 % of the frames (groups follow
  utterances, words and phonemes) versus reading the layer whole (target <= 0.2), and,
  for reference, a random 5 % of rows (every chunk touched); the same group through dask
  (``Run.layer_dask(frame_ids=)``);
- **shard encoding**: 48 shards encoded as the writer encodes them, on 1 and 2 threads, and
  where one encode's time goes: the chunks' encoding (zstd or zero-mask), the join of the shard's bytes and its CRC32C (C code
  that releases the interpreter lock) and the rest, Python code that holds it; that share
  bounds how far the writer's threads can scale on a machine with many cores (Amdahl);
- **streaming statistics**: ``neurolake neurons`` statistics of the layer (one pass:
  moments, extremes and quantile histograms) in GB/s against the layer read timed beside it
  (one after the other in each repeat; target >= 0.8), at the default (quantiles from an
  even sample of 65,536 frames), with every frame histogrammed and with 1 % histogrammed;
  and how far the default's quantiles are from every frame's;
- **slot sums** (the pass of NAPs, GradNAPs, separation and utterance-level probes:
  ``neurolake.introspect.naps.layer_sums``) against the layer read, likewise (target >= 0.8): 100
  groups, one slot per utterance, slots of 32 frames (more than fit a copy per thread),
  20,000 slots spread over the run, each the way ``layer_sums`` chooses (``private``: a copy
  per thread; ``shared``: one copy, slots cut by a read task summed apart; ``blocks``: blocks
  of rows split by slot; the block is kept for the next pass, and a process's first pass,
  whose block is fresh memory, is timed too), and some forced the other way to compare.

``--data dense`` is transformer-like output (every value non-zero, per-unit scales;
hardly compressible); ``--data relu`` half zeros with random mantissas. Both by default.

    python benchmarks/read_path.py [--data dense,relu] [--gb 1.0] [--repeats 3] [--codec zeromask|zstd] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zstandard
from store_throughput import part_tables

import neurolake.introspect.naps as naps_module
from neurolake.introspect.naps import Pairs, layer_sums
from neurolake.query.neurons import DEFAULT_QUANTILE_ROWS, layer_statistics
from neurolake.store import Lake, LayerSpec, plan_parts
from neurolake.store.reader import read_threads

UNITS = 768
ROWS_PER_SHARD = 4096
CHUNK_ROWS = 256


def utterance_lengths(total: int, seed: int) -> list[tuple[str, int]]:
    """LibriSpeech-like lengths at 50 frames/s (mean about 12 s, 1 s to 35 s)."""
    rng = np.random.default_rng(seed)
    out, used = [], 0
    while used < total:
        n = int(np.clip(rng.gamma(4.0, 155.0), 50, 1750))
        out.append((f"utt{len(out):07d}", n))
        used += n
    return out


def make_block(kind: str, rng: np.random.Generator, rows: int, scale: np.ndarray) -> np.ndarray:
    x = rng.standard_normal((rows, UNITS), dtype=np.float32) * scale
    if kind == "relu":
        x = np.maximum(x, 0)
    return x.astype(np.float16)


def build(
    base: Path, kind: str, gb: float, zstd_level: int = 1, codec: str = "zeromask"
) -> tuple[Lake, list[tuple[str, int]]]:
    rows_wanted = int(gb * 1e9 / (UNITS * 2))
    lengths = utterance_lengths(rows_wanted, seed=1)
    plan = plan_parts(lengths, rows_per_shard=ROWS_PER_SHARD, part_rows=65536, chunk_rows=CHUNK_ROWS)
    lake = Lake.create(str(base / "lake"))
    run = lake.create_run(
        "bench",
        model={"spec": "bench"},
        corpus={"spec": "bench"},
        layers=[LayerSpec("layer", UNITS)],
        plan=plan,
        zstd_level=zstd_level,
        codec=codec,
    )
    rng = np.random.default_rng(2)
    scale = rng.gamma(2.0, 0.5, UNITS).astype(np.float32)
    raw = np.lib.format.open_memmap(
        base / "layer.npy", mode="w+", dtype=np.float16, shape=(plan.parts[-1].used_stop, UNITS)
    )
    for part in plan.parts:
        writer = run.part_writer(part.part_id)
        block = make_block(kind, rng, part.rows_used, scale)
        writer.append("layer", block)
        raw[part.row_start : part.used_stop] = block
        utterances, frames = part_tables(part)  # plausible table rows: reads do not look at them
        writer.write_table("utterances", utterances)
        writer.write_table("frames", frames)
        writer.commit()
    raw.flush()
    del raw
    return lake, lengths


@contextlib.contextmanager
def forced_summing(how: str | None):
    """Slot sums made one way (``"shared"`` or ``"blocks"``) whatever their size; None: the
    way :func:`neurolake.introspect.naps.layer_sums` chooses."""
    saved = naps_module._PRIVATE_SUMS_BYTES, naps_module._SHARED_LOCAL_SHARE
    if how is not None:
        naps_module._PRIVATE_SUMS_BYTES = 0
        naps_module._SHARED_LOCAL_SHARE = np.inf if how == "shared" else -1.0
    try:
        yield
    finally:
        naps_module._PRIVATE_SUMS_BYTES, naps_module._SHARED_LOCAL_SHARE = saved


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_beside(fn, baseline, repeats: int) -> tuple[float, float]:
    """The best times of ``fn`` and of ``baseline``, run one after the other ``repeats``
    times: their ratio compares them at the same moment, where this machine's speed drifts
    over a run."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for f, out in ((baseline, times[1]), (fn, times[0])):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


class NpyRows:
    """A raw ``.npy`` file as the array-like dask's ``from_array`` slices, each block's rows read
    from the file into fresh memory (as any reader that must make its blocks does), not
    memory-mapped."""

    ndim = 2

    def __init__(self, path: Path) -> None:
        header = np.load(path, mmap_mode="r")
        self.path, self.shape, self.dtype, self.offset = path, header.shape, header.dtype, header.offset

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        start, stop, _ = key[0].indices(self.shape[0])
        row = self.shape[1] * self.dtype.itemsize
        rows = np.fromfile(self.path, self.dtype, (stop - start) * self.shape[1], offset=self.offset + start * row)
        return rows.reshape(-1, self.shape[1])[:, key[1]]


def decode_alone(run, repeats: int) -> float:
    """Seconds to decode every stored chunk of the layer on one core (bytes already in memory),
    each with its own decoder (zstd or zero-mask), into one chunk-sized buffer."""
    from neurolake.store import zeromask

    index_bytes = (ROWS_PER_SHARD // CHUNK_ROWS) * 16 + 4
    frames = []
    for shard in range(run.plan.total_rows // ROWS_PER_SHARD):
        data = run.cube_loc.read_bytes("layer", "c", str(shard), "0")
        index = np.frombuffer(data[-index_bytes:-4], "<u8").reshape(-1, 2)
        frames += [data[o : o + n] for o, n in index.tolist() if o != 2**64 - 1]
    d = zstandard.ZstdDecompressor()
    out = np.empty(CHUNK_ROWS * UNITS, np.float16)
    target = out.view(np.uint8).data

    def decode_all() -> None:
        for f in frames:
            if zeromask.is_zeromask(f):
                zeromask.decode_into(f, out)
            else:
                with d.stream_reader(f, read_size=len(f)) as r:
                    r.readinto(target)

    masks = sum(zeromask.is_zeromask(f) for f in frames)
    print(f"  stored chunks: {len(frames):,}, {masks:,} of them zero-mask")
    return best(decode_all, repeats)


def encoding(reference: np.ndarray, level: int, codec: str, repeats: int) -> list[float]:
    """GB/s of encoding 48 shards of ``reference`` as the writer does, on 1 and on 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from neurolake.store.cube import encode_shard

    blocks = [reference[i * ROWS_PER_SHARD : (i + 1) * ROWS_PER_SHARD] for i in range(48)]
    nbytes = sum(block.nbytes for block in blocks)

    def encode(block: np.ndarray) -> tuple[bytes, bytes]:
        return encode_shard(block, CHUNK_ROWS, level, codec)

    out = []
    for threads in (1, 2):
        with ThreadPoolExecutor(threads) as pool:
            seconds = best(lambda pool=pool: list(pool.map(encode, blocks)), repeats)
        out.append(nbytes / seconds / 1e9)
    return out


def encode_breakdown(reference: np.ndarray, level: int, codec: str, shards: int = 16) -> dict[str, float]:
    """Seconds per shard of ``encode_shard`` on a block seen for the first time (as the writer
    sees it), and, with the block in cache, of ``encode_shard`` again and of its C and numba
    calls (the chunks' encoding, one join of the shard's bytes, the CRC32C of the file): what
    that second encode spends beyond those is Python, run under the interpreter lock."""
    import google_crc32c

    from neurolake.store.cube import encode_chunks, encode_shard

    blocks = [np.ascontiguousarray(reference[i * ROWS_PER_SHARD : (i + 1) * ROWS_PER_SHARD]) for i in range(shards)]
    spent = {"encode": 0.0, "again": 0.0, "chunks": 0.0, "join": 0.0, "crc32c": 0.0}
    for block in blocks:
        for key in ("encode", "again"):
            t0 = time.perf_counter()
            encode_shard(block, CHUNK_ROWS, level, codec)
            spent[key] += time.perf_counter() - t0
        t0 = time.perf_counter()
        frames, index = encode_chunks(block, CHUNK_ROWS, level, codec)
        spent["chunks"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        joined = b"".join([*frames, index.tobytes(), bytes(4)])
        spent["join"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        google_crc32c.value(joined)
        spent["crc32c"] += time.perf_counter() - t0
    out = {k: v / shards for k, v in spent.items()}
    out["Python"] = max(0.0, out.pop("again") - out["chunks"] - out["join"] - out["crc32c"])
    return out


def measure(kind: str, args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="nl-read-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        lake, lengths = build(base, kind, args.gb, args.zstd_level, args.codec)
        run = lake.run("bench")
        n = run.plan.parts[-1].used_stop  # rows of the layer read (padding between parts included)
        nbytes = n * UNITS * 2
        stored = sum(p.stat().st_size for p in (base / "lake").rglob("*") if p.is_file() and "/c/" in str(p))
        print(
            f"\n{kind} ({args.codec}): {n:,} frames x {UNITS} units float16 = {nbytes / 1e9:.2f} GB "
            f"({nbytes / stored:.2f}x compressed), {len(lengths):,} utterances; built in {time.perf_counter() - t0:.0f} s; "
            f"{read_threads()} decoding threads"
        )
        reference = np.load(base / "layer.npy")
        got = run.read_range("layer", 0, n)
        assert np.array_equal(got, reference), "the layer read differs from what was written"
        del got

        def gbs(seconds: float, size: int = nbytes) -> float:
            return size / seconds / 1e9

        t_raw = best(lambda: np.load(base / "layer.npy"), args.repeats)
        t_numpy = best(lambda: run.read_range("layer", 0, n), args.repeats)
        # compute() of Run.layer_dask's array (np.asarray too) decodes into the result; dask's
        # own compute runs the graph, a block per task, and copies the blocks into the result.
        t_dask = best(lambda: run.layer_dask("layer")[:n].compute(), args.repeats)
        t_dask_graph = best(lambda: dask.compute(run.layer_dask("layer")[:n])[0], args.repeats)
        # Each block is let go once used, as a reduction does (a view of it would keep every
        # block's memory alive, and fresh pages for all of them cost as much as the read).
        blockwise = run.layer_dask("layer")[:n].map_blocks(lambda b: b[:1].copy(), chunks=(1, UNITS))
        t_blockwise = best(lambda: blockwise.compute(), args.repeats)
        # The layout before: one block per shard (what a block of several shards saves).
        with dask.config.set({"array.chunk-size": "1B"}):
            per_shard = run.layer_dask("layer")[:n]
        t_dask_shard = best(lambda: dask.compute(per_shard)[0], args.repeats)
        per_shard_blockwise = per_shard.map_blocks(lambda b: b[:1].copy(), chunks=(1, UNITS))
        t_blockwise_shard = best(lambda: per_shard_blockwise.compute(), args.repeats)
        # The same through dask over the raw .npy file (memory-mapped, one block per shard's
        # rows): what dask costs on the cheapest source there is.
        raw_dask = da.from_array(np.load(base / "layer.npy", mmap_mode="r"), chunks=(ROWS_PER_SHARD, UNITS))
        t_dask_raw = best(lambda: raw_dask.compute(), args.repeats)
        raw_blockwise = raw_dask.map_blocks(lambda b: b[:1].copy(), chunks=(1, UNITS))
        t_blockwise_raw = best(lambda: raw_blockwise.compute(), args.repeats)
        # And over blocks read from the raw file into memory of their own, as ours are: what
        # materialising costs any source whose blocks are not views of the page cache.
        read_dask = da.from_array(
            NpyRows(base / "layer.npy"), chunks=run.layer_dask("layer")[:n].chunks, asarray=False, fancy=False
        )
        assert np.array_equal(read_dask[:1000].compute(), reference[:1000])
        t_dask_read = best(lambda: read_dask.compute(), args.repeats)
        t_zarr = best(lambda: run._array("layer")[:n], 1)
        t_decode = decode_alone(run, args.repeats)
        print(f"  raw .npy                 : {gbs(t_raw):6.2f} GB/s")
        print(f"  zarr (previous path)     : {gbs(t_zarr):6.2f} GB/s")
        print(
            f"  decoding alone, one core : {gbs(t_decode):6.2f} GB/s  (x {read_threads()} cores = {gbs(t_decode) * read_threads():.2f})"
        )
        print(f"  layer read, numpy        : {gbs(t_numpy):6.2f} GB/s  (target >= 1.0)")
        print(f"  layer read, dask         : {gbs(t_dask):6.2f} GB/s  (its compute(): decoded into the result)")
        print(
            f"  layer read, dask's graph : {gbs(t_dask_graph):6.2f} GB/s  (dask.compute: blocks copied into one array; "
            f"dask over raw .npy {gbs(t_dask_raw):.2f})"
        )
        print(
            f"  layer read, dask blockwise: {gbs(t_blockwise):5.2f} GB/s  (each block read, as reductions use it; "
            f"dask over raw .npy {gbs(t_blockwise_raw):.2f})"
        )
        print(
            f"  ratios: numpy/raw {t_raw / t_numpy:.2f} (target >= 0.8)  dask/raw {t_raw / t_dask:.2f} (graph {t_raw / t_dask_graph:.2f})  "
            f"dask-blockwise/raw {t_raw / t_blockwise:.2f}  numpy/zarr {t_zarr / t_numpy:.2f}  numpy/(decoding x cores) {t_decode / read_threads() / t_numpy:.2f}"
        )
        print(
            f"  dask blocks: {run.layer_dask('layer').chunks[0][0] // ROWS_PER_SHARD} shards each; one shard each (as before): "
            f"materialised {gbs(t_dask_shard):.2f} GB/s, blockwise {gbs(t_blockwise_shard):.2f} GB/s"
        )
        print(
            f"  dask against dask over raw .npy (target >= 0.8): materialised {t_dask_raw / t_dask:.2f} "
            f"(graph {t_dask_raw / t_dask_graph:.2f}), blockwise {t_blockwise_raw / t_blockwise:.2f}; the graph materialised "
            f"against dask over the same blocks read from raw .npy into memory of their own ({gbs(t_dask_read):.2f} GB/s): "
            f"{t_dask_read / t_dask_graph:.2f}"
        )

        one, two = encoding(reference, args.zstd_level, args.codec, args.repeats)
        print(f"  shard encoding (48 shards): {one:.2f} GB/s on 1 thread, {two:.2f} on 2 (x{two / one:.2f})")
        parts = encode_breakdown(reference, args.zstd_level, args.codec)
        held = parts["Python"] / parts["encode"]
        print(
            "  one encode: "
            + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in parts.items())
            + f"; Python's share {held:.1%}: at most x{1 / (held + (1 - held) / 16):.1f} on 16 threads"
            " from the interpreter lock (memory bandwidth aside)"
        )

        # ---- gathers
        rng = np.random.default_rng(3)
        order = rng.permutation(len(lengths))
        firsts = {u.utterance_id: u.first_row for p in run.plan.parts for u in p.utterances}
        chosen, frames = [], 0
        for i in order:
            if frames >= n // 20:
                break
            uid, length = lengths[i]
            chosen.append(np.arange(firsts[uid], firsts[uid] + length))
            frames += length
        group = np.sort(np.concatenate(chosen))
        random = np.sort(rng.choice(run.committed_frame_ids(), n // 20, replace=False))
        assert np.array_equal(run.read_rows("layer", group), reference[group])
        t_group = best(lambda: run.read_rows("layer", group), args.repeats)
        t_random = best(lambda: run.read_rows("layer", random), args.repeats)
        touched = np.unique(group // CHUNK_ROWS).size / (run.plan.total_rows // CHUNK_ROWS)
        print(
            f"  gather {group.size:,} frames of {len(chosen):,} utterances (5 %, {touched:.1%} of chunks): "
            f"{t_group:.3f} s = {t_group / t_numpy:.3f} of the layer read (target <= 0.2)"
        )
        print(f"  gather a random 5 % of rows: {t_random:.3f} s = {t_random / t_numpy:.2f} of the layer read")
        lazy_group = run.layer_dask("layer", frame_ids=group)
        assert np.array_equal(lazy_group.compute(), reference[group])
        t_lazy_group = best(lambda: lazy_group.compute(), args.repeats)
        print(
            f"  the same 5 % group through dask (layer_dask(frame_ids=), {len(lazy_group.chunks[0])} blocks): "
            f"{t_lazy_group:.3f} s = {t_lazy_group / t_numpy:.3f} of the layer read"
        )

        # ---- streaming statistics
        commits = run.commits()
        layer_statistics(run, "layer", commits, quantile_rows=4096)  # compiles the kernels

        def read_layer() -> None:
            run.read_range("layer", 0, n)

        sample = min(n, DEFAULT_QUANTILE_ROWS)
        for label, rows in (
            (f"default ({sample / n:.0%} of frames histogrammed)", DEFAULT_QUANTILE_ROWS),
            ("every frame histogrammed", 0),
            ("1 % of frames histogrammed", n // 100),
        ):
            t_stats, t_read = best_beside(
                lambda rows=rows: layer_statistics(run, "layer", commits, quantile_rows=rows), read_layer, args.repeats
            )
            print(
                f"  neuron statistics, {label:33s}: {gbs(t_stats):5.2f} GB/s = {t_read / t_stats:.2f} of the layer read"
                f" ({gbs(t_read):.2f} GB/s beside it; target >= 0.8)"
            )
        exact = layer_statistics(run, "layer", commits, quantile_rows=0)
        sampled = layer_statistics(run, "layer", commits)
        deviation = ", ".join(
            f"{q} {np.max(np.abs(sampled[q] - exact[q]) / np.maximum(exact['std'], 1e-12)):.3f}"
            for q in ("q50", "q90", "q99")
        )
        print(f"  default's quantiles against every frame's, largest difference in units' std: {deviation}")

        # ---- slot sums: the pass of NAPs, GradNAPs, separation and utterance-level probes
        ids = run.committed_frame_ids()
        starts = np.sort(np.fromiter(firsts.values(), dtype=np.int64))
        cases = [
            ("100 groups (frame id % 100)", ids % 100, None),
            (f"{starts.size:,} utterances", np.searchsorted(starts, ids, side="right") - 1, None),
            (f"{starts.size:,} utterances, shared sums", np.searchsorted(starts, ids, side="right") - 1, "shared"),
            (f"{-(-n // 32):,} slots of 32 frames", ids // 32, None),
            (f"{-(-n // 32):,} slots of 32 frames, blocks of rows", ids // 32, "blocks"),
            ("20,000 slots spread (frame id % 20000)", ids % 20000, None),
        ]
        for label, slots, force in cases:
            n_slots = int(slots.max()) + 1
            pairs = Pairs.of(ids, slots)
            with forced_summing(force):
                how = naps_module._summing(run, pairs, n_slots, UNITS * 8, UNITS * 2)[0]
                got = layer_sums(run, "layer", pairs, n_slots)
                t_sums, t_read = best_beside(
                    lambda pairs=pairs, n_slots=n_slots: layer_sums(run, "layer", pairs, n_slots),
                    read_layer,
                    args.repeats,
                )
            one = slots[slots.size // 2]  # a slot checked against numpy
            want = reference[ids[slots == one]].astype(np.float64).sum(axis=0)
            assert np.allclose(got[one], want, rtol=1e-9, atol=1e-6), f"slot sums differ from numpy ({label})"
            print(
                f"  slot sums, {label:42s} ({n_slots * UNITS * 8 / 2**20:5.0f} MB, {how:7s}): {t_read / t_sums:.2f} of the layer read"
                " (target >= 0.8)"
            )
            if how == "blocks":  # a process's first pass, without the block kept by the last one

                def first_pass(pairs=pairs, n_slots=n_slots) -> None:
                    naps_module._SCRATCH.release()
                    layer_sums(run, "layer", pairs, n_slots)

                with forced_summing(force):
                    t_first, t_read = best_beside(first_pass, read_layer, args.repeats)
                print(f"  {'':53s}the first pass of a process (its block fresh): {t_read / t_first:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="dense,relu", help="comma-separated: dense, relu (default both)")
    ap.add_argument("--gb", type=float, default=1.0, help="decoded size of the layer in GB (default 1.0)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each read; the best is kept")
    ap.add_argument("--zstd-level", type=int, default=1, help="zstd level of the lake (default 1; negative: faster)")
    ap.add_argument(
        "--codec", default="zeromask", choices=("zeromask", "zstd"), help="how chunks are stored (default: the lake's)"
    )
    ap.add_argument("--dir", default=None, help="directory for the lake (default: a temp dir)")
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    for kind in args.data.split(","):
        if kind not in ("dense", "relu"):
            raise SystemExit(f"unknown --data {kind!r}: give dense, relu or both, comma-separated")
        measure(kind, args)


if __name__ == "__main__":
    main()
