"""MLP backbones for short sequences (the 2D toys, small categorical data).

The denoiser flattens the ``L`` token embeddings (mask token included) into one vector and runs
residual adaLN-Zero MLP blocks conditioned on ``c``; the recognition model embeds the clean tokens,
modulates masked positions with learned vectors (method.md §4) and maps the flattened features to a
diagonal Gaussian. Flattening instead of mean pooling is our choice for tiny fixed ``L``: it keeps
which position carries which token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conditioning import AdaLNZero, Conditioning


class MLPBlock(nn.Module):
    """Residual adaLN-Zero MLP block. :class:`MLPDenoiser` computes every block's modulation (from this
    block's ``ada`` projection) in one matrix product and passes ``(shift, 1 + scale, gate)``."""

    def __init__(self, hidden: int, cond_dim: int, mult: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.ada = AdaLNZero(cond_dim, hidden, 3)
        self.ff = nn.Sequential(nn.Linear(hidden, mult * hidden), nn.SiLU(), nn.Linear(mult * hidden, hidden))

    def forward(self, h, shift, mult, gate):
        return torch.addcmul(h, gate, self.ff(torch.addcmul(shift, self.norm(h), mult)))


class MLPDenoiser(nn.Module):
    """``(xt [B, L], t [B], z [B, d] | None) -> logits [B, L, V]``.

    How ``z`` enters (``latent_adaln``):

    - ``True`` (the paper's conditioning): ``c = const + MLP(z)`` and every block's adaLN modulation is a
      projection of ``SiLU(c)``, computed per row: ``cond_dim x 3 hidden`` multiply-adds per block and row,
      a large share on top of MDM's network on the 2-token toys (``latent_input`` also adds ``z`` to the first
      layer);
    - ``"input"``: ``c`` stays batch-constant and ``z`` joins the flattened token features, so the input
      layer reads ``L E + latent_dim`` features instead of ``L E``: nothing per row but ``latent_dim``
      columns, about MDM's cost. Not adaLN: the cost-matched toy option (the MLP's default).

    Without time conditioning and with no latent inside ``c``, ``c`` is one row for the whole batch and its
    projections run once per call, as MDM's do. All projections run as one matrix
    product with the ``1 +`` of ``1 + scale`` folded into the bias, and the blocks apply the modulation
    with fused multiply-adds: no ``[B, hidden]`` pass more than needed, which is what a call costs here.
    """

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int = 0, hidden: int = 256,
                 depth: int = 4, embed_dim: int = 64, cond_dim: int = 128, mult: int = 2,
                 time_conditioning: bool = True, latent_input: bool = False, latent_adaln: bool | str = True):
        super().__init__()
        if latent_adaln is not True and latent_adaln != "input":  # 'linear' and false: removed, their results kept
            raise ConfigError(f"latent_adaln must be true (the paper's adaLN) or 'input'; got {latent_adaln!r}")
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.time_conditioned = bool(time_conditioning)
        self.input_z = latent_dim > 0 and latent_adaln == "input"
        z_in_c = latent_dim > 0 and latent_adaln is True
        # with "input" z reaches the input layer itself, so latent_input adds nothing there
        self.z_in = nn.Linear(latent_dim, hidden) if (latent_input and z_in_c) else None
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)  # + the mask token
        self.pos = nn.Parameter(torch.zeros(seq_len, embed_dim))
        n_mod = (3 * depth + 2) * hidden
        self.cond = Conditioning(cond_dim, latent_dim if z_in_c else 0, time_conditioning=time_conditioning)
        # latent_adaln="input": z joins the flattened token features, one input layer reads both
        z_cols = latent_dim if self.input_z else 0
        self.inp = nn.Linear(seq_len * embed_dim + z_cols, hidden)
        if z_cols:
            # z's columns start as a Linear(latent_dim, hidden) of its own would (bound 1/sqrt(d)), not at the
            # 1/sqrt(L E + d) of the shared layer: a much weaker z at init left fewer active latent units
            with torch.no_grad():
                self.inp.weight[:, -z_cols:].uniform_(-z_cols ** -0.5, z_cols ** -0.5)
        self.blocks = nn.ModuleList([MLPBlock(hidden, cond_dim, mult) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.final_ada = AdaLNZero(cond_dim, hidden, 2)
        self.out = nn.Linear(hidden, seq_len * vocab_size)
        # the modulation's layout: (shift, scale, gate) per block, then (shift, scale); the 1 of 1 + scale
        self.hidden = hidden
        one = torch.zeros(n_mod)
        for k in range(depth + 1):
            one[(3 * k + 1) * hidden:(3 * k + 2) * hidden] = 1.0
        self.register_buffer("mod_one", one, persistent=False)

    def modulation(self, c):
        """Every block's ``(shift, 1 + scale, gate)`` and the output layer's ``(shift, 1 + scale)``, each
        ``[1 or B, hidden]``, from one matrix product."""
        projs = [b.ada.proj[1] for b in self.blocks] + [self.final_ada.proj[1]]
        bias = torch.cat([p.bias for p in projs]) + self.mod_one
        mod = torch.addmm(bias, F.silu(c), torch.cat([p.weight for p in projs]).t())
        return mod.split(self.hidden, dim=-1)

    def forward(self, xt, t, z=None):
        if self.input_z and z is None:
            raise ConfigError("this denoiser is conditioned on a latent z (latent_dim > 0) but got none")
        mod = self.modulation(self.cond(t, None if self.input_z else z))
        feats = (self.embed(xt) + self.pos).flatten(1)
        if self.input_z:
            feats = torch.cat([feats, z.to(feats.dtype)], dim=1)
        h = self.inp(feats)
        if self.z_in is not None:
            h = h + self.z_in(z)
        for i, block in enumerate(self.blocks):
            h = block(h, *mod[3 * i:3 * i + 3])
        h = torch.addcmul(mod[-2], self.final_norm(h), mod[-1])
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
        raise ConfigError(f"unknown encoder pooling {pool!r}; choose one of {POOLS}")
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
