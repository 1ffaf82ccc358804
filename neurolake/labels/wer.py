"""Levenshtein alignment of a hypothesis to a reference, and the error rates built on it.

:func:`align_sequences` aligns any two sequences of hashable items (words, characters) with
unit costs and a back-trace, so every reference item gets an operation (correct,
substitution, deletion) and every extra hypothesis item is an insertion. :func:`wer`,
:func:`cer` and :func:`word_errors` are the views of it that labelling needs.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "EditAlignment",
    "EditOp",
    "align_sequences",
    "cer",
    "edit_distance",
    "wer",
    "word_errors",
]


class EditOp(enum.IntEnum):
    """Operation of one step of an edit alignment (stored as ``int8``)."""

    CORRECT = 0
    SUBSTITUTION = 1
    DELETION = 2
    INSERTION = 3


@dataclass(frozen=True)
class EditAlignment:
    """A minimum-cost alignment of a hypothesis to a reference.

    Attributes:
        ops: ``[steps] int8`` :class:`EditOp` values, in reference/hypothesis order.
        ref_index: ``[steps] int64`` reference position of each step, ``-1`` for insertions.
        hyp_index: ``[steps] int64`` hypothesis position of each step, ``-1`` for deletions.
        n_reference: number of reference items.
    """

    ops: np.ndarray
    ref_index: np.ndarray
    hyp_index: np.ndarray
    n_reference: int

    def count(self, op: EditOp) -> int:
        """Number of steps with operation ``op``."""
        return int(np.count_nonzero(self.ops == op))

    @property
    def distance(self) -> int:
        """Levenshtein distance: substitutions + deletions + insertions."""
        return int(np.count_nonzero(self.ops != EditOp.CORRECT))

    @property
    def error_rate(self) -> float:
        """``distance / n_reference``; for an empty reference ``0.0`` if the hypothesis is
        empty too, else ``inf`` (errors with no reference item to divide them over)."""
        if self.n_reference == 0:
            return 0.0 if self.distance == 0 else float("inf")
        return self.distance / self.n_reference

    @property
    def reference_ops(self) -> np.ndarray:
        """``[n_reference] int8`` the operation applied to each reference item (C, S or D)."""
        out = np.empty(self.n_reference, dtype=np.int8)
        on_reference = self.ref_index >= 0
        out[self.ref_index[on_reference]] = self.ops[on_reference]
        return out


@numba.njit(cache=True, nogil=True)
def _levenshtein_steps(ref, hyp):  # pragma: no cover - compiled
    """Unit-cost DP and back-trace; returns (ops, ref_index, hyp_index) in forward order."""
    n, m = ref.shape[0], hyp.shape[0]
    cost = np.empty((n + 1, m + 1), dtype=np.int32)
    for i in range(n + 1):
        cost[i, 0] = i
    for j in range(m + 1):
        cost[0, j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = cost[i - 1, j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 1)
            deletion = cost[i - 1, j] + 1
            insertion = cost[i, j - 1] + 1
            cost[i, j] = min(diagonal, deletion, insertion)

    ops = np.empty(n + m, dtype=np.int8)
    ref_index = np.empty(n + m, dtype=np.int64)
    hyp_index = np.empty(n + m, dtype=np.int64)
    k = 0
    i, j = n, m
    # Walking back from the end, a diagonal step is preferred, then a deletion, then an
    # insertion: with equal costs this pairs words up rather than splitting them into
    # a deletion plus an insertion.
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = ref[i - 1] == hyp[j - 1]
            if cost[i, j] == cost[i - 1, j - 1] + (0 if same else 1):
                ops[k] = 0 if same else 1
                ref_index[k] = i - 1
                hyp_index[k] = j - 1
                i -= 1
                j -= 1
                k += 1
                continue
        if i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            ops[k] = 2
            ref_index[k] = i - 1
            hyp_index[k] = -1
            i -= 1
        else:
            ops[k] = 3
            ref_index[k] = -1
            hyp_index[k] = j - 1
            j -= 1
        k += 1
    return ops[:k][::-1].copy(), ref_index[:k][::-1].copy(), hyp_index[:k][::-1].copy()


def _as_ids(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]):
    """Map both sequences onto shared integer ids so the compiled kernel can compare them."""
    vocabulary: dict[Hashable, int] = {}
    ref = np.fromiter(
        (vocabulary.setdefault(item, len(vocabulary)) for item in reference),
        dtype=np.int64,
        count=len(reference),
    )
    hyp = np.fromiter(
        (vocabulary.setdefault(item, len(vocabulary)) for item in hypothesis),
        dtype=np.int64,
        count=len(hypothesis),
    )
    return ref, hyp


def align_sequences(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> EditAlignment:
    """Minimum edit-distance alignment of ``hypothesis`` to ``reference``.

    Unit costs for substitution, deletion (a reference item missing from the hypothesis)
    and insertion (an extra hypothesis item). Among alignments of minimum cost, the
    back-trace from the end prefers a match or substitution, then a deletion, then an
    insertion. ``O(len(reference) * len(hypothesis))`` time and ``int32`` memory.

    Args:
        reference: items of the reference (words, characters, any hashable).
        hypothesis: items of the hypothesis.

    Returns:
        The alignment steps in order, with the operation of each.
    """
    ref, hyp = _as_ids(reference, hypothesis)
    ops, ref_index, hyp_index = _levenshtein_steps(ref, hyp)
    return EditAlignment(ops=ops, ref_index=ref_index, hyp_index=hyp_index, n_reference=len(reference))


def edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit costs) between two sequences."""
    return align_sequences(reference, hypothesis).distance


def _words(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Strings are split on whitespace; sequences are taken as words. Comparison is exact
    (normalise case beforehand). An empty reference gives ``0.0`` against an empty
    hypothesis and ``inf`` otherwise.
    """
    return align_sequences(_words(reference), _words(hypothesis)).error_rate


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edit distance over characters / reference characters.

    Both strings are whitespace-normalised first (runs of whitespace become one space,
    ends stripped) and the single spaces between words count as characters, as in
    LibriSpeech-style scoring. An empty reference gives ``0.0`` against an empty
    hypothesis and ``inf`` otherwise.
    """
    ref = " ".join(reference.split())
    hyp = " ".join(hypothesis.split())
    return align_sequences(ref, hyp).error_rate


def word_errors(reference_words: Sequence[str], hypothesis_words: Sequence[str]) -> np.ndarray:
    """Per reference word, whether the hypothesis got it wrong.

    A reference word is in error when the alignment of :func:`align_sequences` substitutes
    or deletes it. Insertions do not belong to any reference word and flag nothing.

    Returns:
        ``[len(reference_words)] bool``.
    """
    alignment = align_sequences(list(reference_words), list(hypothesis_words))
    return alignment.reference_ops != EditOp.CORRECT
