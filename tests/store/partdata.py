"""Deterministic runs for store tests: every value is a known function of (layer, row, unit)."""

from __future__ import annotations

import numpy as np

from neurolake.store import Lake, LayerSpec, Run, plan_parts

LAYERS = [LayerSpec("enc.conv1", 24, module="enc.0"), LayerSpec("enc.conv2", 10, module="enc.2")]
ROWS_PER_SHARD = 256
CHUNK_ROWS = 64


def utterance_lengths(n: int = 30, seed: int = 7) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    return [(f"spk{i % 3}-ch1-{i:04d}", int(n_frames)) for i, n_frames in enumerate(rng.integers(40, 400, n))]


def expected_rows(layer_index: int, units: int, rows: np.ndarray) -> np.ndarray:
    """``[len(rows), units] float16``; exact in float16 (k / 64 with |k| <= 1024). Layer 1's
    values are after a ReLU (half of them zero), so its shards hold zero-mask chunks, while
    layer 0's dense values are stored as zstd frames."""
    rows = np.asarray(rows, dtype=np.int64)[:, None]
    cols = np.arange(units, dtype=np.int64)[None, :]
    k = (rows * 31 + cols * 7 + layer_index * 13) % 2049 - 1024
    if layer_index == 1:
        k = np.maximum(k, 0)
    return (k / 64.0).astype(np.float16)


def create_run(lake: Lake, run_id: str = "r1", n_utterances: int = 30, part_rows: int = 600) -> Run:
    plan = plan_parts(
        utterance_lengths(n_utterances), rows_per_shard=ROWS_PER_SHARD, part_rows=part_rows, chunk_rows=CHUNK_ROWS
    )
    return lake.create_run(
        run_id,
        model={"spec": "test-model", "sha256": "0" * 64, "tokens": ["-", " ", "A"], "frame_rate_hz": 50},
        corpus={"spec": "test-corpus", "n_utterances": n_utterances},
        layers=LAYERS,
        plan=plan,
    )


def part_tables(run: Run, part) -> tuple[dict, dict]:
    utts = part.utterances
    utterances = {
        "utterance_id": [u.utterance_id for u in utts],
        "speaker_id": [u.utterance_id.split("-")[0] for u in utts],
        "chapter_id": ["ch1"] * len(utts),
        "audio_uri": [f"audio/{u.utterance_id}.flac" for u in utts],
        "duration_s": [u.n_frames / 50.0 for u in utts],
        "n_frames": [u.n_frames for u in utts],
        "first_frame_id": [u.first_row for u in utts],
        "reference": ["A B"] * len(utts),
        "hypothesis": ["A"] * len(utts),
        "wer": [0.5] * len(utts),
        "cer": [1 / 3] * len(utts),
        "n_word_errors": [1] * len(utts),
    }
    frame_ids = np.arange(part.row_start, part.used_stop)
    owner = np.concatenate([[i] * u.n_frames for i, u in enumerate(utts)])
    index = np.concatenate([np.arange(u.n_frames) for u in utts])
    frames = {
        "frame_id": frame_ids,
        "utterance_id": [utts[i].utterance_id for i in owner],
        "frame_index": index,
        "start_s": index / 50.0,
        "end_s": (index + 1) / 50.0,
        "ref_token": np.where(index % 2 == 0, "A", "-").tolist(),
        "pred_token": np.where(index % 3 == 0, "A", "-").tolist(),
        "pred_prob": np.full(frame_ids.size, 0.5, np.float32),
        "phoneme": ["AH"] * frame_ids.size,
        "word": np.where(index % 5 == 0, None, "A").tolist(),
        "word_index": (index % 2).astype(np.int32),
        "word_error": index % 4 == 0,
        "token_error": index % 3 == 1,
    }
    return utterances, frames


def write_part(run: Run, part_id: str, commit: bool = True, block_rows: int = 100, lease=None) -> None:
    """Write a part in blocks of ``block_rows`` (not shard-sized, to exercise buffering)."""
    part = run.plan.part(part_id)
    writer = run.part_writer(part_id)
    rows = np.arange(part.row_start, part.used_stop)
    for li, layer in enumerate(run.layers):
        for lo in range(0, rows.size, block_rows):
            writer.append(layer.name, expected_rows(li, layer.units, rows[lo : lo + block_rows]))
    utterances, frames = part_tables(run, part)
    writer.write_table("utterances", utterances)
    writer.write_table("frames", frames)
    if commit:
        writer.commit(lease)
    else:
        writer.flush()


def write_units_in_process(url: str, storage_options: dict, run_id: str, part_ids: list[str]) -> list[str]:
    """Entry point for writer processes."""
    run = Lake.open(url, storage_options).run(run_id)
    for part_id in part_ids:
        write_part(run, part_id)
    return part_ids


def create_lake_and_run_in_process(url: str, storage_options: dict, start_at: float) -> dict:
    """Entry point for processes that create one lake and one run at the same moment."""
    import time

    time.sleep(max(0.0, start_at - time.time()))
    lake = Lake.create(url, storage_options)
    run = create_run(lake)
    return run.manifest


def create_group_in_process(url: str, name: str, predicate: str, replace: bool, start_at: float) -> str:
    """Entry point for processes that create one group name at the same moment; returns the outcome."""
    import time

    from neurolake.errors import GroupError
    from neurolake.query.groups import create_group

    lake = Lake.open(url)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        return "created " + create_group(lake, name, "r1", predicate, replace=replace).predicate
    except GroupError as exc:
        return "refused " + str(exc)


def take_lease_in_process(url: str, storage_options: dict, start_at: float) -> str:
    """Entry point for processes that take one run's lease at the same moment."""
    import time

    from neurolake.errors import RunBusyError
    from neurolake.store.lease import RunLease

    loc = Lake.open(url, storage_options).loc.child("runs", "r1")
    time.sleep(max(0.0, start_at - time.time()))
    lease = RunLease(loc)
    try:
        lease.acquire()
    except RunBusyError as exc:
        return "busy " + str(exc)
    time.sleep(2)  # hold it while the others try
    lease.release()
    return f"took epoch {lease.epoch}"
