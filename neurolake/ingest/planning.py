"""Ingest planning: from a corpus and a model to the row space of a run, headers only.

Every utterance's sample count comes from its audio header (no decoding), its exact
output-frame count from the model adapter, and the store's planner packs the utterances,
shortest first, into parts. Items that cannot be planned (unreadable header, wrong sample rate,
too short for one frame, a broken transcript line) become ``errors`` rows.

Headers are read by a pool of threads (an object store's first-byte latency, not the CPU, bounds
one read), and for a large corpus by Ray tasks over batches of whole chapters, each with its own
threads (:func:`read_headers`). Either way the headers come back in corpus order, so the plan is
the same, byte for byte, however it was read.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from neurolake.corpora import Corpus, Utterance, open_corpus
from neurolake.corpora.audio import SAMPLE_RATE, AudioInfo, audio_info
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

#: Threads reading audio headers in one process (the driver, or each Ray task).
HEADER_THREADS = 32
#: A corpus of at least this many utterances has its headers read by Ray tasks (``workers=None``):
#: below it, starting Ray costs more than it saves.
RAY_PLANNING_MIN_UTTERANCES = 20_000
#: Utterances per Ray task (whole chapters, so at least one chapter): ~280 tasks for LibriSpeech
#: 960 h, enough to balance the cluster, few enough that scheduling costs nothing.
HEADER_BATCH_UTTERANCES = 1_000

#: One header read: the header, or why it cannot be read (the item's ``errors`` row).
Header = tuple[AudioInfo | None, str | None]


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
        """Uncompressed bytes of each layer's array (rows of the plan x units x itemsize): the
        frames and each shard's padding."""
        import numpy as np

        return {
            layer.name: self.plan.total_rows * layer.units * np.dtype(layer.dtype).itemsize for layer in self.layers
        }

    def activation_bytes(self) -> int:
        """Uncompressed bytes of the activations of every frame (frames x units x itemsize, all
        layers): what the ingest reports as written once every utterance is done."""
        import numpy as np

        return self.plan.n_frames * sum(layer.units * np.dtype(layer.dtype).itemsize for layer in self.layers)

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


def _located(spec: str) -> str:
    """A local corpus path made absolute, so that the run records a path that holds from any
    directory; URLs as given."""
    return spec if "://" in spec else os.path.abspath(os.path.expanduser(spec))


def plan_corpus(
    corpus_spec: str,
    adapter: ModelAdapter,
    layers: Sequence[LayerSpec],
    *,
    storage_options: Mapping[str, Any] | None = None,
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    part_rows: int | None = None,
    header_threads: int = HEADER_THREADS,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    alignments: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
) -> PlannedCorpus:
    """Read the corpus and every audio header; return the plan of an ingest.

    ``workers``: Ray tasks reading headers at once (each with ``header_threads`` threads), ``1``
    for threads in this process alone, ``None`` for Ray (as many tasks as the cluster has CPUs)
    when the corpus has at least :data:`RAY_PLANNING_MIN_UTTERANCES` utterances. The plan is the
    same either way. ``progress``: a bar of headers read (``None``: on a terminal).

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

    planned: list[tuple[str, int]] = []
    utterances: dict[str, Utterance] = {}
    num_samples: dict[str, int] = {}
    headers = _all_headers(records, storage_options, header_threads, workers, ray_address, progress)
    for utt, (info, problem) in zip(records, headers, strict=True):
        if problem is not None:
            errors.append(error_row(utt.utterance_id, utt.audio_uri, "header", problem))
            continue
        assert info is not None
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
        corpus_spec=_located(str(corpus_spec)),
        plan=plan,
        layers=list(layers),
        utterances=utterances,
        num_samples=num_samples,
        errors=errors,
        skipped=len(corpus.untranscribed_audio),
        alignments=alignments,
        aligned=sum(1 for u in utterances.values() if u.phones_uri and u.phones_uri.lower().endswith(".textgrid")),
    )


def read_headers(
    uris: Sequence[str], storage_options: Mapping[str, Any] | None, threads: int = HEADER_THREADS
) -> list[Header]:
    """The header of each audio file, in order, read by ``threads`` threads: ``(info, None)``, or
    ``(None, why)`` for a file that cannot be read (missing, empty, not audio, truncated).

    A plain function: the planner calls it in its own process and as a Ray task."""
    options = dict(storage_options or {})

    def header(uri: str) -> Header:
        try:
            return audio_info(uri, storage_options=options), None
        except InputError as exc:
            return None, str(exc)

    if threads <= 1 or len(uris) <= 1:
        return [header(uri) for uri in uris]
    with ThreadPoolExecutor(max_workers=min(threads, len(uris))) as pool:
        return list(pool.map(header, uris))


def chapter_batches(uris: Sequence[str], size: int = HEADER_BATCH_UTTERANCES) -> list[range]:
    """Consecutive ranges of ``uris`` that hold whole chapters (files of one directory next to each
    other), at least ``size`` files each but the last, or one chapter larger than that."""
    batches: list[range] = []
    start = 0
    for i in range(1, len(uris) + 1):
        if i == len(uris) or (i - start >= size and posixpath.dirname(uris[i]) != posixpath.dirname(uris[i - 1])):
            batches.append(range(start, i))
            start = i
    return batches


def _all_headers(
    records: Sequence[Utterance],
    storage_options: Mapping[str, Any] | None,
    threads: int,
    workers: int | None,
    ray_address: str | None,
    progress: bool | None,
) -> list[Header]:
    """Every record's header, in record order: in this process, or by Ray tasks over batches of
    whole chapters (see :func:`plan_corpus`)."""
    from neurolake.cluster.progress import progress_bar

    uris = [utt.audio_uri for utt in records]
    if workers is not None and workers < 1:
        raise SpecError(f"planning workers must be at least 1, got {workers}")
    threads = max(1, threads)
    use_ray = (workers or 0) > 1 or (workers is None and len(uris) >= RAY_PLANNING_MIN_UTTERANCES)
    bar = progress_bar(len(uris), "headers", unit="file", enabled=progress)
    try:
        if not use_ray:
            headers = []
            for batch in chapter_batches(uris, size=max(threads * 8, 64)):  # progress as batches finish
                headers.extend(read_headers([uris[i] for i in batch], storage_options, threads))
                bar.update(len(batch))
            return headers
        from neurolake.cluster.pool import cluster_cpus, task_map

        batches = chapter_batches(uris, HEADER_BATCH_UTTERANCES)
        options = dict(storage_options or {})

        def done(index: int, _: Any) -> None:
            bar.update(len(batches[index]))

        results = task_map(
            _read_batch,
            [([uris[i] for i in batch], options, threads) for batch in batches],
            workers=workers or cluster_cpus(ray_address),
            # No CPU reserved: the model actors of the ingest may hold every CPU already, and a
            # header read mostly waits on storage; ``workers`` bounds the tasks at once.
            num_cpus=0,
            spread=True,
            address=ray_address,
            on_result=done,
        )
        return [header for result in results for header in result]
    finally:
        bar.close()


def _read_batch(args: tuple[list[str], dict[str, Any], int]) -> list[Header]:
    return read_headers(*args)
