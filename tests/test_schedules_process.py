import pytest
import torch
from conftest import mask_tokens, reveal_prob

from vadd import process
from vadd.schedules import SCHEDULES, Cosine, Linear, LogLinear, Polynomial, get_schedule

ALL = [LogLinear(1e-3), Linear(), Cosine(), Polynomial(2.0), Polynomial(0.5)]


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_dalpha_matches_autograd(sched):
    t = torch.linspace(0.01, 0.99, 97, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(sched.alpha(t).sum(), t)
    assert torch.allclose(sched.dalpha(t.detach()), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_alpha_monotone_endpoints_weight_and_inverse(sched):
    t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    a = sched.alpha(t)
    assert (a[1:] <= a[:-1] + 1e-15).all()
    assert abs(float(a[0]) - 1.0) < 1e-12 and float(a[-1]) < 1e-2
    w = sched.weight(t[1:-1])
    expect = -sched.dalpha(t[1:-1]) / (1 - sched.alpha(t[1:-1]))
    assert torch.allclose(w, expect) and (w > 0).all()
    assert torch.allclose(sched.t_of_alpha(sched.alpha(t[1:-1])), t[1:-1], atol=1e-9)


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_masking_rate_matches_one_minus_alpha(sched):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (20000, 16), generator=g)
    for tv in (0.1, 0.5, 0.9):
        t = torch.full((x0.shape[0],), tv)
        xt, masked = mask_tokens(x0, sched.alpha(t), mask_id=5, generator=g)
        rate = masked.double().mean().item()
        expect = 1.0 - float(sched.alpha(torch.tensor(tv)))
        # binomial standard error over 320k tokens is < 1e-3
        assert abs(rate - expect) < 4e-3
        assert torch.equal(xt[~masked], x0[~masked]) and (xt[masked] == 5).all()


def test_reveal_probability_consistent_with_forward_process():
    s = LogLinear()
    a_t, a_s = s.alpha(torch.tensor(0.8)), s.alpha(torch.tensor(0.3))
    p = reveal_prob(a_s, a_t)
    # P(masked at s) = P(masked at t) * (1 - p)
    assert torch.isclose((1 - a_t) * (1 - p), 1 - a_s)


def test_count_draw_marginals():
    """The masked count is uniform on 1..L and alpha | m is Beta(L - m + 1, m)."""
    L = 4
    t, masked, w = process.count_draw(40000, L, Linear(), generator=torch.Generator().manual_seed(1))
    m = masked.sum(1)
    for k in range(1, L + 1):
        sel = m == k
        assert abs(sel.double().mean().item() - 1 / L) < 1e-3  # stratified: exact up to one example
        a = 1 - t[sel].double()
        assert abs(a.mean().item() - (L - k + 1) / (L + 1)) < 0.01  # Beta mean
        assert torch.allclose(w[sel], torch.tensor(L / k))


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("nope")
    assert set(SCHEDULES) == {"loglinear", "linear", "cosine", "polynomial"}
