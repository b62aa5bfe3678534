"""One ancestral sampling loop for MDM, VADD and VADD-CS (method.md §5).

The samplers (:mod:`vadd.samplers`: MDM, VADD with a fresh ``z`` per step, VADD-CS with one ``z`` per
sample) differ only in the ``z`` they feed the denoiser at each reveal event.

Cost: the reveal step of every position is drawn before the network runs (it does not depend on the
network), so the network need only run when a row reveals something, on that row's state before the
step. The default sampler is event-driven: it batches the rows' ``r``-th reveal events into one call
whatever their steps, so it makes at most ``min(T, L)`` calls for every latent policy, a fresh ``z``
per step included, and exactly the same ones for MDM, VADD and VADD-CS. A step-by-step mode
(``lazy=False``) shows the naive cost, with MDLM's per-row caching (``cache=True``, exact for MDM and
VADD-CS when the denoiser ignores ``t``). All random draws are made up front
for every row, so every mode gives the same tokens.
Categorical draws are float64 (inverse CDF), which avoids the temperature bias of float32 Gumbel draws.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field

import torch

from . import samplers
from .errors import ConfigError
from .budget import check_alloc


@dataclass
class SampleStats:
    steps: int = 0
    nfe: int = 0          # batched network calls
    row_evals: int = 0    # rows sent through the network, summed over calls
    per_step_revealed: list = field(default_factory=list)


def time_grid(steps: int, kind: str = "uniform", device=None) -> torch.Tensor:
    """Times ``1 = t_0 > t_1 > ... > t_T = 0`` as a ``[T + 1]`` tensor."""
    check_steps(steps)
    u = torch.linspace(0.0, 1.0, int(steps) + 1, device=device, dtype=torch.float64)
    if kind == "uniform":
        t = 1.0 - u
    elif kind == "cosine":  # denser steps near t = 0, where the last tokens are revealed
        t = torch.cos(0.5 * torch.pi * u)
    else:
        raise ConfigError(f"unknown time grid {kind!r}; choose 'uniform' or 'cosine'")
    t[0], t[-1] = 1.0, 0.0
    return t


def check_steps(steps) -> None:
    """``T`` an integer >= 1 whose per-step arrays (time grid, reveal counts) fit in memory."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ConfigError(f"the number of sampling steps must be an integer >= 1, got {steps!r}")
    check_alloc(64.0 * (int(steps) + 1), f"{int(steps):,} sampling steps", "--steps")


def check_request(model, num_samples, steps: int, sampler) -> None:
    """What :func:`sample` would refuse, checked before anything is drawn or written: the sampler (a name
    or a :class:`vadd.samplers.Sampler`) against the model, the sample count and the output's memory, the steps."""
    samplers.get(sampler).check(model)
    if num_samples is None or isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
        raise ConfigError(f"give num_samples >= 1 (an integer) or x_init, got {num_samples!r}")
    check_alloc(2 * 8 * float(num_samples) * model.seq_len, f"{int(num_samples):,} samples of {model.seq_len} tokens",
                "--num-samples")
    check_steps(steps)


def check_temperature(temperature) -> float:
    """A sampling temperature: a finite number > 0 (at most 100; 1 is the model itself)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0.01 <= float(temperature) <= 100.0:
        raise ConfigError(f"the sampling temperature must be a number in [0.01, 100], got {temperature!r}")
    return float(temperature)


def _inverse_cdf_f64(logp: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw in float64 from ``[N, V]`` log-probabilities with given uniforms ``u [N, 1]``."""
    probs = logp.double().exp()  # normalised log-probabilities (tempered ones too: <= 0, max >= -log(V) / temperature)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1)
    return idx.clamp_max(logp.shape[-1] - 1)


def _draw_chunked(logp_rows, u: torch.Tensor, V: int, budget: int = 1 << 24, temperature: float = 1.0) -> torch.Tensor:
    """``logp_rows(sl) -> [n, V]`` for a slice of the positions; draws in chunks of ``budget / V``
    positions so a float64 ``[N, V]`` never materialises (text: V = 50k). ``temperature``: draw from
    ``p^(1/temperature)`` renormalised (1: the model's own distribution, untouched)."""
    n = u.shape[0]
    step = max(1, budget // max(V, 1))
    tempered = (lambda lp: lp) if temperature == 1.0 else (lambda lp: lp.double() / temperature)
    return torch.cat([_inverse_cdf_f64(tempered(logp_rows(slice(i, min(i + step, n)))), u[i:i + step])
                      for i in range(0, n, step)]) if n else u.new_zeros(0, dtype=torch.long)


def reveal_steps(schedule, times: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The step at which each position masked at ``t_0 = 1`` is revealed, from uniforms ``u`` (any shape).

    The ancestral sampler reveals a still-masked position at step ``k`` (from ``t_k`` to ``t_{k+1}``) with
    probability ``(alpha(t_{k+1}) - alpha(t_k)) / (1 - alpha(t_k))`` and everything at the last step; so
    it is revealed by step ``k`` with probability ``(alpha(t_{k+1}) - alpha(t_0)) / (1 - alpha(t_0))``.
    One inverse-CDF draw per position gives the same law as one Bernoulli draw per position and step.
    """
    a = schedule.alpha(times.double())
    cdf = ((a[1:] - a[0]) / (1.0 - a[0]).clamp_min(1e-12)).clamp(0.0, 1.0)
    cdf[-1] = 1.0
    cdf = torch.cummax(cdf, 0).values.contiguous()
    return torch.searchsorted(cdf, u.reshape(-1).double(), right=True).view(u.shape).clamp_max(len(cdf) - 1)


class EventLatents:
    """The latents of the samplers: ``z`` for the ``r``-th reveal event of row ``b`` is row ``b`` of the
    ``r``-th ``B`` draws from the model's prior (``randn(B, d)`` for ``N(0, I)``) of a stream seeded once.
    A row's ``z`` does not depend on which rows are evaluated when, so every evaluation mode gives the same
    tokens; VADD-CS uses event 0's draw for the whole trajectory, so at ``T = 1`` VADD and VADD-CS are the
    same draw."""

    def __init__(self, rows: int, prior, seed: int, device=None):
        self.rows, self.prior, self.dim, self.device = rows, prior, prior.dim, device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.draws, self.made = {}, 0

    def draw(self, r: int) -> torch.Tensor:
        while self.made <= r:
            self.draws[self.made] = self.prior.sample(self.rows, self.gen, self.device)
            self.made += 1
        return self.draws[r]

    def get(self, rows: torch.Tensor, event) -> torch.Tensor:
        """``z [n, d]`` for ``rows`` at their event indices (an int, or a tensor like ``rows``)."""
        if isinstance(event, int):
            return self.draw(event)[rows]
        z = torch.empty(rows.numel(), self.dim, device=self.device)
        for r in event.unique().tolist():
            sel = event == r
            z[sel] = self.draw(r)[rows[sel]]
        return z

    def release_below(self, r: int) -> None:
        """Free the draws of events before ``r`` (no row will need them again)."""
        for key in [k for k in self.draws if k < r]:
            del self.draws[key]


@torch.no_grad()
def sample_batch(model, x_init: torch.Tensor, steps: int, sampler="mdm", cache: bool = True,
                 lazy: bool = True, grid: str = "uniform", generator=None, on_step=None,
                 eval_rows: int = 4096, cache_bytes: int = 2 << 30, temperature: float = 1.0):
    """Run the ancestral loop from ``x_init`` ``[B, L]`` (``mask_id`` where to generate).

    Every random choice that does not depend on the network is drawn up front, in this order from
    ``generator``: the seed of the latent stream, the step at which each position is revealed
    (:func:`reveal_steps`) and the uniform of each position's categorical draw. So for one seed MDM,
    VADD and VADD-CS reveal the same positions at the same steps (paired cost comparisons), and every
    evaluation mode below gives the same tokens.

    Latents (:class:`EventLatents`), as ``sampler`` (:mod:`vadd.samplers`) asks: VADD gives each reveal
    event of a row a fresh ``z``; VADD-CS keeps the first one. At ``T = 1`` both are the same draw.

    Evaluation modes:

    - ``lazy=True`` (default): event-driven. The network runs once per *reveal event* of a row (a step
      at which it reveals something), on that row's state before the step, with that step's ``t`` and
      a fresh ``z``; the rows' ``r``-th events are batched into one call whatever their steps. This is
      the ancestral sampler exactly (a step that reveals nothing leaves a row unchanged), and costs
      ``min(T, L)`` calls at most, whatever the sampler.
    - ``lazy=False``: step by step, evaluating every row that still has masked positions at every step
      (the naive cost), except that ``cache=True`` reuses a row's output while its input is unchanged
      when its ``z`` is too (MDM, VADD-CS) and the denoiser ignores ``t`` (MDLM's ``ddpm_cache``).
      A reference and benchmark mode.

    Given (non-mask) tokens are never changed: infilling and prompting come for free. ``on_step(k, t,
    s, x)`` is called for every step after the loop, with the state after step ``k`` (e.g. to record
    trajectories). The network sees at most ``eval_rows`` rows at a time. ``temperature`` draws each
    revealed token from the denoiser's distribution raised to ``1 / temperature`` (renormalised): below 1
    sharper and less diverse, 1 the model itself (the sampler the likelihood bounds are about).
    Returns ``(x0 [B, L], SampleStats)``.
    """
    sampler = samplers.get(sampler)
    device = x_init.device
    times = time_grid(steps, grid, device=device)
    T = int(steps)
    x = x_init.clone()
    B, L = x.shape
    V = model.vocab_size
    stats = SampleStats(steps=T)
    zseed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device))
    masked0 = x == model.mask_id
    when = reveal_steps(model.schedule, times,
                        torch.rand(B, L, generator=generator, device=device, dtype=torch.float64)).int()
    u = torch.rand(B, L, generator=generator, device=device, dtype=torch.float64)
    stats.per_step_revealed = torch.bincount(when[masked0], minlength=T).tolist()
    latents = EventLatents(B, model.prior, zseed, device) if sampler.needs_latent else None
    pending = masked0.clone()                              # still masked, to be generated
    events = torch.zeros(B, dtype=torch.long, device=device)  # reveal events so far per row
    part_rows = max(1, min(int(eval_rows), (1 << 26) // max(L * V, 1)))  # at most 64M logits per call

    def evaluate(rows, k_rows, event=None):
        """``(part, k, logp)`` for blocks of ``rows`` evaluated at steps ``k_rows``; ``event``: the rows'
        common event index when known (event-driven rounds), else read from ``events``."""
        for part, k in zip(torch.split(rows, part_rows), torch.split(k_rows, part_rows)):
            z = sampler.z(latents, part, events[part] if event is None else event)
            yield part, k, model.log_probs(x[part], times[k].float(), z)

    def reveal(part, k, logp_rows):
        """Draw the tokens ``part``'s rows reveal at their steps ``k``; ``logp_rows(i, j)`` -> ``[n, V]``."""
        hit = pending[part] & (when[part] == k.unsqueeze(1))
        local = hit.nonzero(as_tuple=True)
        if local[0].numel():
            r, c = part[local[0]], local[1]
            x[r, c] = _draw_chunked(lambda sl: logp_rows(local[0][sl], c[sl]), u[r, c].unsqueeze(1), V,
                                    temperature=temperature).to(x.dtype)
            pending[r, c] = False
        events[part] += hit.any(dim=1).long()

    if lazy:
        never = torch.full_like(when, T)  # int32 like when
        for r in itertools.count():  # round r: every unfinished row's r-th reveal event, at its own step
            nxt = torch.where(pending, when, never).amin(dim=1)
            rows = (nxt < T).nonzero().squeeze(1)
            if not rows.numel():
                break
            stats.nfe += 1
            stats.row_evals += int(rows.numel())
            for part, k, logp in evaluate(rows, nxt[rows], event=r):
                reveal(part, k, lambda i, j, logp=logp: logp[i, j])
            sampler.release(latents, r)
    else:
        # reuse is exact only when the input is unchanged *and* the network ignores t (MDLM's setting); the
        # reuse buffer holds [B, L, V] outputs, so it is used only within cache_bytes (text: V = 50k)
        use_cache = (cache and sampler.policy != "per_step" and not model.time_conditioned
                     and B * L * V * 4 <= cache_bytes)
        out = torch.zeros(B, L, V, device=device) if use_cache else None
        fresh = torch.zeros(B, dtype=torch.bool, device=device)  # out[row] is valid for the current x[row]
        for k in range(T):
            active = pending.any(dim=1)
            rows = (active & ~fresh).nonzero().squeeze(1) if use_cache else active.nonzero().squeeze(1)
            if rows.numel():
                stats.nfe += 1
                stats.row_evals += int(rows.numel())
            if use_cache:
                for part, _, logp in evaluate(rows, torch.full_like(rows, k)):
                    out[part] = logp
                fresh[rows] = True
                revealing = (pending & (when == k)).any(dim=1)
                fresh &= ~revealing
                act = revealing.nonzero().squeeze(1)
                reveal(act, torch.full_like(act, k), lambda i, j, act=act: out[act[i], j])
            else:
                for part, kp, logp in evaluate(rows, torch.full_like(rows, k)):
                    reveal(part, kp, lambda i, j, logp=logp: logp[i, j])
    if on_step is not None:
        for k in range(T):
            state = torch.where(masked0 & (when > k), torch.full_like(x, model.mask_id), x)
            on_step(k, float(times[k]), float(times[k + 1]), state)
    return x, stats


@contextlib.contextmanager
def eval_mode(model):
    """``model`` in eval mode for the block, its previous mode restored after (evaluation helpers leave a
    caller's training state as they found it)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def sample(model, num_samples: int | None = None, steps: int = 10, sampler="mdm", cache: bool = True,
           lazy: bool = True, x_init: torch.Tensor | None = None, seed: int | None = 0, batch_size: int | None = None,
           grid: str = "uniform", device=None, progress: bool = False, temperature: float = 1.0):
    """Draw samples from a trained MDM or VADD model.

    ``sampler``: a name (``mdm``, ``vadd``, ``vadd-cs``) or a :class:`vadd.samplers.Sampler` the model runs.
    Either ``num_samples`` (unconditional) or ``x_init`` ``[N, L]`` (conditional: ``model.mask_id`` marks
    positions to generate, every other token is kept). ``temperature``: see :func:`sample_batch`. Rows are sampled in chunks of ``batch_size``
    (default: at most 100,000 rows and 2^24 positions); the samples of a seed depend on the chunking.
    Returns ``(tokens [N, L] int64, SampleStats)``.
    """
    sampler = samplers.get(sampler).check(model)
    if device is None:
        tensors = itertools.chain(model.parameters(), model.buffers())
        device = next(tensors, torch.empty(0)).device
    if x_init is None:
        check_request(model, num_samples, steps, sampler)
        x_init = torch.full((num_samples, model.seq_len), model.mask_id, dtype=torch.long)
    else:
        x_init = torch.as_tensor(x_init, dtype=torch.long)
        model.check_tokens(x_init, allow_mask=True)
    time_grid(steps)  # validates steps early
    check_temperature(temperature)
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    out, total = [], SampleStats(steps=int(steps))
    if batch_size is None:  # at most 100k rows and 16M positions a chunk (the sampler keeps ~24 bytes each)
        batch_size = max(1, min(100_000, (1 << 24) // max(x_init.shape[1], 1)))
    chunks = torch.split(x_init, int(batch_size))
    it = chunks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chunks, desc=f"sampling {sampler.name} T={steps}", leave=False)
    with eval_mode(model):
        for chunk in it:
            x, st = sample_batch(model, chunk.to(device), steps, sampler, cache, lazy, grid, gen,
                                 temperature=float(temperature))
            out.append(x.cpu())
            total.nfe += st.nfe
            total.row_evals += st.row_evals
            total.per_step_revealed = [a + b for a, b in itertools.zip_longest(
                total.per_step_revealed, st.per_step_revealed, fillvalue=0)]
    return torch.cat(out), total
