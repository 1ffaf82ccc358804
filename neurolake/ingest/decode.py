"""Decoding a part's audio: the CPU tasks that feed the model actors.

Kept apart from :mod:`neurolake.ingest.part` so that a decoding worker imports
soundfile and numpy only, not torch (which costs a Ray worker ~1.5 s of CPU to start).
"""

from __future__ import annotations

import logging
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
    stage: str = "decode"  # where ``error`` arose: decoding, or the model (found by bisection)
    # Where ``phones`` come from: "sidecar" (the corpus's phones.jsonl), "alignments" (a forced
    # aligner's TextGrid, --alignments) or "lhotse" (the supervision's alignment in a lhotse manifest).
    phones_source: str = "sidecar"


def decode_part(
    utterances: Sequence[Utterance], sample_rate: int, storage_options: Mapping[str, Any] | None = None
) -> list[Decoded]:
    """Decode every utterance of a part (and read its ground-truth phones where the corpus has them)."""
    sidecars: dict[str, dict] = {}
    out = []
    for utt in utterances:
        try:
            audio = load_audio(utt.audio_uri, sample_rate, storage_options=storage_options)
        except InputError as exc:
            out.append(Decoded(utt.utterance_id, None, None, str(exc)))
            continue
        phones, source = None, "sidecar"
        if utt.phones_uri and is_textgrid(utt.phones_uri):
            # --alignments: the user named these TextGrids for this ingest; they win.
            source = "alignments"
            try:
                found = read_textgrid_alignment(utt.phones_uri, utt.utterance_id, storage_options=storage_options)
                phones = found.phones or None
            except (InputError, OSError) as exc:
                log.warning("phone timings of %s unreadable (%s); using the lexicon", utt.utterance_id, exc)
        elif utt.alignment is not None:
            phones, source = utt.alignment.phones or None, "lhotse"
        elif utt.phones_uri:
            try:
                if utt.phones_uri not in sidecars:
                    sidecars[utt.phones_uri] = read_alignments(utt.phones_uri, storage_options=storage_options)
                alignment = sidecars[utt.phones_uri].get(utt.utterance_id)
                phones = alignment.phones if alignment is not None else None
            except (InputError, OSError) as exc:
                log.warning("phone timings of %s unreadable (%s); using the lexicon", utt.utterance_id, exc)
        out.append(Decoded(utt.utterance_id, audio, phones, phones_source=source))
    return out
