"""Seeded random streams as explicit generators: ``generator(seed, purpose, *index)``.

Every draw that must be reproducible and paired across models (the bound's time and mask draws, the
importance-sampling draws of ``z``) takes a generator derived from a seed, a purpose and indices
(batch, repeat, ...), never the global stream, so a draw does not depend on what ran before it.
"""
from __future__ import annotations

import hashlib

import torch


def stream_key(seed: int, purpose: str, *index: int) -> int:
    """A 63-bit key for ``(seed, purpose, *index)``; distinct purposes give unrelated streams."""
    text = repr((int(seed), str(purpose), *(int(i) for i in index))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


def generator(seed: int, purpose: str, *index: int, device=None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`stream_key`."""
    g = torch.Generator(device=device)
    g.manual_seed(stream_key(seed, purpose, *index))
    return g
