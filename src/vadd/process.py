"""Absorbing (masking) forward process, method.md §2.

Shapes: ``x0`` and ``xt`` are integer tensors ``[B, L]``; ``alpha_t`` broadcasts against ``[B, 1]``.
The mask token is ``mask_id = V`` (one past the real vocabulary).
"""
from __future__ import annotations

import torch


def apply_mask(x0: torch.Tensor, masked: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``xt``: ``x0`` with ``mask_id`` wherever ``masked`` is True."""
    return torch.where(masked, torch.full_like(x0, mask_id), x0)


def mask_pattern(alpha_t: torch.Tensor, seq_len: int, generator=None) -> torch.Tensor:
    """Boolean ``[B, L]``: each position masked independently with probability ``1 - alpha_t`` ``[B]``."""
    u = torch.rand(alpha_t.shape[0], seq_len, generator=generator, device=alpha_t.device)
    return u >= alpha_t.reshape(-1, 1)


def antithetic_times(batch: int, generator=None, device=None, t_min: float = 1e-5) -> torch.Tensor:
    """Stratified ("antithetic") times: ``(u + i / B) mod 1``, one shared uniform offset ``u``.

    Lowers the variance of the Monte-Carlo ELBO over ``t`` (MDLM, MD4). ``t_min`` keeps ``t > 0``.
    """
    return _stratified(batch, generator, device).clamp_min(t_min)


def _stratified(batch: int, generator=None, device=None) -> torch.Tensor:
    """``(u + i / B) mod 1`` for ``i < B``, one shared uniform ``u``: one point in each of B strata."""
    u = torch.rand(1, generator=generator, device=device)
    return (u + torch.arange(batch, device=device) / batch) % 1.0


def time_draw(batch: int, seq_len: int, schedule, generator=None, device=None):
    """Draw ``(t, masked, weight)`` for the usual estimator: antithetic ``t``, ``xt ~ q``, ``w(t)``."""
    t = antithetic_times(batch, generator=generator, device=device)
    return t, mask_pattern(schedule.alpha(t), seq_len, generator), schedule.weight(t)


def count_draw(batch: int, seq_len: int, schedule, generator=None, device=None):
    """Draw ``(t, masked, weight)`` for the masked-count estimator of the continuous-time ELBO.

    Changing variables from ``t`` to ``a = alpha_t`` and summing over mask patterns analytically gives,
    for any integrand ``f(mask, t)`` (``|mask| = m``):

        int_0^1 w(t) E_q[f] dt = E_{m ~ U{1..L}} [ (L / m) E_{mask ~ U(size m), a ~ Beta(L-m+1, m)} f ]

    over ``a in [alpha(1), alpha(0)]``; draws outside that range get weight 0, so the estimate is exact
    for schedules that do not reach ``alpha = 0`` (log-linear). The weight ``L / m <= L`` replaces
    ``w(t) ~ 1/t``: same bound, much lower variance for short sequences. ``m`` is stratified like the
    antithetic times.
    """
    m = (_stratified(batch, generator, device) * seq_len).floor().long().clamp(0, seq_len - 1) + 1  # [B] in 1..L
    keys = torch.rand(batch, seq_len, generator=generator, device=device)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    masked = ranks < m.unsqueeze(1)
    a = _beta(seq_len - m + 1, m, generator)
    lo, hi = schedule.alpha(torch.ones(1, device=device)), schedule.alpha(torch.zeros(1, device=device))
    inside = (a >= lo) & (a <= hi)
    t = schedule.t_of_alpha(a).clamp(1e-5, 1.0)
    weight = torch.where(inside, seq_len / m.float(), torch.zeros_like(a))
    return t, masked, weight


def _beta(a: torch.Tensor, b: torch.Tensor, generator=None) -> torch.Tensor:
    """Beta(a, b) draws for integer a, b >= 1 as the a-th order statistic of a + b - 1 uniforms."""
    n = int((a + b - 1).max())
    u = torch.rand(a.shape[0], n, generator=generator, device=a.device)
    valid = torch.arange(n, device=a.device) < (a + b - 1).unsqueeze(1)
    u = torch.where(valid, u, torch.full_like(u, 2.0)).sort(dim=1).values
    return u.gather(1, (a - 1).unsqueeze(1)).squeeze(1)


DRAWS = {"time": time_draw, "count": count_draw}
