"""The exact one-step (T = 1) distribution of a toy model over the grid's cells.

At ``T = 1`` every position is revealed at once from the fully masked input, so MDM draws the product
of its per-position marginals and VADD draws ``E_{z ~ N(0, I)} [prod_l p(x^l | z)]``: a mixture of
products. Both are computed here exactly over the tokens (every cell is enumerated) and by Monte Carlo
over ``z`` only, so the JS against the target carries no sampling noise of ``N`` points: it separates
what the model gets wrong from the histogram noise floor of the demo's sampled JS.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .js import js_divergence


@torch.no_grad()
def one_step_cell_probs(model, grid, num_z: int = 200_000, seed: int = 0, batch: int = 4096) -> np.ndarray:
    """``(bins, bins)`` probabilities of the cells under one-step sampling from the fully masked input.

    ``grid`` is the model's :class:`~vadd.data.toy2d.Grid2D` (2 bin tokens or ``2b`` bit tokens). For a
    latent model, ``num_z`` prior draws (seeded) average the per-``z`` product distributions.
    """
    if grid.seq_len != model.seq_len or grid.vocab_size != model.vocab_size:
        raise ConfigError(f"grid ({grid.seq_len} tokens, V = {grid.vocab_size}) does not match the model "
                         f"({model.seq_len} tokens, V = {model.vocab_size})")
    device = next(model.parameters()).device
    width = (grid.hi - grid.lo) / grid.bins
    centres = grid.lo + (np.arange(grid.bins) + 0.5) * width
    # the tokens of each coordinate's bins: the first half of the sequence is x1, the second x2
    half = model.seq_len // 2
    codes = torch.as_tensor(grid.encode(np.stack([centres, centres], 1))[:, :half], device=device)  # [bins, L/2]
    pos = torch.arange(half, device=device)

    def marginals(logp):  # [n, L, V] -> two [n, bins] distributions, one per coordinate (given z)
        return [logp[:, k * half + pos, codes].sum(-1).exp() for k in (0, 1)]

    # MDM's one-step law needs one network call; VADD's averages num_z prior draws of z
    latent = model.samplers[0].needs_latent
    draws = num_z if latent else 1
    gen = torch.Generator(device=device).manual_seed(int(seed))
    acc = torch.zeros(grid.bins, grid.bins, dtype=torch.float64, device=device)
    done = 0
    while done < draws:
        n = min(batch, draws - done)
        z = torch.randn(n, model.prior.dim, generator=gen, device=device) if latent else None
        xt = torch.full((n, model.seq_len), model.mask_id, dtype=torch.long, device=device)
        p1, p2 = marginals(model.log_probs(xt, torch.ones(n, device=device), z).double())
        acc += p1.T @ p2  # sum over z of the product distributions
        done += n
    return (acc / draws).cpu().numpy()


def one_step_report(probs: np.ndarray, target: np.ndarray, num_samples: int = 100_000, seed: int = 0) -> dict:
    """Noise-free JS of the one-step distribution against the target; the mass it puts where the target
    has none; and, for comparison with a sampled JS, the JS of ``num_samples`` points drawn from it."""
    probs = np.asarray(probs, dtype=np.float64) / probs.sum()
    counts = np.random.default_rng(seed).multinomial(num_samples, probs.ravel())
    return {"js_exact": js_divergence(probs, target), "mass_off_target": float(probs[target <= 0].sum()),
            "js_of_samples_from_it": js_divergence(counts.astype(np.float64), target),
            "num_samples": int(num_samples)}
