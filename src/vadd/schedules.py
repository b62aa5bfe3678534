"""Noise schedules for the absorbing process.

A schedule maps diffusion time ``t in [0, 1]`` to the probability ``alpha(t)`` that a token is still
clean. It exposes ``alpha``, its analytic derivative ``dalpha`` and the ELBO weight
``weight(t) = -alpha'(t) / (1 - alpha(t))`` (method.md §2). All functions take and return tensors of
any shape.
"""
from __future__ import annotations

import math

import torch

from .errors import ConfigError


class Schedule:
    """Base class: subclasses implement ``alpha`` and ``dalpha``."""

    name = "base"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def t_of_alpha(self, a: torch.Tensor) -> torch.Tensor:
        """Inverse of ``alpha`` (clamped to ``[0, 1]``)."""
        raise NotImplementedError

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        # 1 - alpha can underflow near t = 0; the clamp only matters where the weight is irrelevant
        # (nothing is masked there with probability ~1).
        return -self.dalpha(t) / (1.0 - self.alpha(t)).clamp_min(1e-12)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class LogLinear(Schedule):
    """``alpha_t = 1 - (1 - eps) t`` (MDLM's log-linear noise ``sigma = -log(1 - (1 - eps) t)``)."""

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        self.eps = float(eps)

    def alpha(self, t):
        return 1.0 - (1.0 - self.eps) * t

    def dalpha(self, t):
        return torch.full_like(t, -(1.0 - self.eps))

    def t_of_alpha(self, a):
        return ((1.0 - a) / (1.0 - self.eps)).clamp(0.0, 1.0)


class Linear(Schedule):
    """``alpha_t = 1 - t``: everything is masked at ``t = 1`` (MD4's linear schedule)."""

    name = "linear"

    def alpha(self, t):
        return 1.0 - t

    def dalpha(self, t):
        return -torch.ones_like(t)

    def t_of_alpha(self, a):
        return (1.0 - a).clamp(0.0, 1.0)


class Cosine(Schedule):
    """``alpha_t = cos(pi t / 2)``."""

    name = "cosine"

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def dalpha(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def t_of_alpha(self, a):
        return (2.0 / math.pi) * torch.arccos(a.clamp(-1.0, 1.0))


class Polynomial(Schedule):
    """``alpha_t = 1 - t^k``."""

    name = "polynomial"

    def __init__(self, k: float = 2.0):
        if k <= 0:
            raise ConfigError(f"polynomial schedule needs k > 0, got {k}")
        self.k = float(k)

    def alpha(self, t):
        return 1.0 - t**self.k

    def dalpha(self, t):
        return -self.k * t ** (self.k - 1.0)

    def t_of_alpha(self, a):
        return (1.0 - a).clamp(0.0, 1.0) ** (1.0 / self.k)


class SamplerSchedule(Schedule):
    """``alpha~(t) = (alpha(t) - alpha(1)) / (1 - alpha(1))``: the process the samplers run.

    Samplers start fully masked at ``t = 1`` and reveal with ``alpha~`` (``sampling.reveal_steps``); the
    network still reads the base schedule's ``t``. A bound on the sampler's likelihood must mask with
    ``alpha~`` too: for ``alpha(1) = eps > 0`` (log-linear) the base process leaves a fraction ``eps`` of
    tokens clean at ``t = 1``, which the sampler's all-masked start gives probability 0.
    """

    name = "sampler"

    def __init__(self, base: Schedule):
        self.base = base

    def _a1(self, like: torch.Tensor) -> torch.Tensor:
        # alpha(1) in the argument's dtype, so that alpha~(1) is exactly 0 (and alpha~(0) exactly 1)
        return self.base.alpha(torch.ones((), dtype=like.dtype, device=like.device))

    def alpha(self, t):
        a1 = self._a1(t)
        return (self.base.alpha(t) - a1) / (1.0 - a1)

    def dalpha(self, t):
        return self.base.dalpha(t) / (1.0 - self._a1(t))

    def t_of_alpha(self, a):
        a1 = self._a1(a)
        return self.base.t_of_alpha(a1 + (1.0 - a1) * a)


def sampler_schedule(schedule: Schedule) -> Schedule:
    """The schedule the samplers run for a model trained with ``schedule`` (itself when ``alpha(1) = 0``)."""
    if isinstance(schedule, SamplerSchedule):
        return schedule
    a1 = float(schedule.alpha(torch.ones((), dtype=torch.float64)))
    return schedule if a1 == 0.0 else SamplerSchedule(schedule)


SCHEDULES = {cls.name: cls for cls in (LogLinear, Linear, Cosine, Polynomial)}


def get_schedule(name: str, **kwargs) -> Schedule:
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
