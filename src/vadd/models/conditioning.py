"""The one conditioning module every backbone shares (method.md §3).

``c = time_embedding(t) + latent_embedding(z)``; each block turns ``c`` into adaLN-Zero shift, scale
and gate. MDM is the same network with ``latent_dim = 0`` (no latent embedding), so MDM and VADD
differ only by the ``z`` path.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of ``t in [0, 1]`` (scaled by 1000 as in DiT/MDLM): ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float().reshape(-1, 1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Conditioning(nn.Module):
    """``(t, z) -> c [B, cond_dim]``: time embedding plus (for VADD) an MLP embedding of ``z``."""

    def __init__(self, cond_dim: int, latent_dim: int = 0, freq_dim: int = 128, time_conditioning: bool = True):
        super().__init__()
        self.freq_dim = freq_dim
        self.latent_dim = latent_dim
        self.time_conditioning = bool(time_conditioning)
        # Without time conditioning (MDLM's choice) a learned constant stands in for the time embedding:
        # the optimal absorbing-diffusion denoiser does not depend on t given xt, and outputs can then be
        # cached exactly across sampling steps.
        self.time = (nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
                     if self.time_conditioning else None)
        # It starts non-zero, as MDLM's embedding of t = 0 does: every adaLN projection reads SiLU(c), and with
        # c = 0 (SiLU(0) = 0) their weights would get no gradient, leaving only the biases to learn. The
        # zero-initialised gates then open at Adam's per-parameter rate, hundreds of steps slower.
        self.const = None if self.time_conditioning else nn.Parameter(torch.randn(cond_dim))
        self.latent = (
            nn.Sequential(nn.Linear(latent_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
            if latent_dim > 0 else None
        )

    def forward(self, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, cond_dim]``, or ``[1, cond_dim]`` (broadcast over the batch) when ``c`` is the same for every
        example: no time conditioning and no latent."""
        if self.time is not None:
            # the features are float32 sines; a float64 model takes them at its own precision
            c = self.time(sinusoidal(t, self.freq_dim).to(self.time[0].weight.dtype))
        else:
            # one row for the whole batch: every block's adaLN projection then runs once per call, not once
            # per example (on the 2-token toy MLP that per-row constant was a third of MDM's time)
            c = self.const.unsqueeze(0)
        if self.latent is not None:
            if z is None:
                raise ConfigError("this denoiser is conditioned on a latent z (latent_dim > 0) but got none")
            c = c + self.latent(z)
        elif z is not None:
            raise ConfigError("this denoiser has no latent (latent_dim = 0) but was given z")
        return c


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``h * (1 + scale) + shift``; shift/scale are ``[B, H]`` and broadcast over positions."""
    while shift.dim() < h.dim():
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return h * (1.0 + scale) + shift


class AdaLNZero(nn.Module):
    """Projects ``c`` to ``n`` chunks of width ``hidden`` (shift, scale, gate, ...), zero-initialised."""

    def __init__(self, cond_dim: int, hidden: int, n: int):
        super().__init__()
        self.n = n
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, n * hidden))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)

    def forward(self, c: torch.Tensor):
        return self.proj(c).chunk(self.n, dim=-1)
