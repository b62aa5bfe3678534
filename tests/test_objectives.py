"""Exact identities of the bounds (evaluation.md): quadrature ELBO = log p for the exact denoiser,
both training estimators are unbiased, the importance-weighted bound's behaviour in K."""
import itertools
import math

import numpy as np
import pytest
import torch
from conftest import ExactDenoiser, importance_weighted, random_table

from vadd import objectives
from vadd.algorithms import VADD, MaskedDiffusion
from vadd.models import MLPDenoiser, MLPEncoder
from vadd.schedules import Cosine, Linear, LogLinear, Polynomial

V, L = 3, 3


def quadrature_elbo(model, x0, sched, nodes=120):
    """int_0^1 w(t) E_q[sum_masked log mu] dt by Gauss-Legendre in u with t = u^2, summing exactly over
    the 2^L mask patterns."""
    u, wq = np.polynomial.legendre.leggauss(nodes)
    u, wq = 0.5 * (u + 1), 0.5 * wq
    patterns = torch.tensor(list(itertools.product([False, True], repeat=L)))
    total = 0.0
    for ui, wi in zip(u, wq):
        t = torch.tensor(ui**2, dtype=torch.float64)
        a = float(sched.alpha(t))
        w = float(sched.weight(t)) * 2 * ui  # dt = 2u du
        xt = torch.where(patterns, torch.full((len(patterns), L), V), x0.expand(len(patterns), L))
        logp = model.log_probs(xt, torch.full((len(patterns),), float(t)))
        term = objectives.masked_log_likelihood(logp.double(), x0.expand(len(patterns), L), patterns)
        m = patterns.sum(1).double()
        prob = a ** (L - m) * (1 - a) ** m
        total += wi * w * float((prob * term).sum())
    return total


@pytest.mark.parametrize("sched", [Linear(), Cosine(), Polynomial(2.0), Polynomial(0.5), LogLinear(1e-7)], ids=repr)
def test_exact_denoiser_elbo_equals_log_likelihood(sched):
    p = random_table(V, L, seed=3)
    model = MaskedDiffusion(ExactDenoiser(p, V, L), sched, V, L)
    states = list(itertools.product(range(V), repeat=L))
    for idx in (0, 5, 13, 26):
        x0 = torch.tensor([states[idx]])
        elbo = quadrature_elbo(model, x0, sched)
        assert abs(elbo - math.log(float(p[idx]))) < 1e-4, (idx, elbo, math.log(float(p[idx])))


@pytest.mark.parametrize("estimator", ["time", "count"])
def test_training_estimators_are_unbiased(estimator):
    """Monte-Carlo bound of both estimators -> -log p(x0) for the exact denoiser."""
    p = random_table(V, L, seed=3)
    model = MaskedDiffusion(ExactDenoiser(p, V, L), Linear(), V, L, estimator=estimator)
    states = list(itertools.product(range(V), repeat=L))
    idx = 11
    x0 = torch.tensor([states[idx]]).repeat(20000, 1)
    from vadd import bounds
    torch.manual_seed(0)
    nll = (sum(bounds.continuous(model, x0, (1,), estimator=estimator)[1] for _ in range(4)) / 4).numpy()
    stderr = nll.std() / math.sqrt(len(nll))
    assert abs(nll.mean() + math.log(float(p[idx]))) < 4 * stderr + 1e-3


def _vadd(d=1, seed=0, V=4, L=3, mask_gate=False):
    torch.manual_seed(seed)
    den = MLPDenoiser(L, V, latent_dim=d, hidden=32, depth=2, embed_dim=8, cond_dim=16)
    enc = MLPEncoder(L, V, d, hidden=32, depth=1, embed_dim=8)
    model = VADD(den, enc, Linear(), V, L, d, mask_gate=mask_gate)
    with torch.no_grad():  # a random, strongly z-dependent model (adaLN-Zero starts z-blind)
        for prm in model.parameters():
            prm.normal_(0.0, 0.5)
    return model.eval()


def test_iw_bound_at_k1_equals_delbo_term_on_same_draws():
    model = _vadd(d=2)
    x0 = torch.randint(0, 4, (64, 3))
    masked = torch.rand(64, 3) < 0.6
    xt = torch.where(masked, torch.full_like(x0, 4), x0)
    t = torch.rand(64)
    torch.manual_seed(123)
    iw, _ = model.bound_term(x0, xt, masked, t, num_samples=1)
    torch.manual_seed(123)
    post = model.posterior(x0, masked)
    z = post.rsample(torch.randn(1, *post.mean.shape))[0]
    recon = objectives.masked_log_likelihood(model.log_probs(xt, t, z), x0, masked)
    from vadd.latent import standard_normal_log_prob
    delbo_mc = recon + standard_normal_log_prob(z) - post.log_prob(z)
    assert torch.allclose(iw, delbo_mc, atol=1e-5)
    # and its expectation is the analytic-KL DELBO term (lambda = 1)
    with torch.no_grad():
        torch.manual_seed(0)
        mc = torch.stack([model.bound_term(x0, xt, masked, t, num_samples=1)[0].mean() for _ in range(400)])
        torch.manual_seed(1)
        an = torch.stack([model.bound_term(x0, xt, masked, t, num_samples=0)[0].mean() for _ in range(400)])
    stderr = float((mc.var() / len(mc) + an.var() / len(an)).sqrt())
    assert abs(float(mc.mean() - an.mean())) < 4 * stderr


def test_iw_bound_rises_with_k_towards_log_marginal():
    """E[IW_K] increases with K and stays below log p(x0 | xt) = log int p(x0|xt,z) N(z) dz,
    computed here by Gauss-Hermite quadrature (d = 1); K = 2000 nearly closes the gap."""
    model = _vadd(d=1, seed=1)
    torch.manual_seed(0)
    x0 = torch.randint(0, 4, (32, 3))
    masked = torch.ones(32, 3, dtype=torch.bool)
    masked[:, 0] = torch.rand(32) < 0.5
    xt = torch.where(masked, torch.full_like(x0, 4), x0)
    t = torch.full((32,), 0.7)
    nodes, weights = np.polynomial.hermite.hermgauss(80)
    with torch.no_grad():
        ll = []
        for zn in nodes:
            z = torch.full((32, 1), math.sqrt(2) * zn)
            ll.append(objectives.masked_log_likelihood(model.log_probs(xt, t, z).double(), x0, masked))
        ll = torch.stack(ll)  # [nodes, B]
        exact = torch.logsumexp(ll + torch.log(torch.tensor(weights / math.sqrt(math.pi))).unsqueeze(1), 0)
    means = {}
    for K in (1, 10, 100, 2000):
        torch.manual_seed(7)
        reps = 20 if K < 2000 else 2
        with torch.no_grad():
            vals = torch.stack([model.bound_term(x0, xt, masked, t, num_samples=K)[0] for _ in range(reps)])
        means[K] = float(vals.double().mean())
    ex = float(exact.mean())
    assert means[1] < means[10] < means[100] <= ex + 1e-3, (means, ex)
    assert ex - means[2000] < 0.25 * (ex - means[1]), (means, ex)


def test_iw_streaming_chunks_match_one_shot():
    lme = objectives.LogMeanExp()
    x = torch.randn(1000, 5, dtype=torch.float64) * 3
    for chunk in torch.split(x, 137):
        lme.update(chunk)
    assert torch.allclose(lme.value(), torch.logsumexp(x, 0) - math.log(1000))


@pytest.mark.parametrize("mask_gate", [False, True])
def test_posterior_is_prior_when_nothing_masked(mask_gate):
    model = _vadd(d=3, mask_gate=mask_gate)
    x0 = torch.randint(0, 4, (8, 3))
    post = model.posterior(x0, torch.zeros(8, 3, dtype=torch.bool))
    assert torch.equal(post.mean, torch.zeros_like(post.mean))
    assert torch.equal(post.kl_standard(), torch.zeros(8))


def test_mask_gate_moves_the_posterior_between_the_encoder_and_the_prior():
    """The gate is a function of the masked fraction only: open, the posterior is the encoder's; shut, it
    is the prior (KL 0) whatever x0 is; in between, the mean and log-variance scale by the gate."""
    model = _vadd(d=3, mask_gate=True)
    plain = _vadd(d=3)
    plain.encoder.load_state_dict(model.encoder.state_dict())
    x0 = torch.randint(0, 4, (16, 3))
    masked = torch.rand(16, 3) < 0.6
    masked[:, 0] = True
    ref = plain.posterior(x0, masked)
    with torch.no_grad():
        lin = model.mask_gate[2]
        lin.weight.zero_()
        for bias, expect in ((60.0, 1.0), (-60.0, 0.0), (0.0, 0.5)):
            lin.bias.fill_(bias)
            post = model.posterior(x0, masked)
            assert torch.allclose(post.mean, expect * ref.mean, atol=1e-6)
            assert torch.allclose(post.logvar, expect * ref.logvar, atol=1e-6)
        lin.bias.fill_(-60.0)
        assert torch.allclose(model.posterior(x0, masked).kl_standard(), torch.zeros(16), atol=1e-6)
        lin.weight.normal_(0.0, 2.0)
        lin.bias.zero_()
    # a trained-looking gate: the scale it applies depends on how many positions are masked, not which
    one = [torch.tensor([[True, False, False]]), torch.tensor([[False, False, True]])]
    two = torch.tensor([[True, True, False]])
    scale = [model.posterior(x0[:1], m).logvar / plain.posterior(x0[:1], m).logvar for m in (*one, two)]
    assert torch.allclose(scale[0], scale[1], atol=1e-5)
    assert not torch.allclose(scale[0], scale[2], atol=1e-3)


def _log_marginal_quadrature(model, x0, xt, masked, t, nodes=80):
    zs, ws = np.polynomial.hermite.hermgauss(nodes)
    with torch.no_grad():
        ll = torch.stack([objectives.masked_log_likelihood(
            model.log_probs(xt, t, torch.full((x0.shape[0], 1), math.sqrt(2) * z)).double(), x0, masked) for z in zs])
    return torch.logsumexp(ll + torch.log(torch.tensor(ws / math.sqrt(math.pi))).unsqueeze(1), 0)


def test_likelihood_path_never_uses_encoder_z_without_ratio():
    """An encoder that has seen x0 can place z where the decoder is best: the decoder's likelihood at the
    encoder's z then exceeds log p(x0 | xt) and is no bound. The reported bound weighs every z by
    p(z) / r(z) and stays below the exact marginal (d = 1, Gauss-Hermite) for any encoder."""
    model = _vadd(d=1, seed=2)
    torch.manual_seed(0)
    x0 = torch.randint(0, 4, (64, 3))
    masked = torch.ones(64, 3, dtype=torch.bool)
    xt = torch.full_like(x0, 4)
    t = torch.full((64,), 1.0)
    exact = _log_marginal_quadrature(model, x0, xt, masked, t)
    # a "cheating" encoder: z at the decoder's best point for each x0, with a tiny variance
    grid = torch.linspace(-3, 3, 121)
    with torch.no_grad():
        ll = torch.stack([objectives.masked_log_likelihood(model.log_probs(xt, t, torch.full((64, 1), float(z))), x0, masked)
                          for z in grid])
    best_z = grid[ll.argmax(0)].unsqueeze(1)
    no_ratio = ll.max(0).values.double()
    assert (no_ratio > exact + 1e-3).float().mean() > 0.5  # not a bound

    class Cheat(torch.nn.Module):
        def forward(self, x0_, masked_):
            return best_z.clone(), torch.full_like(best_z, -8.0)

    model.encoder = Cheat()
    for K in (1, 50):
        torch.manual_seed(1)
        with torch.no_grad():
            iw = torch.stack([model.bound_term(x0, xt, masked, t, num_samples=K)[0] for _ in range(5)]).double().mean(0)
        assert float(iw.mean()) <= float(exact.mean()) + 1e-6


def test_iw_training_loss_is_the_importance_weighted_bound_on_the_same_draws():
    from vadd.latent import standard_normal_log_prob
    model = _vadd(d=2).train()
    x0 = torch.randint(0, 4, (16, 3))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    loss, stats = model.loss(x0, generator=g(), num_samples=5)
    t, xt, masked, weight, eps = model._draw(x0, g(), num_samples=5)
    assert eps.shape == (5, 16, 2)
    post = model.posterior(x0, masked)
    z = post.mean + post.std * eps  # [K, B, d]
    log_lik = torch.stack([objectives.masked_log_likelihood(model.log_probs(xt, t, zk), x0, masked) for zk in z])
    term = importance_weighted(log_lik, standard_normal_log_prob(z), post.log_prob(z))
    assert torch.allclose(loss, -(weight * term).mean() / model.seq_len, atol=1e-5)
    assert torch.allclose(stats["kl"], post.kl_standard().mean())
    loss.backward()  # reparameterised: both networks get gradients
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.head.parameters())
    assert model.denoiser.out.weight.grad.abs().sum() > 0
    # the DELBO path draws what it drew before the K draws existed: eps [B, d] from the same generator
    t2, _, masked2, _, eps2 = model._draw(x0, g())
    assert torch.equal(masked2, masked) and torch.equal(t2, t) and eps2.shape == (16, 2)


def test_fixed_z_objective_is_the_vadd_cs_bound_with_its_kl_paid_once():
    """algo.objective=fixed_z: z from r(z | x0, all masked) at every t, the reconstruction weighted by w(t) and
    the KL counted once per example. Exactly that on the same draws, and in expectation the continuous bound
    vadd.bounds reports for VADD-CS (so training minimises the reported number)."""
    from vadd import bounds

    torch.manual_seed(0)
    model = _vadd(d=2)
    model.objective = "fixed_z"
    x0 = torch.randint(0, 4, (16, 3))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    loss, stats = model.loss(x0, generator=g())
    t, xt, masked, weight, eps = model._draw(x0, g())
    post = model.posterior(x0, torch.ones_like(masked))
    recon = objectives.masked_log_likelihood(model.log_probs(xt, t, post.rsample(eps)), x0, masked)
    want = -(weight * recon - post.kl_standard()).mean() / model.seq_len
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(stats["kl"], post.kl_standard().mean())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters() if p.requires_grad)
    # in expectation: the VADD-CS continuous bound (its MC log-ratio estimate of the same KL), nats per example
    x = x0[:1].expand(6000, 3).clone()
    with torch.no_grad():
        model.eval()
        per_loss = torch.stack([model.loss(x[i:i + 1000], generator=torch.Generator().manual_seed(i))[0]
                                for i in range(0, 6000, 1000)]) * model.seq_len
        spec = bounds.BoundSpec("continuous", sampler="vadd-cs")
        b = bounds.evaluate(model, x, [1], [spec], seed=1, batch_size=1000, estimator="time")[spec][1]
    se = b.std() / np.sqrt(len(b)) + float(per_loss.std()) / np.sqrt(len(per_loss))
    assert abs(float(per_loss.mean()) - b.mean()) < 4 * se, (float(per_loss.mean()), b.mean(), se)
    with pytest.raises(ValueError, match="objective"):
        VADD(model.denoiser, model.encoder, Linear(), 4, 3, 2, objective="elbo")
