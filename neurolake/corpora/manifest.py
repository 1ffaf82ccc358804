"""Manifests: ``.jsonl``, ``.csv`` or ``.parquet`` with one row per utterance (columns in :func:`read_manifest`)."""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Mapping
from typing import Any

import fsspec

from neurolake.corpora.records import (
    MANIFEST_SUFFIXES,
    Corpus,
    CorpusError,
    Utterance,
    open_url,
    url_of,
)
from neurolake.errors import SpecError

# Accepted manifest column names, most specific first.
_AUDIO_COLUMNS = ("audio_uri", "audio_path", "audio", "path")
_TEXT_COLUMNS = ("transcript", "text")
_SPEAKER_COLUMNS = ("speaker_id", "speaker")
_CHAPTER_COLUMNS = ("chapter_id", "chapter")
_ID_COLUMNS = ("utterance_id", "id")
_PHONES_COLUMNS = ("phones_uri",)

# ------------------------------------------------------------------------ manifests


def read_manifest(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read a manifest table (``.jsonl``, ``.csv`` or ``.parquet``), one row per utterance.

    Columns (the first name present wins; the rest of a row goes to ``extra``):

    - audio, required: ``audio_uri``, ``audio_path``, ``audio`` or ``path``. A URL
      (``s3://…``) or absolute path is used as is; a relative path is resolved
      against the manifest's directory.
    - transcript, required: ``transcript`` or ``text``.
    - ``utterance_id`` / ``id``: defaults to the audio file name without extension.
    - ``speaker_id`` / ``speaker``, ``chapter_id`` / ``chapter``, ``phones_uri``: optional.

    A row with an empty audio or transcript field, a repeated id, or (JSON Lines)
    a line that is not a JSON object becomes a :class:`CorpusError`.

    Raises:
        SpecError: unknown suffix, unreadable or undecodable file, or no audio or
            transcript column at all.
    """
    fs, path = open_url(url, storage_options)
    suffix = posixpath.splitext(path)[1].lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise SpecError(f"manifest {url!r} must end in one of {', '.join(MANIFEST_SUFFIXES)}")
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise SpecError(f"manifest {url!r} not found") from exc
    source = url_of(fs, path)
    errors: list[CorpusError] = []
    if suffix == ".jsonl":
        rows = _jsonl_rows(data, source, errors)
    elif suffix == ".csv":
        rows = _csv_rows(data, url)
    else:
        rows = _parquet_rows(data, url)

    columns = {key for _, row in rows for key in row}
    audio_column = _pick(_AUDIO_COLUMNS, columns)
    text_column = _pick(_TEXT_COLUMNS, columns)
    if rows and (audio_column is None or text_column is None):
        missing = (
            "an audio column (" + ", ".join(_AUDIO_COLUMNS) + ")"
            if audio_column is None
            else "a transcript column (" + ", ".join(_TEXT_COLUMNS) + ")"
        )
        raise SpecError(f"manifest {url!r} lacks {missing}; its columns are {sorted(columns)}")

    base = posixpath.dirname(path)
    utterances: list[Utterance] = []
    seen: set[str] = set()
    for number, row in rows:
        utterance = _manifest_utterance(fs, base, source, number, row, seen, errors)
        if utterance is not None:
            utterances.append(utterance)
    return Corpus(url, tuple(utterances), tuple(errors))


def _pick(names: tuple[str, ...], present: Mapping[str, Any] | set[str]) -> str | None:
    return next((name for name in names if name in present), None)


def _jsonl_rows(data: bytes, source: str, errors: list[CorpusError]) -> list[tuple[int, dict]]:
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            errors.append(CorpusError(source, f"line {number} is not valid JSON: {exc}", line=number))
            continue
        if not isinstance(row, dict):
            errors.append(
                CorpusError(source, f"line {number} is a JSON {type(row).__name__}, expected an object", line=number)
            )
            continue
        rows.append((number, row))
    return rows


def _csv_rows(data: bytes, url: str) -> list[tuple[int, dict]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"manifest {url!r} is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    # Row numbers count the header as line 1, as a spreadsheet shows them.
    return [
        (reader.line_num, {k: v for k, v in row.items() if k is not None})
        for row in reader
        if any((v or "").strip() for v in row.values() if isinstance(v, str))
    ]


def _parquet_rows(data: bytes, url: str) -> list[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(
            pa.BufferReader(data), use_threads=False, pre_buffer=False
        )  # see store.tables.decode_parquet
    except (pa.ArrowInvalid, OSError) as exc:
        raise SpecError(f"manifest {url!r} is not a readable Parquet file: {exc}") from exc
    return list(enumerate(table.to_pylist(), start=1))


def _manifest_utterance(
    fs: fsspec.AbstractFileSystem,
    base: str,
    source: str,
    number: int,
    row: dict,
    seen: set[str],
    errors: list[CorpusError],
) -> Utterance | None:
    audio_column = _pick(_AUDIO_COLUMNS, row)
    text_column = _pick(_TEXT_COLUMNS, row)
    id_column = _pick(_ID_COLUMNS, row)
    audio_value = row.get(audio_column) if audio_column else None
    given_id = _text_field(row.get(id_column)) if id_column else None

    if not isinstance(audio_value, str) or not audio_value.strip():
        errors.append(CorpusError(source, f"row {number} has no audio path", utterance_id=given_id, line=number))
        return None
    audio_uri = _resolve(fs, base, audio_value.strip())
    utterance_id = given_id or posixpath.splitext(posixpath.basename(audio_value.strip()))[0]
    text = _text_field(row.get(text_column)) if text_column else None
    if not text:
        errors.append(
            CorpusError(
                source,
                f"row {number} ({utterance_id}) has an empty transcript",
                utterance_id=utterance_id,
                audio_uri=audio_uri,
                line=number,
            )
        )
        return None
    if utterance_id in seen:
        # No utterance id on the row: the id belongs to the row ingested before it.
        errors.append(
            CorpusError(
                source,
                f"row {number}: utterance id {utterance_id!r} appears more than once (its first row is ingested)",
                audio_uri=audio_uri,
                line=number,
            )
        )
        return None
    seen.add(utterance_id)

    speaker_column = _pick(_SPEAKER_COLUMNS, row)
    chapter_column = _pick(_CHAPTER_COLUMNS, row)
    phones_column = _pick(_PHONES_COLUMNS, row)
    phones_value = _text_field(row.get(phones_column)) if phones_column else None
    used = {audio_column, text_column, id_column, speaker_column, chapter_column, phones_column}
    return Utterance(
        utterance_id=utterance_id,
        speaker_id=_text_field(row.get(speaker_column)) if speaker_column else None,
        chapter_id=_text_field(row.get(chapter_column)) if chapter_column else None,
        audio_uri=audio_uri,
        transcript=" ".join(text.split()),
        phones_uri=_resolve(fs, base, phones_value) if phones_value else None,
        extra={k: v for k, v in row.items() if k not in used},
    )


def _text_field(value: Any) -> str | None:
    """A manifest cell as stripped text; ``None`` for missing or empty cells."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _resolve(fs: fsspec.AbstractFileSystem, base: str, value: str) -> str:
    """Resolve a manifest path: URLs and absolute paths as they are, others against ``base``."""
    if "://" in value:
        return value
    if value.startswith("/"):
        return url_of(fs, fs._strip_protocol(value))
    return url_of(fs, posixpath.normpath(posixpath.join(base, value)))
