"""Tests of the introspection tools on models with planted faults."""

from __future__ import annotations

from pathlib import Path

from neurolake.store import Lake


def synthetic_lake(root: Path, n_utterances: int, runs: dict[str, str], layers: list[str]) -> Lake:
    """``n_utterances`` synthetic utterances (seed 5, all one split) ingested once per
    ``run_id -> model spec`` into ``root/lake``, on a local Ray shut down afterwards."""
    import ray

    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.ingest.pipeline import ingest

    synthesize_corpus(str(root / "c"), n_utterances=n_utterances, seed=5, holdout_accent=None, test_fraction=0.0)
    if ray.is_initialized():
        ray.shutdown()
    for run_id, model in runs.items():
        ingest(str(root / "lake"), str(root / "c" / "train"), model, layers=layers, run_id=run_id, progress=False)
    ray.shutdown()
    return Lake.open(str(root / "lake"))
