"""Posterior-collapse diagnostics of a VADD model: KL and active units at full and random masking, and how
much the decoder reads ``z`` (``latent_use``). Logged as ``diag/*`` during training."""
from __future__ import annotations

import torch

from .. import objectives
from ..latent import active_units
from ..sampling import eval_mode


@torch.no_grad()
def collapse_diagnostics(model, x0: torch.Tensor) -> dict:
    """Posterior-collapse diagnostics on a fixed batch at full masking and at a random mask pattern:
    mean KL per example and the number of active latent units; at full masking also how much of it the
    decoder reads (:func:`latent_use`). Nothing (``{}``) for a model without a recognition model (MDM)."""
    if getattr(model, "posterior", None) is None:
        return {}
    out = {}
    full = torch.ones_like(x0, dtype=torch.bool)
    half = torch.rand(x0.shape, device=x0.device) < 0.5
    for name, masked in (("t1", full), ("rand", half)):
        post = model.posterior(x0, masked)
        out[f"diag/kl_{name}"] = float(post.kl_standard().mean())
        out[f"diag/active_units_{name}"] = float(active_units(post.mean))
    out["diag/z_use_t1"] = latent_use(model, x0)
    return out


@torch.no_grad()
def latent_use(model, x0: torch.Tensor, rows: int = 256, seed: int = 0, max_logits: int = 1 << 25) -> float:
    """How much better the decoder predicts each ``x0`` at full masking with its own posterior draw of ``z``
    than with another example's, nats per example:
    ``E log p(x0_i | all masked, z_i) - E log p(x0_i | all masked, z_{i-1})``, ``z_i ~ r(z | x0_i)``.

    0 (up to noise) when ``z`` carries nothing about ``x0`` or the decoder ignores it; exactly 0 when the
    decoder does not depend on ``z``. By Jensen it is an upper bound on what ``z`` buys the reconstruction
    over the mixture of the posteriors, so a value below the KL means the latent costs more than the decoder
    gains from it, and the objective at KL weight 1 pushes it to the prior. Another example's
    ``z`` is used rather than a prior draw: a decoder fitted to posteriors that all sit at one point (KL
    without information) would otherwise look like a heavy user of ``z``. One draw per row from a private
    generator, the model in eval mode for the calls, so training's random stream and mode are left as they
    were. Rows go through the denoiser in chunks of at most ``max_logits`` output logits (a GPT-2 vocabulary at
    length 1,024 is 51 M logits per row).
    """
    x0 = x0[:rows]
    n, L = x0.shape
    if n < 2:
        return 0.0
    chunk = max(1, int(max_logits) // max(1, L * int(model.vocab_size)))
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    with eval_mode(model):
        masked = torch.ones_like(x0, dtype=torch.bool)
        post = model.posterior(x0, masked)
        z = post.rsample(torch.randn(post.mean.shape, generator=gen, device=x0.device, dtype=post.mean.dtype))
        gain = 0.0
        for zz, sign in ((z, 1.0), (z.roll(1, 0), -1.0)):
            for i in range(0, n, chunk):
                x, m = x0[i:i + chunk], masked[i:i + chunk]
                xt = torch.full_like(x, model.mask_id)
                t = torch.ones(x.shape[0], device=x.device)
                gain += sign * float(objectives.masked_log_likelihood(model.log_probs(xt, t, zz[i:i + chunk]), x, m).sum())
    return gain / n
