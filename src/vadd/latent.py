"""The global Gaussian latent: diagonal Gaussians, KL, annealing, posterior-collapse diagnostics and the
prior that samplers and likelihood bounds draw ``z`` from."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError, first_line

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

    def kl_standard(self) -> torch.Tensor:
        """Analytic ``KL(self || N(0, I))`` summed over ``d``."""
        return (0.5 * (self.mean**2 + torch.exp(self.logvar) - 1.0 - self.logvar)).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def schedule_steps(value: float, max_steps: int) -> int:
    """A schedule length given as a fraction of ``max_steps`` (<= 1) or as a number of steps (> 1)."""
    return int(round(value * max_steps)) if value <= 1.0 else int(value)


@dataclass(frozen=True)
class Annealing:
    """How an algorithm's training objective moves with the optimiser step (``model.annealing``): the KL
    weight (held at 0 for ``delay`` steps, then linear to ``kl_max`` over ``warmup``) and the late
    importance-weighted phase (``iw_k`` draws of ``z`` from step ``iw_from`` on; ``iw_split``: with the batch
    cut by ``iw_k``). The default is MDM's: nothing scheduled."""

    warmup: int = 0
    delay: int = 0
    kl_max: float = 1.0
    iw_k: int = 1
    iw_from: int = 0
    iw_split: bool = True
    scheduled: bool = False  # whether there is anything to log

    def kl_weight(self, step: int) -> float:
        return kl_weight(step, self.warmup, delay_steps=self.delay, end=self.kl_max)

    def iw(self, step: int) -> int:
        """``K`` of the importance-weighted objective at ``step``, 0 for the DELBO."""
        return self.iw_k if (self.iw_k > 1 and step >= self.iw_from) else 0


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


class StandardNormalPrior(nn.Module):
    """``p(z) = N(0, I)``: the prior VADD trains against (the KL of the DELBO) and, by default, samples from.

    Priors turn noise into draws with :meth:`from_noise` so that a sampler or a bound draws the same ``eps``
    whatever the prior is; a prior that also needs a uniform per draw (a mixture's component) says so with
    ``needs_choice`` and the caller draws one only then, leaving the standard prior's random stream as it was.
    """

    name = "standard"
    needs_choice = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)

    def from_noise(self, eps: torch.Tensor, choice: torch.Tensor | None = None) -> torch.Tensor:
        return eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        """``n`` draws ``[n, d]`` from ``generator``: ``randn(n, d)``, then (if needed) ``rand(n)``."""
        eps = torch.randn(n, self.dim, generator=generator, device=device)
        choice = torch.rand(n, generator=generator, device=device) if self.needs_choice else None
        return self.from_noise(eps, choice)

    def spec(self) -> dict:
        return {"name": self.name}


class GaussianMixturePrior(StandardNormalPrior):
    """An ex-post prior: a full-covariance Gaussian mixture fitted after training to the aggregate posterior
    ``q(z) = E_x r(z | x0, all masked)`` of the training data (:func:`fit_mixture_prior`).

    The DELBO's KL pulls each posterior toward ``N(0, I)`` but never makes their aggregate equal it, so
    ``N(0, I)`` puts mass where no training example's ``z`` lies and the decoder has never been asked to
    decode ("prior holes"); a density fitted to the codes themselves avoids them (two-stage and ex-post
    density estimation: Dai & Wipf 2019, Ghosh et al. 2020). The decoder is unchanged. The model a user
    samples is then ``p(x) = E_{g(z)} p(x | z)`` with ``g`` this mixture, and every likelihood bound of
    :mod:`vadd.bounds` uses ``g``'s exact density, so they stay valid bounds of that model.
    """

    name = "gmm"
    needs_choice = True

    def __init__(self, dim: int, components: int):
        super().__init__(dim)
        if int(components) < 1:
            raise ConfigError(f"a Gaussian-mixture prior needs components >= 1, got {components}")
        c, d = int(components), int(dim)
        self.register_buffer("log_weights", torch.full((c,), -math.log(c)))
        self.register_buffer("means", torch.zeros(c, d))
        self.register_buffer("scale_tril", torch.eye(d).repeat(c, 1, 1))  # Cholesky factors of the covariances

    @property
    def components(self) -> int:
        return int(self.log_weights.shape[0])

    def from_noise(self, eps: torch.Tensor, choice: torch.Tensor | None = None) -> torch.Tensor:
        """Component ``k`` by the inverse CDF of the weights at ``choice`` (uniform), then ``mu_k + L_k eps``."""
        cdf = torch.cumsum(torch.softmax(self.log_weights.double(), 0), 0)
        k = torch.searchsorted(cdf, choice.double().contiguous(), right=True).clamp_max(self.components - 1)
        e = eps.to(self.means.dtype)
        z = torch.empty_like(e)
        for c in k.unique().tolist():  # one component at a time: no [..., d, d] copy of the factors per draw
            sel = k == c
            z[sel] = self.means[c] + e[sel] @ self.scale_tril[c].T
        return z.to(eps.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log g(z)`` summed over ``d`` (float64 inside); ``z`` may have any leading dims."""
        L = self.scale_tril.double()
        eye = torch.eye(self.dim, dtype=L.dtype, device=L.device).expand_as(L)
        inv = torch.linalg.solve_triangular(L, eye, upper=False)           # [C, d, d]: L_c^-1, once
        diff = z.double().unsqueeze(-2) - self.means.double()              # [..., C, d]
        sol = torch.einsum("cij,...cj->...ci", inv, diff)                  # L_c^-1 (z - mu_c)
        log_det = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # [C]
        log_w = torch.log_softmax(self.log_weights.double(), 0)
        comp = -0.5 * (sol.pow(2).sum(-1) + self.dim * LOG_2PI) - log_det + log_w
        return torch.logsumexp(comp, -1).to(z.dtype)

    def spec(self) -> dict:
        return {"name": self.name, "components": self.components}


PRIORS = {"standard": StandardNormalPrior, "gmm": GaussianMixturePrior}


def build_prior(spec: dict | None, dim: int) -> StandardNormalPrior:
    """The prior a model spec names (``None``: ``N(0, I)``, what every model trained before priors existed uses)."""
    spec = dict(spec or {"name": "standard"})
    name = spec.pop("name", "standard")
    if name not in PRIORS:
        raise ConfigError(f"unknown latent prior {name!r}; choose one of {sorted(PRIORS)}")
    return PRIORS[name](dim, **spec)


@torch.no_grad()
def fit_mixture_prior(model, x0: torch.Tensor, components: int, seed: int = 0,
                      batch_size: int = 1024) -> tuple["GaussianMixturePrior", dict]:
    """Fit a :class:`GaussianMixturePrior` to one draw ``z ~ r(z | x0, all masked)`` per row of ``x0`` (the
    training data); the caller installs it (``VADD.install_prior``). EM runs on the CPU (scikit-learn, full
    covariances, seeded); the prior's buffers are on the model's device. Returns ``(prior, summary)``: the
    number of codes, the fit's mean log-density per code and that of ``N(0, I)``."""
    from sklearn.mixture import GaussianMixture

    if x0.shape[0] < 2 * int(components):
        raise ConfigError(f"fitting a {components}-component prior needs at least {2 * int(components)} "
                          f"training rows, got {x0.shape[0]}")
    g = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    codes = []
    for part in torch.split(x0, int(batch_size)):
        post = model.posterior(part.to(device), torch.ones(part.shape, dtype=torch.bool, device=device))
        eps = torch.randn(post.mean.shape, generator=g).to(device=device, dtype=post.mean.dtype)
        codes.append(post.rsample(eps).double().cpu())
    model.train(was_training)
    codes = torch.cat(codes)
    if not torch.isfinite(codes).all():
        raise DataError(f"the recognition model gives non-finite codes z for {int((~torch.isfinite(codes).all(1)).sum())} "
                        "of the rows: no prior can be fitted to them (a diverged model?)")
    try:
        gm = GaussianMixture(int(components), covariance_type="full", reg_covar=1e-4, max_iter=500,
                             random_state=int(seed)).fit(codes.numpy())
    except (ValueError, np.linalg.LinAlgError) as e:  # scikit-learn's own checks and numerics
        raise ConfigError(f"fitting a {components}-component prior to {codes.shape[0]} codes failed: "
                          f"{first_line(e)}") from None
    prior = GaussianMixturePrior(codes.shape[1], components)
    prior.log_weights.copy_(torch.as_tensor(gm.weights_).log())
    prior.means.copy_(torch.as_tensor(gm.means_))
    prior.scale_tril.copy_(torch.linalg.cholesky(torch.as_tensor(gm.covariances_)))
    summary = {"prior": prior.spec(), "codes": int(codes.shape[0]), "converged": bool(gm.converged_),
               "log_density_fitted": float(prior.log_prob(codes).mean()),  # on the CPU, before the move
               "log_density_standard": float(standard_normal_log_prob(codes).mean())}
    return prior.to(device), summary
