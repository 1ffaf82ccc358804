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
    phones_source: str = "sidecar"  # "alignments" when the phones come from a forced aligner's TextGrid
    words: tuple | None = None  # the same source's word intervals (a model that transcribes places words by them)


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
        phones = words = None
        if utt.phones_uri:
            try:
                if is_textgrid(utt.phones_uri):
                    found = read_textgrid_alignment(utt.phones_uri, utt.utterance_id, storage_options=storage_options)
                    alignment = found if found.phones else None
                else:
                    if utt.phones_uri not in sidecars:
                        sidecars[utt.phones_uri] = read_alignments(utt.phones_uri, storage_options=storage_options)
                    alignment = sidecars[utt.phones_uri].get(utt.utterance_id)
                phones = alignment.phones if alignment is not None else None
                words = alignment.words if alignment is not None and alignment.words else None
            except (InputError, OSError) as exc:
                log.warning("phone timings of %s unreadable (%s); using the lexicon", utt.utterance_id, exc)
        source = "alignments" if utt.phones_uri and is_textgrid(utt.phones_uri) else "sidecar"
        out.append(Decoded(utt.utterance_id, audio, phones, phones_source=source, words=words))
    return out
