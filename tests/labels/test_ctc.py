"""CTC greedy decoding and forced alignment: hand-computed cases and two oracles
(exhaustive path enumeration on tiny inputs, torchaudio's forced_align on larger ones)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchaudio.functional

from neurolake.errors import InputError
from neurolake.labels.ctc import collapse_ctc, forced_align, greedy_decode, min_ctc_frames


def _log(probabilities) -> np.ndarray:
    return np.log(np.asarray(probabilities, dtype=np.float64)).astype(np.float32)


def test_collapse_merges_repeats_then_drops_blanks():
    # runs: [0] [1 1] [0] [1] [2 2] [0] -> 1, 1, 2 once blanks are gone; the blank between
    # the two 1-runs is what keeps them apart.
    assert collapse_ctc(np.array([0, 1, 1, 0, 1, 2, 2, 0])).tolist() == [1, 1, 2]
    assert collapse_ctc(np.array([1, 1, 1])).tolist() == [1]
    assert collapse_ctc(np.array([], dtype=np.int64)).tolist() == []


def test_greedy_decode_hand_case():
    # Per frame the largest probability: 0.5 (tok 1), 0.6 (tok 1), 0.7 (blank), 0.8 (tok 2).
    probs = [
        [0.2, 0.5, 0.3],
        [0.3, 0.6, 0.1],
        [0.7, 0.2, 0.1],
        [0.1, 0.1, 0.8],
    ]
    decoded = greedy_decode(_log(probs))
    assert decoded.frame_tokens.tolist() == [1, 1, 0, 2]
    np.testing.assert_allclose(decoded.frame_probs, [0.5, 0.6, 0.7, 0.8], rtol=1e-6)
    assert decoded.frame_probs.dtype == np.float32
    assert decoded.token_ids.tolist() == [1, 2]


def test_forced_align_hand_case_differs_from_greedy():
    # One target token (1) over 3 frames, P(token 1) = .6, .3, .8 and P(blank) = .4, .7, .2.
    # The paths that collapse to "1" and their probabilities:
    #   - - 1 : .4 * .7 * .8 = .224   <- best
    #   - 1 1 : .4 * .3 * .8 = .096
    #   1 1 1 : .6 * .3 * .8 = .144
    #   1 - - : .6 * .7 * .2 = .084
    #   1 1 - : .6 * .3 * .2 = .036
    #   - 1 - : .4 * .3 * .2 = .024
    # (1 - 1 collapses to "1 1" and is not allowed.) Greedy would read 1 - 1.
    probs = [[0.4, 0.6], [0.7, 0.3], [0.2, 0.8]]
    alignment = forced_align(_log(probs), np.array([1]))
    assert alignment.target_index.tolist() == [-1, -1, 0]
    assert alignment.frame_tokens.tolist() == [0, 0, 1]
    assert alignment.log_likelihood == pytest.approx(math.log(0.224), rel=1e-6)
    assert greedy_decode(_log(probs)).frame_tokens.tolist() == [1, 0, 1]


def test_forced_align_repeated_token_needs_a_blank():
    # "1 1" in 3 frames has a single path, 1 - 1, however unlikely the middle blank is.
    probs = [[0.1, 0.9], [0.01, 0.99], [0.1, 0.9]]
    alignment = forced_align(_log(probs), np.array([1, 1]))
    assert alignment.target_index.tolist() == [0, -1, 1]
    assert alignment.log_likelihood == pytest.approx(math.log(0.9 * 0.01 * 0.9), rel=1e-5)
    assert min_ctc_frames(np.array([1, 1])) == 3
    assert min_ctc_frames(np.array([1, 2, 2, 2, 3])) == 7


def test_forced_align_reports_a_reference_that_cannot_fit():
    probs = [[0.5, 0.5], [0.5, 0.5]]
    with pytest.raises(InputError, match="needs at least 3 frames"):
        forced_align(_log(probs), np.array([1, 1]))


def test_forced_align_empty_reference_is_all_blank():
    alignment = forced_align(_log([[0.1, 0.9], [0.2, 0.8]]), np.array([], dtype=np.int64))
    assert alignment.target_index.tolist() == [-1, -1]
    assert alignment.log_likelihood == pytest.approx(math.log(0.1 * 0.2), rel=1e-5)


def test_forced_align_rejects_bad_inputs():
    log_probs = _log([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(InputError, match="lie in"):
        forced_align(log_probs, np.array([2]))
    with pytest.raises(InputError, match="blank"):
        forced_align(log_probs, np.array([0]))
    with pytest.raises(InputError, match="NaN"):
        forced_align(np.full((3, 2), np.nan, dtype=np.float32), np.array([1]))
    with pytest.raises(InputError, match="2-D"):
        forced_align(np.zeros(3, dtype=np.float32), np.array([1]))
    impossible = log_probs.copy()
    impossible[:, 1] = -np.inf
    with pytest.raises(InputError, match="non-zero probability"):
        forced_align(impossible, np.array([1]))


def _brute_force_best(log_probs: np.ndarray, targets: list[int]) -> float:
    """Best score over every token sequence of length T that collapses to targets."""
    n_frames, n_tokens = log_probs.shape
    best = -math.inf
    for path in itertools.product(range(n_tokens), repeat=n_frames):
        if collapse_ctc(np.array(path)).tolist() == targets:
            best = max(best, float(sum(log_probs[t, k] for t, k in enumerate(path))))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_forced_align_matches_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    n_frames = int(rng.integers(3, 7))
    log_probs = np.log(rng.dirichlet(np.ones(3), size=n_frames)).astype(np.float32)
    targets = rng.integers(1, 3, size=int(rng.integers(1, 4))).tolist()
    if min_ctc_frames(np.array(targets)) > n_frames:
        targets = targets[:1]
    alignment = forced_align(log_probs, np.array(targets))
    path_score = float(log_probs[np.arange(n_frames), alignment.frame_tokens].sum())
    assert collapse_ctc(alignment.frame_tokens).tolist() == targets
    assert alignment.log_likelihood == pytest.approx(path_score, abs=1e-5)
    best = _brute_force_best(log_probs, targets)
    assert alignment.log_likelihood == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_forced_align_matches_torchaudio(seed):
    rng = np.random.default_rng(100 + seed)
    n_frames, n_tokens = 200, 12
    # Peaky, model-like posteriors: a sharp Dirichlet puts most mass on one token per frame.
    log_probs = np.log(rng.dirichlet(np.full(n_tokens, 0.3), size=n_frames)).astype(np.float32)
    targets = rng.integers(1, n_tokens, size=60)
    targets[5] = targets[4]  # make sure repeats (which need a blank) are exercised
    ours = forced_align(log_probs, targets)

    theirs, scores = torchaudio.functional.forced_align(
        torch.from_numpy(log_probs)[None], torch.from_numpy(targets.astype(np.int32))[None], blank=0
    )
    assert ours.frame_tokens.tolist() == theirs[0].tolist()
    assert ours.log_likelihood == pytest.approx(float(scores[0].double().sum()), abs=1e-3)
    # target_index points into the reference: token-aligned frames read the targets in order.
    on_token = ours.target_index >= 0
    assert np.all(np.diff(ours.target_index[on_token]) >= 0)
    assert np.array_equal(targets[ours.target_index[on_token]], ours.frame_tokens[on_token])
    assert set(ours.target_index[on_token].tolist()) == set(range(targets.size))
