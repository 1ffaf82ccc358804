"""Decoding a part's audio: the CPU tasks that feed the model actors.

Kept apart from :mod:`neurolake.ingest.part` so that a decoding worker imports
soundfile and numpy only, not torch (which costs a Ray worker ~1.5 s of CPU to start).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurolake.corpora import Utterance, read_alignments
from neurolake.corpora.audio import load_audio
from neurolake.corpora.sidecars import is_textgrid, read_textgrid_alignment
from neurolake.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """One utterance after decoding: the waveform ``[samples] float32`` or the reason it failed."""

    utterance_id: str
    audio: np.ndarray | None
    phones: tuple | None
    error: str | None = None
    stage: str = "decode"  # where ``error`` arose: decoding, or the model (found by probes)
    # Where ``phones`` come from: "sidecar" (the corpus's phones.jsonl), "alignments" (a forced
    # aligner's TextGrid, --alignments) or "lhotse" (the supervision's alignment in a lhotse manifest).
    phones_source: str = "sidecar"
    # The same source's word intervals: a model that transcribes (Whisper) places words by them.
    words: tuple | None = None


def _storage_order(uri: str) -> tuple:
    return tuple(int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", uri))


def decode_part(
    utterances: Sequence[Utterance], sample_rate: int, storage_options: Mapping[str, Any] | None = None
) -> list[Decoded]:
    """Decode every utterance of a part (and read its ground-truth phones where the corpus has them)."""
    sidecars: dict[str, dict] = {}
    audio_of: dict[str, np.ndarray | str] = {}
    # In storage order (numbers in URLs compared as numbers), not the part's shortest-first order:
    # the rows of a datasets shard are then read row group by row group, each group once.
    for utt in sorted(utterances, key=lambda u: _storage_order(u.audio_uri)):
        try:
            audio_of[utt.utterance_id] = load_audio(utt.audio_uri, sample_rate, storage_options=storage_options)
        except InputError as exc:
            audio_of[utt.utterance_id] = str(exc)
    out = []
    for utt in utterances:
        audio = audio_of[utt.utterance_id]
        if isinstance(audio, str):
            out.append(Decoded(utt.utterance_id, None, None, audio))
            continue
        phones, words, source = None, None, "sidecar"
        if utt.phones_uri and is_textgrid(utt.phones_uri):
            # --alignments: the user named these TextGrids for this ingest; they win.
            source = "alignments"
            try:
                found = read_textgrid_alignment(utt.phones_uri, utt.utterance_id, storage_options=storage_options)
                phones = found.phones or None
                words = found.words or None
            except (InputError, OSError) as exc:
                log.warning("phone timings of %s unreadable (%s); using the lexicon", utt.utterance_id, exc)
        elif utt.alignment is not None:
            phones, words, source = utt.alignment.phones or None, utt.alignment.words or None, "lhotse"
        elif utt.phones_uri:
            try:
                if utt.phones_uri not in sidecars:
                    sidecars[utt.phones_uri] = read_alignments(utt.phones_uri, storage_options=storage_options)
                alignment = sidecars[utt.phones_uri].get(utt.utterance_id)
                phones = alignment.phones if alignment is not None else None
                words = alignment.words if alignment is not None and alignment.words else None
            except (InputError, OSError) as exc:
                log.warning("phone timings of %s unreadable (%s); using the lexicon", utt.utterance_id, exc)
        out.append(Decoded(utt.utterance_id, audio, phones, phones_source=source, words=words))
    return out
