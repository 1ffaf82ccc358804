"""lhotse manifests: a ``CutSet``, or a ``RecordingSet`` with its ``SupervisionSet``, as a corpus.

lhotse (https://github.com/lhotse-speech/lhotse) stores a corpus as JSON Lines, usually gzipped:
``<prefix>_recordings_<split>.jsonl.gz`` (one :class:`lhotse.Recording` per line: audio sources,
rate, sample count), ``<prefix>_supervisions_<split>.jsonl.gz`` (one
:class:`lhotse.SupervisionSegment` per line: id, recording, start, duration, text, speaker and an
optional ``alignment`` of ``phone`` and ``word`` items) or ``<prefix>_cuts_<split>.jsonl.gz``
(one :class:`lhotse.MonoCut` per line, its recording and supervisions inline).

One supervision is one utterance: its ``id``, ``speaker`` and ``text`` are the utterance's id,
speaker and transcript, and its recording's audio file is the utterance's audio. Each line is
read by lhotse's own classes (``Recording.from_dict``, ``SupervisionSegment.from_dict``,
``lhotse.serialization.deserialize_item``), one line at a time, so that a broken line is one
:class:`~neurolake.corpora.records.CorpusError` and the rest of the manifest is read.

What neurolake can ingest, and the error each other item gets:

- a supervision that spans its whole recording (both ends within :data:`WHOLE_RECORDING_TOLERANCE_S`;
  in a cut, a cut that starts at 0 and spans the recording too). A segment of a longer
  recording is not supported yet: the planner counts frames from the audio file's header and the
  decoder reads whole files.
- a single-channel recording with one source, without ``transforms`` (speed perturbation,
  volume, reverberation are not applied here; resampling is done by the decoder anyway).
- a source of type ``file`` (a relative path is relative to the working directory, as lhotse
  reads it) or ``url`` (read through fsspec like any neurolake URL). Audio held in the manifest
  (``memory``), made by a ``command`` or in a Shar archive cannot be addressed by a URL.
- ``MonoCut`` lines; ``MixedCut`` and ``MultiCut`` lines are errors.

Alignments: ``alignment["phone"]`` (or ``"phoneme"``) and ``alignment["word"]`` become the
utterance's :class:`~neurolake.corpora.records.Alignment` (seconds from the start of the
recording, which for a whole-recording supervision is the start of the audio file), silence
symbols (:data:`~neurolake.corpora.sidecars.SILENCE_LABELS`) left out and words upper-cased. Phone
symbols may be ARPAbet with stress digits (as Montreal Forced Aligner writes them) or IPA; the
frame labeller maps both as it does TextGrids. The frames of such an utterance say
``phoneme_source = "lhotse"``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec

from neurolake.corpora.records import Alignment, Corpus, CorpusError, Interval, Utterance, open_url, url_of
from neurolake.corpora.sidecars import SILENCE_LABELS
from neurolake.errors import SpecError

if TYPE_CHECKING:
    from lhotse import Recording, SupervisionSegment

__all__ = [
    "LHOTSE_SUFFIXES",
    "WHOLE_RECORDING_TOLERANCE_S",
    "is_lhotse_directory",
    "is_lhotse_file",
    "read_lhotse",
]

#: File suffixes of lhotse's JSON Lines manifests.
LHOTSE_SUFFIXES: tuple[str, ...] = (".jsonl.gz", ".jsonl")

#: How far (seconds) a supervision's ends may lie from its recording's and still count as the
#: whole recording: lhotse rounds durations, and a recipe may end a supervision a sample early.
WHOLE_RECORDING_TOLERANCE_S = 0.01

_PHONE_KEYS = ("phone", "phoneme")
_WORD_KEYS = ("word",)
_CUT_TYPES = frozenset({"MonoCut", "MultiCut", "MixedCut", "Cut"})
# "<prefix>_cuts_<split>.jsonl.gz": the kind of manifest, and the split after it.
_MANIFEST_NAME = re.compile(r"^(?P<prefix>.*?)(?P<kind>recordings|supervisions|cuts)(?P<split>.*?)\.jsonl(\.gz)?$")


# ------------------------------------------------------------------------- detection


def _kind_of_record(record: Mapping[str, Any]) -> str | None:
    """``"cuts"``, ``"recordings"`` or ``"supervisions"`` by a manifest line's fields, else ``None``."""
    if record.get("type") in _CUT_TYPES or ("recording" in record and "start" in record and "duration" in record):
        return "cuts"
    if "sources" in record and "sampling_rate" in record:
        return "recordings"
    if "recording_id" in record and "start" in record and "duration" in record:
        return "supervisions"
    return None


def _first_record(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    """The first JSON object of a (gzipped) JSON Lines file, reading only its start; ``None`` if none."""
    try:
        with fs.open(path, "rb") as raw:
            head = raw.read(2)
            raw.seek(0)
            handle: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw  # type: ignore[assignment]
            for _ in range(100):
                line = handle.readline()
                if not line:
                    return None
                if line.strip():
                    record = json.loads(line)
                    return record if isinstance(record, dict) else None
    except (OSError, EOFError, ValueError):
        return None
    return None


def is_lhotse_file(spec: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``spec`` is a lhotse manifest file: ``.jsonl.gz``, or ``.jsonl`` whose first line
    is a cut, recording or supervision (a plain neurolake manifest's lines are none of them)."""
    lower = spec.rstrip("/").lower()
    if not lower.endswith(LHOTSE_SUFFIXES):
        return False
    if lower.endswith(".jsonl.gz"):
        return True
    fs, path = open_url(spec, storage_options)
    record = _first_record(fs, path)
    return record is not None and _kind_of_record(record) is not None


def _manifest_files(fs: fsspec.AbstractFileSystem, root: str) -> list[tuple[str, re.Match[str]]]:
    names = sorted(fs.ls(root, detail=False))
    return [(path, m) for path in names if (m := _MANIFEST_NAME.match(posixpath.basename(path))) is not None]


def is_lhotse_directory(spec: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether the directory ``spec`` holds lhotse manifests (``*cuts*.jsonl[.gz]``, or
    ``*recordings*`` and ``*supervisions*`` ones) at its top level."""
    fs, root = open_url(spec, storage_options)
    return bool(_manifest_files(fs, root.rstrip("/")))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Line:
    """One line of a manifest file: where it is, and the lhotse object or why there is none."""

    source: str
    number: int
    item: Any = None
    problem: str | None = None
    item_id: str | None = None


def _lines(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Iterator[tuple[int, dict | str]]:
    """``(line number, JSON object or the reason the line is not one)`` of a (gzipped) JSON Lines file.

    A gzip stream that breaks off (a truncated download) yields the lines before the break and
    then one reason for the rest.

    Raises:
        SpecError: the file is missing.
    """
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise SpecError(f"lhotse manifest {url!r} not found") from exc
    broken = None
    if data[:2] == b"\x1f\x8b":
        data, broken = _gunzip(data)
        if broken is not None:
            data = data[: data.rfind(b"\n") + 1]  # the line the break cut off is lost with the rest
    number = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            yield number, f"line {number} is not valid JSON: {exc}"
            continue
        if not isinstance(record, dict):
            yield number, f"line {number} is a JSON {type(record).__name__}, expected an object"
            continue
        yield number, record
    if broken is not None:
        complete = data.count(b"\n")
        yield complete + 1, f"{broken} after line {complete}; the lines before are read, the rest is lost"


def _gunzip(data: bytes) -> tuple[bytes, str | None]:
    """The decompressed bytes, and why decompression stopped early (``None`` when it did not).

    Decompressed in pieces, so that damage halfway through keeps what came before it."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pieces: list[bytes] = []
    step = 1 << 16
    for start in range(0, len(data), step):
        try:
            pieces.append(decompressor.decompress(data[start : start + step]))
        except zlib.error as exc:
            return b"".join(pieces), f"the gzip stream is corrupt ({exc})"
        if decompressor.eof:
            break
    if not decompressor.eof:
        return b"".join(pieces), "the gzip stream is truncated"
    return b"".join(pieces), None


def _deserialize(kind: str, record: dict) -> Any:
    from lhotse import Recording, SupervisionSegment
    from lhotse.serialization import deserialize_item

    if kind == "recordings":
        return Recording.from_dict(record)
    if kind == "supervisions":
        return SupervisionSegment.from_dict(record)
    return deserialize_item(record)


def _read_items(fs: fsspec.AbstractFileSystem, path: str, kind: str) -> list[_Line]:
    """Every line of a manifest as a lhotse object, or the reason it is not one."""
    source = url_of(fs, path)
    out: list[_Line] = []
    for number, record in _lines(fs, path, source):
        if isinstance(record, str):
            out.append(_Line(source, number, problem=record))
            continue
        item_id = record.get("id") if isinstance(record.get("id"), str) else None
        found = _kind_of_record(record)
        if found != kind:
            what = f"a lhotse {found[:-1]}" if found else "no lhotse manifest item"
            out.append(
                _Line(source, number, problem=f"line {number} is {what}, expected a {kind[:-1]}", item_id=item_id)
            )
            continue
        try:
            item = _deserialize(kind, dict(record))
        # lhotse's constructors raise whatever a malformed field provokes (TypeError for an
        # unknown or missing key, ValueError, AssertionError from its checks): any of them is
        # this line's problem, not the corpus's.
        except Exception as exc:
            out.append(
                _Line(
                    source,
                    number,
                    problem=f"line {number} is not a valid lhotse {kind[:-1]} ({type(exc).__name__}: {exc})",
                    item_id=item_id,
                )
            )
            continue
        out.append(_Line(source, number, item=item, item_id=item.id))
    return out


def _split_of(match: re.Match[str]) -> str | None:
    return match.group("split").strip("_-.") or None


def read_lhotse(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read lhotse manifests: a cuts file, a recordings or supervisions file (its partner is the
    file of the same name with ``recordings`` and ``supervisions`` swapped), or a directory
    holding them (``*cuts*.jsonl[.gz]`` files if there are any, else every recordings and
    supervisions pair).

    Utterances come in manifest order, files in name order; ``split`` is the part of a file's
    name after its kind (``librispeech_cuts_dev-clean.jsonl.gz`` -> ``dev-clean``). Every
    supervision that cannot be ingested (see the module docstring) and every line that is not a
    lhotse item becomes a :class:`CorpusError`; recordings no supervision names are listed in
    ``untranscribed_audio``.

    Raises:
        SpecError: nothing at ``url``, a file that is not a lhotse manifest, a recordings file
            without its supervisions (or the reverse), or a directory without manifests.
    """
    fs, path = open_url(url, storage_options)
    path = path.rstrip("/")
    if fs.isdir(path):
        files = _manifest_files(fs, path)
        cuts = [(p, m) for p, m in files if m.group("kind") == "cuts"]
        if cuts:
            jobs = [("cuts", p, None, _split_of(m)) for p, m in cuts]
        else:
            jobs = []
            for p, m in files:
                if m.group("kind") == "supervisions":
                    jobs.append(("pair", _partner(fs, p, m, url), p, _split_of(m)))
        if not jobs:
            raise SpecError(
                f"no lhotse manifests in {url!r}: expected *cuts*.jsonl.gz, or *recordings*.jsonl.gz with "
                "*supervisions*.jsonl.gz"
            )
    else:
        if not fs.exists(path):
            raise SpecError(f"lhotse manifest {url!r} not found")
        record = _first_record(fs, path)
        kind = _kind_of_record(record) if record is not None else None
        match = _MANIFEST_NAME.match(posixpath.basename(path))
        split = _split_of(match) if match else None
        if kind == "cuts":
            jobs = [("cuts", path, None, split)]
        elif kind in ("recordings", "supervisions") and match is not None:
            partner = _partner(fs, path, match, url)
            jobs = [("pair", path, partner, split) if kind == "recordings" else ("pair", partner, path, split)]
        elif kind in ("recordings", "supervisions"):
            raise SpecError(
                f"{url!r} holds lhotse {kind}, but its name does not say where the "
                f"{'supervisions' if kind == 'recordings' else 'recordings'} are; name the pair "
                "<prefix>_recordings_<split>.jsonl.gz and <prefix>_supervisions_<split>.jsonl.gz, or give a cuts manifest"
            )
        else:
            raise SpecError(f"{url!r} is not a lhotse manifest: its first line is no cut, recording or supervision")

    reader = _Reader(fs)
    for job, first, second, split in jobs:
        if job == "cuts":
            reader.read_cuts(first, split)
        else:
            assert second is not None
            reader.read_pair(first, second, split)
    return Corpus(url, tuple(reader.utterances), tuple(reader.errors), tuple(reader.untranscribed), format="lhotse")


def _partner(fs: fsspec.AbstractFileSystem, path: str, match: re.Match[str], url: str) -> str:
    """The recordings file of a supervisions file, or the reverse; :class:`SpecError` if absent."""
    other = "supervisions" if match.group("kind") == "recordings" else "recordings"
    name = posixpath.basename(path)
    start, end = match.span("kind")
    partner = posixpath.join(posixpath.dirname(path), name[:start] + other + name[end:])
    if not fs.exists(partner):
        # A pair may be gzipped on one side only.
        alternative = partner[:-3] if partner.endswith(".gz") else partner + ".gz"
        if fs.exists(alternative):
            return alternative
        raise SpecError(f"lhotse {match.group('kind')} {url!r} has no {other} next to it (expected {partner})")
    return partner


class _Reader:
    """Collects utterances, errors and unused recordings over the manifests of one corpus."""

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs
        self.utterances: list[Utterance] = []
        self.errors: list[CorpusError] = []
        self.untranscribed: list[str] = []
        self.seen: set[str] = set()

    def error(self, line: _Line, message: str, utterance_id: str | None = None, audio_uri: str | None = None) -> None:
        self.errors.append(CorpusError(line.source, message, utterance_id, audio_uri, line.number))

    def read_pair(self, recordings_path: str, supervisions_path: str, split: str | None) -> None:
        recordings: dict[str, _Line] = {}
        for line in _read_items(self.fs, recordings_path, "recordings"):
            if line.item is None and line.item_id is None:
                self.error(line, line.problem or "unreadable line")
            elif line.item_id in recordings:
                self.error(line, f"line {line.number}: recording id {line.item_id!r} appears more than once")
            else:
                # A line with an id but no valid recording is reported by the supervisions that name it.
                recordings[str(line.item_id)] = line
        used: set[str] = set()
        for line in _read_items(self.fs, supervisions_path, "supervisions"):
            if line.item is None:
                self.error(line, line.problem or "unreadable line", utterance_id=line.item_id)
                continue
            supervision = line.item
            found = recordings.get(supervision.recording_id)
            used.add(supervision.recording_id)
            if found is None:
                self.error(
                    line,
                    f"line {line.number}: supervision {supervision.id!r} names recording "
                    f"{supervision.recording_id!r}, which {posixpath.basename(recordings_path)} does not hold",
                    utterance_id=supervision.id,
                )
            elif found.item is None:
                self.error(
                    line,
                    f"line {line.number}: the recording of supervision {supervision.id!r} is unreadable "
                    f"({posixpath.basename(recordings_path)} {found.problem})",
                    utterance_id=supervision.id,
                )
            else:
                self.add(line, supervision, found.item, split)
        for recording_id, line in recordings.items():
            if recording_id in used:
                continue
            if line.item is not None:
                self.untranscribed.append(_audio_uri(line.item) or recording_id)
            else:
                self.error(line, line.problem or "unreadable line")

    def read_cuts(self, path: str, split: str | None) -> None:
        from lhotse import MonoCut

        for line in _read_items(self.fs, path, "cuts"):
            if line.item is None:
                self.error(line, line.problem or "unreadable line", utterance_id=line.item_id)
                continue
            cut = line.item
            if not isinstance(cut, MonoCut):
                self.error(
                    line,
                    f"line {line.number}: cut {cut.id!r} is a {type(cut).__name__}; only MonoCuts (one channel of "
                    "one recording) can be ingested",
                )
                continue
            if cut.recording is None:
                self.error(line, f"line {line.number}: cut {cut.id!r} has no recording (features only)")
                continue
            if not cut.supervisions:
                self.untranscribed.append(_audio_uri(cut.recording) or cut.recording.id)
                continue
            if abs(cut.start) > WHOLE_RECORDING_TOLERANCE_S or (
                abs(cut.duration - cut.recording.duration) > WHOLE_RECORDING_TOLERANCE_S
            ):
                for supervision in cut.supervisions:
                    self.error(
                        line,
                        f"line {line.number}: cut {cut.id!r} covers {cut.start:.3f}-{cut.end:.3f} s of its "
                        f"{cut.recording.duration:.3f} s recording {cut.recording.id!r}; "
                        "segments of a recording are not supported yet",
                        utterance_id=supervision.id,
                    )
                continue
            for supervision in cut.supervisions:
                self.add(line, supervision, cut.recording, split)

    def add(self, line: _Line, supervision: SupervisionSegment, recording: Recording, split: str | None) -> None:
        """Append the utterance of one supervision, or the error that says why it cannot be one."""
        problem, audio_uri = _recording_problem(recording)
        if problem is None:
            problem = _segment_problem(supervision, recording)
        text = " ".join((supervision.text or "").split())
        if problem is None and not text:
            problem = f"supervision {supervision.id!r} has an empty transcript"
        alignment = None
        if problem is None:
            try:
                alignment = _alignment(supervision)
            except (TypeError, ValueError) as exc:
                problem = f"supervision {supervision.id!r} has a malformed alignment ({exc})"
        if problem is None and supervision.id in self.seen:
            # No utterance id on the row: the id belongs to the supervision ingested before it.
            self.error(
                line,
                f"line {line.number}: utterance id {supervision.id!r} appears more than once "
                "(its first supervision is ingested)",
                audio_uri=audio_uri,
            )
            return
        if problem is not None:
            self.error(line, f"line {line.number}: {problem}", utterance_id=supervision.id, audio_uri=audio_uri)
            return
        assert audio_uri is not None
        self.seen.add(supervision.id)
        extra = {
            key: value
            for key, value in (
                ("recording_id", recording.id),
                ("language", supervision.language),
                ("gender", supervision.gender),
            )
            if value is not None
        }
        self.utterances.append(
            Utterance(
                utterance_id=supervision.id,
                speaker_id=supervision.speaker,
                chapter_id=None,
                audio_uri=audio_uri,
                transcript=text,
                split=split,
                extra=extra,
                alignment=alignment,
            )
        )


def _audio_uri(recording: Recording) -> str | None:
    """The URL of a recording's single file or URL source, else ``None``."""
    if len(recording.sources) != 1:
        return None
    source = recording.sources[0]
    if source.type == "url" and isinstance(source.source, str):
        return source.source
    if source.type == "file" and isinstance(source.source, str):
        value = source.source
        # lhotse opens a relative path from the working directory; so does neurolake, made absolute
        # here because the decoding workers may run elsewhere.
        return value if "://" in value or os.path.isabs(value) else os.path.abspath(value)
    return None


def _recording_problem(recording: Recording) -> tuple[str | None, str | None]:
    """Why a recording cannot be an utterance's audio (or ``None``), and its audio URL."""
    audio_uri = _audio_uri(recording)
    if recording.num_channels != 1 or len(recording.sources) != 1:
        return (
            f"recording {recording.id!r} has {recording.num_channels} channels in {len(recording.sources)} "
            "source(s); multi-channel recordings are not supported yet",
            audio_uri,
        )
    if recording.transforms:
        names = ", ".join(
            str(t.get("name", "?")) if isinstance(t, dict) else type(t).__name__ for t in recording.transforms
        )
        return (
            f"recording {recording.id!r} has transforms ({names}), which neurolake does not apply; "
            "write the transformed audio to files first",
            audio_uri,
        )
    if audio_uri is None:
        source = recording.sources[0]
        return (
            f"recording {recording.id!r} has a {source.type!r} audio source, which has no URL to read it from; "
            "neurolake reads 'file' and 'url' sources",
            None,
        )
    return None, audio_uri


def _segment_problem(supervision: SupervisionSegment, recording: Recording) -> str | None:
    if (
        abs(supervision.start) <= WHOLE_RECORDING_TOLERANCE_S
        and abs(supervision.end - recording.duration) <= WHOLE_RECORDING_TOLERANCE_S
    ):
        return None
    return (
        f"supervision {supervision.id!r} covers {supervision.start:.3f}-{supervision.end:.3f} s of its "
        f"{recording.duration:.3f} s recording {recording.id!r}; segments of a recording are not supported yet "
        "(give one recording per utterance)"
    )


def _alignment(supervision: SupervisionSegment) -> Alignment | None:
    """The supervision's ``phone`` and ``word`` alignments as neurolake intervals, or ``None``."""
    items = supervision.alignment or {}
    phone_key = next((key for key in _PHONE_KEYS if key in items), None)
    word_key = next((key for key in _WORD_KEYS if key in items), None)
    if phone_key is None and word_key is None:
        return None

    def intervals(key: str | None, upper: bool) -> tuple[Interval, ...]:
        out = []
        for item in items.get(key, ()) if key else ():
            label = str(item.symbol).strip()
            if label.lower() in SILENCE_LABELS:
                continue
            start, duration = float(item.start), float(item.duration)
            if duration < 0 or start < 0:
                raise ValueError(f"{key} item {item.symbol!r} starts at {start} s and lasts {duration} s")
            # lhotse's AlignmentItem.end: the sum rounded to 8 digits, so that an end written as
            # start + duration reads back as the time it was.
            out.append(Interval(start, round(start + duration, 8), label.upper() if upper else label))
        return tuple(sorted(out, key=lambda i: (i.start_s, i.end_s)))

    return Alignment(supervision.id, intervals(phone_key, False), intervals(word_key, True))
