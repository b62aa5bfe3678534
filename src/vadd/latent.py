"""The global Gaussian latent: diagonal Gaussians, KL, annealing and posterior-collapse diagnostics."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class DiagGaussian:
    """``N(mean, diag(exp(logvar)))`` over the last dimension ``d``; batch dims in front."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, eps: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Reparameterised draw ``mean + std * eps``; ``eps`` may carry extra leading sample dims."""
        if eps is None:
            eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                              dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density summed over ``d``; ``z`` may have extra leading sample dims."""
        return -0.5 * (((z - self.mean) ** 2) * torch.exp(-self.logvar) + self.logvar + LOG_2PI).sum(-1)

    def kl_standard(self, free_bits: float = 0.0) -> torch.Tensor:
        """Analytic ``KL(self || N(0, I))`` summed over ``d``.

        ``free_bits > 0`` (training only): each dimension's KL is clamped from below at ``free_bits`` nats,
        so dimensions under the floor get no gradient toward the prior (Kingma et al. 2016's remedy for
        posterior collapse). The value is then not the KL; bounds are always evaluated with the true KL.
        """
        per_dim = 0.5 * (self.mean**2 + torch.exp(self.logvar) - 1.0 - self.logvar)
        return (per_dim.clamp_min(free_bits) if free_bits > 0 else per_dim).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def mmd_to_standard_normal(z: torch.Tensor, scales=(0.25, 0.5, 1.0, 2.0), max_rows: int = 128) -> torch.Tensor:
    """Squared MMD between the aggregate posterior, seen through the draws ``z`` ``[B, d]``, and ``N(0, I)``.

    The aggregate posterior ``q(z) = E_x r(z | x)`` is what the prior has to match for prior draws to
    decode well (the "prior hole" problem); the per-example KL of the bound pulls it there only weakly.
    Gaussian kernels ``exp(-|a - b|^2 / (2 l^2))`` summed over the length scales ``scales``, with the
    prior's side in closed form (``E_{p} k(z, .) = (l^2 / (l^2 + 1))^{d/2} exp(-|z|^2 / (2 (l^2 + 1)))``,
    ``E_{p,p} k = (l^2 / (l^2 + 2))^{d/2}``), so no prior draws are needed; the ``q`` side is the unbiased
    U-statistic over the first ``max_rows`` rows (cost ``max_rows^2`` per scale).
    """
    z = z[:max_rows]
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    sq = torch.cdist(z, z).pow(2)
    norms = z.pow(2).sum(-1)
    off = 1.0 - torch.eye(n, dtype=z.dtype, device=z.device)
    total = z.new_zeros(())
    for s in scales:
        l2 = float(s) ** 2
        qq = (torch.exp(-sq / (2.0 * l2)) * off).sum() / (n * (n - 1))
        qp = (l2 / (l2 + 1.0)) ** (d / 2.0) * torch.exp(-norms / (2.0 * (l2 + 1.0))).mean()
        pp = (l2 / (l2 + 2.0)) ** (d / 2.0)
        total = total + qq - 2.0 * qp + pp
    return total


def kl_weight(step: int, warmup_steps: int, start: float = 0.0, delay_steps: int = 0, end: float = 1.0) -> float:
    """Linear KL annealing: ``start`` for the first ``delay_steps`` optimiser steps (an autoencoding phase,
    as in Li et al. 2019's fix for text VAEs), then ``start -> end`` over ``warmup_steps``, then ``end``
    (1: the DELBO; below 1 a beta-VAE weight, no longer a bound)."""
    step = step - max(0, delay_steps)
    if step < 0:
        return float(start)
    if warmup_steps <= 0:
        return float(end)
    return float(start + (end - start) * min(1.0, step / warmup_steps))


def active_units(means: torch.Tensor, threshold: float = 1e-2) -> int:
    """Number of latent dimensions whose posterior mean varies across examples (Burda et al. 2016).

    ``means``: ``[N, d]`` posterior means for N examples. A dimension with ``Var_x E[z|x] <= threshold``
    carries no information about ``x``: the posterior has collapsed onto the prior there.
    """
    if means.shape[0] < 2:
        return 0
    return int((means.float().var(dim=0) > threshold).sum().item())
