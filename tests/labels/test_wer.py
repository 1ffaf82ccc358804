"""Levenshtein alignment, WER and CER: hand-computed cases and a brute-force oracle."""

from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurolake.labels.wer import (
    EditOp,
    align_sequences,
    cer,
    edit_distance,
    wer,
    word_errors,
)

C, S, D, I = EditOp.CORRECT, EditOp.SUBSTITUTION, EditOp.DELETION, EditOp.INSERTION  # noqa: E741 - the edit-op letters


def test_word_alignment_hand_case():
    # ref: THE CAT SAT ON  THE MAT
    # hyp: THE BAT SAT     THE MAT NOW
    # CAT->BAT is a substitution, ON is deleted, NOW inserted: distance 3. The competing
    # 3-edit reading ON->THE, THE->MAT, MAT->NOW ends in a substitution, but at the last
    # cell the diagonal costs d(ref[:5], hyp[:5]) + 1 = 3 + 1 = 4 > 3, so the back-trace
    # takes the insertion and the alignment is unique.
    reference = "THE CAT SAT ON THE MAT".split()
    hypothesis = "THE BAT SAT THE MAT NOW".split()
    alignment = align_sequences(reference, hypothesis)
    assert alignment.ops.tolist() == [C, S, C, D, C, C, I]
    assert alignment.ref_index.tolist() == [0, 1, 2, 3, 4, 5, -1]
    assert alignment.hyp_index.tolist() == [0, 1, 2, -1, 3, 4, 5]
    assert alignment.reference_ops.tolist() == [C, S, C, D, C, C]
    assert (alignment.count(S), alignment.count(D), alignment.count(I)) == (1, 1, 1)
    assert alignment.distance == 3
    assert wer(reference, hypothesis) == 0.5  # 3 errors / 6 reference words
    assert wer(" ".join(reference), " ".join(hypothesis)) == 0.5
    assert word_errors(reference, hypothesis).tolist() == [False, True, False, True, False, False]


def test_tie_break_prefers_substitutions():
    # A B vs B A: two edits either way (S S, or D + I, or I + D). From the last cell the
    # diagonal (B vs A, cost d(A, B) + 1 = 2) is taken first, then A vs B: S S.
    alignment = align_sequences(["A", "B"], ["B", "A"])
    assert alignment.ops.tolist() == [S, S]
    assert word_errors(["A", "B"], ["B", "A"]).tolist() == [True, True]


def test_character_error_rate_hand_cases():
    # KITTEN -> SITTING: K->S, E->I, +G = 3 edits over 6 reference characters.
    assert cer("KITTEN", "SITTING") == 0.5
    # "A B" has 3 characters including the space; "AB" deletes the space: 1/3.
    assert math.isclose(cer("A  B ", "AB"), 1 / 3)
    assert edit_distance("KITTEN", "SITTING") == 3


def test_empty_sequences():
    assert wer("", "") == 0.0
    assert wer("", "HELLO") == math.inf
    assert wer("HELLO WORLD", "") == 1.0
    assert align_sequences(["HELLO"], []).ops.tolist() == [D]
    assert align_sequences([], ["HELLO"]).ops.tolist() == [I]
    assert word_errors([], ["HELLO"]).tolist() == []
    assert cer("", "") == 0.0


@functools.cache
def _brute_distance(a: str, b: str) -> int:
    """The recursive definition of Levenshtein distance, memoised on suffixes."""
    if not a or not b:
        return len(a) + len(b)
    return min(
        _brute_distance(a[1:], b[1:]) + (a[0] != b[0]),
        _brute_distance(a[1:], b) + 1,
        _brute_distance(a, b[1:]) + 1,
    )


def _replay(reference: str, hypothesis: str, alignment) -> str:
    """Apply the alignment's operations to the reference; must give the hypothesis back."""
    out = []
    for op, i, j in zip(alignment.ops, alignment.ref_index, alignment.hyp_index, strict=True):
        if op == C:
            assert reference[i] == hypothesis[j]
            out.append(reference[i])
        elif op in (S, I):
            assert op == I or reference[i] != hypothesis[j]
            out.append(hypothesis[j])
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text("abc", max_size=8), st.text("abc", max_size=8))
def test_alignment_matches_brute_force(reference, hypothesis):
    alignment = align_sequences(reference, hypothesis)
    assert alignment.distance == _brute_distance(reference, hypothesis)
    assert _replay(reference, hypothesis, alignment) == hypothesis
    # Every reference item appears exactly once, in order; so does every hypothesis item.
    assert alignment.ref_index[alignment.ref_index >= 0].tolist() == list(range(len(reference)))
    assert alignment.hyp_index[alignment.hyp_index >= 0].tolist() == list(range(len(hypothesis)))
    flags = word_errors(list(reference), list(hypothesis))
    assert flags.dtype == np.bool_
    assert int(flags.sum()) == alignment.count(S) + alignment.count(D)
