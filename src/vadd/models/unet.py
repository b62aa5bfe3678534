"""Convolutional backbones for images whose pixels are tokens.

The denoiser is a small U-Net over token embeddings (one embedding per channel value, the mask token
included), conditioned on ``c = Conditioning(t, z)`` through adaLN-Zero in every residual block (the
same module as the MLP and DiT backbones, so MDM and VADD differ only by the ``z`` path). It returns
``[B, L, V]`` logits with tokens laid out ``(C, H, W)``.

Why a U-Net and not a pixel transformer: at 28x28-32x32 with 784-1024 tokens, attention over all
pixels costs ``O(L^2)`` per layer, which a CPU cannot afford for a benchmark, while convolutions are
linear in ``L`` and give the locality prior that matters most for small training budgets. Attention
is used only at the lowest resolution (``attn=True``), as in the DDPM/MD4 U-Nets. With ``patch=p`` both
networks run on ``(H/p, W/p)`` positions, each carrying a ``p x p`` patch's embeddings in and its ``p^2``
pixels' logits out (space-to-depth): full-size images at a fraction of the convolution cost.

The recognition model embeds ``x0`` once, marks the masked positions with learned vectors
(``MaskModulation``, method.md §4), runs strided convolutions and pools globally to a diagonal
Gaussian.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conditioning import AdaLNZero, Conditioning, modulate
from .mlp import MaskModulation, check_pool


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def _halved(h: int, w: int, times: int) -> tuple[int, int]:
    """Size after ``times`` stride-2, padding-1, 3x3 convolutions: ``ceil`` halving."""
    for _ in range(times):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def _check_patch(patch: int, h: int, w: int) -> int:
    patch = int(patch)
    if patch < 1 or h % patch or w % patch:
        raise ConfigError(f"patch {patch} must be >= 1 and divide the image size {h}x{w}")
    return patch


def _patchify(e: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W, E] -> [B, C*E*p*p, H/p, W/p]``: each ``p x p`` patch's embeddings stacked as channels."""
    B, C, H, W, E = e.shape
    e = e.view(B, C, H // p, p, W // p, p, E).permute(0, 1, 6, 3, 5, 2, 4)
    return e.reshape(B, C * E * p * p, H // p, W // p)


def _unpatchify(logits: torch.Tensor, C: int, V: int, p: int) -> torch.Tensor:
    """``[B, C*V*p*p, H/p, W/p] -> [B, C*H*W, V]`` (tokens laid out ``C, H, W``), inverse of ``_patchify``."""
    B, _, h, w = logits.shape
    x = logits.view(B, C, V, p, p, h, w).permute(0, 1, 5, 3, 6, 4, 2)
    return x.reshape(B, C * h * p * w * p, V)


def _image_shape(seq_len: int, image_channels: int, height: int | None):
    if seq_len % image_channels:
        raise ConfigError(f"seq_len {seq_len} is not a multiple of image_channels {image_channels}")
    hw = seq_len // image_channels
    h = int(height) if height else int(round(math.sqrt(hw)))
    if h < 1 or hw % h:
        raise ConfigError(f"cannot lay out {seq_len} tokens as {image_channels} x H x W with H = {h}; set height")
    return image_channels, h, hw // h


class ResBlock(nn.Module):
    """GroupNorm -> adaLN(c) -> SiLU -> conv -> GroupNorm -> SiLU -> conv, gated residual (adaLN-Zero)."""

    def __init__(self, cin: int, cout: int, cond_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin, affine=False)
        self.ada = AdaLNZero(cond_dim, cin, 2)
        self.gate = AdaLNZero(cond_dim, cout, 1)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, c):
        shift, scale = self.ada(c)
        (gate,) = self.gate(c)
        h = modulate(self.norm1(x).movedim(1, -1), shift, scale).movedim(-1, 1)
        h = self.conv1(F.silu(h))
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + gate[:, :, None, None] * h


class Attention(nn.Module):
    """Self-attention over the pixels of the lowest resolution (PyTorch SDPA)."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class UNetDenoiser(nn.Module):
    """``(xt [B, L], t [B], z [B, d] | None) -> logits [B, L, V]`` for ``L = C*H*W`` pixel tokens."""

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int = 0, image_channels: int = 1,
                 height: int | None = None, ch: int = 32, mults=(1, 2, 2), num_res: int = 1,
                 embed_dim: int = 16, cond_dim: int = 128, attn: bool = True, dropout: float = 0.0,
                 time_conditioning: bool = False, latent_input: bool = True, pos_embed: bool = False,
                 latent_map: bool = False, patch: int = 1):
        super().__init__()
        self.C, self.H, self.W = _image_shape(seq_len, image_channels, height)
        # patch > 1: the U-Net runs on (H/p, W/p), each position carrying a p x p patch's embeddings in and
        # its p*p pixels' logits out (space-to-depth), ~p^2 cheaper convolutions at full image size
        self.patch = _check_patch(patch, self.H, self.W)
        gh, gw = self.H // self.patch, self.W // self.patch
        self.seq_len, self.vocab_size = seq_len, vocab_size
        self.time_conditioned = bool(time_conditioning)
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)  # + the mask token
        # A learned embedding per pixel (and channel). Without it a fully masked image is the same
        # vector at every pixel, and convolutions can place structure only through their zero padding:
        # a global z could say "a 7" but not where its strokes go.
        self.pos = nn.Parameter(torch.zeros(self.C, self.H, self.W, embed_dim)) if pos_embed else None
        self.cond = Conditioning(cond_dim, latent_dim, time_conditioning=time_conditioning)
        self.inp = nn.Conv2d(self.C * embed_dim * self.patch ** 2, ch, 3, padding=1)
        self.z_in = nn.Linear(latent_dim, ch) if (latent_input and latent_dim > 0) else None
        chans = [ch * m for m in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, cur = [ch], ch
        for i, co in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(num_res):
                blocks.append(ResBlock(cur, co, cond_dim, dropout))
                cur = co
                skips.append(cur)
            self.down.append(blocks)
            last = i == len(chans) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(cur, cur, 3, stride=2, padding=1))
            if not last:
                skips.append(cur)
        # z as a map at the lowest resolution (one linear "template" per latent unit), besides the global
        # adaLN path: a direct route from z to where things are
        self.low = _halved(gh, gw, len(chans) - 1)
        self.z_map = (nn.Linear(latent_dim, cur * self.low[0] * self.low[1]) if (latent_map and latent_dim > 0)
                      else None)
        self.mid1 = ResBlock(cur, cur, cond_dim, dropout)
        self.mid_attn = Attention(cur) if attn else nn.Identity()
        self.mid2 = ResBlock(cur, cur, cond_dim, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, co in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(num_res + 1):
                blocks.append(ResBlock(cur + skips.pop(), co, cond_dim, dropout))
                cur = co
            self.up.append(blocks)
            self.upsample.append(nn.Identity() if i == 0 else nn.Conv2d(cur, cur, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(cur), cur, affine=False)
        self.out_ada = AdaLNZero(cond_dim, cur, 2)
        self.out = nn.Conv2d(cur, self.C * vocab_size * self.patch ** 2, 1)

    def forward(self, xt, t, z=None):
        B = xt.shape[0]
        c = self.cond(t, z)
        e = self.embed(xt.view(B, self.C, self.H, self.W))          # [B, C, H, W, E]
        if self.pos is not None:
            e = e + self.pos
        h = self.inp(_patchify(e, self.patch))
        if self.z_in is not None:
            h = h + self.z_in(z)[:, :, None, None]
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for blk in blocks:
                h = blk(h, c)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        if self.z_map is not None:
            h = h + self.z_map(z).view(B, -1, *self.low)
        h = self.mid2(self.mid_attn(self.mid1(h, c)), c)
        for blocks, up in zip(self.up, self.upsample):
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), c)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
        shift, scale = self.out_ada(c)
        h = modulate(self.out_norm(h).movedim(1, -1), shift, scale).movedim(-1, 1)
        logits = self.out(F.silu(h))                                 # [B, C*V*p*p, H/p, W/p]
        return _unpatchify(logits, self.C, self.vocab_size, self.patch)


class ConvEncoder(nn.Module):
    """Recognition model ``r(z | x0, mask) -> (mean, logvar)`` over images of tokens."""

    def __init__(self, seq_len: int, vocab_size: int, latent_dim: int, image_channels: int = 1,
                 height: int | None = None, ch: int = 32, mults=(1, 2, 2), embed_dim: int = 16,
                 pos_embed: bool = False, pool: str = "mean", patch: int = 1):
        super().__init__()
        self.pool = check_pool(pool)
        self.C, self.H, self.W = _image_shape(seq_len, image_channels, height)
        self.patch = _check_patch(patch, self.H, self.W)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        # per-pixel embedding: the pooled features then say where a stroke is, not only that it exists
        self.pos = nn.Parameter(torch.zeros(seq_len, embed_dim)) if pos_embed else None
        self.masked = MaskModulation(embed_dim)
        layers, cur = [nn.Conv2d(self.C * embed_dim * self.patch ** 2, ch, 3, padding=1)], ch
        for i, m in enumerate(mults):
            co = ch * m
            layers += [nn.GroupNorm(_groups(cur), cur), nn.SiLU(),
                       nn.Conv2d(cur, co, 3, stride=2 if i else 1, padding=1)]
            cur = co
        self.body = nn.Sequential(*layers, nn.GroupNorm(_groups(cur), cur), nn.SiLU())
        if pool == "flatten":  # one weight per (channel, low-resolution pixel), as a VAE encoder reads an image
            fh, fw = _halved(self.H // self.patch, self.W // self.patch, len(mults) - 1)
            cur = cur * fh * fw
        self.head = nn.Linear(cur, 2 * latent_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x0, masked):
        B = x0.shape[0]
        e = self.embed(x0)
        if self.pos is not None:
            e = e + self.pos
        e = self.masked(e, masked).view(B, self.C, self.H, self.W, -1)
        h = self.body(_patchify(e, self.patch))
        h = h.flatten(1) if self.pool == "flatten" else h.mean(dim=(2, 3))
        mean, logvar = self.head(h).chunk(2, dim=-1)
        return mean, logvar
