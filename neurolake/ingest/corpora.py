"""Speech corpora as typed, immutable records.

A corpus reader is one plain function that walks a tree or a table and returns a
:class:`Corpus`: the :class:`Utterance` records it could read and a
:class:`CorpusError` record for every item it could not. Readers never open the
audio (that is :mod:`neurolake.ingest.audio`'s job) and never crash on one bad
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
(written by :mod:`neurolake.ingest.synth`), one JSON object per utterance::

    {"id": "1000-1-0000",
     "phones": [[0.012, 0.058, "ð"], [0.058, 0.107, "ə"], ...],
     "words": [[0.012, 0.107, "THE"], ...]}

Each interval is ``[start_s, end_s, label]`` in seconds from the start of the
audio file. Phone labels are IPA as espeak-ng emits them with the stress marks
(ˈ ˌ) removed; silences are the gaps between intervals, not labelled intervals.
Word labels are upper case like the transcripts.

Manifests: ``.jsonl``, ``.csv`` or ``.parquet`` with one row per utterance; see
:func:`read_manifest` for the accepted column names.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from neurolake.errors import InputError, SpecError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MANIFEST_SUFFIXES",
    "Alignment",
    "Corpus",
    "CorpusError",
    "Interval",
    "Utterance",
    "open_corpus",
    "open_url",
    "parse_transcript_line",
    "read_alignments",
    "read_librispeech",
    "read_manifest",
    "read_phone_intervals",
    "url_of",
]

logger = logging.getLogger(__name__)

#: Audio file extensions recognised in a LibriSpeech tree, in order of preference
#: when one utterance has several (a tree converted to WAV next to the FLAC).
AUDIO_EXTENSIONS: tuple[str, ...] = (".flac", ".wav", ".ogg", ".mp3")

#: Manifest file suffixes that :func:`open_corpus` dispatches to :func:`read_manifest`.
MANIFEST_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")

_TRANSCRIPT_SUFFIX = ".trans.txt"
_PHONES_SUFFIX = ".phones.jsonl"

# Accepted manifest column names, most specific first.
_AUDIO_COLUMNS = ("audio_uri", "audio_path", "audio", "path")
_TEXT_COLUMNS = ("transcript", "text")
_SPEAKER_COLUMNS = ("speaker_id", "speaker")
_CHAPTER_COLUMNS = ("chapter_id", "chapter")
_ID_COLUMNS = ("utterance_id", "id")
_PHONES_COLUMNS = ("phones_uri",)


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
    """

    source: str
    utterances: tuple[Utterance, ...]
    errors: tuple[CorpusError, ...] = ()
    untranscribed_audio: tuple[str, ...] = ()

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


# --------------------------------------------------------------------- LibriSpeech


def parse_transcript_line(line: str) -> tuple[str, str]:
    """Split one LibriSpeech transcript line into ``(utterance_id, text)``.

    Surrounding whitespace (including a ``\\r`` of CRLF files) is removed and runs
    of whitespace inside the text become single spaces. Raises ``ValueError`` for
    a line that has an id but no text; blank lines are the caller's to skip.
    """
    parts = line.split(maxsplit=1)
    if not parts:
        raise ValueError("blank line")
    if len(parts) == 1:
        raise ValueError(f"utterance {parts[0]} has an empty transcript")
    return parts[0], " ".join(parts[1].split())


@dataclass
class _Chapter:
    """Files found in one chapter directory of a LibriSpeech tree."""

    split: str | None
    speaker_id: str
    chapter_id: str
    transcripts: list[str] = field(default_factory=list)
    audio: dict[str, str] = field(default_factory=dict)
    phones: str | None = None


def _natural_key(name: str) -> tuple[int, int, str]:
    # LibriSpeech ids are integers of varying width: "19" sorts before "103".
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def read_librispeech(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read a LibriSpeech-layout tree: a split directory or the directory holding splits.

    The layout is detected from where the ``*.trans.txt`` files lie: at
    ``SPEAKER/CHAPTER/`` below ``url`` it is one split (named after ``url``'s last
    component); at ``SPLIT/SPEAKER/CHAPTER/`` it is a parent of splits and every
    split is read. Other files (``SPEAKERS.TXT``, ``README``) are ignored.

    Damage is reported, not raised: a transcript line whose audio file is missing,
    an empty transcript, a line that is not UTF-8, an id that does not belong to
    its chapter or repeats an earlier one each become a :class:`CorpusError`; audio
    without a transcript line is skipped, listed in ``untranscribed_audio`` and
    logged as one warning.

    Args:
        url: local path or fsspec URL (``s3://bucket/LibriSpeech/dev-clean``).
        storage_options: passed to the fsspec filesystem.

    Raises:
        SpecError: ``url`` is not a directory or holds no LibriSpeech transcripts.
    """
    fs, root = open_url(url, storage_options)
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise SpecError(
            f"LibriSpeech corpus {url!r} is not a directory; give a split directory "
            "(SPEAKER/CHAPTER/*.trans.txt below it) or the directory holding the splits"
        )
    # One recursive listing: on object stores this is a few paginated requests
    # instead of one request per speaker and chapter directory.
    relative = [(path, path[len(root) + 1 :].split("/")) for path in fs.find(root)]
    depth = _transcript_depth(relative)
    if depth is None:
        raise SpecError(f"no LibriSpeech transcripts (SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt) found under {url!r}")
    split_name = posixpath.basename(root) if depth == 3 else None

    chapters: dict[tuple[str, str, str], _Chapter] = {}
    for path, parts in relative:
        if len(parts) != depth:
            continue
        split = parts[0] if depth == 4 else split_name
        speaker_id, chapter_id, name = parts[-3:]
        key = (split or "", speaker_id, chapter_id)
        chapter = chapters.setdefault(key, _Chapter(split, speaker_id, chapter_id))
        if name.endswith(_TRANSCRIPT_SUFFIX):
            chapter.transcripts.append(path)
        elif name.endswith(_PHONES_SUFFIX):
            chapter.phones = path
        else:
            stem, ext = posixpath.splitext(name)
            ext = ext.lower()
            if ext in AUDIO_EXTENSIONS:
                known = chapter.audio.get(stem)
                if known is None or AUDIO_EXTENSIONS.index(ext) < AUDIO_EXTENSIONS.index(
                    posixpath.splitext(known)[1].lower()
                ):
                    chapter.audio[stem] = path

    utterances: list[Utterance] = []
    errors: list[CorpusError] = []
    untranscribed: list[str] = []
    seen: set[str] = set()
    # One call for every transcript: object stores fetch them concurrently.
    contents = fs.cat([path for chapter in chapters.values() for path in chapter.transcripts], on_error="return")
    for key in sorted(chapters, key=lambda k: tuple(_natural_key(p) for p in k)):
        chapter = chapters[key]
        named = _read_chapter(fs, chapter, contents, seen, utterances, errors)
        untranscribed.extend(url_of(fs, path) for stem, path in sorted(chapter.audio.items()) if stem not in named)
    if untranscribed:
        logger.warning(
            "%s: skipped %d audio file(s) without a transcript line, e.g. %s", url, len(untranscribed), untranscribed[0]
        )
    return Corpus(url, tuple(utterances), tuple(errors), tuple(untranscribed))


def _transcript_depth(relative: list[tuple[str, list[str]]]) -> int | None:
    depths = {len(parts) for _, parts in relative if parts[-1].endswith(_TRANSCRIPT_SUFFIX)}
    for depth in (3, 4):
        if depth in depths:
            return depth
    return None


def _read_chapter(
    fs: fsspec.AbstractFileSystem,
    chapter: _Chapter,
    contents: Mapping[str, bytes | Exception],
    seen: set[str],
    utterances: list[Utterance],
    errors: list[CorpusError],
) -> set[str]:
    """Append the chapter's utterances and errors; return the ids its transcript lines name.

    Audio of a line that became an error is named too: it has a transcript line,
    and counting it as untranscribed as well would report one problem twice.
    """
    prefix = f"{chapter.speaker_id}-{chapter.chapter_id}-"
    phones_uri = url_of(fs, chapter.phones) if chapter.phones else None
    named: set[str] = set()
    for transcript_path in sorted(chapter.transcripts):
        source = url_of(fs, transcript_path)
        data = contents[transcript_path]
        if isinstance(data, Exception):
            errors.append(CorpusError(source, f"cannot read transcript file: {data}"))
            continue
        # Split bytes, not text, so that one undecodable line costs one record.
        for number, raw in enumerate(data.split(b"\n"), start=1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                head = raw.split(maxsplit=1)[0].decode("ascii", errors="replace")
                named.add(head)
                errors.append(
                    CorpusError(
                        source,
                        f"line {number} is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                        "re-encode the transcript file as UTF-8",
                        utterance_id=head if head.startswith(prefix) else None,
                        line=number,
                    )
                )
                continue
            try:
                utterance_id, text = parse_transcript_line(line)
            except ValueError as exc:
                named.add(line.split()[0])
                errors.append(CorpusError(source, f"line {number}: {exc}", utterance_id=line.split()[0], line=number))
                continue
            named.add(utterance_id)
            if not utterance_id.startswith(prefix):
                errors.append(
                    CorpusError(
                        source,
                        f"line {number}: utterance id {utterance_id!r} does not belong to chapter "
                        f"{chapter.speaker_id}/{chapter.chapter_id} (expected {prefix}NNNN)",
                        utterance_id=utterance_id,
                        line=number,
                    )
                )
                continue
            if utterance_id in seen:
                # No utterance id on the row: the id belongs to the line ingested before it.
                errors.append(
                    CorpusError(
                        source,
                        f"line {number}: utterance id {utterance_id!r} "
                        "appears more than once (its first line is ingested)",
                        line=number,
                    )
                )
                continue
            seen.add(utterance_id)
            audio_path = chapter.audio.get(utterance_id)
            spaced = [stem for stem in chapter.audio if stem.split()[0] == utterance_id] if audio_path is None else []
            if spaced:
                errors.append(
                    CorpusError(
                        source,
                        f"line {number}: the audio file {chapter.audio[spaced[0]]!r} has a space in its name, "
                        f"which a LibriSpeech transcript line cannot name; rename it to {utterance_id}"
                        f"{posixpath.splitext(chapter.audio[spaced[0]])[1]}",
                        utterance_id=utterance_id,
                        audio_uri=url_of(fs, chapter.audio[spaced[0]]),
                        line=number,
                    )
                )
                continue
            if audio_path is None:
                expected = posixpath.join(posixpath.dirname(source), utterance_id + AUDIO_EXTENSIONS[0])
                errors.append(
                    CorpusError(
                        source,
                        f"line {number}: audio file for {utterance_id} is missing (expected {expected})",
                        utterance_id=utterance_id,
                        audio_uri=expected,
                        line=number,
                    )
                )
                continue
            utterances.append(
                Utterance(
                    utterance_id=utterance_id,
                    speaker_id=chapter.speaker_id,
                    chapter_id=chapter.chapter_id,
                    audio_uri=url_of(fs, audio_path),
                    transcript=text,
                    split=chapter.split,
                    phones_uri=phones_uri,
                )
            )
    return named


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
        table = pq.read_table(pa.BufferReader(data))
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


# ----------------------------------------------------------------------- dispatch


def open_corpus(spec: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read the corpus a user named: a LibriSpeech directory or URL, or a manifest file.

    A spec ending in ``.jsonl``, ``.csv`` or ``.parquet`` is read by
    :func:`read_manifest`; an existing directory by :func:`read_librispeech`.

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
    if posixpath.splitext(path.rstrip("/"))[1].lower() in MANIFEST_SUFFIXES:
        return read_manifest(spec, storage_options=storage_options)
    if fs.isdir(path):
        return read_librispeech(spec, storage_options=storage_options)
    if fs.exists(path):
        raise SpecError(
            f"corpus {spec!r} is a file but not a manifest; give a LibriSpeech directory "
            f"or a manifest ending in {', '.join(MANIFEST_SUFFIXES)}"
        )
    raise SpecError(
        f"corpus {spec!r} not found; give a LibriSpeech directory or URL, or a manifest "
        f"({', '.join(MANIFEST_SUFFIXES)})"
    )


# --------------------------------------------------------------- phone timings


def read_alignments(phones_uri: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Alignment]:
    """Read a ``*.phones.jsonl`` sidecar: utterance id -> ground-truth phone and word timings.

    Raises:
        InputError: the file is missing or a line does not follow the format.
    """
    fs, path = open_url(phones_uri, storage_options)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise InputError(f"phone timings {phones_uri!r} not found") from exc
    alignments: dict[str, Alignment] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            alignment = Alignment(
                utterance_id=str(record["id"]),
                phones=tuple(Interval(float(s), float(e), str(p)) for s, e, p in record["phones"]),
                words=tuple(Interval(float(s), float(e), str(w)) for s, e, w in record.get("words", ())),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{phones_uri}: line {number} is not a phone-timing record ({type(exc).__name__}: {exc})"
            ) from exc
        alignments[alignment.utterance_id] = alignment
    return alignments


def read_phone_intervals(
    utterance: Utterance, *, storage_options: Mapping[str, Any] | None = None
) -> tuple[Interval, ...] | None:
    """Ground-truth phone intervals of ``utterance``, or ``None`` where the corpus has none.

    Reads the whole chapter sidecar; for many utterances of one chapter, call
    :func:`read_alignments` once instead.
    """
    if utterance.phones_uri is None:
        return None
    alignment = read_alignments(utterance.phones_uri, storage_options=storage_options).get(utterance.utterance_id)
    return alignment.phones if alignment is not None else None
