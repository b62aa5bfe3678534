"""2D toy distributions, their discretisation into tokens, and exact/reference cell probabilities.

Definitions follow FFJORD's toy data: checkerboard, swissroll, circles. A user file of 2D
points (``.npy``, shape ``(N, 2)``) works everywhere a name does.

Two tokenisations of a point ``(x1, x2)`` on a grid of ``B`` bins per axis over ``[lo, hi]``:

- ``bins``   (default): 2 tokens, ``V = B``.
- ``binary``: each bin index written as ``b = log2(B)`` bits, most significant first: ``2b`` tokens,
  ``V = 2``. Far more dimensions must agree, which stresses the correlation between them.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import DataError, first_line
from ..io import check_npy_header, input_path
from ..rng import numpy_generator

TOYS = ("checkerboard", "swissroll", "circles")


def toy_points(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` float64 points ``(n, 2)`` of a named toy."""
    if name == "checkerboard":
        x1 = rng.uniform(-2.0, 2.0, n)
        x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + (np.floor(x1) % 2)
        return np.stack([x1, x2], 1) * 2.0
    seed = int(rng.integers(0, 2**31 - 1))
    if name == "swissroll":
        from sklearn.datasets import make_swiss_roll
        x, _ = make_swiss_roll(n_samples=n, noise=1.0, random_state=seed)
        return x[:, [0, 2]] / 5.0
    if name == "circles":
        from sklearn.datasets import make_circles
        x, _ = make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=seed)
        return x * 3.0
    raise DataError(f"unknown 2D dataset {name!r}: use one of {list(TOYS)} or a path to a .npy file of "
                     "shape (N, 2)")


def load_point_file(path: str) -> np.ndarray:
    input_path(path, "data file")
    try:
        check_npy_header(path)
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array of points ({first_line(e)})") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataError(f"{path}: expected an array of 2D points with shape (N, 2), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise DataError(f"{path}: points must be finite numbers")
    if len(arr) < 10:
        raise DataError(f"{path}: too few points ({len(arr)}); need at least 10")
    return arr.astype(np.float64)


def is_toy_name(name_or_path: str) -> bool:
    return name_or_path in TOYS


class PointSource:
    """A distribution of 2D points: a named toy (sampled fresh) or a user file (resampled)."""

    def __init__(self, name_or_path: str):
        self.name = name_or_path
        if is_toy_name(name_or_path):
            self.points = None
        elif name_or_path.endswith(".npy") or os.path.exists(name_or_path):
            self.points = load_point_file(name_or_path)
        else:
            toy_points(name_or_path, 1, np.random.default_rng(0))  # raises the clear error

    @property
    def label(self) -> str:
        return self.name if self.points is None else os.path.splitext(os.path.basename(self.name))[0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.points is None:
            return toy_points(self.name, n, rng)
        return self.points[rng.integers(0, len(self.points), n)]


class Grid2D:
    """Discretisation of the plane into ``bins x bins`` cells over ``[lo, hi]^2``, and its tokenisation."""

    def __init__(self, bins: int = 64, lo: float = -4.0, hi: float = 4.0, tokens: str = "bins"):
        if bins < 2:
            raise DataError(f"need at least 2 bins, got {bins}")
        if not hi > lo:
            raise DataError(f"range must have hi > lo, got [{lo}, {hi}]")
        if tokens not in ("bins", "binary"):
            raise DataError(f"unknown tokenisation {tokens!r}; choose 'bins' or 'binary'")
        if tokens == "binary" and bins & (bins - 1):
            raise DataError(f"binary tokens need a power-of-two number of bins, got {bins}")
        self.bins, self.lo, self.hi, self.tokens = int(bins), float(lo), float(hi), tokens
        self.bits = int(round(math.log2(bins))) if tokens == "binary" else 0

    @classmethod
    def from_info(cls, info: dict) -> "Grid2D":
        """The grid a data config or saved data info (``bins``, ``range``, ``tokens``) describes."""
        return cls(int(info["bins"]), float(info["range"][0]), float(info["range"][1]), info.get("tokens", "bins"))

    @property
    def seq_len(self) -> int:
        return 2 if self.tokens == "bins" else 2 * self.bits

    @property
    def vocab_size(self) -> int:
        return self.bins if self.tokens == "bins" else 2

    def cells(self, points: np.ndarray) -> np.ndarray:
        """Bin index per coordinate, ``(N, 2)`` int64; points outside the range are clipped to the edge."""
        width = (self.hi - self.lo) / self.bins
        return np.clip(np.floor((points - self.lo) / width), 0, self.bins - 1).astype(np.int64)

    def encode(self, points: np.ndarray) -> np.ndarray:
        c = self.cells(points)
        if self.tokens == "bins":
            return c
        shifts = np.arange(self.bits - 1, -1, -1)
        return ((c[:, :, None] >> shifts) & 1).reshape(len(c), -1)

    def token_cells(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        if self.tokens == "bins":
            return tokens
        weights = 1 << np.arange(self.bits - 1, -1, -1)
        return (tokens.reshape(len(tokens), 2, self.bits) * weights).sum(-1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens ``(N, L)`` -> bin centres ``(N, 2)`` float."""
        width = (self.hi - self.lo) / self.bins
        return self.lo + (self.token_cells(tokens) + 0.5) * width

    def histogram(self, cells: np.ndarray) -> np.ndarray:
        """Normalised ``bins x bins`` histogram of cell indices ``(N, 2)``."""
        flat = cells[:, 0] * self.bins + cells[:, 1]
        counts = np.bincount(flat, minlength=self.bins * self.bins).astype(np.float64)
        return (counts / max(counts.sum(), 1.0)).reshape(self.bins, self.bins)

    def to_dict(self) -> dict:
        return {"bins": self.bins, "range": [self.lo, self.hi], "tokens": self.tokens}


def checkerboard_cell_probs(grid: Grid2D) -> np.ndarray:
    """Exact cell probabilities of the checkerboard: its density integrated over every grid cell."""
    edges = np.linspace(grid.lo, grid.hi, grid.bins + 1)

    def overlap(a0, a1, b0, b1):
        return np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0, None)

    probs = np.zeros((grid.bins, grid.bins))
    # 32 black unit squares over [-4, 4]^2: column c (x in [c, c+1)) holds rows r with r - c even... the
    # generator's definition: x2/2 in [0,1) - 2B + (floor(x1/2) mod 2); enumerate its 32 squares.
    for i in range(4):  # floor(x1 / 2) in {-2, -1, 0, 1}
        k1 = i - 2
        for b in (0, 1):
            y0 = (0.0 - 2.0 * b + (k1 % 2)) * 2.0
            x0 = k1 * 2.0
            # each square is [x0, x0 + 2) x [y0, y0 + 2) after the *2; density 1/(8 * 4) per unit area
            ox = overlap(edges[:-1], edges[1:], x0, x0 + 2.0)
            oy = overlap(edges[:-1], edges[1:], y0, y0 + 2.0)
            probs += np.outer(ox, oy) / 32.0
    return probs / probs.sum()


def reference_cell_probs(source: PointSource, grid: Grid2D, n_ref: int, seed: int) -> np.ndarray:
    """Target cell probabilities: exact for the checkerboard, else from ``n_ref`` reference points
    (or the whole user file when it is the distribution)."""
    if source.points is None and source.name == "checkerboard":
        return checkerboard_cell_probs(grid)
    if source.points is not None:
        return grid.histogram(grid.cells(source.points))
    rng = np.random.default_rng(seed)
    hist = np.zeros((grid.bins, grid.bins))
    chunk = 2_000_000
    done = 0
    while done < n_ref:
        m = min(chunk, n_ref - done)
        hist += grid.histogram(grid.cells(source.sample(m, rng))) * m
        done += m
    return hist / hist.sum()


def heldout_tokens(info: dict, n: int, seed: int = 0) -> np.ndarray:
    """``n`` fresh points of the named toy in ``info`` (a model's saved data info), as tokens: from their
    own random stream, independent of the training points, for likelihood evaluation."""
    if info.get("kind") != "toy2d" or not is_toy_name(str(info.get("name"))):
        raise DataError("give --data PATH: this model's test data cannot be drawn from its config")
    rng = numpy_generator(seed, "toy-heldout")
    return Grid2D.from_info(info).encode(PointSource(info["name"]).sample(int(n), rng))
