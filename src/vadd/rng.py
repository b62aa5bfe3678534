"""Seeded random streams as explicit generators: ``generator(seed, purpose, *index)``.

Every draw that must be reproducible and paired across models (the bound's time and mask draws, the
importance-sampling draws of ``z``) takes a generator derived from a seed, a purpose and indices
(batch, repeat, ...), never the global stream, so a draw does not depend on what ran before it.
"""
from __future__ import annotations

import hashlib

import torch

MAX_SEED = 2**32 - 1  # what every seeded generator (numpy, torch, Lightning's seed_everything) accepts


def stream_key(seed: int, purpose: str, *index: int) -> int:
    """A 63-bit key for ``(seed, purpose, *index)``; distinct purposes give unrelated streams."""
    text = repr((int(seed), str(purpose), *(int(i) for i in index))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


def step_key(seed: int, index: int = 0, salt: int = 0) -> int:
    """The key of one of training's step-indexed streams: the data order of an epoch (``salt`` = epoch),
    a batch's transform (``salt`` 777) and a micro-batch's noise (``salt`` 12345), indexed by batch. A linear
    formula rather than :func:`stream_key`, kept because every training run the documentation reports
    drew its batches and noise with it."""
    return (int(seed) * 1_000_003 + int(index) * 7919 + int(salt)) % (2**63 - 1)


# the numpy streams of the data side, one salt per purpose (kept as they were: every reported split used them)
DATA_STREAMS = {"toy-draw": 2024, "toy-heldout": 31337, "image-split": 31337, "image-user-split": 99,
                "image-dynamic-test": 4242, "text-split": 1234, "demo-floor": 7, "token-pairs": 17,
                "compare-floor": 23, "compare-fid-floor": 29}


def numpy_generator(seed: int, purpose: str):
    """The ``numpy.random.Generator`` of a data-side draw: ``default_rng([seed, DATA_STREAMS[purpose]])``."""
    import numpy as np
    return np.random.default_rng([int(seed), DATA_STREAMS[purpose]])


def generator(seed: int, purpose: str, *index: int, device=None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`stream_key`."""
    g = torch.Generator(device=device)
    g.manual_seed(stream_key(seed, purpose, *index))
    return g
