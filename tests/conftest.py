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


# ---- oracles: the textbook forms of quantities the library computes in fused or streaming ways --------------
def mask_tokens(x0, alpha_t, mask_id, generator=None):
    """``xt ~ q(xt | x0)``: each token replaced by ``mask_id`` with probability ``1 - alpha_t``; ``(xt, masked)``."""
    from vadd.process import apply_mask, mask_pattern
    masked = mask_pattern(alpha_t.reshape(-1), x0.shape[1], generator)
    return apply_mask(x0, masked, mask_id), masked


def reveal_prob(alpha_s, alpha_t):
    """Probability that a token masked at time ``t`` is revealed by time ``s < t``."""
    return ((alpha_s - alpha_t) / (1.0 - alpha_t).clamp_min(1e-12)).clamp(0.0, 1.0)


def importance_weighted(log_lik, log_prior, log_post):
    """``log (1/K) sum_k p(x0 | xt, z_k) p(z_k) / r(z_k | x0, xt)`` over ``[K, B] -> [B]``."""
    import math

    import torch
    log_w = log_lik + log_prior - log_post
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
