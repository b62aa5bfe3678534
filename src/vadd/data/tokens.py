"""Generic categorical data: any integer array ``(N, L)`` with values in ``[0, V)``.

``TokenData`` is what every modality hands to training: train/test token tensors, the vocabulary size
and a ``decode`` for turning samples back into the modality's own objects.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DataError, first_line
from ..io import check_npy_header, input_path


@dataclass
class TokenData:
    train: torch.Tensor            # [N, L] int64
    test: torch.Tensor             # [M, L] int64
    vocab_size: int
    name: str = "tokens"
    decode: Callable[[np.ndarray], Any] | None = None
    info: dict = field(default_factory=dict)  # what is needed to rebuild decode (saved with the model)
    # applied to each global training batch with a generator seeded by the step (e.g. dynamic binarization)
    train_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])


MAX_TOKEN_ID = 1 << 62  # an id beyond this is no vocabulary's (and would overflow int64 arithmetic)


def integer_ids(arr, where: str) -> np.ndarray:
    """Token ids as int64 without wrapping or truncating: floats must be whole and finite, booleans and other
    dtypes are refused, and no id may exceed ``MAX_TOKEN_ID`` (checked in the array's own dtype)."""
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise DataError(f"{where}: token ids must be integers (whole numbers), got dtype {arr.dtype} with "
                            "fractional or non-finite values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: token ids must be integers, got dtype {arr.dtype}")
    if arr.size and arr.max() >= MAX_TOKEN_ID:
        hi = arr.max()
        shown = f"{float(hi):g}" if np.issubdtype(arr.dtype, np.floating) else str(int(hi))
        raise DataError(f"{where}: token id {shown} is beyond any vocabulary (ids must be below 2^62)")
    return arr.astype(np.int64)


def validate_tokens(arr: np.ndarray, vocab_size: int | None, where: str) -> np.ndarray:
    """An ``(N, L)`` int64 array of ids in ``[0, vocab_size)``, or one line saying what is wrong."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise DataError(f"{where}: expected an integer array of shape (N, L), got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{where}: holds no tokens (shape {arr.shape}; an empty file?)")
    arr = integer_ids(arr, where)
    if arr.shape[0] < 2:
        raise DataError(f"{where}: too little data ({arr.shape[0]} sequences of length {arr.shape[1]})")
    if arr.min() < 0:
        raise DataError(f"{where}: negative token id {int(arr.min())}")
    if vocab_size is not None and arr.max() >= vocab_size:
        raise DataError(f"{where}: token id {int(arr.max())} is outside the vocabulary [0, {vocab_size})")
    return arr


def load_array(path: str) -> np.ndarray:
    input_path(path, "data file")
    try:
        return _load_array(path)
    except (ValueError, OSError, EOFError) as e:  # numpy's own messages do not name the file
        if str(e).startswith(path):
            raise
        raise DataError(f"{path}: not a readable integer array ({first_line(e)})") from None


def _load_array(path: str) -> np.ndarray:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if not z.files:
                raise DataError(f"{path}: the .npz holds no arrays")
            if len(z.files) > 1 and "tokens" not in z.files:
                raise DataError(f"{path}: the .npz holds {len(z.files)} arrays ({', '.join(z.files[:4])}"
                                f"{' ...' if len(z.files) > 4 else ''}); keep one (N, L) array, or name it 'tokens'")
            return z["tokens" if "tokens" in z.files else z.files[0]]
    if path.endswith(".npy"):
        check_npy_header(path)
        return np.load(path, allow_pickle=False)
    if path.endswith((".txt", ".csv", ".tsv")):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": validate_tokens says it
            return np.loadtxt(path, dtype=np.int64, delimiter="," if path.endswith(".csv") else None, ndmin=2)
    raise DataError(f"{path}: unsupported token file type; use .npy, .npz, .txt or .csv")


MAX_INFERRED_VOCAB = 1 << 20  # without data.vocab_size: beyond this a file is more likely wrong than huge


def token_data(train: str, test: str | None = None, vocab_size: int | None = None, test_fraction: float = 0.1,
               seed: int = 0) -> TokenData:
    """User token files. Without ``test`` a seeded ``test_fraction`` of ``train`` is held out."""
    arr = validate_tokens(load_array(train), vocab_size, train)
    V = int(vocab_size) if vocab_size is not None else int(arr.max()) + 1
    if vocab_size is None and V > MAX_INFERRED_VOCAB:  # one stray id would size the embeddings after it
        raise DataError(f"{train}: the largest token id, {V - 1}, implies a vocabulary of {V:,} (over "
                        f"{MAX_INFERRED_VOCAB:,}); set data.vocab_size if that is intended, or fix the file")
    if test is not None:
        te = validate_tokens(load_array(test), V, test)
        if te.shape[1] != arr.shape[1]:
            raise DataError(f"{test}: sequence length {te.shape[1]} differs from train's {arr.shape[1]}")
        tr = arr
    else:
        perm = np.random.default_rng(seed).permutation(len(arr))
        n_test = max(1, int(round(test_fraction * len(arr))))
        te, tr = arr[perm[:n_test]], arr[perm[n_test:]]
    return TokenData(torch.from_numpy(tr), torch.from_numpy(te), V, name=os.path.basename(train),
                     info={"kind": "tokens", "vocab_size": V})
