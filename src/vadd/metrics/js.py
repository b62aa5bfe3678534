"""Jensen-Shannon divergence between histograms (natural log), and its noise floor."""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, in nats (at most ln 2)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise DataError(f"histograms differ in size: {p.shape} vs {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise DataError("histograms must be non-negative")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def histogram_js(cells: np.ndarray, target: np.ndarray, bins: int) -> float:
    """JS between the histogram of cell indices ``(N, 2)`` and target cell probabilities ``(bins, bins)``."""
    flat = cells[:, 0] * bins + cells[:, 1]
    counts = np.bincount(flat, minlength=bins * bins).astype(np.float64)
    return js_divergence(counts, target)
