"""Corpus records: utterances, corpus errors, timed intervals, and the URL helpers readers share.

Every location is a URL handled through fsspec (a local path is a URL too), so the same reader serves
a directory on disk and a prefix in a bucket. Records hold plain URLs and no credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from neurolake.errors import SpecError

logger = logging.getLogger(__name__)

#: Audio file extensions recognised in a LibriSpeech tree, in order of preference
#: when one utterance has several (a tree converted to WAV next to the FLAC).
AUDIO_EXTENSIONS: tuple[str, ...] = (".flac", ".wav", ".ogg", ".mp3")

#: Manifest file suffixes that :func:`open_corpus` dispatches to :func:`read_manifest`.
MANIFEST_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")


@dataclass(frozen=True)
class Utterance:
    """One transcribed recording of a corpus.

    Attributes:
        utterance_id: unique within the corpus, e.g. ``"1089-134686-0000"``.
        speaker_id: the speaker, or ``None`` where the corpus does not say.
        chapter_id: the chapter (LibriSpeech) or ``None``.
        audio_uri: URL of the audio file (a plain path for local files).
        transcript: reference text, whitespace collapsed to single spaces.
        split: the split directory it came from (``"train-clean-100"``), or ``None``.
        phones_uri: URL of a sidecar with ground-truth phone and word timings
            (format in the module docstring), or ``None``.
        extra: further fields a manifest carried (``duration``, ``gender``, ...).
        alignment: ground-truth phone and word timings the corpus carries inline (a lhotse
            supervision's ``alignment``), seconds from the start of the audio file, or ``None``.
            Used before ``phones_uri``; the frames then say ``phoneme_source = "lhotse"``.
    """

    utterance_id: str
    speaker_id: str | None
    chapter_id: str | None
    audio_uri: str
    transcript: str
    split: str | None = None
    phones_uri: str | None = None
    # Out of the hash (a dict is unhashable) so that records can key sets and dicts.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    alignment: Alignment | None = field(default=None, hash=False)


@dataclass(frozen=True)
class CorpusError:
    """An item of a corpus that could not be read; the rest of the corpus is unaffected.

    Attributes:
        source_uri: the file holding the problem (a transcript, a manifest).
        message: what is wrong and what to do about it.
        utterance_id: the utterance concerned, where it could be told.
        audio_uri: the audio file concerned, where known.
        line: 1-based line (or row) number in ``source_uri``, where it applies.
    """

    source_uri: str
    message: str
    utterance_id: str | None = None
    audio_uri: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Corpus:
    """What a corpus reader returns.

    Attributes:
        source: the URL that was read.
        utterances: readable utterances, in a deterministic order (split, speaker,
            chapter, then transcript order; manifest row order for manifests).
        errors: one record per unreadable item.
        untranscribed_audio: audio files with no transcript line; skipped, because
            an utterance without a reference cannot be labelled.
        format: the reader that read it: ``"librispeech"`` (whose audio is 16 kHz, so another
            rate is a damaged file), ``"manifest"``, ``"lhotse"`` or ``"hf-datasets"`` (any rate,
            resampled when decoded).
    """

    source: str
    utterances: tuple[Utterance, ...]
    errors: tuple[CorpusError, ...] = ()
    untranscribed_audio: tuple[str, ...] = ()
    format: str = "manifest"

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)


@dataclass(frozen=True)
class Interval:
    """A labelled time span of an utterance, ``[start_s, end_s)`` in seconds."""

    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True)
class Alignment:
    """Ground-truth timings of one utterance: phones and words, in time order."""

    utterance_id: str
    phones: tuple[Interval, ...]
    words: tuple[Interval, ...]


# --------------------------------------------------------------------------- URLs


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL of ``path`` on ``fs``: a plain path for local files, ``proto://path`` otherwise."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols or "local" in protocols:
        return path
    return fs.unstrip_protocol(path)


def open_url(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the path on it; :class:`SpecError` for an unusable URL."""
    try:
        return url_to_fs(url, **dict(storage_options or {}))
    except (ValueError, ImportError) as exc:
        # fsspec says "Protocol not known" or names a missing optional package.
        raise SpecError(f"cannot open {url!r}: {exc}") from exc
