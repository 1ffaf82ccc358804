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
