"""Training objectives as pure functions of tensors: log-likelihood terms in nats, per example, summed
over positions (losses are their negatives). ``logp`` are log-probabilities ``[B, L, V]`` over the real
vocabulary; ``masked`` is the boolean mask pattern ``[B, L]``.

MDM's ELBO is a bound on ``log p``; VADD's DELBO (and its importance-weighted version) bounds the *joint*
of the masked tokens at each ``t``, and its integral over ``t`` is a training objective, not a bound on
any model's likelihood. Reported likelihoods come from :mod:`vadd.bounds`.
"""
from __future__ import annotations

import math

import torch


def masked_log_likelihood(logp: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """``sum_{i masked} log mu^i[x0^i]`` per example: ``[..., L, V] -> [...]``.

    Unmasked positions are copied by the SUBS parameterisation and contribute exactly 0.
    """
    picked = logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return torch.where(masked, picked, torch.zeros_like(picked)).sum(-1)


def elbo_integrand(weight: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
    """One Monte-Carlo draw of the continuous-time bound: ``w(t) * term``; ``t ~ U(0, 1)``."""
    return weight * term


def delbo_term(recon: torch.Tensor, kl: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
    """The DELBO's inner term ``log p(x0^M | xt, z) - lambda * KL(r || p)`` (at lambda = 1 a lower bound on the
    joint ``log p(x0^M | xt)``; its integral over t is a training objective, not a likelihood bound)."""
    return recon - kl_weight * kl


class LogMeanExp:
    """Streaming ``log mean exp`` over chunks along dim 0, so ``K = 1000`` samples fit in memory."""

    def __init__(self):
        self.lse = None
        self.count = 0

    def update(self, log_w: torch.Tensor) -> None:
        chunk = torch.logsumexp(log_w, dim=0)
        self.lse = chunk if self.lse is None else torch.logaddexp(self.lse, chunk)
        self.count += log_w.shape[0]

    def value(self) -> torch.Tensor:
        return self.lse - math.log(self.count)
