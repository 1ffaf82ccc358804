"""Ground-truth timing sidecars: ``*.phones.jsonl`` (written by :mod:`neurolake.corpora.synth`) and
Praat TextGrids (the phones tier of a forced aligner such as MFA).

A ``*.phones.jsonl`` file holds one JSON object per utterance::

    {"id": "1000-1-0000",
     "phones": [[0.012, 0.058, "ð"], [0.058, 0.107, "ə"], ...],
     "words": [[0.012, 0.107, "THE"], ...]}

Each interval is ``[start_s, end_s, label]`` in seconds from the start of the audio file. Phone
labels are IPA as espeak-ng emits them with the stress marks (ˈ ˌ) removed; silences are the gaps
between intervals, not labelled intervals. Word labels are upper case like the transcripts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from neurolake.corpora.records import Alignment, Interval, Utterance, open_url
from neurolake.errors import InputError

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


# ------------------------------------------------------------------- TextGrid


@dataclass(frozen=True)
class TextGridTier:
    """One tier of a TextGrid.

    Attributes:
        name: the tier name (MFA writes ``words``/``phones``, or ``SPEAKER - phones``).
        kind: ``"IntervalTier"`` or ``"TextTier"`` (a point tier).
        intervals: ``(start_s, end_s, label)`` in file order, seconds; a point of a
            ``TextTier`` has ``start_s == end_s``.
    """

    name: str
    kind: str
    intervals: list[tuple[float, float, str]]


# Both TextGrid formats carry the same values in the same order; the long ("ooTextFile")
# format only adds "key =" names and "[n]" item headers around them. So one tokenizer that
# keeps quoted strings, numbers and the <exists> flag and drops names, headers and
# punctuation reads either format.
_TEXTGRID_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'  # quoted string, "" escapes a quote
    r"|\[[^\]]*\]"  # item header index: skipped
    r"|(<exists>|<absent>)"
    r"|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|[A-Za-z_][A-Za-z_?]*"  # key names: skipped
    r"|\S",
)


def read_textgrid(text: str | bytes) -> list[TextGridTier]:
    """Parse a Praat TextGrid (long "ooTextFile" format, as Montreal Forced Aligner writes
    it, or the short format).

    Args:
        text: the file content; bytes are decoded as UTF-16 when they start with a UTF-16
            byte-order mark (Praat's default for non-ASCII text), otherwise as UTF-8.

    Returns:
        The tiers in file order.

    Raises:
        InputError: the text is not a TextGrid or is truncated.
    """
    if isinstance(text, bytes):
        encoding = "utf-16" if text[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        text = text.decode(encoding)
    text = text.lstrip("\ufeff")
    values: list[str | float] = []
    for match in _TEXTGRID_TOKEN.finditer(text):
        quoted, flag, number = match.groups()
        if quoted is not None:
            values.append(quoted.replace('""', '"'))
        elif flag is not None:
            values.append(flag)
        elif number is not None:
            values.append(float(number))
    if values[:2] != ["ooTextFile", "TextGrid"]:
        raise InputError('not a TextGrid: expected a header "ooTextFile" / "TextGrid"')

    position = 2

    def take(kind: type) -> str | float:
        nonlocal position
        if position >= len(values):
            raise InputError("the TextGrid ends early; the file is truncated")
        value = values[position]
        position += 1
        if not isinstance(value, kind):
            raise InputError(f"malformed TextGrid: expected a {kind.__name__} as value {position}, got {value!r}")
        return value

    take(float)  # xmin of the grid
    take(float)  # xmax of the grid
    if take(str) != "<exists>":
        return []
    tiers: list[TextGridTier] = []
    for _ in range(int(take(float))):
        kind = str(take(str))
        name = str(take(str))
        take(float)
        take(float)
        intervals: list[tuple[float, float, str]] = []
        for _ in range(int(take(float))):
            if kind == "IntervalTier":
                start, end = float(take(float)), float(take(float))
            elif kind == "TextTier":
                start = end = float(take(float))
            else:
                raise InputError(f"unknown TextGrid tier class {kind!r} in tier {name!r}")
            intervals.append((start, end, str(take(str))))
        tiers.append(TextGridTier(name=name, kind=kind, intervals=intervals))
    return tiers


def find_phones_tier(tiers: Iterable[TextGridTier]) -> TextGridTier:
    """The phone tier of a TextGrid: the interval tier named ``phones`` (any case) or, for
    Montreal Forced Aligner's multi-speaker output, ending in ``phones``.

    Raises:
        InputError: no such tier.
    """
    tiers = list(tiers)
    for tier in tiers:
        name = tier.name.strip().lower()
        if tier.kind == "IntervalTier" and (name == "phones" or name.endswith(" phones")):
            return tier
    names = ", ".join(repr(t.name) for t in tiers) or "none"
    raise InputError(f"the TextGrid has no interval tier named 'phones' (tiers: {names})")


# ---------------------------------------------------- forced-aligner output (MFA)

#: Phone and word labels of a TextGrid that are silence, not speech.
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "<eps>", "<unk>"})


def is_textgrid(uri: str) -> bool:
    return uri.lower().endswith(".textgrid")


def read_textgrid_alignment(
    uri: str, utterance_id: str, *, storage_options: Mapping[str, Any] | None = None
) -> Alignment:
    """The phones and words tiers of one utterance's TextGrid (Montreal Forced Aligner's output),
    silences left out.

    Raises:
        InputError: the file is missing, not a TextGrid, or has no phones tier.
    """
    fs, path = open_url(uri, storage_options)
    try:
        tiers = read_textgrid(fs.cat_file(path))
    except FileNotFoundError as exc:
        raise InputError(f"alignment {uri!r} not found") from exc
    except InputError as exc:
        raise InputError(f"{uri}: {exc}") from exc
    phones = find_phones_tier(tiers)
    words = next((t for t in tiers if t.kind == "IntervalTier" and t.name.strip().lower().endswith("words")), None)

    def spoken(intervals: Iterable[tuple[float, float, str]], upper: bool) -> tuple[Interval, ...]:
        return tuple(
            Interval(s, e, label.strip().upper() if upper else label.strip())
            for s, e, label in intervals
            if label.strip().lower() not in SILENCE_LABELS
        )

    return Alignment(utterance_id, spoken(phones.intervals, False), spoken(words.intervals if words else (), True))


def textgrid_index(directory: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``utterance_id -> URL`` of every ``*.TextGrid`` below ``directory`` (MFA writes one per
    utterance, named after it, in the corpus's speaker folders or flat).

    Raises:
        InputError: the directory is missing or holds no TextGrid, or two files share a name.
    """
    from neurolake.corpora.records import url_of

    fs, root = open_url(directory, storage_options)
    if not fs.isdir(root):
        raise InputError(f"--alignments {directory!r} is not a directory")
    found: dict[str, str] = {}
    for path in sorted(fs.find(root)):
        name = path.rsplit("/", 1)[-1]
        if not is_textgrid(name):
            continue
        stem = name[: -len(".TextGrid")]
        if stem in found:
            raise InputError(f"two alignments for {stem!r} under {directory}: {found[stem]} and {url_of(fs, path)}")
        found[stem] = url_of(fs, path)
    if not found:
        raise InputError(f"--alignments {directory!r} holds no *.TextGrid file")
    return found


def write_textgrid(alignment: Alignment, duration_s: float) -> str:
    """A long-format TextGrid with ``words`` and ``phones`` tiers (gaps as empty intervals), as
    Montreal Forced Aligner writes them."""

    def tier(name: str, intervals: Iterable[Interval]) -> list[str]:
        filled: list[tuple[float, float, str]] = []
        at = 0.0
        for i in intervals:
            if i.start_s > at + 1e-9:
                filled.append((at, i.start_s, ""))
            filled.append((i.start_s, i.end_s, i.label))
            at = i.end_s
        if duration_s > at + 1e-9:
            filled.append((at, duration_s, ""))
        lines = [
            '        class = "IntervalTier"',
            f'        name = "{name}"',
            "        xmin = 0",
            f"        xmax = {duration_s:.6f}",
            f"        intervals: size = {len(filled)}",
        ]
        for n, (s, e, label) in enumerate(filled, start=1):
            text = label.replace('"', '""')
            lines += [
                f"        intervals [{n}]:",
                f"            xmin = {s:.6f}",
                f"            xmax = {e:.6f}",
                f'            text = "{text}"',
            ]
        return lines

    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {duration_s:.6f}",
        "tiers? <exists>",
        "size = 2",
        "item []:",
        "    item [1]:",
        *tier("words", alignment.words),
        "    item [2]:",
        *tier("phones", alignment.phones),
    ]
    return "\n".join(lines) + "\n"
