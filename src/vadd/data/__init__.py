"""Data modules, one per modality, all producing :class:`TokenData`. ``build_data`` picks by ``kind``."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..rng import numpy_generator
from ..schema import DATA_KINDS
from .images import ImageGrid, image_data
from .tokens import TokenData, token_data
from .toy2d import TOYS, Grid2D, PointSource


def toy2d_data(name: str = "checkerboard", bins: int = 64, range=(-4.0, 4.0), tokens: str = "bins",
               n_train: int = 1_000_000, n_test: int = 10_000, seed: int = 0) -> TokenData:
    """A 2D toy (or a ``.npy`` file of points) tokenised on a grid; train and test drawn with ``seed``."""
    src = PointSource(str(name))
    grid = Grid2D(int(bins), float(range[0]), float(range[1]), tokens)
    rng = numpy_generator(seed, "toy-draw")
    if src.points is not None:  # a user file: a seeded split of its points
        perm = rng.permutation(len(src.points))
        n_te = max(1, min(n_test, len(perm) // 10))
        te_pts, tr_pts = src.points[perm[:n_te]], src.points[perm[n_te:]]
    else:
        tr_pts, te_pts = src.sample(int(n_train), rng), src.sample(int(n_test), rng)
    info = {"kind": "toy2d", "name": str(name), **grid.to_dict()}
    return TokenData(torch.from_numpy(grid.encode(tr_pts)), torch.from_numpy(grid.encode(te_pts)),
                     grid.vocab_size, name=src.label, decode=grid.decode, info=info)


def build_data(cfg: dict, seed: int = 0) -> TokenData:
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind == "toy2d":
        return toy2d_data(seed=seed, **cfg)
    if kind == "tokens":
        if not cfg.get("train"):
            raise ConfigError("data.train must name a token file (.npy/.npz/.txt/.csv of shape (N, L))")
        return token_data(seed=seed, **cfg)
    if kind == "images":
        if cfg.get("split") is not None:
            cfg["split"] = tuple(cfg["split"])
        return image_data(seed=seed, **cfg)
    if kind == "text":
        from .text import text_data
        return text_data(seed=seed, **cfg)
    raise ConfigError(f"unknown data kind {kind!r}; choose one of {list(DATA_KINDS)}")


def decoder_from_info(info: dict):
    """Rebuild ``decode`` from the data info saved next to a model (None when tokens are the output)."""
    if info.get("kind") == "toy2d":
        return Grid2D.from_info(info).decode
    if info.get("kind") == "images":
        return ImageGrid.from_info(info).decode
    if info.get("kind") == "text":
        from ..text.tokenizers import get_tokenizer
        tok = get_tokenizer(info["tokenizer"], **({"strict": False} if info["tokenizer"] == "char" else {}))
        if info.get("vocab") is not None:
            from ..text.tokenizers import LimitedVocab
            tok = LimitedVocab(tok, info["vocab"])
        return lambda rows: [tok.decode(r) for r in np.asarray(rows)]
    return None


__all__ = ["DATA_KINDS", "TOYS", "Grid2D", "ImageGrid", "image_data", "PointSource", "TokenData", "build_data", "decoder_from_info",
           "token_data", "toy2d_data"]
