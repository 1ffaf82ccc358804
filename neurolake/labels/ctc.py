"""CTC decoding and forced alignment kernels.

Both functions work on one utterance's log-probabilities ``[frames, tokens]`` as a model
adapter returns them (natural-log probabilities, blank at token index 0 unless told
otherwise). They are pure numpy/numba functions: no torch, no Ray, no store.

- :func:`greedy_decode` takes the best token of every frame (the "greedy path") and collapses
  it the CTC way (merge repeats, then drop blanks).
- :func:`forced_align` finds the single most likely CTC path that collapses to a given
  reference token sequence (Viterbi over the blank-interleaved sequence) and says, for every
  frame, which reference token it is aligned to, or that it is aligned to a blank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from neurolake.errors import InputError

__all__ = [
    "CtcAlignment",
    "GreedyDecoding",
    "collapse_ctc",
    "forced_align",
    "greedy_decode",
    "min_ctc_frames",
]


@dataclass(frozen=True)
class GreedyDecoding:
    """The greedy (best token per frame) CTC path of one utterance.

    Attributes:
        frame_tokens: ``[frames] int64`` token id with the highest log-probability per frame.
        frame_probs: ``[frames] float32`` probability (not log) of that token.
        token_ids: ``[n] int64`` the collapsed path: repeats merged, blanks dropped.
    """

    frame_tokens: np.ndarray
    frame_probs: np.ndarray
    token_ids: np.ndarray


@dataclass(frozen=True)
class CtcAlignment:
    """The Viterbi CTC alignment of a reference token sequence to one utterance.

    Attributes:
        target_index: ``[frames] int64`` for every frame, the position in the reference
            sequence (0-based, into ``targets``) of the token the frame is aligned to, or
            ``-1`` where the frame is aligned to a blank.
        frame_tokens: ``[frames] int64`` the token id of the aligned path per frame
            (``targets[target_index]``, or the blank id where ``target_index`` is ``-1``).
        log_likelihood: natural-log probability of the best path (sum over frames).
    """

    target_index: np.ndarray
    frame_tokens: np.ndarray
    log_likelihood: float


def _check_log_probs(log_probs: np.ndarray) -> np.ndarray:
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2:
        raise InputError(f"log-probabilities must be a 2-D array [frames, tokens], got shape {log_probs.shape}")
    if not np.issubdtype(log_probs.dtype, np.floating):
        raise InputError(f"log-probabilities must be floating point, got dtype {log_probs.dtype}")
    if np.isnan(log_probs).any():
        raise InputError("log-probabilities contain NaN; check the model output for this input")
    return log_probs


def collapse_ctc(frame_tokens: np.ndarray, blank: int = 0) -> np.ndarray:
    """Collapse a CTC path: merge runs of the same token, then drop blanks.

    Args:
        frame_tokens: ``[frames]`` integer token ids.
        blank: id of the blank token.

    Returns:
        ``[n] int64`` the label sequence the path stands for.
    """
    path = np.asarray(frame_tokens, dtype=np.int64)
    if path.size == 0:
        return path
    run_starts = np.ones(path.shape, dtype=bool)
    run_starts[1:] = path[1:] != path[:-1]
    return path[run_starts & (path != blank)]


def greedy_decode(log_probs: np.ndarray, blank: int = 0) -> GreedyDecoding:
    """Greedy CTC decoding of one utterance.

    Args:
        log_probs: ``[frames, tokens]`` float natural-log probabilities.
        blank: id of the blank token.

    Returns:
        The per-frame best tokens with their probabilities and the collapsed sequence.
        Ties between tokens go to the lowest id (``numpy.argmax``).

    Raises:
        InputError: ``log_probs`` is not a 2-D float array or contains NaN.
    """
    log_probs = _check_log_probs(log_probs)
    frame_tokens = np.argmax(log_probs, axis=1).astype(np.int64)
    best = np.take_along_axis(log_probs, frame_tokens[:, None], axis=1)[:, 0]
    return GreedyDecoding(
        frame_tokens=frame_tokens,
        frame_probs=np.exp(best.astype(np.float64)).astype(np.float32),
        token_ids=collapse_ctc(frame_tokens, blank),
    )


def min_ctc_frames(targets: np.ndarray) -> int:
    """Fewest frames any CTC path for ``targets`` needs.

    One frame per token, plus one blank between every two equal neighbours (CTC merges
    repeats, so ``L L`` must be written ``L - L``).

    Args:
        targets: ``[n]`` integer token ids (no blanks).
    """
    targets = np.asarray(targets)
    return int(targets.size + np.count_nonzero(targets[1:] == targets[:-1]))


@numba.njit(cache=True, nogil=True)
def _viterbi_states(log_probs, targets, blank):  # pragma: no cover - compiled
    """Best path over the blank-interleaved states; returns (state per frame, log-likelihood).

    State ``s`` of ``2 * n + 1`` is a blank when even and ``targets[(s - 1) // 2]`` when odd.
    """
    n_frames = log_probs.shape[0]
    n_states = 2 * targets.shape[0] + 1
    state_token = np.empty(n_states, dtype=np.int64)
    for s in range(n_states):
        state_token[s] = blank if s % 2 == 0 else targets[(s - 1) // 2]
    # A skip from s - 2 to s is allowed only onto a token that differs from the one two
    # states back: skipping the blank between two equal tokens would merge them.
    can_skip = np.zeros(n_states, dtype=np.bool_)
    for s in range(2, n_states):
        can_skip[s] = state_token[s] != blank and state_token[s] != state_token[s - 2]

    neg_inf = -np.inf
    prev = np.full(n_states, neg_inf)
    cur = np.empty(n_states)
    prev[0] = log_probs[0, state_token[0]]
    if n_states > 1:
        prev[1] = log_probs[0, state_token[1]]
    # 0 = stay, 1 = from s - 1, 2 = from s - 2; int8 keeps [frames, states] small.
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    for t in range(1, n_frames):
        for s in range(n_states):
            best = prev[s]
            move = 0
            if s >= 1 and prev[s - 1] > best:
                best = prev[s - 1]
                move = 1
            if can_skip[s] and prev[s - 2] > best:
                best = prev[s - 2]
                move = 2
            cur[s] = best + log_probs[t, state_token[s]]
            back[t, s] = move
        prev, cur = cur, prev

    # The path must end on the last token or on the blank after it.
    state = n_states - 1
    if n_states > 1 and prev[n_states - 2] > prev[n_states - 1]:
        state = n_states - 2
    score = prev[state]
    states = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        states[t] = state
        state -= back[t, state]
    return states, score


def forced_align(log_probs: np.ndarray, targets: np.ndarray, blank: int = 0) -> CtcAlignment:
    """Viterbi CTC alignment of a reference token sequence to one utterance.

    Among all CTC paths of length ``frames`` that collapse to ``targets``, returns the one
    with the highest total log-probability. Runs in ``O(frames * (2 * n + 1))`` time with a
    compiled loop; memory is one ``int8`` back-pointer per frame and state.

    Args:
        log_probs: ``[frames, tokens]`` float natural-log probabilities.
        targets: ``[n]`` integer token ids of the reference, without blanks; may be empty
            (then every frame is aligned to blank).
        blank: id of the blank token.

    Returns:
        The per-frame reference position (``-1`` for blank), the per-frame token ids of the
        path and its log-likelihood. Exact ties between predecessors are broken towards
        staying in the same state, then towards the state just before it; a path may end on
        the last token or the blank after it, and the token wins a tie.

    Raises:
        InputError: the reference needs more frames than there are (see
            :func:`min_ctc_frames`), it contains the blank or an id outside the token list,
            every path has probability zero, or ``log_probs`` is malformed.
    """
    log_probs = _check_log_probs(log_probs)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    n_frames, n_tokens = log_probs.shape
    if targets.size and (targets.min() < 0 or targets.max() >= n_tokens):
        raise InputError(
            f"reference token ids must lie in [0, {n_tokens}); got range [{targets.min()}, {targets.max()}]"
        )
    if np.any(targets == blank):
        raise InputError(f"the reference contains the blank token id {blank}; remove it")
    needed = min_ctc_frames(targets)
    if needed > n_frames:
        raise InputError(
            f"the reference needs at least {needed} frames ({targets.size} tokens and "
            f"{needed - targets.size} repeats) but the model output has only {n_frames}; "
            "the transcript is too long for the audio or belongs to another utterance"
        )
    if n_frames == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CtcAlignment(target_index=empty, frame_tokens=empty, log_likelihood=0.0)

    states, score = _viterbi_states(np.ascontiguousarray(log_probs), targets, blank)
    if not np.isfinite(score):
        raise InputError("no CTC path for the reference has non-zero probability under the model output")
    is_token = states % 2 == 1
    target_index = np.where(is_token, (states - 1) // 2, -1)
    frame_tokens = np.full(n_frames, blank, dtype=np.int64)
    frame_tokens[is_token] = targets[target_index[is_token]]
    return CtcAlignment(
        target_index=target_index.astype(np.int64),
        frame_tokens=frame_tokens,
        log_likelihood=float(score),
    )
