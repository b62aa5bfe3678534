"""MDM and VADD as two small classes that share every line they can (method.md §3-4).

``MaskedDiffusion`` is the MDM baseline: a SUBS denoiser ``mu_theta(xt, t)`` and the continuous-time
ELBO. ``VADD`` subclasses it and overrides one hook, ``bound_term``: the per-``(x0, t, xt)`` training term
becomes the DELBO term (or its importance-weighted version, IWAE training), with ``z`` drawn from the
recognition model. The DELBO is a training objective, not a likelihood bound: reported likelihoods come
from ``vadd.bounds``. Samplers (``vadd.samplers``) only call ``log_probs`` and never touch the encoder.

Shapes: ``x0, xt`` ``[B, L]`` int64 with ``mask_id = V``; ``t`` ``[B]``; ``z`` ``[B, d]``.
All bounds are per example, in nats, summed over the ``L`` positions.
"""
from __future__ import annotations

import torch
from torch import nn

from . import objectives, process
from .errors import ConfigError, DataError
from .latent import Annealing, DiagGaussian, build_prior, schedule_steps, standard_normal_log_prob
from .schedules import Schedule
from .samplers import ALL as ALL_SAMPLERS
from .samplers import FIXED_Z, FRESH_Z, MDM

ESTIMATORS = tuple(process.DRAWS)
OBJECTIVES = ("delbo", "fixed_z")  # VADD's training objectives (VADD.__init__)


class MaskedDiffusion(nn.Module):
    """The MDM baseline (MDLM / MD4): masked diffusion with the SUBS parameterisation."""

    name = "mdm"
    label = "MDM"
    samplers = (MDM,)  # the samplers this model runs (vadd.samplers), its own first
    latent_dim = 0

    def __init__(self, denoiser: nn.Module, schedule: Schedule, vocab_size: int, seq_len: int,
                 estimator: str = "time"):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ConfigError(f"unknown ELBO estimator {estimator!r}; choose one of {ESTIMATORS}")
        self.estimator = estimator
        self.denoiser = denoiser
        self.schedule = schedule
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len)
        self.mask_id = self.vocab_size

    # ---- inputs -------------------------------------------------------------------------------
    def check_tokens(self, x: torch.Tensor, allow_mask: bool = False) -> None:
        """Raise a clear error for wrong shapes or tokens outside ``[0, V)`` (``[0, V]`` with masks)."""
        if x.dim() != 2:
            raise DataError(f"expected token ids of shape [batch, length], got shape {tuple(x.shape)}")
        if x.shape[1] != self.seq_len:
            raise DataError(f"sequence length {x.shape[1]} does not match the model's {self.seq_len}")
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise DataError(f"token ids must be integers, got {x.dtype}")
        high = self.vocab_size + (1 if allow_mask else 0)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= high):
            bad = x[(x < 0) | (x >= high)][0].item()
            raise DataError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})"
                             + (f" (mask id {self.mask_id} allowed)" if allow_mask else ""))

    @property
    def time_conditioned(self) -> bool:
        """Whether the denoiser reads ``t`` (then outputs cannot be reused across sampling steps)."""
        return bool(getattr(self.denoiser, "time_conditioned", True))

    # ---- the network -------------------------------------------------------------------------
    def log_probs(self, xt: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``log mu_theta(xt, t[, z])``: ``[B, L, V]`` log-probabilities over the real vocabulary.

        SUBS: the mask token gets no mass (it is not in the output) and unmasked positions are carried
        over by the callers, so only masked positions' rows are ever used.
        """
        logits = self.denoiser(xt, t, z)
        # at least float32 (bf16 logits are upcast); a float64 model keeps its precision
        return torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)

    # ---- the bound ---------------------------------------------------------------------------
    def bound_term(self, x0, xt, masked, t, kl_weight: float = 1.0, num_samples: int = 0, eps=None):
        """Per-example term whose ``w(t)``-weighted integral over ``t`` is the bound: ``[B]``, stats."""
        return objectives.masked_log_likelihood(self.log_probs(xt, t), x0, masked), {}

    def _draw(self, x0, generator=None, estimator=None, shard=(0, 1), num_samples: int = 0):
        """``(t, xt, masked, weight, eps)`` with ``E[weight * term]`` the continuous-time bound.

        ``shard = (rank, world)``: the noise is drawn for the whole global batch of ``world * B``
        examples and this rank keeps its slice, so a step on ``world`` processes draws exactly what one
        process with the global batch draws (the distributed path is the same training).
        ``eps`` is the reparameterisation noise of ``z`` (VADD), ``None`` for MDM: ``[B, d]``, or
        ``[K, B, d]`` for ``num_samples = K > 0`` (the importance-weighted bound's draws).
        """
        B, L = x0.shape
        rank, world = shard
        G, sl = B * world, slice(rank * B, (rank + 1) * B)
        name = estimator or self.estimator
        if name not in process.DRAWS:
            raise ConfigError(f"unknown ELBO estimator {name!r}; choose one of {tuple(process.DRAWS)}")
        draw = process.DRAWS[name]
        t, masked, weight = (a[sl] for a in draw(G, L, self.schedule, generator=generator, device=x0.device))
        eps = None
        if self.latent_dim:
            shape = (num_samples, G, self.latent_dim) if num_samples > 0 else (G, self.latent_dim)
            eps = torch.randn(shape, generator=generator, device=x0.device)[..., sl, :]
        xt = process.apply_mask(x0, masked, self.mask_id)
        return t, xt, masked, weight, eps

    def loss(self, x0: torch.Tensor, kl_weight: float = 1.0, generator=None, shard=(0, 1), num_samples: int = 0):
        """Training loss (negative bound, nats per token, mean over this rank's examples) and statistics.

        ``num_samples = K > 0`` (VADD): the importance-weighted bound with ``K`` reparameterised draws of
        ``z`` per example instead of the DELBO (IWAE training; ``kl_weight`` does not apply to it).
        """
        t, xt, masked, weight, eps = self._draw(x0, generator, shard=shard, num_samples=num_samples)
        term, stats = self.bound_term(x0, xt, masked, t, kl_weight=kl_weight, num_samples=num_samples, eps=eps)
        per_example = objectives.elbo_integrand(weight, term)
        unweighted = stats.pop("unweighted", None)  # a per-example term counted once, not weighted by w(t)
        if unweighted is not None:
            per_example = per_example + unweighted
        loss = -per_example.mean() / self.seq_len
        stats = {k: v.detach() for k, v in stats.items()}
        stats["loss"] = loss.detach()
        return loss, stats

    def annealing(self, algo_cfg: dict, max_steps: int) -> Annealing:
        """How the training objective moves with the step: MDM's does not."""
        return Annealing()

    def extra_repr(self) -> str:
        return (f"vocab_size={self.vocab_size}, seq_len={self.seq_len}, schedule={self.schedule}, "
                f"estimator={self.estimator!r}")


class VADD(MaskedDiffusion):
    """Variational autoencoding discrete diffusion: MDM conditioned on a global latent ``z``."""

    name, label = "vadd", "VADD"
    samplers = (FRESH_Z, FIXED_Z)

    def __init__(self, denoiser: nn.Module, encoder: nn.Module, schedule: Schedule, vocab_size: int,
                 seq_len: int, latent_dim: int, estimator: str = "time", eval_chunk_tokens: int = 2**18,
                 mask_gate: bool = False, objective: str = "delbo", prior: dict | None = None):
        super().__init__(denoiser, schedule, vocab_size, seq_len, estimator)
        # training only: "delbo" (the paper's) or "fixed_z", the ELBO of the sampler with one z per sample
        # (VADD-CS): z from r(z | x0, all masked) at every t and its KL paid once per example, not weighted by
        # w(t) with the reconstruction: the objective is then the bound vadd.bounds reports for that sampler
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown VADD objective {objective!r}; choose one of {OBJECTIVES}")
        self.objective = objective
        self.encoder = encoder
        self.latent_dim = int(latent_dim)
        # the prior the samplers draw z from and the bounds weigh it by: N(0, I), the one training's KL uses,
        # unless a Gaussian mixture was fitted to the aggregate posterior after training (vadd.latent)
        self.prior = build_prior(prior, self.latent_dim)
        self.eval_chunk_tokens = int(eval_chunk_tokens)  # rows * L per network call of the IW bound
        # A learned gate in [0, 1] per latent unit, a function of the masked fraction, that moves the
        # posterior toward the prior: the KL is paid at every masking level with weight w(t) ~ 1/t, while
        # z only helps where much is masked, so a posterior that cannot switch itself off by masking level
        # collapses. Starts at 0.5 everywhere.
        self.mask_gate = None
        if mask_gate:
            self.mask_gate = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, self.latent_dim))
            nn.init.zeros_(self.mask_gate[2].bias)

    def install_prior(self, prior) -> None:
        """Draw ``z`` from ``prior`` from now on (samplers and bounds), and save it with the model's spec."""
        self.prior = prior
        if hasattr(self, "spec"):
            self.spec = dict(self.spec, prior=prior.spec())

    def annealing(self, algo_cfg: dict, max_steps: int) -> Annealing:
        """The KL warm-up (``algo.kl_delay``, ``kl_warmup``, ``kl_max``) and the late importance-weighted phase
        (``algo.iw_k``, ``iw_from``, ``iw_split``); lengths are fractions of ``max_steps`` or step counts."""
        return Annealing(warmup=schedule_steps(float(algo_cfg["kl_warmup"]), max_steps),
                         delay=schedule_steps(float(algo_cfg["kl_delay"]), max_steps), kl_max=float(algo_cfg["kl_max"]),
                         iw_k=int(algo_cfg["iw_k"]), iw_from=schedule_steps(float(algo_cfg["iw_from"]), max_steps),
                         iw_split=bool(algo_cfg["iw_split"]), scheduled=True)

    def posterior(self, x0: torch.Tensor, masked: torch.Tensor) -> DiagGaussian:
        """``r_phi(z | x0, xt)`` from the clean tokens and the mask pattern.

        Where nothing is masked, ``log p(x0 | xt, z) = 0`` whatever ``z`` is, so the best posterior is
        the prior: we set it exactly (our default). This removes a KL term weighted by ``w(t) ~ 1/t``
        that would otherwise add variance at small ``t``. With ``mask_gate`` the mean and log-variance are
        further scaled by a learned gate of the masked fraction (the prior where the gate is 0).
        """
        mean, logvar = self.encoder(x0, masked)
        gate = masked.any(dim=-1, keepdim=True).to(mean.dtype)
        if self.mask_gate is not None:
            frac = masked.to(mean.dtype).mean(dim=-1, keepdim=True)
            gate = gate * torch.sigmoid(self.mask_gate(frac))
        return DiagGaussian(mean * gate, logvar.clamp(-12.0, 8.0) * gate)

    def bound_term(self, x0, xt, masked, t, kl_weight: float = 1.0, num_samples: int = 0, eps=None):
        fixed_z = self.objective == "fixed_z" and num_samples <= 0
        post = self.posterior(x0, torch.ones_like(masked) if fixed_z else masked)
        if num_samples <= 0:  # training: one reparameterised draw, analytic KL
            z = post.rsample(eps)
            kl = post.kl_standard()
            recon = objectives.masked_log_likelihood(self.log_probs(xt, t, z), x0, masked)
            stats = {"kl": kl.mean(), "recon": recon.mean()}
            if fixed_z:  # the KL once per example, outside the w(t)-weighted integrand (MaskedDiffusion.loss)
                stats["unweighted"] = -kl_weight * kl
                return recon, stats
            return objectives.delbo_term(recon, kl, kl_weight), stats
        # the importance-weighted joint of the masked tokens with K = num_samples, streamed in chunks of z
        # draws (``eps``: the [K, B, d] draws, else fresh ones): IWAE training. Like the DELBO, its integral
        # over t is a training objective, not a likelihood bound (vadd.bounds has those)
        B = x0.shape[0]
        per_chunk = max(1, min(num_samples, self.eval_chunk_tokens // max(B * self.seq_len, 1)))
        acc = objectives.LogMeanExp()
        done = 0
        while done < num_samples:
            k = min(per_chunk, num_samples - done)
            e = eps[done:done + k] if eps is not None else torch.randn(k, *post.mean.shape, device=x0.device)
            z = post.rsample(e)  # [k, B, d]
            logp = self.log_probs(xt.repeat(k, 1), t.repeat(k), z.reshape(k * B, -1)).view(k, B, *xt.shape[1:], -1)
            log_lik = objectives.masked_log_likelihood(logp, x0.expand(k, *x0.shape), masked.expand(k, *masked.shape))
            acc.update(log_lik + standard_normal_log_prob(z) - post.log_prob(z))
            done += k
        return acc.value(), ({"kl": post.kl_standard().mean()} if self.training else {})


class Autoregressive(nn.Module):
    """The autoregressive baseline for likelihood tables: exact NLL, trained by the same loop."""

    name, label = "ar", "AR"
    samplers = ()  # a likelihood baseline: the samplers here are for masked diffusion
    latent_dim = 0
    time_conditioned = False
    check_tokens = MaskedDiffusion.check_tokens
    annealing = MaskedDiffusion.annealing  # nothing scheduled

    def __init__(self, net: nn.Module, vocab_size: int, seq_len: int):
        super().__init__()
        self.net, self.vocab_size, self.seq_len = net, int(vocab_size), int(seq_len)
        self.mask_id = self.vocab_size

    def loss(self, x0, kl_weight: float = 1.0, generator=None, shard=(0, 1), num_samples: int = 0):
        """Mean token NLL (the diffusion losses' other arguments are accepted and ignored)."""
        loss = self.net.token_nll(x0).mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def nll_bound(self, x0, num_samples: int = 1, num_t: int = 1, generator=None, estimator=None) -> torch.Tensor:
        """Exact ``-log p(x0)`` in nats per example (the arguments of the diffusion bounds are ignored)."""
        self.check_tokens(x0)
        return self.net.token_nll(x0).sum(-1).double()


ALGORITHMS = {"mdm": MaskedDiffusion, "vadd": VADD, "ar": Autoregressive}
# table labels of the samplers' and algorithms' names, read off the objects (MDM and VADD name both)
LABELS = {**{s.name: s.label for s in ALL_SAMPLERS}, **{a.name: a.label for a in ALGORITHMS.values()}}
