import itertools
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("VADD_TEST_THREADS", "2")))
# VADD_TEST_MKLDNN=0 runs the suite without oneDNN kernels: one of the conditions that shake out tests which
# assume two computations round alike (with OMP_NUM_THREADS=1 and ATEN_CPU_CAPABILITY=default; see
# docs/guide/reliability.md)
torch.backends.mkldnn.enabled = os.environ.get("VADD_TEST_MKLDNN", "1") != "0"

# Relative tolerances for one number computed through two shapes, batch sizes, thread counts or code paths:
# CPU kernels (oneDNN / MKL / OpenBLAS) pick their blocking and summation order by shape and instruction set,
# so such results agree to a few units in the last place of the precision the network runs in, not bit for
# bit. Exact equality is asserted only for the same call on the same shapes (a resumed run, a seed twice).
F32_RTOL = 1e-5  # a float32 network, its outputs accumulated in float64 (~100 ulp of float32's 6e-8)
F64_RTOL = 1e-6  # float64 throughout


class ExactDenoiser(torch.nn.Module):
    """The exact SUBS denoiser of an enumerable distribution ``p`` over ``V^L``: at every masked
    position, the true conditional marginal given the revealed tokens (time-independent)."""

    def __init__(self, probs: torch.Tensor, V: int, L: int):
        super().__init__()
        self.V, self.L = V, L
        states = torch.tensor(list(itertools.product(range(V), repeat=L)))  # [S, L]
        self.register_buffer("states", states)
        self.register_buffer("probs", probs.double())

    def forward(self, xt, t, z=None):
        revealed = xt != self.V  # [B, L]
        match = (self.states.unsqueeze(0) == xt.unsqueeze(1)) | ~revealed.unsqueeze(1)  # [B, S, L]
        w = self.probs.unsqueeze(0) * match.all(-1).double()  # [B, S]
        onehot = torch.nn.functional.one_hot(self.states, self.V).double()  # [S, L, V]
        marg = torch.einsum("bs,slv->blv", w, onehot)
        return torch.log(marg / marg.sum(-1, keepdim=True)).float()


def random_table(V=3, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(V**L, generator=g, dtype=torch.float64) ** 2 + 0.05
    return p / p.sum()


@pytest.fixture
def table():
    return random_table()
