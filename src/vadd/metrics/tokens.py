"""Sample statistics for plain token arrays that see the correlations between positions.

A sampler that draws every position independently given the same context (MDM at one step) gets each
position's marginal right and every dependence between positions wrong, so the per-position marginals
alone cannot tell MDM from VADD. These statistics compare samples with held-out data:

- ``pair_js``: the Jensen-Shannon divergence (nats) between the joint histograms of two positions
  ``(x^i, x^j)`` (``V x V`` cells), averaged over position pairs (all of them up to ``max_pairs``, else a
  fixed seeded subset). It is the primary statistic of ``vadd compare`` on token data.
- ``joint_js``: the JS divergence between the histograms of whole sequences, where the space ``V^L`` is
  small enough to enumerate (at most ``MAX_JOINT_STATES``): the exact distribution of the sample against
  the empirical distribution of the held-out rows.
- ``marginal_js``: the per-position JS averaged over positions (what independence gets right).

Histogram divergences of finite samples are biased upwards; :func:`token_stats` of ``n`` held-out-like
rows (e.g. training rows) against the same reference is the noise floor a perfect model would reach.
"""
from __future__ import annotations

import numpy as np

from ..rng import numpy_generator
from .js import js_divergence

MAX_JOINT_STATES = 1 << 16
MAX_PAIRS = 256
MAX_PAIR_CELLS = 1 << 20  # V * V beyond this: the pair histograms are too sparse to mean anything


def position_pairs(L: int, max_pairs: int = MAX_PAIRS, seed: int = 0) -> np.ndarray:
    """``(P, 2)`` position pairs ``i < j``: all of them, or ``max_pairs`` drawn once with ``seed``."""
    i, j = np.triu_indices(L, k=1)
    pairs = np.stack([i, j], 1)
    if len(pairs) > max_pairs:
        keep = np.sort(numpy_generator(seed, "token-pairs").choice(len(pairs), max_pairs, replace=False))
        pairs = pairs[keep]
    return pairs


def _counts(codes: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, minlength=size).astype(np.float64)


def token_stats(samples: np.ndarray, reference: np.ndarray, vocab_size: int, pairs: np.ndarray | None = None) -> dict:
    """``{"pair_js", "marginal_js"[, "joint_js"]}`` of ``samples`` ``(N, L)`` against ``reference``
    ``(M, L)``, both integer arrays over ``[0, vocab_size)``."""
    x, r = np.asarray(samples, dtype=np.int64), np.asarray(reference, dtype=np.int64)
    V, L = int(vocab_size), x.shape[1]
    out = {"marginal_js": float(np.mean([js_divergence(_counts(x[:, i], V), _counts(r[:, i], V)) for i in range(L)]))}
    if L >= 2 and V * V <= MAX_PAIR_CELLS:
        pairs = position_pairs(L) if pairs is None else pairs
        out["pair_js"] = float(np.mean([js_divergence(_counts(x[:, i] * V + x[:, j], V * V),
                                                      _counts(r[:, i] * V + r[:, j], V * V)) for i, j in pairs]))
    if V ** L <= MAX_JOINT_STATES:
        w = V ** np.arange(L - 1, -1, -1, dtype=np.int64)
        out["joint_js"] = js_divergence(_counts(x @ w, V ** L), _counts(r @ w, V ** L))
    return out


def primary_stat(vocab_size: int, seq_len: int) -> str:
    """The statistic ``vadd compare`` leads with: the whole sequence's JS where it can be enumerated, else
    the pairwise one (else, for one position or a huge vocabulary, the marginal one)."""
    if vocab_size ** seq_len <= MAX_JOINT_STATES:
        return "joint_js"
    if seq_len >= 2 and vocab_size * vocab_size <= MAX_PAIR_CELLS:
        return "pair_js"
    return "marginal_js"
