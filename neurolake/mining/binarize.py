"""Binarisation: activations ``[frames, units]`` to active/inactive items.

Stateless kernels (numpy only). A spec is a small dict so it can key derived data:

- ``{"method": "quantile", "q": 0.9}``: active where the value exceeds the unit's q-quantile
  over a reference population (the run's ``neurons`` statistics: q in 0.5, 0.9, 0.99);
- ``{"method": "topk", "k": 10}``: the k largest units of each frame (ties broken by unit index);
- ``{"method": "zscore", "z": 2.0}``: active where ``(value - mean) / std > z`` (the unit's
  mean and std from the statistics);
- ``{"method": "absolute", "threshold": 0.0}``: active where ``value > threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neurolake.errors import SpecError
from neurolake.query._stats_kernels import greater_f16

QUANTILE_COLUMNS = {0.5: "q50", 0.9: "q90", 0.99: "q99"}
METHODS = ("quantile", "topk", "zscore", "absolute")


class BinarizationSpec(dict):
    """A checked binarisation spec with its defaults filled in (made by :func:`as_spec` only)."""


def as_spec(spec: str | Mapping[str, Any]) -> BinarizationSpec:
    """The one place a binarisation spec is read: ``"METHOD:VALUE"`` text (:func:`parse_spec`)
    or a mapping; the result passes through :func:`binarize` unchanged."""
    if isinstance(spec, BinarizationSpec):
        return spec
    return BinarizationSpec(parse_spec(spec) if isinstance(spec, str) else normalise_spec(spec))


def normalise_spec(spec: Mapping[str, Any]) -> dict:
    """Check a binarisation spec and return it with defaults filled in."""
    method = spec.get("method")
    if method not in METHODS:
        raise SpecError(f"binarisation method {method!r} unknown; use one of {', '.join(METHODS)}")
    if method == "quantile":
        q = float(spec.get("q", 0.9))
        if q not in QUANTILE_COLUMNS:
            raise SpecError(
                f"quantile binarisation takes q in {sorted(QUANTILE_COLUMNS)} (the neurons statistics), got {q}"
            )
        return {"method": method, "q": q}
    if method == "topk":
        k = int(spec.get("k", 10))
        if k < 1:
            raise SpecError(f"top-k binarisation needs k >= 1, got {k}")
        return {"method": method, "k": k}
    if method == "zscore":
        return {"method": method, "z": float(spec.get("z", 2.0))}
    return {"method": method, "threshold": float(spec.get("threshold", 0.0))}


def parse_spec(text: str) -> dict:
    """``"quantile:0.9"``, ``"topk:10"``, ``"zscore:2"``, ``"absolute:0"`` -> a spec dict."""
    method, _, value = text.partition(":")
    key = {"quantile": "q", "topk": "k", "zscore": "z", "absolute": "threshold"}.get(method)
    if key is None:
        raise SpecError(f"binarisation {text!r}: write METHOD:VALUE with METHOD one of {', '.join(METHODS)}")
    try:
        spec = {"method": method, key: float(value)} if value else {"method": method}
    except ValueError as exc:
        raise SpecError(f"binarisation {text!r}: {value!r} is not a number") from exc
    return normalise_spec(spec)


def binarize(
    x: np.ndarray,
    spec: str | Mapping[str, Any],
    *,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
) -> np.ndarray:
    """Active items of ``x`` ``[frames, units]`` under ``spec``; returns ``[frames, units]`` bool.

    ``thresholds`` (``[units]``, the chosen quantile) is needed by ``quantile``, ``mean`` and
    ``std`` (``[units]``) by ``zscore``.
    """
    spec = as_spec(spec)
    method = spec["method"]
    if method == "quantile" and thresholds is None:
        raise SpecError("quantile binarisation needs the neurons statistics of the layer")
    if method in ("absolute", "quantile"):
        x = np.asarray(x)
        # a scalar, or one threshold per unit (the last axis)
        limits = np.asarray(spec["threshold"] if method == "absolute" else thresholds, dtype=np.float32)
        if x.dtype == np.float16 and x.ndim == 2:
            # Compared in a kernel that widens each row on the fly: numpy's float16 to float32
            # copy of the block costs more than the comparison.
            per_unit = np.broadcast_to(limits, x.shape[1:]).astype(np.float32)
            return greater_f16(np.ascontiguousarray(x).view(np.uint16), per_unit)
        return np.asarray(x, dtype=np.float32) > limits
    x = np.asarray(x, dtype=np.float32)
    if method == "zscore":
        if mean is None or std is None:
            raise SpecError("z-score binarisation needs the neurons statistics of the layer")
        safe = np.where(np.asarray(std) > 0, std, np.inf).astype(np.float32)
        return (x - np.asarray(mean, dtype=np.float32)[None, :]) / safe[None, :] > spec["z"]
    k = min(spec["k"], x.shape[1])
    # stable argsort of -x: equal values keep unit order, so ties go to the lower unit index
    top = np.argsort(-x, axis=1, kind="stable")[:, :k]
    out = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(out, top, True, axis=1)
    return out
