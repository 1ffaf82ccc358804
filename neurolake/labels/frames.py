"""Per-frame and per-utterance labels of one utterance (the ``frames``/``utterances`` tables of :mod:`neurolake.schemas`).

:func:`label_utterance` turns a model's log-probabilities for one utterance, its token list
and the reference transcript (plus, where the corpus has them, ground-truth phone timings)
into the rows the lake stores: one per output frame and one for the utterance. It composes
the kernels of :mod:`~neurolake.labels.ctc`, :mod:`~neurolake.labels.wer` and
:mod:`~neurolake.labels.lexicon`; ``run_id`` is added by the pipeline.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import InputError, SpecError
from neurolake.labels.ctc import forced_align, greedy_decode
from neurolake.labels.lexicon import (
    ARPABET,
    NON_PHONE_LABELS,
    frame_phonemes_from_intervals,
    interval_fields,
    intervals_to_arpabet,
    strip_stress,
    word_letter_phonemes,
)
from neurolake.labels.wer import EditOp, align_sequences, cer
from neurolake.schemas import SCHEMAS

__all__ = [
    "FRAME_SCHEMA",
    "POSTERIOR_COLUMNS",
    "frames_table_of",
    "UTTERANCE_SCHEMA",
    "WORD_BOUNDARY_TOKENS",
    "UtteranceLabels",
    "label_transcribed",
    "label_utterance",
    "normalise_transcript",
    "spread_segments",
]

#: ``confusion`` of a frame whose reference token the hypothesis leaves out, and of a frame
#: in the greedy segment of a token the hypothesis adds.
DELETED = "<del>"
INSERTED = "<ins>"

#: Tokens that mark a word boundary, in order of preference when a list has both
#: (Wav2Letter-style lists use a space, wav2vec2 bundles use "|").
WORD_BOUNDARY_TOKENS = (" ", "|")

#: Arrow types of the per-frame columns, in the order of :mod:`neurolake.schemas` (without ``run_id``).
FRAME_SCHEMA = pa.schema([f for f in SCHEMAS["frames"] if f.name != "run_id"])

#: Arrow types of the per-utterance columns this module computes (corpus columns such as
#: speaker and audio URI come from the corpus record).
UTTERANCE_SCHEMA = pa.schema(
    [
        SCHEMAS["utterances"].field(name)
        for name in (
            "utterance_id",
            "first_frame_id",
            "n_frames",
            "reference",
            "hypothesis",
            "wer",
            "cer",
            "n_word_errors",
            "n_reference_words",
            "phoneme_source",
        )
    ]
)

# Largest |log sum exp| of a frame's row that still counts as normalised: float16 model
# outputs lose a few 1e-3 of probability mass, raw logits are off by whole nats.
_NORMALISATION_TOLERANCE = 1e-2

_WHITESPACE = re.compile(r"\s+")


def normalise_transcript(text: str) -> str:
    """LibriSpeech-style transcript: upper-case letters and apostrophes, single spaces.

    Curly apostrophes become ``'``; every other character that is not a letter (digits,
    punctuation, hyphens) becomes a word break. ``"Don’t stop-now!" -> "DON'T STOP NOW"``.
    """
    text = unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u2018", "'")
    kept = "".join(c.upper() if c.isalpha() or c == "'" else " " for c in text)
    return _WHITESPACE.sub(" ", kept).strip()


@dataclass(frozen=True)
class _TokenMap:
    """What labelling needs to know about a token list, computed once per list."""

    strings: np.ndarray  # [tokens] object: the token strings, for fancy indexing
    boundary: int  # id of the word-boundary token
    char_ids: dict[str, int]  # one-character token -> id, blank and boundary excluded


@functools.lru_cache(maxsize=16)
def _token_map(tokens: tuple[str, ...]) -> _TokenMap:
    if len(tokens) < 2:
        raise SpecError(f"a token list needs a blank and at least one token, got {list(tokens)}")
    boundary = next((tokens.index(t, 1) for t in WORD_BOUNDARY_TOKENS if t in tokens[1:]), None)
    if boundary is None:
        raise SpecError(
            "the token list has no word-boundary token (' ' or '|'), so words cannot be "
            "told apart; use a character model whose tokens include one"
        )
    char_ids: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if index not in (0, boundary) and len(token) == 1:
            char_ids.setdefault(token, index)
    strings = np.empty(len(tokens), dtype=object)
    strings[:] = tokens
    return _TokenMap(strings=strings, boundary=boundary, char_ids=char_ids)


def _reference_targets(words: Sequence[str], token_map: _TokenMap):
    """Token ids of the reference (words joined by the boundary token), with for every
    target its word index (``-1`` for a boundary) and its character position in the word."""
    ids: list[int] = []
    target_word: list[int] = []
    target_char: list[int] = []
    for w, word in enumerate(words):
        if w:
            ids.append(token_map.boundary)
            target_word.append(-1)
            target_char.append(-1)
        for position, char in enumerate(word):
            # Transcripts are upper-case; a lower-case token list is matched by case.
            token = token_map.char_ids.get(char)
            if token is None:
                token = token_map.char_ids.get(char.lower(), token_map.char_ids.get(char.upper()))
            if token is None:
                raise InputError(
                    f"the reference character {char!r} (in {word!r}) has no token in the "
                    "model's token list; fix the transcript or use a model that has it"
                )
            ids.append(token)
            target_word.append(w)
            target_char.append(position)
    return (
        np.asarray(ids, dtype=np.int64),
        np.asarray(target_word, dtype=np.int64),
        np.asarray(target_char, dtype=np.int64),
    )


def _lexicon_phonemes(
    words: Sequence[str],
    target_index: np.ndarray,
    target_word: np.ndarray,
    target_char: np.ndarray,
    word_index: np.ndarray,
) -> np.ndarray:
    """Per-frame phonemes from CMUdict pronunciations mapped onto the aligned letters.

    See :func:`label_utterance` for the rule; returns ``[frames] object`` (``None`` outside
    words).
    """
    n_frames = target_index.shape[0]
    phoneme = np.full(n_frames, None, dtype=object)
    in_word = word_index >= 0
    if not in_word.any():
        return phoneme
    # The target each frame belongs to: its own, or for a blank the last one aligned
    # before it. Inside a word span that is always a letter of the same word.
    aligned_at = np.where(target_index >= 0, np.arange(n_frames), -1)
    current = target_index[np.maximum(np.maximum.accumulate(aligned_at), 0)]
    frames = np.flatnonzero(in_word)
    letter = current[frames]

    # Flatten every target's phones into one array so a frame's phoneme is one lookup.
    per_word = [word_letter_phonemes(word) for word in words]
    n_targets = target_word.shape[0]
    phones_of_target: list[tuple[str, ...]] = [
        per_word[w][c] if w >= 0 else () for w, c in zip(target_word.tolist(), target_char.tolist(), strict=True)
    ]
    n_phones = np.fromiter((len(p) for p in phones_of_target), dtype=np.int64, count=n_targets)
    offset = np.concatenate([[0], np.cumsum(n_phones)])
    flat = np.empty(int(offset[-1]), dtype=object)
    flat[:] = [phone for phones in phones_of_target for phone in phones]

    # A letter's frames run from its first aligned frame to the next letter's; when it
    # spells several phones (X -> K S) they share those frames in order, equally.
    segment_start = np.full(n_targets, n_frames, dtype=np.int64)
    np.minimum.at(segment_start, letter, frames)
    segment_length = np.bincount(letter, minlength=n_targets)
    position = frames - segment_start[letter]
    which = position * n_phones[letter] // segment_length[letter]
    phoneme[frames] = flat[offset[letter] + which]
    return phoneme


def _arpabet_intervals(
    intervals: Iterable[tuple[float, float, str] | object],
) -> list[tuple[float, float, str]]:
    """Ground-truth intervals with ARPAbet labels (no stress), whatever they came with.

    A TextGrid from an ARPAbet aligner model is already in the inventory (``"AH0"``); the
    synthetic corpus's sidecars are espeak-ng IPA. The labels are taken as ARPAbet only when
    every phone label is an ARPAbet phone once its stress digit is stripped - IPA labels are
    lower case, so a set of them never passes - and are mapped from IPA otherwise.
    """
    rows = [interval_fields(interval) for interval in intervals]
    # Silence labels say nothing about which inventory the phone labels use.
    phones = {label.strip() for _, _, label in rows} - NON_PHONE_LABELS
    if all(strip_stress(label) in ARPABET for label in phones):
        return [(start, end, strip_stress(label.strip())) for start, end, label in rows]
    return intervals_to_arpabet(rows)


@dataclass(frozen=True)
class UtteranceLabels:
    """Labels of one utterance.

    Attributes:
        frames: the per-frame columns of :data:`FRAME_SCHEMA`, each a ``[frames]`` numpy
            array (``object`` arrays of ``str``/``None`` for the text columns).
        utterance: the per-utterance values of :data:`UTTERANCE_SCHEMA`.
    """

    frames: dict[str, np.ndarray]
    utterance: dict[str, object]

    def frames_table(self) -> pa.Table:
        """The frames as an Arrow table of :data:`FRAME_SCHEMA`."""
        return pa.table([pa.array(self.frames[f.name], type=f.type) for f in FRAME_SCHEMA], schema=FRAME_SCHEMA)

    def utterance_table(self) -> pa.Table:
        """The utterance as a one-row Arrow table of :data:`UTTERANCE_SCHEMA`."""
        return pa.table(
            [pa.array([self.utterance[f.name]], type=f.type) for f in UTTERANCE_SCHEMA],
            schema=UTTERANCE_SCHEMA,
        )


def frames_table_of(labels: Sequence[UtteranceLabels]) -> pa.Table:
    """The frames of several utterances, in this order, as one :data:`FRAME_SCHEMA` table.

    One Arrow array per column over all the utterances: a part's frames table costs
    about a third of building one table per utterance and concatenating them.
    """
    if not labels:
        return FRAME_SCHEMA.empty_table()
    return pa.table(
        [pa.array(np.concatenate([item.frames[f.name] for item in labels]), type=f.type) for f in FRAME_SCHEMA],
        schema=FRAME_SCHEMA,
    )


def hypothesis_text(token_ids: Sequence[int], tokens: Sequence[str]) -> str:
    """The words a collapsed CTC token sequence spells: the boundary token becomes a space,
    upper case, single spaces (the form of :func:`normalise_transcript`)."""
    token_map = _token_map(tuple(tokens))
    text = "".join(" " if t == token_map.boundary else token_map.strings[t] for t in token_ids)
    return " ".join(text.upper().split())


def spread_segments(index: np.ndarray) -> np.ndarray:
    """Spread a CTC path's tokens over the blanks between them.

    ``index`` ``[frames]`` holds, for every frame of a path, the position of the token it
    emits in the collapsed sequence, ``-1`` on blanks. Blank frames between two tokens go to
    the nearer one (the earlier one on a tie); blanks before the first token and after the
    last belong to none (``-1``). ``[-1, 0, -1, -1, 1, -1] -> [-1, 0, 0, 1, 1, -1]``
    """
    index = np.asarray(index, dtype=np.int64)
    out = np.full(index.size, -1, dtype=np.int64)
    emitted = np.flatnonzero(index >= 0)
    if emitted.size == 0:
        return out
    frames = np.arange(index.size)
    k = np.searchsorted(emitted, frames, side="right") - 1  # last emitting frame at or before
    prev = emitted[np.clip(k, 0, None)]
    nxt = emitted[np.clip(k + 1, None, emitted.size - 1)]
    on_token = (k >= 0) & (prev == frames)
    between = (k >= 0) & (k + 1 < emitted.size) & ~on_token
    to_prev = on_token | (between & (frames - prev <= nxt - frames))
    to_next = between & ~to_prev
    out[to_prev] = index[prev[to_prev]]
    out[to_next] = index[nxt[to_next]]
    return out


def _greedy_positions(frame_tokens: np.ndarray, blank: int = 0) -> np.ndarray:
    """Position in the collapsed greedy sequence of each frame's token (``-1`` on blanks)."""
    previous = np.concatenate([[-1], frame_tokens[:-1]])
    starts = (frame_tokens != blank) & (frame_tokens != previous)
    return np.where(frame_tokens != blank, np.cumsum(starts) - 1, -1)


def _segment_labels(
    targets: np.ndarray, target_index: np.ndarray, greedy_tokens: np.ndarray, greedy_ids: np.ndarray, strings
) -> dict[str, np.ndarray]:
    """The segment columns of :func:`label_utterance` (see there)."""
    ref_owner = spread_segments(target_index)
    pred_owner = spread_segments(_greedy_positions(greedy_tokens))
    edits = align_sequences(targets.tolist(), greedy_ids.tolist())
    # Per reference token: its operation and, for a substitution, the hypothesis token.
    ref_op = edits.reference_ops
    sub_token = np.full(targets.size, -1, dtype=np.int64)
    on_both = (edits.ref_index >= 0) & (edits.hyp_index >= 0)
    sub_token[edits.ref_index[on_both]] = greedy_ids[edits.hyp_index[on_both]]
    inserted = np.zeros(greedy_ids.size, dtype=bool)
    inserted[edits.hyp_index[edits.ops == EditOp.INSERTION]] = True

    has_ref, has_pred = ref_owner >= 0, pred_owner >= 0
    op = np.where(has_ref, np.append(ref_op, EditOp.CORRECT)[ref_owner], EditOp.CORRECT)
    added = has_pred & np.append(inserted, False)[pred_owner]
    error = (op != EditOp.CORRECT) | added
    confusion = np.full(target_index.size, None, dtype=object)
    confusion[added] = INSERTED
    confusion[op == EditOp.DELETION] = DELETED
    substituted = op == EditOp.SUBSTITUTION
    confusion[substituted] = strings[sub_token[ref_owner[substituted]]]
    none = np.array([None], dtype=object)
    return {
        "ref_segment": np.where(has_ref, np.append(strings[targets], none)[ref_owner], None),
        "pred_segment": np.where(has_pred, np.append(strings[greedy_ids], none)[pred_owner], None),
        "segment_error": error,
        "confusion": confusion,
    }


def _frame_shift(frame_rate_hz: float | None, frame_shift_s: float | None) -> float:
    if (frame_rate_hz is None) == (frame_shift_s is None):
        raise SpecError("give exactly one of frame_rate_hz and frame_shift_s")
    shift = frame_shift_s if frame_shift_s is not None else 1.0 / float(frame_rate_hz)
    if not np.isfinite(shift) or shift <= 0:
        raise SpecError(f"the frame shift must be a positive number of seconds, got {shift}")
    return float(shift)


def _check_normalised(log_probs: np.ndarray) -> None:
    if log_probs.size == 0:
        return
    peak = log_probs.max(axis=1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(log_probs - peak).sum(axis=1))
    worst = float(np.max(np.abs(log_total)))
    if not worst <= _NORMALISATION_TOLERANCE:
        raise SpecError(
            f"the model output is not log-probabilities (a frame's probabilities sum to "
            f"exp({worst:.3g})); apply log_softmax over the token axis in the model"
        )


def label_utterance(
    log_probs: np.ndarray,
    tokens: Sequence[str],
    reference: str,
    *,
    frame_rate_hz: float | None = None,
    frame_shift_s: float | None = None,
    phone_intervals: Iterable[tuple[float, float, str] | object] | None = None,
    word_intervals: Iterable[tuple[float, float, str] | object] | None = None,
    utterance_id: str = "",
    first_frame_id: int = 0,
    phone_source: str = "intervals",
) -> UtteranceLabels:
    """Per-frame and per-utterance labels of one utterance.

    Definitions (frame ``i`` of ``T``):

    - ``frame_id = first_frame_id + i``; ``frame_index = i``; the frame spans
      ``[start_s, end_s) = [i, i + 1) * frame_shift_s`` seconds.
    - The reference is normalised (:func:`normalise_transcript`), split into words, and
      spelt as tokens with one word-boundary token (``" "`` or ``"|"``, whichever the list
      has) between words, none at the ends. Letters are matched to tokens as they are,
      else in the token list's case.
    - ``ref_token``: the token string of the frame on the Viterbi CTC alignment of that
      sequence (:func:`~neurolake.labels.ctc.forced_align`); the blank token's own string
      for frames aligned to blank.
    - ``pred_token``, ``pred_prob``: the frame's greedy token and its probability.
    - ``token_error``: ``pred_token != ref_token``, compared as token ids; so a frame
      where both are blank is never an error, and a frame where exactly one is blank is.
      When the greedy path already spells the reference, the alignment is that path and no
      frame is a token error (barring exact ties between paths).
    - ``word_index`` / ``word``: frames from the first to the last frame aligned to a
      word's tokens, blanks inside included, belong to that word (0-based index in the
      reference, and the word as written there). Other frames - aligned to a boundary
      token, or blanks between words or at the ends - get ``-1`` and ``None``. Every
      reference word has at least one frame.
      With ``word_intervals`` (a forced aligner's word timings) a frame's word is instead the
      timed word covering its centre, matched to the reference words in order (as in
      :func:`label_transcribed`); frames outside every timed word get ``-1`` and ``None``.
    - ``word_error``: the frame's word is substituted or deleted in the Levenshtein
      alignment of the hypothesis words to the reference words
      (:func:`~neurolake.labels.wer.align_sequences`); ``False`` outside words, since
      insertions belong to no reference word.
    - ``phoneme``: with ``phone_intervals`` (ground truth), the label of the interval that
      covers the frame's centre (:func:`~neurolake.labels.lexicon.frame_phonemes_from_intervals`),
      in ARPAbet without stress: labels that are all ARPAbet once stress digits are stripped
      (an ARPAbet TextGrid) are kept so; others are espeak-ng IPA and are mapped by
      :func:`~neurolake.labels.lexicon.intervals_to_arpabet`, an interval whose label gives
      several phones being split evenly among them. Silence labels (``""`` gives ``None``,
      ``sil``/``sp``/``spn`` are kept) pass through.
      Otherwise from the lexicon: each word's pronunciation is shared out over its letters
      (:func:`~neurolake.labels.lexicon.word_letter_phonemes`); inside a word a frame takes
      the letter it is aligned to, or for a blank the letter aligned last before it, and a
      letter that spells ``k`` phones splits its frames into ``k`` equal consecutive parts.
      Frames outside words get ``None``.

    Segment labels, the frame error labels to use (``token_error`` compares two peaky paths
    frame by frame, so a character recognised one frame late is two errors and one deleted
    character is often none):

    - ``ref_segment``: the reference token whose segment holds the frame, on the forced
      alignment spread over the blanks (:func:`spread_segments`: blanks between two tokens
      go to the nearer one; blanks before the first token and after the last to none,
      ``None``). The word boundary is a token, with a segment of its own.
    - ``pred_segment``: likewise the greedy path's token whose segment holds the frame.
    - ``segment_error``: the frame's reference token is substituted or deleted in the
      Levenshtein alignment of the greedy token sequence to the reference tokens
      (:func:`~neurolake.labels.wer.align_sequences`), or the frame lies in the greedy
      segment of a token the hypothesis inserts. It depends on which tokens the model got
      wrong, not on when each path emits them.
    - ``confusion``: what the model made of the frame's reference token: the substituted
      token's string, ``"<del>"`` for a deletion, ``"<ins>"`` for an inserted token's frames
      otherwise correct; ``None`` where ``segment_error`` is false. Confusion slices are
      ``ref_segment = 'S' AND confusion = 'Z'``.

    Utterance row: ``reference`` (normalised), ``hypothesis`` (greedy collapse, boundary
    tokens as spaces, upper-cased, whitespace-normalised), ``wer``, ``cer`` (see
    :mod:`~neurolake.labels.wer`), ``n_word_errors`` (substitutions + deletions + insertions,
    the numerator of ``wer``), ``n_reference_words``, ``n_frames``, ``utterance_id``,
    ``first_frame_id`` and ``phoneme_source`` (``phone_source`` where intervals were given, else
    ``"lexicon"``), which every frame row repeats.

    Args:
        log_probs: ``[frames, tokens]`` float32 natural-log probabilities of the utterance.
        tokens: the model's token list; index 0 is the blank.
        reference: the reference transcript.
        frame_rate_hz: output frames per second (give this or ``frame_shift_s``).
        frame_shift_s: seconds between output frames.
        phone_intervals: ground-truth ``(start_s, end_s, phoneme)`` intervals in seconds
            (tuples, or records with ``start_s``/``end_s``/``label`` attributes); labels in
            ARPAbet (stress digits allowed) or espeak-ng IPA.
        word_intervals: ground-truth ``(start_s, end_s, word)`` intervals in seconds, or ``None``
            to place words by the CTC alignment.
        utterance_id: copied into every row.
        phone_source: what ``phone_intervals`` are, for ``phoneme_source`` (``"alignments"``: a
            forced aligner's TextGrid; ``"sidecar"``: the corpus's own timings; ``"lhotse"``: a
            lhotse supervision's alignment).
        first_frame_id: lake row of frame 0.

    Returns:
        The frame columns and the utterance row.

    Raises:
        InputError: the reference is too long for the frames, has a character the token
            list lacks, or ``log_probs`` is malformed.
        SpecError: the token list does not match ``log_probs``, has no word-boundary
            token, the output is not normalised, or the frame rate is invalid.
    """
    shift = _frame_shift(frame_rate_hz, frame_shift_s)
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2 or log_probs.shape[1] != len(tokens):
        raise SpecError(
            f"log-probabilities of shape {log_probs.shape} do not match a token list of "
            f"{len(tokens)} tokens; expected [frames, {len(tokens)}]"
        )
    token_map = _token_map(tuple(tokens))
    greedy = greedy_decode(log_probs)
    _check_normalised(log_probs)

    reference = normalise_transcript(reference)
    words = reference.split()
    targets, target_word, target_char = _reference_targets(words, token_map)
    alignment = forced_align(log_probs, targets)

    n_frames = log_probs.shape[0]
    frame_index = np.arange(n_frames, dtype=np.int64)
    # Index -1 (blank) reads the appended -1: no word.
    frame_word = np.append(target_word, -1)[alignment.target_index]
    word_index = np.full(n_frames, -1, dtype=np.int32)
    aligned = np.flatnonzero(frame_word >= 0)
    if aligned.size:
        # The alignment is monotonic, so each word's aligned frames form one sorted run.
        words_at = frame_word[aligned]
        ids = np.arange(len(words))
        first = aligned[np.searchsorted(words_at, ids, side="left")]
        last = aligned[np.searchsorted(words_at, ids, side="right") - 1]
        for w in range(len(words)):
            word_index[first[w] : last[w] + 1] = w

    hypothesis = hypothesis_text(greedy.token_ids, tokens)
    hypothesis_words = hypothesis.split()
    word_alignment = align_sequences(words, hypothesis_words)
    word_wrong = np.append(word_alignment.reference_ops != EditOp.CORRECT, False)

    if phone_intervals is not None:
        intervals = _arpabet_intervals(phone_intervals)
        phoneme = frame_phonemes_from_intervals(intervals, n_frames, shift)
        phoneme_source = phone_source
    else:
        phoneme = _lexicon_phonemes(words, alignment.target_index, target_word, target_char, word_index)
        phoneme_source = "lexicon"
    if word_intervals is not None:  # an aligner's word timings replace the model's own alignment
        word_index = _words_from_intervals(word_intervals, words, n_frames, shift)

    word_strings = np.empty(len(words) + 1, dtype=object)
    word_strings[:-1] = words
    word_strings[-1] = None  # index -1 (no word) lands here
    frames = {
        "frame_id": first_frame_id + frame_index,
        "utterance_id": np.full(n_frames, utterance_id, dtype=object),
        "frame_index": frame_index.astype(np.int32),
        "start_s": frame_index * shift,
        "end_s": (frame_index + 1) * shift,
        "ref_token": token_map.strings[alignment.frame_tokens],
        "pred_token": token_map.strings[greedy.frame_tokens],
        "pred_prob": greedy.frame_probs,
        "phoneme": phoneme,
        "word": word_strings[word_index],
        "word_index": word_index,
        "word_error": word_wrong[word_index],
        "token_error": greedy.frame_tokens != alignment.frame_tokens,
        **_segment_labels(targets, alignment.target_index, greedy.frame_tokens, greedy.token_ids, token_map.strings),
        "phoneme_source": np.full(n_frames, phoneme_source, dtype=object),
    }
    utterance = _utterance_row(
        utterance_id, first_frame_id, n_frames, reference, hypothesis, word_alignment, phoneme_source
    )
    return UtteranceLabels(frames=frames, utterance=utterance)


def _utterance_row(
    utterance_id: str,
    first_frame_id: int,
    n_frames: int,
    reference: str,
    hypothesis: str,
    word_alignment: Any,
    phoneme_source: str | None,
) -> dict[str, object]:
    """The per-utterance values of :data:`UTTERANCE_SCHEMA`."""
    return {
        "utterance_id": utterance_id,
        "first_frame_id": int(first_frame_id),
        "n_frames": int(n_frames),
        "reference": reference,
        "hypothesis": hypothesis,
        "wer": word_alignment.error_rate,
        "cer": cer(reference, hypothesis),
        "n_word_errors": int(word_alignment.distance),
        "n_reference_words": len(reference.split()),
        "phoneme_source": phoneme_source,
    }


#: Frame columns that come from a CTC model's per-frame token posteriors; a model that
#: transcribes by generating text (Whisper) has none, and :func:`label_transcribed` leaves them null.
POSTERIOR_COLUMNS = (
    "ref_token",
    "pred_token",
    "pred_prob",
    "token_error",
    "ref_segment",
    "pred_segment",
    "segment_error",
    "confusion",
)


def label_transcribed(
    n_frames: int,
    reference: str,
    hypothesis: str,
    *,
    frame_shift_s: float,
    phone_intervals: Iterable[tuple[float, float, str] | object] | None = None,
    word_intervals: Iterable[tuple[float, float, str] | object] | None = None,
    utterance_id: str = "",
    first_frame_id: int = 0,
    phone_source: str = "intervals",
) -> UtteranceLabels:
    """Labels of an utterance that a sequence-to-sequence model transcribed (Whisper).

    Such a model gives a transcript (``hypothesis``, from its decoder) but no token
    posteriors per frame, so nothing ties its output to frames. What the frames get:

    - ``frame_id``, ``frame_index``, ``start_s``, ``end_s`` as :func:`label_utterance` gives them.
    - :data:`POSTERIOR_COLUMNS` (``ref_token``, ``pred_token``, ``pred_prob``, ``token_error``,
      the segment labels and ``confusion``) are null: there is no per-frame prediction.
    - ``phoneme``: from ``phone_intervals`` as in :func:`label_utterance`; null without them
      (the lexicon cannot be placed in time without a CTC alignment).
    - ``word`` / ``word_index``: from ``word_intervals``, the interval that covers the frame's
      centre. Interval words are matched to the reference words in order (a Levenshtein
      alignment of the two word sequences, so an interval whose word the reference lacks gets
      ``-1`` and ``None``). Without word intervals every frame has ``-1`` and ``None``.
    - ``word_error``: the frame's reference word is substituted or deleted in the alignment of
      the hypothesis words to the reference words; ``False`` outside words; null for every
      frame when there are no word intervals (nothing says which frames hold which word).

    Utterance row as in :func:`label_utterance`, with ``hypothesis`` normalised by
    :func:`normalise_transcript`; ``phoneme_source`` is ``phone_source`` where phone intervals
    were given and null otherwise.
    """
    shift = _frame_shift(None, frame_shift_s)
    if n_frames < 0:
        raise InputError(f"an utterance cannot have {n_frames} frames")
    reference = normalise_transcript(reference)
    hypothesis = normalise_transcript(hypothesis)
    words = reference.split()
    word_alignment = align_sequences(words, hypothesis.split())
    word_wrong = np.append(word_alignment.reference_ops != EditOp.CORRECT, False)
    frame_index = np.arange(n_frames, dtype=np.int64)
    nulls = np.full(n_frames, None, dtype=object)

    if word_intervals is not None:
        word_index = _words_from_intervals(word_intervals, words, n_frames, shift)
        word_strings = np.empty(len(words) + 1, dtype=object)
        word_strings[:-1] = words
        word_strings[-1] = None
        word, word_error = word_strings[word_index], word_wrong[word_index]
    else:
        word_index = np.full(n_frames, -1, dtype=np.int32)
        word, word_error = nulls, nulls
    if phone_intervals is not None:
        phoneme = frame_phonemes_from_intervals(_arpabet_intervals(phone_intervals), n_frames, shift)
        phoneme_source: str | None = phone_source
    else:
        phoneme, phoneme_source = nulls, None

    frames = {
        "frame_id": first_frame_id + frame_index,
        "utterance_id": np.full(n_frames, utterance_id, dtype=object),
        "frame_index": frame_index.astype(np.int32),
        "start_s": frame_index * shift,
        "end_s": (frame_index + 1) * shift,
        **{name: nulls for name in POSTERIOR_COLUMNS},
        "phoneme": phoneme,
        "word": word,
        "word_index": word_index,
        "word_error": word_error,
        "phoneme_source": np.full(n_frames, phoneme_source, dtype=object),
    }
    utterance = _utterance_row(
        utterance_id, first_frame_id, n_frames, reference, hypothesis, word_alignment, phoneme_source
    )
    return UtteranceLabels(frames=frames, utterance=utterance)


def _words_from_intervals(
    intervals: Iterable[tuple[float, float, str] | object], words: Sequence[str], n_frames: int, shift: float
) -> np.ndarray:
    """``[n_frames] int32``: the reference word index of each frame (``-1`` for none) from timed
    word intervals, each matched to a reference word by a Levenshtein alignment of the sequences."""
    rows = sorted(interval_fields(interval) for interval in intervals)
    rows = [r for r in rows if normalise_transcript(r[2])]  # unlabelled (silence) intervals hold no word
    spoken = [normalise_transcript(r[2]) for r in rows]
    to_reference = np.full(len(rows) + 1, -1, dtype=np.int32)  # the last entry: no interval
    steps = align_sequences(words, spoken)
    for op, ref, hyp in zip(steps.ops, steps.ref_index, steps.hyp_index, strict=True):
        if op == EditOp.CORRECT:
            to_reference[hyp] = ref
    out = np.full(n_frames, -1, dtype=np.int32)
    if not rows or n_frames == 0:
        return out
    starts = np.array([r[0] for r in rows])
    ends = np.array([r[1] for r in rows])
    centres = (np.arange(n_frames) + 0.5) * shift
    index = np.searchsorted(starts, centres, side="right") - 1
    covered = (index >= 0) & (centres < ends[np.maximum(index, 0)])
    out[covered] = to_reference[index[covered]]
    return out
