"""Step-indexed training batches: batch ``k`` and its training noise are pure functions of ``(seed, k)``,
so a resumed run sees exactly the batches an uninterrupted one would, and any number of ranks together
see what one process with the global batch sees."""
from __future__ import annotations

import torch

from ..errors import DataError
from ..rng import step_key


class StepBatches(torch.utils.data.IterableDataset):
    """Endless batches where batch ``k`` is a pure function of ``(seed, k)``.

    Epoch ``e = k // n`` uses its own seeded permutation; the global batch (``batch_size`` rows per
    rank times the world size) is cut into one slice per rank. So a resumed run continues with exactly
    the batches an uninterrupted run would have seen, and ``world`` processes together see what one
    process with the global batch sees.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, seed: int, start_batch: int = 0, transform=None):
        self.tokens, self.batch_size, self.seed, self.start_batch = tokens, int(batch_size), int(seed), int(start_batch)
        self.transform = transform  # (global batch, generator seeded by (seed, k)) -> tokens
        self._perm_epoch, self._perm = None, None

    @staticmethod
    def rank_world():
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def batch(self, k: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        G = self.batch_size * world
        n = len(self.tokens) // G
        if n < 1:
            raise DataError(f"training data has {len(self.tokens)} sequences, fewer than one global batch ({G})")
        epoch, pos = divmod(int(k), n)
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(step_key(self.seed, 0, epoch))
            self._perm, self._perm_epoch = torch.randperm(len(self.tokens), generator=g), epoch
        rows = self._perm[pos * G:(pos + 1) * G]
        if self.transform is None:
            return self.tokens[rows[rank * self.batch_size:(rank + 1) * self.batch_size]]
        g = torch.Generator().manual_seed(step_key(self.seed, k, 777))
        return self.transform(self.tokens[rows], g)[rank * self.batch_size:(rank + 1) * self.batch_size]

    def __iter__(self):
        rank, world = self.rank_world()
        self.batch(0, rank, world)  # validates the size before training starts
        k = self.start_batch
        while True:
            yield self.batch(k, rank, world)
            k += 1


def step_generator(seed: int, batch_index: int, device) -> torch.Generator:
    """The training noise of micro-batch ``batch_index``: a function of the seed and the index only."""
    g = torch.Generator(device=device)
    g.manual_seed(step_key(seed, batch_index, 12345))
    return g
