"""LibriSpeech trees: ``SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` with one
``SPEAKER-CHAPTER.trans.txt`` per chapter whose lines read ``UTTERANCE_ID TEXT``.

:func:`read_librispeech` accepts a split directory or the directory holding the splits. A chapter
may carry ground-truth timings in ``SPEAKER-CHAPTER.phones.jsonl`` (:mod:`neurolake.corpora.sidecars`).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

from neurolake.corpora.records import AUDIO_EXTENSIONS, Corpus, CorpusError, Utterance, open_url, url_of
from neurolake.errors import SpecError

logger = logging.getLogger(__name__)

_TRANSCRIPT_SUFFIX = ".trans.txt"
_PHONES_SUFFIX = ".phones.jsonl"

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
    return Corpus(url, tuple(utterances), tuple(errors), tuple(untranscribed), format="librispeech")


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
