"""Valid likelihood bounds, named by the model they bound, and the one evaluator every caller uses.

Each bound is an upper bound on ``-log p(x0)`` (nats per example) of a model a user can sample:

- ``continuous``: the sampler with a fresh ``z`` per step as ``T -> inf``. It reveals one token at a
  time, each from the *prior-averaged* marginal ``mu^i(xt) = E_{p(z)} mu^i(xt, z)``, so the bound is

      int_0^1 w(t) E_q sum_{i in M} -log (1/K) sum_k mu^i(xt, z_k)[x0^i] p(z_k) / q(z_k) dt

  with ``z_k ~ q`` shared by the tokens: valid for any proposal ``q`` and any ``K`` (Jensen per token),
  tending to the marginal bound as ``K`` grows. MDM: the usual continuous-time ELBO.
- ``steps`` (``T``): the discrete-time ELBO of the ``T``-step sampler, on its own time grid,
  ``E_path sum_k -log p(x0^{R_k} | x_{t_k})`` with ``R_k`` the tokens revealed at step ``k``; for VADD the
  joint over ``R_k`` is importance-weighted with ``K`` draws per step. At ``T = 1`` it is the IWAE bound
  of the one-step model.

- the same two for the sampler with one ``z`` per sample (VADD-CS, :data:`vadd.samplers.FIXED_Z`): it draws ``z ~ p(z)`` once and
  runs MDM's sampler given ``z``, so its model is ``p(x0) = E_{p(z)} p(x0 | z)`` with ``z`` a latent of the
  whole sample. The ``steps`` bound importance-weights the whole path's joint, ``-log (1/K) sum_k p(z_k)
  prod_steps p(x0^{R_k} | x_{t_k}, z_k) / q(z_k)``, one reveal path shared by the ``K`` draws (Jensen over
  the path): valid at every ``K``. The ``continuous`` bound is the ELBO with ``z`` as latent,
  ``E_q [log q(z) - log p(z) + L(x0 | z)]``, ``L(x0 | z)`` MDM's continuous bound given ``z`` from one
  ``(t, mask)`` draw: ``K = 1`` only, since a log-mean-exp over ``z`` of one-draw estimates of ``L`` is not
  a bound. On one reveal path in continuous time (estimator ``path``, ``L`` network calls per draw) the
  same bound is the path ELBO of a latent-variable model and is importance-weighted like ``steps``: valid
  at every ``K``, and the same number in expectation at ``K = 1``.

Each bound is of one sampler (:mod:`vadd.samplers`), which also resolves the proposal ``q``
(:data:`PROPOSALS`) ``auto``: the prior for VADD's ``continuous`` bound (one token's marginal at a time), the
even mixture of prior and recognition model ``r(z | x0, M)`` for its ``steps`` bound (few steps reveal many
tokens at once, where ``r`` fits; many steps, one or two); for VADD-CS, whose ``z`` explains every token of
the sample, the recognition model at full masking ``r(z | x0, all)``.
``p(z)`` is the model's prior (``model.prior``): ``N(0, I)``, or a Gaussian mixture fitted to the aggregate
posterior after training (:class:`vadd.latent.GaussianMixturePrior`); the samplers draw from the same one.

The training objective (the DELBO, ``VADD.bound_term``) integrates the bound on the *joint* of all
masked tokens over ``t``; that is not a bound on any model's likelihood and is never reported as one.

Both bounds mask with the process the sampler runs (:func:`vadd.schedules.sampler_schedule`). The
autoregressive baseline reports its exact NLL under the bound name ``exact``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import objectives, process, rng
from .errors import ConfigError
from .samplers import FRESH_Z, FIXED_Z, Sampler
from .samplers import get as get_sampler
from .sampling import eval_mode, reveal_steps, time_grid
from .schedules import sampler_schedule

CHUNK_TOKENS = 2**18  # rows * L per network call of the importance-weighted draws


# ---- the latent draws shared by both bounds ------------------------------------------------------
def _checked_tokens(model, tokens):
    """``(tokens as a checked int64 tensor [N, L], the model's device)``."""
    x = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens, dtype=torch.long)
    model.check_tokens(x)
    return x, next(iter(model.parameters()), torch.empty(0)).device


def _token_loglik(model, x0, xt, t, z=None) -> torch.Tensor:
    """``log mu^i(xt, t[, z])[x0^i]`` for every position: ``[..., B, L]`` float64."""
    return model.log_probs(xt, t, z).gather(-1, x0.unsqueeze(-1)).squeeze(-1).double()


PROPOSALS = ("auto", "mixture", "posterior", "prior")


def _z_draws(model, post, B: int, kmax: int, z_gen, proposal: str, device):
    """Yield ``(z [k, B, d], log_ratio [k, B])`` for chunks of ``kmax`` draws ``z ~ q`` and their
    ``log p(z) - log q(z)``, ``k`` at most :func:`_chunk` rows per network call.

    ``q`` is the importance proposal: ``posterior`` (the recognition model ``post``), ``prior``
    (``model.prior``: ``N(0, I)`` unless a mixture was fitted) or ``mixture`` (each draw from either with
    probability 1/2, ``q = (p + r) / 2``). Draw ``j`` is the same whatever ``K`` and the chunking are."""
    if proposal not in PROPOSALS[1:]:
        raise ConfigError(f"unknown importance proposal {proposal!r}; choose one of {PROPOSALS}")
    per_chunk, prior = _chunk(model, B, kmax), model.prior
    shape = (B, prior.dim) if post is None else post.mean.shape
    kw = dict(generator=z_gen, device=device, dtype=torch.get_default_dtype() if post is None else post.mean.dtype)
    done = 0
    while done < kmax:
        k = min(per_chunk, kmax - done)
        # one [B, d] draw (and one [B] component choice) at a time: draw j is the same whatever K and the
        # chunking are (torch.randn of another size orders its numbers differently)
        eps, use_post, choice = [], [], []
        for _ in range(k):
            eps.append(torch.randn(shape, **kw))
            use_post.append(torch.rand(shape[:-1], **kw) < 0.5)
            if prior.needs_choice:  # only then: N(0, I)'s draws stay those of earlier versions
                choice.append(torch.rand(shape[:-1], **kw))
        eps, use_post = torch.stack(eps), torch.stack(use_post).unsqueeze(-1)
        from_prior = prior.from_noise(eps, torch.stack(choice) if choice else None)
        if proposal == "posterior":
            z = post.rsample(eps)
        elif proposal == "prior":
            z = from_prior
        else:
            z = torch.where(use_post, post.rsample(eps), from_prior)
        log_p = prior.log_prob(z).double()
        if proposal == "prior":
            log_ratio = torch.zeros_like(log_p)
        else:
            log_r = post.log_prob(z).double()
            log_ratio = log_p - (log_r if proposal == "posterior" else torch.logaddexp(log_p, log_r) - math.log(2.0))
        yield z, log_ratio
        done += k


def _chunk(model, B: int, kmax: int) -> int:
    """Draws of ``z`` per network call: ``k * B * L`` tokens at most ``eval_chunk_tokens``."""
    return max(1, min(kmax, int(getattr(model, "eval_chunk_tokens", CHUNK_TOKENS)) // max(B * model.seq_len, 1)))


def _latent_chunks(model, x0, xt, masked, t, kmax: int, z_gen, proposal: str = "mixture"):
    """Yield ``(tok [k, B, L], log_ratio [k, B])`` for chunks of ``kmax`` draws ``z ~ q`` (:func:`_z_draws`,
    with ``r(z | x0, masked)`` as the recognition model): the per-token log-likelihoods and
    ``log p(z) - log q(z)``.

    Every proposal gives a valid bound at every ``K``; they differ in how fast it tightens. ``r`` sees all of
    ``x0``: it is the right proposal for the joint of many tokens and far too narrow for one token's
    marginal, where each draw would pay the whole KL; the prior is the reverse. The mixture's weights
    ``p / q <= 2`` keep both cases within a factor 2 in ``K`` of the better proposal."""
    if proposal not in PROPOSALS[1:]:
        raise ConfigError(f"unknown importance proposal {proposal!r}; choose one of {PROPOSALS}")
    post = None if proposal == "prior" else model.posterior(x0, masked)  # the prior needs no encoder call
    B, L = x0.shape
    for z, log_ratio in _z_draws(model, post, B, kmax, z_gen, proposal, x0.device):
        k = z.shape[0]
        tok = _token_loglik(model, x0.repeat(k, 1), xt.repeat(k, 1), t.repeat(k), z.reshape(k * B, -1))
        yield tok.view(k, B, L), log_ratio


def _nested_logmeanexp(chunks, ks, reduce) -> dict:
    """``log (1/K) sum_{j < K} exp(reduce(tok_j, ratio_j))`` for every ``K`` in ``ks`` from one stream of
    draws (the first ``K`` draws for each ``K``, so the K-curve is paired)."""
    acc = {k: objectives.LogMeanExp() for k in ks}
    start = 0
    for tok, ratio in chunks:
        log_w = reduce(tok, ratio)
        for k in ks:
            if start < k:
                acc[k].update(log_w[: k - start])
        start += tok.shape[0]
    return {k: a.value() for k, a in acc.items()}


# ---- one batch -----------------------------------------------------------------------------------
ESTIMATORS = (*process.DRAWS, "path")


@torch.no_grad()
def continuous(model, x0, ks=(1,), generator=None, z_generator=None, estimator: str = "count",
               proposal: str = "auto", sampler: Sampler | None = None) -> dict:
    """One Monte-Carlo draw of the ``continuous`` bound per example: ``{K: nats [B] float64}``.

    ``generator`` draws ``(t, mask)`` or the reveal path (the same for every ``K`` and every model: paired),
    ``z_generator`` the importance-sampling draws. ``estimator``: ``count`` (masked-count rewrite, weight at
    most ``L``), ``time`` (antithetic times, weight ``~ 1/t``) or ``path`` (one reveal path in continuous
    time, :func:`path`: ``L`` network calls per draw of ``z``); all three estimate the same bound at
    ``K = 1``. ``proposal``: where the ``z`` draws come from (``auto``: the prior, which suits one token's
    marginal). ``sampler`` (default: the model's own): VADD-CS's bound is an ELBO over ``z`` (``auto``:
    ``r(z | x0, all masked)``) reported as ``{1: nats [B]}`` whatever ``ks`` is, except with the ``path``
    estimator, which importance-weights it at every ``K``.
    """
    sampler = sampler or model.samplers[0]
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown bound estimator {estimator!r}; choose one of {ESTIMATORS}")
    if estimator == "path":
        return path(model, x0, ks, generator, z_generator, proposal, sampler)
    B, L = x0.shape
    t, masked, weight = process.DRAWS[estimator](B, L, sampler_schedule(model.schedule), generator=generator,
                                                 device=x0.device)
    xt = process.apply_mask(x0, masked, model.mask_id)
    if not sampler.needs_latent:
        ll = torch.where(masked, _token_loglik(model, x0, xt, t), 0.0).sum(-1)
        return {k: -(weight.double() * ll) for k in ks}
    proposal = sampler.proposal("continuous", proposal)
    if sampler.fixed_z:  # the ELBO with z as the sample's latent: one draw, K = 1
        post = _fixed_z_posterior(model, x0, proposal)
        z, log_ratio = next(_z_draws(model, post, B, 1, z_generator, proposal, x0.device))
        ll = torch.where(masked, _token_loglik(model, x0, xt, t, z[0]), 0.0).sum(-1)
        return {1: -(weight.double() * ll + log_ratio[0])}

    def per_token(tok, ratio):
        return tok + ratio.unsqueeze(-1)  # [k, B, L]: each token's own importance weights

    lme = _nested_logmeanexp(_latent_chunks(model, x0, xt, masked, t, max(ks), z_generator, proposal), ks,
                             per_token)
    return {k: -(weight.double() * torch.where(masked, v, 0.0).sum(-1)) for k, v in lme.items()}


@torch.no_grad()
def path(model, x0, ks=(1,), generator=None, z_generator=None, proposal: str = "auto",
         sampler: Sampler | None = None) -> dict:
    """The ``continuous`` bound on one reveal path in continuous time: ``{K: nats [B] float64}``.

    As ``T -> inf`` the sampler reveals one position at a time, position ``i`` at the time ``tau_i`` with
    ``alpha~(tau_i) = u_i`` (the uniforms :func:`steps` draws from ``generator``: the ``T -> inf`` limit of
    the same reveal paths), each from the denoiser at ``tau_i`` given the positions revealed before it. The
    bound is :func:`steps`'s on that path, ``L`` rounds of one token each. Its expectation at ``K = 1`` is
    the ``count`` / ``time`` estimators' (the same integral over reveal times); unlike them it is the path
    ELBO of a latent-variable model, so VADD-CS's bound, ``-log (1/K) sum_k p(z_k) prod_i
    mu^i(z_k) / q(z_k)`` with the path shared by the draws, is valid and tightens at every ``K``. Fresh
    ``z`` (``auto``: prior draws) importance-weights each token's marginal, as the ``count`` estimator does.
    """
    B, L = x0.shape
    u = torch.rand(B, L, generator=generator, device=x0.device, dtype=torch.float64)
    tau = sampler_schedule(model.schedule).t_of_alpha(u)
    order = torch.argsort(tau, dim=1, descending=True, stable=True)  # the first revealed at the latest time
    when = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=x0.device).expand(B, L))
    sampler = sampler or model.samplers[0]
    return _path_bound(model, x0, when, tau.gather(1, order), ks, z_generator,
                       sampler.proposal("continuous", proposal), sampler)


@torch.no_grad()
def steps(model, x0, T: int, ks=(1,), generator=None, z_generator=None, grid: str = "uniform",
          proposal: str = "auto", sampler: Sampler | None = None) -> dict:
    """One reveal path per example of the ``T``-step sampler's bound: ``{K: nats [B] float64}``.

    The path is drawn as the sampler draws it (:func:`vadd.sampling.reveal_steps` from one uniform per
    position, taken from ``generator``: the same path for every ``K`` and model, and coupled across ``T``).
    Each example's reveal events are evaluated in rounds, at most ``min(T, L)`` network calls, with the
    step's own ``t``; VADD's joint over the revealed tokens is importance-weighted with ``z`` from the
    proposal (``auto``: the even mixture of the prior and ``r(z | x0, M_k)``, ``M_k`` the tokens still masked
    before the step). ``sampler`` (default: the model's own) VADD-CS: the joint of the whole path
    importance-weighted with ``K`` draws of ``z`` (``auto``: ``r(z | x0, all masked)``).
    """
    B, L = x0.shape
    times = time_grid(T, grid, device=x0.device)
    u = torch.rand(B, L, generator=generator, device=x0.device, dtype=torch.float64)
    when = reveal_steps(model.schedule, times, u)  # [B, L] the step that reveals each position
    sampler = sampler or model.samplers[0]
    return _path_bound(model, x0, when, times[:-1].expand(B, -1), ks, z_generator,
                       sampler.proposal("steps", proposal), sampler)


def _path_bound(model, x0, when, step_t, ks, z_generator, proposal: str, sampler: Sampler) -> dict:
    """``sampler``'s bound on the reveal path ``when`` [B, L] (the step revealing each position), step ``k`` of
    row ``b`` run at time ``step_t[b, k]`` [B, S]: ``{K: nats [B]}``."""
    if sampler.fixed_z:
        return _path_fixed_z(model, x0, when, step_t, ks, z_generator, proposal)
    B, L = x0.shape
    S = step_t.shape[1]
    total = {k: torch.zeros(B, dtype=torch.float64, device=x0.device) for k in ks}
    pending = torch.ones(B, L, dtype=torch.bool, device=x0.device)
    never = torch.full_like(when, S)
    while pending.any():
        # each round's z draws from a stream of its own, seeded from z_generator by one draw whatever K
        # is, so the first K draws of every round are the same for every K (a paired K-curve)
        round_seed = int(torch.randint(0, 2**62, (1,), generator=z_generator, device=x0.device))
        zg = torch.Generator(device=x0.device).manual_seed(round_seed)
        nxt = torch.where(pending, when, never).amin(dim=1)
        rows = (nxt < S).nonzero().squeeze(1)
        k_rows = nxt[rows].unsqueeze(1)
        masked = when[rows] >= k_rows           # still masked before the step
        revealed = when[rows] == k_rows         # R_k
        x, t = x0[rows], step_t[rows, nxt[rows]].float()
        xt = process.apply_mask(x, masked, model.mask_id)
        if not sampler.needs_latent:
            ll = torch.where(revealed, _token_loglik(model, x, xt, t), 0.0).sum(-1)
            for k in ks:
                total[k][rows] += ll
        else:
            def joint(tok, ratio):
                return torch.where(revealed, tok, 0.0).sum(-1) + ratio  # [k, n]

            lme = _nested_logmeanexp(_latent_chunks(model, x, xt, masked, t, max(ks), zg, proposal), ks, joint)
            for k in ks:
                total[k][rows] += lme[k]
        pending[rows] &= ~revealed
    return {k: -v for k, v in total.items()}


def _fixed_z_posterior(model, x0, proposal: str):
    """The recognition model of VADD-CS's bounds (``None`` for prior draws): ``z`` explains the whole sample,
    so it is ``r(z | x0, all)``, every position masked."""
    if proposal not in PROPOSALS[1:]:
        raise ConfigError(f"unknown importance proposal {proposal!r}; choose one of {PROPOSALS}")
    return None if proposal == "prior" else model.posterior(x0, torch.ones_like(x0, dtype=torch.bool))


def _path_fixed_z(model, x0, when, step_t, ks, z_generator, proposal: str) -> dict:
    """The fixed-``z`` bound on the reveal path ``when`` [B, L] (steps at ``step_t`` [B, S]): ``{K: nats [B]}``."""
    B, L = x0.shape
    S = step_t.shape[1]
    post = _fixed_z_posterior(model, x0, proposal)
    never = torch.full_like(when, S)

    def path_joints():  # [k, B] log p(z) - log q(z) + log p(x0 | path, z) for each chunk of draws
        for z, log_w in _z_draws(model, post, B, max(ks), z_generator, proposal, x0.device):
            k, log_w = z.shape[0], log_w.clone()
            pending = torch.ones(B, L, dtype=torch.bool, device=x0.device)
            while pending.any():
                nxt = torch.where(pending, when, never).amin(dim=1)
                rows = (nxt < S).nonzero().squeeze(1)
                k_rows = nxt[rows].unsqueeze(1)
                masked, revealed = when[rows] >= k_rows, when[rows] == k_rows
                x, t = x0[rows], step_t[rows, nxt[rows]].float()
                xt = process.apply_mask(x, masked, model.mask_id)
                n = len(rows)
                tok = _token_loglik(model, x.repeat(k, 1), xt.repeat(k, 1), t.repeat(k),
                                    z[:, rows].reshape(k * n, -1)).view(k, n, L)
                log_w[:, rows] += torch.where(revealed, tok, 0.0).sum(-1)
                pending[rows] &= ~revealed
            yield log_w, None

    lme = _nested_logmeanexp(path_joints(), ks, lambda log_w, _: log_w)
    return {k: -v for k, v in lme.items()}


@torch.no_grad()
def latent_gap(model, tokens, fractions=(0.25, 0.5, 0.75, 1.0), K: int = 100, seed: int = 0,
               batch_size: int = 256) -> list[dict]:
    """A diagnostic of the fresh-``z`` sampler (VADD): at each masked fraction ``f``, the mean over masked
    tokens of ``-log mu^i(xt, z)[x0^i]`` with ``z`` from the recognition model (one draw: what training fits)
    and of ``-log (1/K) sum_k mu^i(xt, z_k)[x0^i]``, ``z_k`` from the model's prior (the prior-averaged prediction the
    continuous-time limit of the sampler uses; an upper estimate for finite ``K``), and their difference.
    ``round(f L)`` positions are masked per row (at least one), at the sampler's time for that fraction."""
    if FRESH_Z not in model.samplers:
        raise ConfigError("the latent gap is of VADD's fresh-z sampler: it is defined for VADD models only")
    x, device = _checked_tokens(model, tokens)
    sched = sampler_schedule(model.schedule)
    L = model.seq_len
    out, seen = [], set()
    with eval_mode(model):
        for f in fractions:
            if not 0.0 < float(f) <= 1.0:
                raise ConfigError(f"masked fractions must be in (0, 1], got {f}")
            m = max(1, int(round(float(f) * L)))
            if m in seen:  # short rows: two fractions can mask the same number of tokens
                continue
            seen.add(m)
            post_sum, prior_sum, count = 0.0, 0.0, 0
            for b, x0 in enumerate(torch.split(x, batch_size)):
                x0 = x0.to(device)
                g = rng.generator(seed, "latent-gap", b, int(round(1000 * float(f))), device=device)
                keys = torch.rand(len(x0), L, generator=g, device=device)
                masked = keys.argsort(dim=1).argsort(dim=1) < m
                t = sched.t_of_alpha(torch.full((len(x0),), 1.0 - m / L, device=device)).clamp(1e-5, 1.0)
                xt = process.apply_mask(x0, masked, model.mask_id)
                post = model.posterior(x0, masked)
                z = post.rsample(torch.randn(post.mean.shape, generator=g, device=device, dtype=post.mean.dtype))
                tok_post = _token_loglik(model, x0, xt, t, z)
                prior = _nested_logmeanexp(_latent_chunks(model, x0, xt, masked, t, int(K), g, "prior"), [int(K)],
                                           lambda tok, ratio: tok)[int(K)]
                post_sum += float(-tok_post[masked].sum())
                prior_sum += float(-prior[masked].sum())
                count += int(masked.sum())
            out.append({"masked_fraction": m / L, "masked_tokens": count, "K": int(K),
                        "nll_posterior_z": post_sum / count, "nll_prior_marginal": prior_sum / count,
                        "gap": (prior_sum - post_sum) / count})
    return out


# ---- a data set ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundSpec:
    """Which bound: ``continuous`` (``steps`` None), ``steps`` with ``steps = T``, or ``exact`` (AR), of which
    ``sampler`` (:mod:`vadd.samplers`; ``None``: the model's own, MDM's or VADD's fresh-``z`` one)."""

    bound: str
    steps: int | None = None
    sampler: Sampler | None = None

    def __post_init__(self):
        if self.sampler is not None:  # a name is the sampler it names
            object.__setattr__(self, "sampler", get_sampler(self.sampler))

    @property
    def fixed_z(self) -> bool:  # kept in the records: whether the bound is of VADD-CS
        return self.sampler is not None and self.sampler.fixed_z

    @property
    def label(self) -> str:
        base = f"T={self.steps}" if self.bound == "steps" else self.bound
        return base + (f" {self.sampler.label}" if self.sampler is not None else "")


def specs(steps=(), continuous: bool = True, samplers=(None,)) -> list[BoundSpec]:
    """``[continuous] + [steps T for T in steps]`` for each of ``samplers`` (names, objects, ``None`` for the
    model's own), validated."""
    out = []
    for sampler in dict.fromkeys(None if x is None else get_sampler(x) for x in samplers):
        out += [BoundSpec("continuous", sampler=sampler)] if continuous else []
        for T in dict.fromkeys(steps):  # each once: a repeated spec would score its examples twice
            time_grid(T)  # a clear error for T < 1 or a non-integer
            out.append(BoundSpec("steps", int(T), sampler))
    if not out:
        raise ConfigError("no bound requested: give the continuous bound or at least one number of steps")
    return out


MAX_K = 100_000  # draws of z per example and bound; far beyond where the bound stops moving


def check_request(ks, num_t: int) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"K (importance samples) must be integers >= 1, got {ks}")
    if ks[-1] > MAX_K:
        raise ConfigError(f"K = {ks[-1]:,} importance samples is beyond what this evaluation supports ({MAX_K:,})")
    if int(num_t) < 1:
        raise ConfigError(f"the number of Monte-Carlo draws per example must be >= 1, got {num_t}")
    if int(num_t) > MAX_K:  # as for K: days of work per example, more likely a typo than a plan
        raise ConfigError(f"{int(num_t):,} Monte-Carlo draws per example (--num-t) is beyond what this evaluation "
                          f"supports ({MAX_K:,})")
    return ks


@torch.no_grad()
def evaluate(model, tokens, ks=(1,), bound_specs=None, num_t: int = 1, seed: int = 0, batch_size: int = 256,
             estimator: str = "count", grid: str = "uniform", proposal: str = "auto",
             progress: bool = False) -> dict:
    """Per-example bounds in nats over a data set: ``{BoundSpec: {K: float64 numpy [N]}}``.

    ``num_t`` Monte-Carlo draws per example are averaged. Draw ``r`` of batch ``b`` takes its
    ``(t, mask)`` / reveal path from ``rng.generator(seed, "bound-path", b, r)`` and its ``z`` from
    ``rng.generator(seed, "bound-z", b, r)``: every ``K``, every bound and every model with the same
    ``seed`` and ``batch_size`` is scored on the same draws (paired differences), and reruns are identical.
    Each spec's sampler (:meth:`vadd.samplers.Sampler.ks`) says which ``K`` it is reported at: MDM ``K = 1``
    only (it has no latent), as VADD-CS's ``continuous`` bound (an ELBO) unless ``estimator="path"``; the
    AR baseline reports its exact NLL once (``exact``).
    """
    ks = check_request(ks, num_t)
    if proposal not in PROPOSALS:
        raise ConfigError(f"unknown importance proposal {proposal!r}; choose one of {PROPOSALS}")
    bound_specs = list(bound_specs or specs())
    x, device = _checked_tokens(model, tokens)
    if len(x) == 0:
        raise ConfigError("no examples to evaluate")
    if getattr(model, "name", "") == "ar":
        nats = torch.cat([model.nll_bound(b.to(device)).cpu() for b in torch.split(x, batch_size)]).numpy()
        return {BoundSpec("exact"): {1: nats}}
    sampler = {s: (s.sampler or model.samplers[0]).check(model) for s in bound_specs}
    batch_size = max(1, min(int(batch_size), CHUNK_TOKENS // model.seq_len))
    batches = torch.split(x, batch_size)
    spec_ks = {s: sampler[s].ks(s.bound, ks, estimator) for s in bound_specs}
    out = {s: {k: [] for k in spec_ks[s]} for s in bound_specs}
    it = range(len(batches))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"bounds {model.name}", leave=False)
    with eval_mode(model):
        for b in it:
            x0 = batches[b].to(device)
            for s in bound_specs:
                acc = {k: torch.zeros(len(x0), dtype=torch.float64, device=device) for k in spec_ks[s]}
                for r in range(int(num_t)):
                    g = rng.generator(seed, "bound-path", b, r, device=device)
                    zg = rng.generator(seed, "bound-z", b, r, device=device)
                    if s.bound == "continuous":
                        draw = continuous(model, x0, spec_ks[s], g, zg, estimator, proposal, sampler[s])
                    else:
                        draw = steps(model, x0, s.steps, spec_ks[s], g, zg, grid, proposal, sampler[s])
                    for k in spec_ks[s]:
                        acc[k] += draw[k]
                for k in spec_ks[s]:
                    out[s][k].append((acc[k] / int(num_t)).cpu())
    return {s: {k: torch.cat(v).numpy() for k, v in d.items()} for s, d in out.items()}


def summary(nats: np.ndarray, seq_len: int) -> dict:
    """Mean nats per example with its standard error, and per token / bits per dim / perplexity."""
    n = len(nats)
    per_tok = float(nats.mean()) / seq_len
    return {"nats_per_example": float(nats.mean()),
            "stderr_nats_per_example": float(nats.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
            "nats_per_token": per_tok, "bits_per_dim": per_tok / math.log(2), "perplexity": math.exp(per_tok),
            "num_examples": int(n)}


def records(results: dict, seq_len: int, reference: np.ndarray | None = None) -> list[dict]:
    """:func:`evaluate`'s output as the ``"bounds"`` records of ``vadd eval`` (one per bound and ``K``).

    ``reference``: the exact ``-log p_data(x)`` of the same examples, where the data distribution is known
    (the toys); each record then carries the paired difference ``bound - reference`` with its standard
    error. Its expectation is ``KL(p_data || model) + gap >= 0``: a valid bound never averages below 0
    beyond noise, and pairing removes the examples' own spread."""
    out = []
    for s, d in results.items():
        for k, v in d.items():
            rec = {"bound": s.bound, "steps": s.steps, "fixed_z": s.fixed_z, "K": int(k), **summary(v, seq_len)}
            if reference is not None:
                diff = v - np.asarray(reference, dtype=np.float64)
                rec["minus_data_nll"] = float(diff.mean())
                rec["minus_data_nll_stderr"] = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
            out.append(rec)
    return out


@torch.no_grad()
def heldout_bound(model, x0: torch.Tensor, seed: int = 0, batch: int = 64) -> float:
    """Mean ``continuous`` bound on ``-log p(x0)`` in nats per row (``K = 1``, one masked-count draw per
    row; AR: exact NLL; VADD trained with ``objective=fixed_z``: VADD-CS's) of the given held-out rows, for
    the validation curve (``trainer.val_every``).

    ``vadd.bounds.evaluate`` draws from generators seeded by ``seed`` alone, so every call scores the
    same draws (a curve that moves only because the model does) and training's random stream is untouched.
    """
    # a model trained for the one-z-per-sample sampler is tracked by that sampler's bound
    spec = BoundSpec("continuous", sampler=FIXED_Z if getattr(model, "objective", "delbo") == "fixed_z" else None)
    res = evaluate(model, x0, [1], [spec], seed=seed, batch_size=batch)
    return float(next(iter(res.values()))[1].mean())
