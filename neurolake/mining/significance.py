"""Discriminative scores and significance of patterns between a target and a background.

For a pattern with ``a`` of ``n_t`` target frames and ``c`` of ``n_b`` background frames:

- relative risk ``(a / n_t) / (c / n_b)`` (inf when ``c = 0 < a``);
- WRAcc ``p(pattern) * (p(target | pattern) - p(target))``;
- one-sided Fisher exact test: the probability, with the margins fixed, of ``a`` or more
  pattern frames in the target (hypergeometric upper tail), computed exactly in log space;
- Holm's step-down correction for the number of patterns tested.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln


def _log_comb(n: np.ndarray | np.floating, k: np.ndarray | np.floating) -> np.ndarray:
    # scipy's log-gamma on whole arrays: math.lgamma element by element took 10 ms a test
    # for the 100,000-term tails of a scan's large slices
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def fisher_greater(a: int, n_t: int, c: int, n_b: int) -> float:
    """P(X >= a) for X ~ Hypergeometric(population n_t + n_b, successes a + c, draws n_t)."""
    k_total = a + c
    hi = min(k_total, n_t)
    if a > hi:
        return 0.0
    x = np.arange(a, hi + 1, dtype=np.float64)
    log_p = (
        _log_comb(np.float64(n_t), x)
        + _log_comb(np.float64(n_b), k_total - x)
        - _log_comb(np.float64(n_t + n_b), np.float64(k_total))
    )
    top = log_p.max()
    return float(min(1.0, math.exp(top) * np.exp(log_p - top).sum()))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


def relative_risk(a: np.ndarray, n_t: int, c: np.ndarray, n_b: int) -> np.ndarray:
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rr = (a / n_t) / (c / n_b)
    return np.where((c == 0) & (a == 0), 1.0, rr)


def wracc(a: np.ndarray, n_t: int, c: np.ndarray, n_b: int) -> np.ndarray:
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    n = n_t + n_b
    cover = a + c
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cover > 0, a / cover, 0.0)
    return cover / n * (precision - n_t / n)
