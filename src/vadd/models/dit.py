"""Transformer backbones for text: a DiT denoiser, a transformer recognition model and an
autoregressive baseline of the same size.

The DiT (Peebles & Xie; MDLM's text variant) uses rotary positions, PyTorch SDPA attention (which
dispatches to flash / memory-efficient kernels on GPUs without any extra package), and adaLN-Zero
modulation from ``c = Conditioning(t, z)``, the module every backbone shares. The recognition model
embeds the clean tokens once, modulates the masked positions with learned vectors (method.md §4),
runs bidirectional blocks and mean-pools to a diagonal Gaussian.

Sizes (``size=``): ``tiny`` (CPU: 4 layers, 256 wide, 4 heads), ``small`` (the paper's: 12 layers,
768 wide, 12 heads), ``medium`` (24 layers, 1024 wide, 16 heads); explicit arguments override.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conditioning import AdaLNZero, Conditioning, modulate
from .mlp import MaskModulation, check_pool

SIZES = {"tiny": (4, 256, 4), "small": (12, 768, 12), "medium": (24, 1024, 16)}


def _size(size, depth, width, heads):
    d, w, h = SIZES[size] if size else (None, None, None)
    if size and size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    depth, width, heads = depth or d or 4, width or w or 256, heads or h or 4
    if width % heads or (width // heads) % 2:
        raise ConfigError(f"width {width} must split into {heads} heads of even size")
    return depth, width, heads


class Rotary(nn.Module):
    """Rotary position embedding, applied to queries and keys ``[B, heads, L, hd]``.

    Channel pairs ``(2j, 2j+1)`` are rotated by the angle ``pos * base^(-2j/hd)``: computed as one complex
    multiplication per pair, with the angle table cached per length and device."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)
        self._table = None

    def phases(self, L: int, device) -> torch.Tensor:
        """``exp(i * pos * freq)`` as a complex tensor ``[L, hd/2]``."""
        tab = self._table
        if (tab is None or tab.shape[0] < L or tab.device != device
                or tab.is_inference() and not torch.is_inference_mode_enabled()):
            ang = torch.arange(L, device=device, dtype=torch.float32)[:, None] * self.inv_freq.to(device)[None]
            tab = self._table = torch.polar(torch.ones_like(ang), ang)
        return tab[:L]

    def forward(self, q, k):
        L = q.shape[-2]
        if _compiling():  # inductor has no complex kernels; it fuses the real form instead
            ang = torch.arange(L, device=q.device, dtype=torch.float32)[:, None] * self.inv_freq[None]
            cos, sin = ang.cos(), ang.sin()
            return rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        rot = self.phases(L, q.device)

        def apply(x):
            xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
            return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)
        return apply(q), apply(k)


def _compiling() -> bool:
    f = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(f is not None and f())


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(2j, 2j+1)`` of ``x [..., L, hd]`` by angles with ``cos``/``sin`` ``[L, hd/2]``
    (real arithmetic: the compiled path of :class:`Rotary`)."""
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.rotary = Rotary(width // heads)

    def forward(self, h):
        B, L, W = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(q, k)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(B, L, W))


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP, each modulated (shift, scale) and gated by ``c`` (adaLN-Zero)."""

    def __init__(self, width: int, heads: int, cond_dim: int | None, mlp_ratio: int = 4, causal: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=cond_dim is None)
        self.attn = Attention(width, heads, causal, dropout)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=cond_dim is None)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * width, width))
        self.drop = nn.Dropout(dropout)
        self.ada = AdaLNZero(cond_dim, width, 6) if cond_dim else None

    def forward(self, h, c=None):
        if self.ada is None:
            h = h + self.drop(self.attn(self.norm1(h)))
            return h + self.drop(self.mlp(self.norm2(h)))
        s1, sc1, g1, s2, sc2, g2 = self.ada(c)
        h = h + g1.unsqueeze(1) * self.drop(self.attn(modulate(self.norm1(h), s1, sc1)))
        return h + g2.unsqueeze(1) * self.drop(self.mlp(modulate(self.norm2(h), s2, sc2)))


class DiTDenoiser(nn.Module):
    """``(xt [B, L], t [B], z [B, d] | None) -> logits [B, L, V]``."""

    fsdp_blocks = True  # FSDP shards each block as its own unit (vadd.fsdp)

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int = 0, size: str | None = "tiny",
                 depth: int | None = None, width: int | None = None, heads: int | None = None,
                 cond_dim: int = 128, mlp_ratio: int = 4, dropout: float = 0.0, time_conditioning: bool = False,
                 latent_input: bool = False, pos_embed: bool = False):
        super().__init__()
        depth, width, heads = _size(size, depth, width, heads)
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.time_conditioned = bool(time_conditioning)
        self.embed = nn.Embedding(vocab_size + 1, width)  # + the mask token
        # Absolute positions besides rotary: a fully masked row is one vector at every position, and
        # rotary attention over equal vectors gives equal outputs, so without them a global z could shift
        # the row's token frequencies but never say which token goes where.
        self.pos = nn.Parameter(torch.zeros(seq_len, width)) if pos_embed else None
        self.cond = Conditioning(cond_dim, latent_dim, time_conditioning=time_conditioning)
        self.z_in = nn.Linear(latent_dim, width) if (latent_input and latent_dim > 0) else None
        self.blocks = nn.ModuleList([DiTBlock(width, heads, cond_dim, mlp_ratio, False, dropout)
                                     for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_ada = AdaLNZero(cond_dim, width, 2)
        self.out = nn.Linear(width, vocab_size)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, xt, t, z=None):
        c = self.cond(t, z)
        h = self.embed(xt)
        if self.pos is not None:
            h = h + self.pos
        if self.z_in is not None:
            h = h + self.z_in(z).unsqueeze(1)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c)
        return self.out(modulate(self.final_norm(h), shift, scale))


class TransformerEncoder(nn.Module):
    """Recognition model ``r(z | x0, mask) -> (mean, logvar)``: one embedding of ``x0``, learned
    modulation at masked positions, optionally ``patch`` positions merged into one, bidirectional blocks,
    mean pooling."""

    fsdp_blocks = True

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int, size: str | None = "tiny",
                 depth: int | None = None, width: int | None = None, heads: int | None = None,
                 mlp_ratio: int = 4, patch: int = 1, pool: str = "mean"):
        super().__init__()
        depth, width, heads = _size(size, depth, width, heads)
        if int(patch) < 1:
            raise ConfigError(f"encoder patch must be >= 1, got {patch}")
        self.patch, self.pool = int(patch), check_pool(pool)
        self.embed = nn.Embedding(vocab_size, width)
        self.masked = MaskModulation(width)
        # patch > 1: every `patch` consecutive (modulated) token vectors are concatenated and projected to one
        # position, so the blocks run on L / patch positions (a global summary needs no per-token resolution)
        self.merge = nn.Linear(self.patch * width, width) if self.patch > 1 else None
        self.blocks = nn.ModuleList([DiTBlock(width, heads, None, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        # flatten: one weight per (position, channel), so the head reads where things are
        positions = -(-seq_len // self.patch)
        self.head = nn.Linear(width * (positions if pool == "flatten" else 1), 2 * latent_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x0, masked):
        h = self.masked(self.embed(x0), masked)
        if self.merge is not None:
            B, L, W = h.shape
            pad = -L % self.patch
            if pad:
                h = F.pad(h, (0, 0, 0, pad))
            h = self.merge(h.reshape(B, (L + pad) // self.patch, self.patch * W))
        for blk in self.blocks:
            h = blk(h)
        h = self.norm(h)
        mean, logvar = self.head(h.flatten(1) if self.pool == "flatten" else h.mean(dim=1)).chunk(2, dim=-1)
        return mean, logvar


class ARTransformer(nn.Module):
    """Autoregressive baseline of the same size: causal blocks over ``BOS x[:-1]`` (``BOS`` is an extra
    input id ``V``), next-token logits for all ``L`` positions, so its NLL covers the same tokens as the
    diffusion bounds."""

    fsdp_blocks = True

    def __init__(self, seq_len: int, vocab_size: int, size: str | None = "tiny", depth: int | None = None,
                 width: int | None = None, heads: int | None = None, mlp_ratio: int = 4, dropout: float = 0.0,
                 **_unused):
        super().__init__()
        depth, width, heads = _size(size, depth, width, heads)
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.embed = nn.Embedding(vocab_size + 1, width)   # + BOS
        self.blocks = nn.ModuleList([DiTBlock(width, heads, None, mlp_ratio, True, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, x):
        """Logits ``[B, L, V]``; position ``i`` predicts ``x[:, i]`` from ``x[:, :i]``."""
        bos = torch.full_like(x[:, :1], self.vocab_size)
        h = self.embed(torch.cat([bos, x[:, :-1]], dim=1))
        for blk in self.blocks:
            h = blk(h)
        return self.out(self.norm(h))

    def token_nll(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token NLL ``[B, L]`` in nats."""
        logits = self(x).float()
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), x.reshape(-1), reduction="none").view(x.shape)
