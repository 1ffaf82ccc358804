"""Speech corpora as typed, immutable records.

A corpus reader is one plain function that walks a tree or a table and returns a
:class:`Corpus`: the :class:`Utterance` records it could read and a
:class:`CorpusError` record for every item it could not. Readers never open the
audio (that is :mod:`neurolake.corpora.audio`'s job) and never crash on one bad
item: a real corpus has missing files and broken lines, and a run over it must
still process everything else.

Every location is a URL handled through fsspec (a local path is a URL too), so
the same reader serves a directory on disk and a prefix in a bucket. Readers
take ``storage_options`` (credentials, ``client_kwargs``) for the filesystem;
records hold plain URLs and no credentials.

Layouts and formats
-------------------
LibriSpeech: ``SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` with one
``SPEAKER-CHAPTER.trans.txt`` per chapter whose lines read ``UTTERANCE_ID TEXT``.
:func:`read_librispeech` accepts a split directory or the directory holding the
splits. A chapter may carry ground-truth timings in ``SPEAKER-CHAPTER.phones.jsonl``
(written by :mod:`neurolake.corpora.synth`), one JSON object per utterance::

    {"id": "1000-1-0000",
     "phones": [[0.012, 0.058, "ð"], [0.058, 0.107, "ə"], ...],
     "words": [[0.012, 0.107, "THE"], ...]}

Each interval is ``[start_s, end_s, label]`` in seconds from the start of the
audio file. Phone labels are IPA as espeak-ng emits them with the stress marks
(ˈ ˌ) removed; silences are the gaps between intervals, not labelled intervals.
Word labels are upper case like the transcripts.

Manifests: ``.jsonl``, ``.csv`` or ``.parquet`` with one row per utterance; see
:func:`read_manifest` for the accepted column names.

lhotse (:mod:`neurolake.corpora.lhotse_manifest`, :func:`read_lhotse`): a ``CutSet`` manifest, or
a ``RecordingSet`` and ``SupervisionSet`` pair (``<prefix>_recordings_<split>.jsonl.gz`` and
``<prefix>_supervisions_<split>.jsonl.gz``), or a directory holding them. One supervision that
spans its whole single-channel recording is one utterance; its ``alignment["phone"]`` and
``["word"]`` travel in :attr:`Utterance.alignment` and label the frames with
``phoneme_source = "lhotse"``. Segments of recordings, several channels and sources without a URL
are one :class:`CorpusError` each.

Hugging Face ``datasets`` (:mod:`neurolake.corpora.hf_datasets`, :func:`read_hf_dataset`): a
``save_to_disk`` directory (one ``Dataset`` or a ``DatasetDict``) or Parquet shards with an
``Audio`` column. A row's embedded audio has the URL ``SHARD#COLUMN=ROW``, which
:mod:`neurolake.corpora.audio` reads without reading the rest of the shard.

:func:`open_corpus` tells the formats apart (see there).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Any

from neurolake.corpora.hf_datasets import is_hf_dataset_directory, read_hf_dataset
from neurolake.corpora.lhotse_manifest import is_lhotse_directory, is_lhotse_file, read_lhotse
from neurolake.corpora.librispeech import parse_transcript_line, read_librispeech
from neurolake.corpora.manifest import read_manifest
from neurolake.corpora.records import (
    AUDIO_EXTENSIONS,
    MANIFEST_SUFFIXES,
    Alignment,
    Corpus,
    CorpusError,
    Interval,
    Utterance,
    open_url,
    url_of,
)
from neurolake.corpora.sidecars import read_alignments, read_phone_intervals
from neurolake.errors import SpecError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MANIFEST_SUFFIXES",
    "Alignment",
    "Corpus",
    "CorpusError",
    "Interval",
    "Utterance",
    "is_manifest",
    "open_corpus",
    "open_url",
    "parse_transcript_line",
    "read_alignments",
    "read_hf_dataset",
    "read_librispeech",
    "read_lhotse",
    "read_manifest",
    "read_phone_intervals",
    "url_of",
]

# ----------------------------------------------------------------------- dispatch


def is_manifest(spec: str | os.PathLike[str]) -> bool:
    """Whether a corpus spec names a manifest file (by its suffix) rather than a LibriSpeech tree."""
    return posixpath.splitext(os.fspath(spec).rstrip("/"))[1].lower() in MANIFEST_SUFFIXES


def open_corpus(spec: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read the corpus a user named: a LibriSpeech directory or URL, a manifest file, lhotse
    manifests, or a Hugging Face ``datasets`` audio dataset.

    - a ``.jsonl.gz`` file, a ``.jsonl`` file whose first line is a lhotse cut, recording or
      supervision, or a directory holding lhotse manifests at its top level: :func:`read_lhotse`;
    - another spec ending in ``.jsonl``, ``.csv`` or ``.parquet``: :func:`read_manifest`;
    - a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or holding
      Parquet shards (with an ``Audio`` column): :func:`read_hf_dataset`;
    - any other directory: :func:`read_librispeech`.

    Raises:
        SpecError: empty spec, unknown protocol, nothing at that location, or a
            file that is not a manifest.
    """
    spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(
            f"empty corpus spec; give a LibriSpeech directory or URL, or a manifest ({', '.join(MANIFEST_SUFFIXES)})"
        )
    fs, path = open_url(spec, storage_options)
    if is_lhotse_file(spec, storage_options=storage_options):
        return read_lhotse(spec, storage_options=storage_options)
    if is_manifest(path):
        return read_manifest(spec, storage_options=storage_options)
    if fs.isdir(path):
        if is_lhotse_directory(spec, storage_options=storage_options):
            return read_lhotse(spec, storage_options=storage_options)
        if is_hf_dataset_directory(spec, storage_options=storage_options):
            return read_hf_dataset(spec, storage_options=storage_options)
        return read_librispeech(spec, storage_options=storage_options)
    if fs.exists(path):
        raise SpecError(
            f"corpus {spec!r} is a file but not a manifest; give a LibriSpeech directory "
            f"or a manifest ending in {', '.join(MANIFEST_SUFFIXES)} (or a lhotse .jsonl.gz)"
        )
    raise SpecError(
        f"corpus {spec!r} not found; give a LibriSpeech directory or URL, or a manifest "
        f"({', '.join(MANIFEST_SUFFIXES)})"
    )
