"""Processing one part: decode, forward with capture, labels, write, commit.

Plain code without Ray: :mod:`neurolake.ingest.pipeline` runs :func:`decode_part` as
CPU tasks and :class:`PartProcessor` inside model actors (built once per actor, then a
pure transformation per part), but both also run in-process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from neurolake.corpora import Utterance
from neurolake.corpora.audio import SAMPLE_RATE
from neurolake.errors import NeurolakeError
from neurolake.ingest.decode import Decoded
from neurolake.ingest.planning import error_row
from neurolake.labels.frames import frames_table_of, label_transcribed, label_utterance
from neurolake.models import ModelAdapter, load_model
from neurolake.store import Lake, Location, Part
from neurolake.store.lease import LeaseToken

#: Ground-truth sources whose word timings replace the CTC alignment's words: a forced aligner's
#: TextGrids (``--alignments``) and the alignments of a lhotse manifest's supervisions.
ALIGNER_SOURCES = ("alignments", "lhotse")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartResult:
    part_id: str
    utterances_done: int
    utterances_failed: int
    audio_seconds: float
    frames: int
    bytes_raw: int
    seconds: float
    forward_seconds: float = 0.0  # inside the model's forward (with capture)
    padded_samples: int = 0  # audio samples the model ran on, padding included


MAX_PADDING = 0.05


def length_batches(
    lengths: Sequence[int], max_batch: int, max_batch_samples: int, max_padding: float = MAX_PADDING
) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length, shortest first.

    A batch ends at ``max_batch`` items, at ``max_batch_samples`` padded samples, or where
    the next (longer) item would make more than ``max_padding`` of the batch padding. The
    pipeline sorts only a part's own utterances: when parts held corpus order, a large model's
    part had few utterances and without the last rule its batches were 31 % padding
    (wav2vec2-base, synthetic speech, 3,500-frame parts), all of it computed by the model.
    The planner now orders utterances by length, so the rule mostly cuts at part edges;
    smaller batches cost a CPU little (the demo model runs batches of 4, 8 and 16 at 33-37 k
    frames/s).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        longest = lengths[i]
        n = len(current) + 1
        if current and (
            n > max_batch
            or longest * n > max_batch_samples
            or longest * n - (total + longest) > max_padding * longest * n
        ):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += longest
    if current:
        batches.append(current)
    return batches


def _pad(items: Sequence[Decoded]) -> tuple[np.ndarray, list[int]]:
    """A zero-padded batch ``[B, samples]`` and the lengths. Padded in numpy: the decoded
    arrays may be read-only views of Ray's object store."""
    lengths = [d.audio.shape[0] for d in items]
    padded = np.zeros((len(items), max(lengths)), np.float32)
    for row, d in enumerate(items):
        padded[row, : lengths[row]] = d.audio
    return padded, lengths


class PartProcessor:
    """Holds a model (built once) and writes whole parts of one run."""

    def __init__(
        self,
        lake: Location,
        run_id: str,
        model_spec: str,
        layers: Sequence[str],
        device: str = "cpu",
        max_batch: int = 16,
        max_batch_samples: int = SAMPLE_RATE * 160,
        adapter: ModelAdapter | None = None,
    ):
        self.run = Lake.open(lake).run(run_id)
        self.adapter: ModelAdapter = adapter if adapter is not None else load_model(model_spec, device=device)
        self.layers = list(layers)
        self.max_batch = max_batch
        self.max_batch_samples = max_batch_samples
        self.device = device
        self._forward_lock = threading.Lock()
        # The lake stores float16: converting in torch is ~15x cheaper than numpy's astype.
        stored = {spec.dtype for spec in self.run.layers if spec.name in self.layers}
        self._capture_dtype = torch.float16 if stored == {"float16"} else torch.float32
        expected = self.run.manifest["model"].get("weights_sha256")
        if expected and expected != self.adapter.spec.get("weights_sha256"):
            raise NeurolakeError(
                f"model {model_spec!r} has other weights than run {run_id!r} was created with; use a new run id"
            )

    def _batches(self, decoded: list[Decoded]) -> list[list[int]]:
        """Indices of decoded utterances grouped by similar length (see :func:`length_batches`)."""
        ok = [i for i, d in enumerate(decoded) if d.audio is not None]
        groups = length_batches([decoded[i].audio.shape[0] for i in ok], self.max_batch, self.max_batch_samples)
        return [[ok[j] for j in group] for group in groups]

    def probe(self, decoded: list[Decoded]) -> None:
        """Run the model on these utterances and write nothing; raises what the model raises.

        The pipeline probes the utterances of a part that keeps failing one by one, to find
        the utterances the model cannot take."""
        for batch in self._batches(decoded):
            items = [decoded[i] for i in batch]
            padded, lengths = _pad(items)
            with self._forward_lock:
                self.adapter.forward(
                    torch.from_numpy(padded).to(self.device),
                    torch.tensor(lengths),
                    self.layers,
                    capture_dtype=self._capture_dtype,
                )

    def _relevance(self, audio: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """Relevance of ``layers`` for one utterance, as :meth:`ModelAdapter.relevance` gives it for
        the tokens the model predicts (one forward, one backward pass per frame)."""
        with self._forward_lock:
            _, found = self.adapter.relevances(torch.from_numpy(np.asarray(audio)).to(self.device), layers)
        return {layer: values.numpy().astype(np.float32) for layer, values in found.items()}

    def process(
        self,
        part: Part,
        utterances: Sequence[Utterance],
        decoded: list[Decoded],
        extra_errors: Sequence[dict] = (),
        lease: LeaseToken | None = None,
        exclude: Mapping[str, str] | None = None,
    ) -> PartResult:
        """Forward, label and write ``part``, then commit it (only while ``lease`` holds).

        ``exclude`` maps utterances the model failed on (found by the pipeline's probes) to
        the reason: they become ``errors`` rows of stage ``model`` and the rest is ingested."""
        t0 = time.perf_counter()
        if exclude:
            decoded = [
                Decoded(d.utterance_id, None, None, exclude[d.utterance_id], stage="model")
                if d.utterance_id in exclude
                else d
                for d in decoded
            ]
        by_id = {u.utterance_id: u for u in utterances}
        planned = {p.utterance_id: p for p in part.utterances}
        tokens = self.adapter.tokens
        errors = list(extra_errors)
        acts: dict[str, dict[str, np.ndarray]] = {}  # utterance -> layer -> [frames, units]
        relevance: dict[str, dict[str, np.ndarray]] = {}  # likewise, for the run's relevance layers
        relevance_layers = [spec.name for spec in self.run.relevance_layers]
        utt_rows, frame_labels = {}, {}
        forward_s, padded_samples = 0.0, 0
        for d in decoded:
            if d.error is not None:
                errors.append(error_row(d.utterance_id, by_id[d.utterance_id].audio_uri, d.stage, d.error))
        for batch in self._batches(decoded):
            items = [decoded[i] for i in batch]
            padded, lengths = _pad(items)
            wave = torch.from_numpy(padded)
            # One forward at a time: capture hooks live on the shared module during a call.
            # Labels and writes of another part run meanwhile (the actor takes two at once).
            with self._forward_lock:
                t_forward = time.perf_counter()
                out = self.adapter.forward(
                    wave.to(self.device), torch.tensor(lengths), self.layers, capture_dtype=self._capture_dtype
                )
                forward_s += time.perf_counter() - t_forward
            padded_samples += padded.size
            log_probs = out.log_probs.cpu().numpy()
            captured = {name: t.cpu().numpy() for name, t in out.captured.items()}
            for row, d in enumerate(items):
                n = int(out.frame_lengths[row])
                p = planned[d.utterance_id]
                utt = by_id[d.utterance_id]
                if n != p.n_frames:
                    errors.append(
                        error_row(
                            d.utterance_id,
                            utt.audio_uri,
                            "decode",
                            f"{utt.audio_uri}: decoded audio gives {n} frames, its header {p.n_frames}",
                        )
                    )
                    continue
                acts[d.utterance_id] = {name: captured[name][row, :n] for name in self.layers}
                if relevance_layers:
                    relevance[d.utterance_id] = self._relevance(d.audio, relevance_layers)
                try:
                    if out.hypotheses is not None:  # a model that transcribes (Whisper): no frame posteriors
                        labels = label_transcribed(
                            n,
                            utt.transcript,
                            out.hypotheses[row],
                            frame_shift_s=self.adapter.frame_shift_s,
                            phone_intervals=d.phones,
                            word_intervals=d.words,
                            utterance_id=d.utterance_id,
                            first_frame_id=p.first_row,
                            phone_source=d.phones_source,
                        )
                    else:
                        labels = label_utterance(
                            log_probs[row, :n],
                            tokens,
                            utt.transcript,
                            frame_shift_s=self.adapter.frame_shift_s,
                            phone_intervals=d.phones,
                            # A forced aligner's words (TextGrids, lhotse alignments) are the frames'
                            # words; the synthetic corpus's sidecar gives phones, words stay the model's.
                            word_intervals=d.words if d.phones_source in ALIGNER_SOURCES else None,
                            utterance_id=d.utterance_id,
                            first_frame_id=p.first_row,
                            phone_source=d.phones_source,
                        )
                except NeurolakeError as exc:
                    errors.append(error_row(d.utterance_id, utt.audio_uri, "labels", str(exc)))
                    continue
                urow = dict(labels.utterance)
                urow.update(
                    speaker_id=utt.speaker_id,
                    chapter_id=utt.chapter_id,
                    audio_uri=utt.audio_uri,
                    duration_s=d.audio.shape[0] / self.adapter.sample_rate,
                )
                utt_rows[d.utterance_id] = urow
                frame_labels[d.utterance_id] = labels

        writer = self.run.part_writer(part.part_id)
        spec_by_name = {layer.name: layer for layer in self.run.layers}
        for name in self.layers:
            units = spec_by_name[name].units
            for p in part.utterances:
                block = acts.get(p.utterance_id, {}).get(name)
                writer.append(name, block if block is not None else np.zeros((p.n_frames, units), np.float16))
        for spec in self.run.relevance_layers:
            for p in part.utterances:
                block = relevance.get(p.utterance_id, {}).get(spec.name)
                writer.append_relevance(
                    spec.name, block if block is not None else np.zeros((p.n_frames, spec.units), np.float32)
                )
        order = [p.utterance_id for p in part.utterances if p.utterance_id in utt_rows]
        writer.write_table("utterances", pa.Table.from_pylist([utt_rows[u] for u in order]) if order else {})
        writer.write_table("frames", frames_table_of([frame_labels[u] for u in order]) if order else {})
        writer.write_table("errors", pa.Table.from_pylist(errors) if errors else {})
        writer.commit(lease)
        failed = len({e["utterance_id"] for e in errors if e["utterance_id"] in planned})
        return PartResult(
            part_id=part.part_id,
            utterances_done=len(order),
            utterances_failed=failed,
            audio_seconds=sum(d.audio.shape[0] for d in decoded if d.audio is not None) / self.adapter.sample_rate,
            frames=part.rows_used,
            bytes_raw=part.rows_used * sum(spec_by_name[n].units * 2 for n in self.layers),
            seconds=time.perf_counter() - t0,
            forward_seconds=forward_s,
            padded_samples=padded_samples,
        )
