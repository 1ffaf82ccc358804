from math import comb

import numpy as np

from neurolake.mining.significance import fisher_greater, holm, relative_risk, wracc


def brute_fisher(a, n_t, c, n_b):
    k = a + c
    total = comb(n_t + n_b, k)
    return sum(comb(n_t, x) * comb(n_b, k - x) for x in range(a, min(k, n_t) + 1)) / total


def test_fisher_matches_exact_combinatorics():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_t, n_b = rng.integers(1, 40, 2)
        a, c = rng.integers(0, n_t + 1), rng.integers(0, n_b + 1)
        assert (
            abs(fisher_greater(int(a), int(n_t), int(c), int(n_b)) - brute_fisher(int(a), int(n_t), int(c), int(n_b)))
            < 1e-9
        )
    # hand case: 3 of 3 target frames and 0 of 3 background frames have the pattern: 1 / C(6, 3)
    assert abs(fisher_greater(3, 3, 0, 3) - 1 / 20) < 1e-12
    # large counts stay finite and tiny
    assert 0.0 <= fisher_greater(5000, 10000, 100, 10000) < 1e-300


def test_fisher_with_large_counts_matches_scipy():
    """Tails of tens of thousands of terms (a scan's large slices), near the mean and far out:
    scipy's hypergeometric upper tail to 1e-8 relative (sums of log-gammas near 1e6 keep
    about nine digits; the element-by-element ``math.lgamma`` before was no closer)."""
    from scipy.stats import hypergeom

    for a, n_t, c, n_b in [(2100, 20000, 41000, 400000), (2300, 20000, 41000, 400000), (52000, 100000, 48000, 100000)]:
        want = hypergeom.sf(a - 1, n_t + n_b, a + c, n_t)
        assert 1e-200 < want < 1
        assert abs(fisher_greater(a, n_t, c, n_b) - want) <= 1e-8 * want


def test_holm_hand_computed():
    # sorted p: 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone); in input order
    np.testing.assert_allclose(holm(np.array([0.04, 0.01, 0.02])), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])


def test_scores_hand_computed():
    # 30 of 100 target frames, 10 of 200 background frames
    assert abs(relative_risk(np.array([30]), 100, np.array([10]), 200)[0] - 6.0) < 1e-12
    # p(pattern) = 40/300, p(target|pattern) = 30/40, p(target) = 100/300
    assert abs(wracc(np.array([30]), 100, np.array([10]), 200)[0] - (40 / 300) * (30 / 40 - 1 / 3)) < 1e-12
    assert np.isinf(relative_risk(np.array([3]), 10, np.array([0]), 10)[0])
