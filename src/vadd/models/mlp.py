"""MLP backbones for short sequences (the 2D toys, small categorical data).

The denoiser flattens the ``L`` token embeddings (mask token included) into one vector and runs
residual adaLN-Zero MLP blocks conditioned on ``c``; the recognition model embeds the clean tokens,
modulates masked positions with learned vectors (method.md §4) and maps the flattened features to a
diagonal Gaussian. Flattening instead of mean pooling is our choice for tiny fixed ``L``: it keeps
which position carries which token.
"""
from __future__ import annotations

import torch
from torch import nn

from .conditioning import AdaLNZero, Conditioning, modulate


class MLPBlock(nn.Module):
    def __init__(self, hidden: int, cond_dim: int, mult: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.ada = AdaLNZero(cond_dim, hidden, 3)
        self.ff = nn.Sequential(nn.Linear(hidden, mult * hidden), nn.SiLU(), nn.Linear(mult * hidden, hidden))

    def forward(self, h, c):
        shift, scale, gate = self.ada(c)
        return h + gate * self.ff(modulate(self.norm(h), shift, scale))


class MLPDenoiser(nn.Module):
    """``(xt [B, L], t [B], z [B, d] | None) -> logits [B, L, V]``."""

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int = 0, hidden: int = 256,
                 depth: int = 4, embed_dim: int = 64, cond_dim: int = 128, mult: int = 2,
                 time_conditioning: bool = True, latent_input: bool = False, latent_adaln: bool = True):
        super().__init__()
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.time_conditioned = bool(time_conditioning)
        # z reaches the network through every block's adaLN (latent_adaln, the default; latent_input also
        # adds it to the first layer), or with latent_adaln=False additively before every block: then,
        # without time conditioning, the blocks' modulation stays batch-constant and is computed once per
        # call as MDM's is. Where one row is a whole sample (the 2D toys) VADD then pays only the small
        # additive projections (README, Sampling cost), at some one-step quality. The first block's
        # projection acts where latent_input's would, so latent_input adds nothing there and is ignored.
        self.additive_z = latent_dim > 0 and not latent_adaln
        self.z_in = nn.Linear(latent_dim, hidden) if (latent_input and latent_dim > 0 and not self.additive_z) else None
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)  # + the mask token
        self.pos = nn.Parameter(torch.zeros(seq_len, embed_dim))
        # without adaLN, each block gets its own additive projection of z (cheap: latent_dim x hidden)
        self.z_blocks = (nn.ModuleList([nn.Linear(latent_dim, hidden) for _ in range(depth)])
                         if self.additive_z else None)
        self.cond = Conditioning(cond_dim, 0 if self.additive_z else latent_dim, time_conditioning=time_conditioning)
        self.inp = nn.Linear(seq_len * embed_dim, hidden)
        self.blocks = nn.ModuleList([MLPBlock(hidden, cond_dim, mult) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.final_ada = AdaLNZero(cond_dim, hidden, 2)
        self.out = nn.Linear(hidden, seq_len * vocab_size)

    def forward(self, xt, t, z=None):
        if self.additive_z and z is None:
            raise ValueError("this denoiser is conditioned on a latent z (latent_dim > 0) but got none")
        c = self.cond(t, None if self.additive_z else z)
        h = self.inp((self.embed(xt) + self.pos).flatten(1))
        if self.z_in is not None:
            h = h + self.z_in(z)
        for i, block in enumerate(self.blocks):
            if self.z_blocks is not None:
                h = h + self.z_blocks[i](z)
            h = block(h, c)
        shift, scale = self.final_ada(c)
        h = modulate(self.final_norm(h), shift, scale)
        return self.out(h).view(-1, self.seq_len, self.vocab_size)


class MaskModulation(nn.Module):
    """Learned shift/scale applied to the clean-token features at masked positions only.

    This is how the recognition model sees ``xt`` without a second embedding pass: it embeds ``x0``
    once and marks which positions the forward process masked (method.md §4).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.shift = nn.Parameter(torch.randn(dim) * 0.02)
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, h: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        m = masked.unsqueeze(-1).to(h.dtype)
        return h + m * (h * self.scale + self.shift)


POOLS = ("mean", "flatten")


def check_pool(pool: str) -> str:
    """Validate a recognition model's pooling: ``mean`` over positions or ``flatten`` (one head weight per
    position and channel, for fixed-size inputs)."""
    if pool not in POOLS:
        raise ValueError(f"unknown encoder pooling {pool!r}; choose one of {POOLS}")
    return pool


class MLPEncoder(nn.Module):
    """Recognition model ``r(z | x0, mask) -> (mean [B, d], logvar [B, d])``."""

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int, hidden: int = 256,
                 depth: int = 2, embed_dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.pos = nn.Parameter(torch.zeros(seq_len, embed_dim))
        self.masked = MaskModulation(embed_dim)
        layers = [nn.Linear(seq_len * embed_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, 2 * latent_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x0, masked):
        h = self.masked(self.embed(x0) + self.pos, masked)
        mean, logvar = self.head(self.body(h.flatten(1))).chunk(2, dim=-1)
        return mean, logvar
