"""Ingest planning: from a corpus and a model to the row space of a run, headers only.

Every utterance's sample count comes from its audio header (no decoding), its exact
output-frame count from the model adapter, and the store's planner packs the utterances,
shortest first, into parts. Items that cannot be planned (unreadable header, wrong sample rate,
too short for one frame, a broken transcript line) become ``errors`` rows.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from neurolake.corpora import Corpus, Utterance, open_corpus
from neurolake.corpora.audio import SAMPLE_RATE, audio_info
from neurolake.errors import InputError, SpecError
from neurolake.ingest import DEFAULT_MAX_DURATION_S
from neurolake.models import ModelAdapter
from neurolake.store import LayerSpec, Plan, plan_parts
from neurolake.store.plan import DEFAULT_ROWS_PER_SHARD

log = logging.getLogger(__name__)

# A part's activations are held by one worker while it runs, and its utterances are batched
# only among themselves. ~256 MB keeps the first small beside a model (two parts per actor)
# and leaves a large model enough utterances to fill its batches (wav2vec2-base stores 18 KB
# per frame; a 64 MB part held ~30 short utterances); the number of files (one Parquet file
# per table and part) stays modest.
TARGET_PART_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PlannedCorpus:
    """What an ingest will do: the plan, the utterances in it, and what was left out."""

    corpus_spec: str
    plan: Plan
    layers: list[LayerSpec]
    utterances: dict[str, Utterance]
    num_samples: dict[str, int]  # at the model's rate
    errors: list[dict] = field(default_factory=list)
    skipped: int = 0  # audio without a transcript line
    alignments: str | None = None  # a forced aligner's TextGrids (--alignments)
    aligned: int = 0  # utterances planned that have one

    @property
    def audio_seconds(self) -> float:
        return sum(self.num_samples.values()) / SAMPLE_RATE

    def bytes_per_layer(self) -> dict[str, int]:
        """Uncompressed bytes of each layer's array (rows of the plan x units x itemsize)."""
        import numpy as np

        return {
            layer.name: self.plan.total_rows * layer.units * np.dtype(layer.dtype).itemsize for layer in self.layers
        }

    def corpus_manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "spec": self.corpus_spec,
            "n_utterances": self.plan.n_utterances,
            "seconds": round(self.audio_seconds, 3),
            "n_errors": len(self.errors),
        }
        if self.alignments is not None:
            manifest["alignments"] = self.alignments
        return manifest


def error_row(utterance_id: str | None, audio_uri: str | None, stage: str, message: str) -> dict:
    return {"utterance_id": utterance_id or "", "audio_uri": audio_uri or "", "stage": stage, "message": message}


def part_rows_for(layers: Sequence[LayerSpec], rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> int:
    """Frames per part so that a part holds about :data:`TARGET_PART_BYTES` of activations."""
    import numpy as np

    row_bytes = max(1, sum(layer.units * np.dtype(layer.dtype).itemsize for layer in layers))
    return max(rows_per_shard, (TARGET_PART_BYTES // row_bytes) // rows_per_shard * rows_per_shard)


def plan_corpus(
    corpus_spec: str,
    adapter: ModelAdapter,
    layers: Sequence[LayerSpec],
    *,
    storage_options: Mapping[str, Any] | None = None,
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    part_rows: int | None = None,
    header_threads: int = 16,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    alignments: str | None = None,
) -> PlannedCorpus:
    """Read the corpus and every audio header; return the plan of an ingest.

    Utterances longer than ``max_duration_s`` become ``errors`` rows (stage ``header``): one
    utterance is one forward pass, and a model's memory grows with its length. With
    ``alignments`` (a directory of Montreal Forced Aligner TextGrids, one per utterance named
    after it), an utterance that has one takes its phones and words from it instead of the
    lexicon (or the corpus's own timings)."""
    corpus: Corpus = open_corpus(corpus_spec, storage_options=storage_options)
    records = list(corpus.utterances)
    if alignments is not None:
        from dataclasses import replace

        from neurolake.corpora.sidecars import textgrid_index

        try:
            found = textgrid_index(alignments, storage_options=storage_options)
        except InputError as exc:
            raise SpecError(str(exc)) from exc
        records = [replace(u, phones_uri=found[u.utterance_id]) if u.utterance_id in found else u for u in records]
        missing = sum(1 for u in records if u.utterance_id not in found)
        if missing == len(records):
            raise SpecError(f"--alignments {alignments}: no TextGrid is named after an utterance of {corpus_spec}")
        if missing:
            log.warning(
                "%d utterances have no TextGrid under %s; they keep the corpus's own timings or the lexicon",
                missing,
                alignments,
            )
    errors = [
        # (a message that starts with its line or row number is not given it twice)
        error_row(
            e.utterance_id,
            e.audio_uri,
            "corpus",
            f"{e.source_uri}"
            + (f" line {e.line}" if e.line and not e.message.startswith(("line ", "row ")) else "")
            + f": {e.message}",
        )
        for e in corpus.errors
    ]
    if corpus.untranscribed_audio:
        log.warning("%d audio files have no transcript line and are skipped", len(corpus.untranscribed_audio))
    expected_rate = SAMPLE_RATE if corpus.format == "librispeech" else None

    def header(utt: Utterance):
        try:
            return utt, audio_info(utt.audio_uri, storage_options=storage_options), None
        except InputError as exc:
            return utt, None, str(exc)

    planned: list[tuple[str, int]] = []
    utterances: dict[str, Utterance] = {}
    num_samples: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(header_threads, (os.cpu_count() or 2) * 8))) as pool:
        for utt, info, problem in pool.map(header, records):
            if problem is not None:
                errors.append(error_row(utt.utterance_id, utt.audio_uri, "header", problem))
                continue
            if info.num_samples == 0:
                errors.append(
                    error_row(utt.utterance_id, utt.audio_uri, "header", f"{utt.audio_uri}: empty audio (0 samples)")
                )
                continue
            if expected_rate is not None and info.sample_rate != expected_rate:
                errors.append(
                    error_row(
                        utt.utterance_id,
                        utt.audio_uri,
                        "header",
                        f"{utt.audio_uri}: sample rate {info.sample_rate} Hz, but LibriSpeech audio is {expected_rate} Hz",
                    )
                )
                continue
            if info.duration_s > max_duration_s:
                errors.append(
                    error_row(
                        utt.utterance_id,
                        utt.audio_uri,
                        "header",
                        f"{utt.audio_uri}: {info.duration_s:.1f} s is longer than the {max_duration_s:g} s an utterance "
                        "may last (--max-duration); segment the recording, or raise the limit if memory allows",
                    )
                )
                continue
            samples = math.ceil(info.num_samples * adapter.sample_rate / info.sample_rate)
            if adapter.max_samples is not None and samples > adapter.max_samples:
                errors.append(
                    error_row(
                        utt.utterance_id,
                        utt.audio_uri,
                        "header",
                        f"{utt.audio_uri}: {info.duration_s:.1f} s is longer than the "
                        f"{adapter.max_samples / adapter.sample_rate:g} s the model takes at once; segment the recording",
                    )
                )
                continue
            frames = adapter.num_frames(samples)
            if frames < 1:
                errors.append(
                    error_row(
                        utt.utterance_id,
                        utt.audio_uri,
                        "header",
                        f"{utt.audio_uri}: {info.duration_s:.3f} s is too short for one output frame of the model",
                    )
                )
                continue
            planned.append((utt.utterance_id, frames))
            utterances[utt.utterance_id] = utt
            num_samples[utt.utterance_id] = samples
    if not planned:
        first = f"; first: {errors[0]['message']}" if errors else ""
        raise SpecError(f"no utterance of {corpus_spec} can be ingested ({len(errors)} errors{first})")
    # Shortest first (ties in corpus order): a part then holds utterances of about one
    # length, so its batches are full and carry almost no padding, which the model would
    # compute like audio. Row order is free: every row is found through its utterance.
    planned.sort(key=lambda item: item[1])
    plan = plan_parts(
        planned, rows_per_shard=rows_per_shard, part_rows=part_rows or part_rows_for(layers, rows_per_shard)
    )
    return PlannedCorpus(
        corpus_spec=str(corpus_spec),
        plan=plan,
        layers=list(layers),
        utterances=utterances,
        num_samples=num_samples,
        errors=errors,
        skipped=len(corpus.untranscribed_audio),
        alignments=alignments,
        aligned=sum(1 for u in utterances.values() if u.phones_uri and u.phones_uri.lower().endswith(".textgrid")),
    )
