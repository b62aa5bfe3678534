"""One ancestral sampling loop for MDM, VADD and VADD-CS (method.md §5).

The latent policy is the only difference between the samplers:

- ``none``      MDM: no latent.
- ``per_step``  VADD: a fresh ``z ~ N(0, I)`` at every step (the exact ancestral sampler).
- ``fixed``     VADD-CS: one ``z`` per sample, kept for the whole trajectory.

Cost: the reveal decisions of a step are drawn before the network runs, so a row that reveals
nothing at this step is not evaluated (``lazy``, exact for every latent policy). Caching
(``cache=True``) reuses a row's output while its input is unchanged, when the latent is ``none`` or
``fixed`` and the denoiser is not time-conditioned (MDLM's ``ddpm_cache``, per row; exact only then);
it saves calls when ``lazy`` is off. All random draws are made for every row whether or not it is
evaluated, so cached and uncached runs consume the same random stream and agree token for token.
Categorical draws are float64 (inverse CDF), which avoids the temperature bias of float32 Gumbel draws.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from . import process

SAMPLERS = {"mdm": "none", "vadd": "per_step", "vadd-cs": "fixed"}


@dataclass
class SampleStats:
    steps: int = 0
    nfe: int = 0          # batched network calls
    row_evals: int = 0    # rows sent through the network, summed over calls
    per_step_revealed: list = field(default_factory=list)


def time_grid(steps: int, kind: str = "uniform", device=None) -> torch.Tensor:
    """Times ``1 = t_0 > t_1 > ... > t_T = 0`` as a ``[T + 1]`` tensor."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"the number of sampling steps must be an integer >= 1, got {steps!r}")
    u = torch.linspace(0.0, 1.0, int(steps) + 1, device=device, dtype=torch.float64)
    if kind == "uniform":
        t = 1.0 - u
    elif kind == "cosine":  # denser steps near t = 0, where the last tokens are revealed
        t = torch.cos(0.5 * torch.pi * u)
    else:
        raise ValueError(f"unknown time grid {kind!r}; choose 'uniform' or 'cosine'")
    t[0], t[-1] = 1.0, 0.0
    return t


def resolve_latent(model, sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if getattr(model, "name", "") == "ar":
        raise ValueError("the autoregressive baseline is for likelihood tables; sample from an MDM or VADD model")
    latent = SAMPLERS[sampler]
    if latent != "none" and model.latent_dim == 0:
        raise ValueError(f"sampler {sampler!r} needs a model with a latent (VADD); this one is {model.name!r}")
    if latent == "none" and model.latent_dim > 0:
        raise ValueError("sampler 'mdm' needs an MDM model; use 'vadd' or 'vadd-cs' with a VADD model")
    return latent


def _inverse_cdf_f64(logp: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw in float64 from ``[N, V]`` log-probabilities with given uniforms ``u [N, 1]``."""
    probs = logp.double().exp()
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1)
    return idx.clamp_max(logp.shape[-1] - 1)


def _draw_chunked(logp_rows, u: torch.Tensor, V: int, budget: int = 1 << 24) -> torch.Tensor:
    """``logp_rows(sl) -> [n, V]`` for a slice of the positions; draws in chunks of ``budget / V``
    positions so a float64 ``[N, V]`` never materialises (text: V = 50k)."""
    n = u.shape[0]
    step = max(1, budget // max(V, 1))
    return torch.cat([_inverse_cdf_f64(logp_rows(slice(i, min(i + step, n))), u[i:i + step])
                      for i in range(0, n, step)]) if n else u.new_zeros(0, dtype=torch.long)


@torch.no_grad()
def sample_batch(model, x_init: torch.Tensor, steps: int, latent: str = "none", cache: bool = True,
                 lazy: bool = True, grid: str = "uniform", generator=None, on_step=None,
                 eval_rows: int = 4096, cache_bytes: int = 2 << 30):
    """Run the ancestral loop from ``x_init`` ``[B, L]`` (``mask_id`` where to generate).

    Each step draws the reveal decisions for every row, then candidate tokens for the revealed positions
    only. Latents come from their own stream, seeded by one draw from ``generator`` at the start (every
    sampler, MDM included, makes that draw): so for one seed MDM, VADD and VADD-CS reveal the same
    positions at the same steps (paired cost comparisons), and at ``T = 1`` VADD and VADD-CS are the same
    draw. ``per_step`` draws a fresh ``z`` only for the rows that reveal something at a step; ``fixed``
    draws one per row up front. Because the reveal decisions do not depend on the network, a row that
    reveals nothing at a step need not be evaluated (``lazy=True``, exact for every latent policy, a
    fresh ``z`` per step included). ``cache=True`` reuses a row's last output while its input is
    unchanged (``none`` / ``fixed`` latents).
    Given (non-mask) tokens are never changed: infilling and prompting come for free.
    ``on_step(k, t, s, x)`` is called after every step (e.g. to record trajectories). The network sees
    at most ``eval_rows`` rows at a time.
    Returns ``(x0 [B, L], SampleStats)``.
    """
    device = x_init.device
    times = time_grid(steps, grid, device=device)
    sched = model.schedule
    x = x_init.clone()
    B, L = x.shape
    V = model.vocab_size
    stats = SampleStats(steps=int(steps))
    d = model.latent_dim
    zseed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device))
    zgen = torch.Generator(device=device).manual_seed(zseed)
    z = None
    if latent == "fixed":
        z = torch.randn(B, d, generator=zgen, device=device)
    elif latent == "per_step":
        z = torch.zeros(B, d, device=device)
    # reuse is exact only when the input is unchanged *and* the network ignores t (MDLM's setting); the
    # reuse buffer holds [B, L, V] outputs, so it is used only within cache_bytes (text: V = 50k)
    use_cache = cache and latent != "per_step" and not model.time_conditioned and B * L * V * 4 <= cache_bytes
    part_rows = max(1, min(int(eval_rows), (1 << 26) // max(L * V, 1)))  # at most 64M logits per call
    out = torch.zeros(B, L, V, device=device) if use_cache else None
    fresh = torch.zeros(B, dtype=torch.bool, device=device)  # out[row] is valid for the current x[row]
    for k in range(int(steps)):
        t, s = times[k], times[k + 1]
        masked = x == model.mask_id
        p = 1.0 if k == steps - 1 else float(process.reveal_prob(sched.alpha(s), sched.alpha(t)))
        reveal = masked & (torch.rand(B, L, generator=generator, device=device) < p)
        revealing = reveal.any(dim=1)
        need = revealing if lazy else masked.any(dim=1)
        if use_cache:
            need = need & ~fresh
        rows = need.nonzero().squeeze(1)
        if latent == "per_step":
            # a fresh z only for the rows whose output is used at this step; other rows (evaluated only when
            # lazy=False) keep a stale z and their output is discarded. The draws are the same lazy or not.
            drawn = rows if lazy else revealing.nonzero().squeeze(1)  # (per_step never caches)
            if drawn.numel():
                z[drawn] = torch.randn(drawn.numel(), d, generator=zgen, device=device)
        idx = reveal.nonzero(as_tuple=True)  # row-major: each row's revealed positions are contiguous
        u = torch.rand(idx[0].numel(), 1, generator=generator, device=device, dtype=torch.float64)
        if rows.numel():
            stats.nfe += 1
            stats.row_evals += int(rows.numel())
        if use_cache:
            for part in torch.split(rows, part_rows):  # bounded working set: faster on CPU caches
                tt = torch.full((part.numel(),), float(t), device=device)
                out[part] = model.log_probs(x[part], tt, None if z is None else z[part])
            fresh[rows] = True
            if idx[0].numel():
                x[idx] = _draw_chunked(lambda sl: out[idx[0][sl], idx[1][sl]], u, V).to(x.dtype)
            fresh &= ~revealing
        else:
            # evaluate row blocks and draw their revealed tokens at once: no [B, L, V] buffer
            counts = reveal.sum(dim=1)
            start = counts.cumsum(0) - counts
            for part in torch.split(rows, part_rows):
                tt = torch.full((part.numel(),), float(t), device=device)
                logp = model.log_probs(x[part], tt, None if z is None else z[part])
                local = reveal[part].nonzero(as_tuple=True)
                if local[0].numel():
                    a = int(start[part[0]])
                    uu = u[a:a + local[0].numel()]
                    x[part[local[0]], local[1]] = _draw_chunked(lambda sl: logp[local[0][sl], local[1][sl]],
                                                                uu, V).to(x.dtype)
        stats.per_step_revealed.append(idx[0].numel())
        if on_step is not None:
            on_step(k, float(t), float(s), x)
    return x, stats


@torch.no_grad()
def sample(model, num_samples: int | None = None, steps: int = 10, sampler: str = "mdm", cache: bool = True,
           lazy: bool = True, x_init: torch.Tensor | None = None, seed: int | None = 0, batch_size: int = 100_000,
           grid: str = "uniform", device=None, progress: bool = False):
    """Draw samples from a trained MDM or VADD model.

    Either ``num_samples`` (unconditional) or ``x_init`` ``[N, L]`` (conditional: ``model.mask_id`` marks
    positions to generate, every other token is kept). Returns ``(tokens [N, L] int64, SampleStats)``.
    """
    latent = resolve_latent(model, sampler)
    if device is None:
        tensors = itertools.chain(model.parameters(), model.buffers())
        device = next(tensors, torch.empty(0)).device
    if x_init is None:
        if num_samples is None or num_samples < 1:
            raise ValueError("give num_samples >= 1 or x_init")
        x_init = torch.full((num_samples, model.seq_len), model.mask_id, dtype=torch.long)
    else:
        x_init = torch.as_tensor(x_init, dtype=torch.long)
        model.check_tokens(x_init, allow_mask=True)
    time_grid(steps)  # validates steps early
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    out, total = [], SampleStats(steps=int(steps))
    chunks = torch.split(x_init, batch_size)
    it = chunks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chunks, desc=f"sampling {sampler} T={steps}", leave=False)
    was_training = model.training
    model.eval()
    try:
        for chunk in it:
            x, st = sample_batch(model, chunk.to(device), steps, latent, cache, lazy, grid, gen)
            out.append(x.cpu())
            total.nfe += st.nfe
            total.row_evals += st.row_evals
            total.per_step_revealed = [a + b for a, b in itertools.zip_longest(
                total.per_step_revealed, st.per_step_revealed, fillvalue=0)]
    finally:
        model.train(was_training)
    return torch.cat(out), total
