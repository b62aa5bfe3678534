"""Every reported likelihood is a valid bound (vadd.bounds), checked against exact values on models small
enough to enumerate (L = 3, V = 3, d = 1: the prior over z integrated by Gauss-Hermite quadrature).

- the ``steps`` bound's expectation is the T-step sampler's path ELBO, never below the sampler's exact
  ``-log p_T`` (summed over its reveal paths), equal to it at T = 1; the sampler's empirical law is p_T;
- the ``continuous`` bound is at or above the exact any-order likelihood of every state;
- MDM's one-step bound is its product-of-marginals cross-entropy; steps -> continuous as T grows;
- a perfect VADD of ``x1 = x2`` reports ``>= ln 2`` everywhere, where the old joint integral said ``ln 2 / 2``;
- the sampler with one ``z`` per sample (VADD-CS) draws from its own exact ``p_T``, which its ``steps`` bound
  never undercuts at any ``K``, and its ``continuous`` bound is the ELBO over ``z`` of its any-order limit;
- all of the VADD checks hold as well with a Gaussian-mixture prior fitted after training in place of
  ``N(0, I)`` (quadrature per component), which samplers and bounds then share.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from conftest import F32_RTOL

from vadd import bounds, process
from vadd.algorithms import VADD, MaskedDiffusion
from vadd.latent import GaussianMixturePrior
from vadd.models import MLPDenoiser, MLPEncoder
from vadd.sampling import reveal_steps, sample, time_grid
from vadd.schedules import Cosine, Linear, LogLinear, sampler_schedule

V, L, D = 3, 3, 1
STATES = torch.tensor(list(itertools.product(range(V), repeat=L)))
GH_Z, GH_W = np.polynomial.hermite.hermgauss(60)
GH_Z = torch.tensor(GH_Z * math.sqrt(2.0), dtype=torch.float32)          # nodes of N(0, 1)
GH_LOGW = torch.log(torch.tensor(GH_W / math.sqrt(math.pi), dtype=torch.float64))


def mixture_prior():
    """A 2-component mixture over the 1-d latent, as ``vadd.latent.fit_mixture_prior`` installs one."""
    prior = GaussianMixturePrior(D, 2)
    prior.log_weights.copy_(torch.tensor([0.3, 0.7]).log())
    prior.means.copy_(torch.tensor([[-1.2], [0.8]]))
    prior.scale_tril.copy_(torch.tensor([[[0.4]], [[0.7]]]))
    return prior


def prior_nodes(model):
    """Quadrature over the model's prior: ``(z [n, 1], log weights [n] float64)``; a mixture: per component."""
    prior = model.prior
    if not isinstance(prior, GaussianMixturePrior):
        return GH_Z.unsqueeze(1), GH_LOGW
    logw = torch.log_softmax(prior.log_weights.double(), 0)
    z = torch.cat([prior.means[c] + prior.scale_tril[c, 0, 0] * GH_Z.unsqueeze(1) for c in range(prior.components)])
    return z, torch.cat([logw[c] + GH_LOGW for c in range(prior.components)])


def random_vadd(schedule, seed=0, time_conditioning=True, scale=0.35, prior="standard"):
    torch.manual_seed(seed)
    den = MLPDenoiser(L, V, latent_dim=D, hidden=32, depth=2, embed_dim=8, cond_dim=16,
                      time_conditioning=time_conditioning)
    enc = MLPEncoder(L, V, D, hidden=32, depth=1, embed_dim=8)
    model = VADD(den, enc, schedule, V, L, D)
    # a random z-dependent model (adaLN-Zero starts z-blind); smooth enough in z for 60 quadrature nodes
    with torch.no_grad():
        for prm in model.parameters():
            prm.normal_(0.0, scale)
    if prior == "gmm":
        model.prior = mixture_prior()
    return model.eval()


def random_mdm(schedule, seed=0, time_conditioning=True):
    torch.manual_seed(seed)
    model = MaskedDiffusion(MLPDenoiser(L, V, hidden=32, depth=2, embed_dim=8, cond_dim=16,
                                       time_conditioning=time_conditioning), schedule, V, L)
    with torch.no_grad():
        for prm in model.parameters():
            prm.normal_(0.0, 0.35)
    return model.eval()


@torch.no_grad()
def log_joint(model, x0, masked, revealed, t):
    """Exact ``log p(x0^R | xt, t) = log E_{p(z)} prod_{i in R} mu^i(xt, z)[x0^i]`` (quadrature; MDM: no z)."""
    xt = torch.where(masked, torch.full_like(x0, V), x0)
    if not model.latent_dim:
        lp = model.log_probs(xt.unsqueeze(0), torch.tensor([t], dtype=torch.float32))[0].double()
        return float(lp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)[revealed].sum())
    z, logw = prior_nodes(model)
    n = len(z)
    lp = model.log_probs(xt.expand(n, L), torch.full((n,), float(t)), z).double()
    ll = lp.gather(-1, x0.expand(n, L).unsqueeze(-1)).squeeze(-1)[:, revealed].sum(-1)
    return float(torch.logsumexp(ll + logw, 0))


@torch.no_grad()
def log_joint_given_z(model, x0, masked, revealed, t, z):
    """``log prod_{i in R} mu^i(xt, z)[x0^i]`` at each of the ``n`` latents ``z`` [n, 1]: ``[n]`` float64."""
    xt = torch.where(masked, torch.full_like(x0, V), x0)
    n = len(z)
    lp = model.log_probs(xt.expand(n, L), torch.full((n,), float(t)), z).double()
    return lp.gather(-1, x0.expand(n, L).unsqueeze(-1)).squeeze(-1)[:, revealed].sum(-1)


def fixed_z_path_terms(model, x0, T):
    """The fixed-z (VADD-CS) T-step sampler, exactly: ``(log p_T(x0), E_path -log p(x0 | path))``, the
    second being the K -> inf limit of its ``steps`` bound (one path shared by the z draws)."""
    times, a = step_probs(model, T)
    z, logw = prior_nodes(model)
    path_logp, cond = [], []
    for path in itertools.product(range(T), repeat=L):
        s = torch.tensor(path)
        lpath = sum(math.log(max(a[k + 1] - a[k], 1e-300)) for k in path)
        per_z = sum(log_joint_given_z(model, x0, s >= k, s == k, float(times[k]), z) for k in sorted(set(path)))
        log_px_path = float(torch.logsumexp(per_z + logw, 0))  # log p(x0 | path) = log E_p(z) prod ...
        path_logp.append(lpath + log_px_path)
        cond.append((math.exp(lpath), -log_px_path))
    return float(torch.logsumexp(torch.tensor(path_logp, dtype=torch.float64), 0)), sum(p * c for p, c in cond)


def step_probs(model, T):
    """``(times, a)``: the sampler's grid and ``alpha~`` on it (the process it runs)."""
    times = time_grid(T)
    return times, sampler_schedule(model.schedule).alpha(times).tolist()


def exact_log_pT(model, x0, T):
    """``log p_T(x0)``: the T-step sampler's likelihood, summed over every reveal path."""
    times, a = step_probs(model, T)
    cache, terms = {}, []
    for path in itertools.product(range(T), repeat=L):
        s = torch.tensor(path)
        logp = sum(math.log(max(a[k + 1] - a[k], 1e-300)) for k in path)
        for k in sorted(set(path)):
            key = (k, tuple((s >= k).tolist()), tuple((s == k).tolist()))
            if key not in cache:
                cache[key] = log_joint(model, x0, s >= k, s == k, float(times[k]))
            logp += cache[key]
        terms.append(logp)
    return float(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0))


def exact_path_elbo(model, x0, T):
    """``E_path sum_k -log p(x0^{R_k} | x_{t_k})`` exactly (K -> inf), summed over the states of each step:
    a position is clean before step k w.p. ``a_k``, revealed at k w.p. ``a_{k+1} - a_k``, else still masked."""
    times, a = step_probs(model, T)
    total, cache = 0.0, {}
    tind = not model.time_conditioned
    for k in range(T):
        for roles in itertools.product(range(3), repeat=L):  # 0 clean, 1 revealed at k, 2 masked after
            r = torch.tensor(roles)
            if not (r == 1).any():
                continue
            prob = math.prod((a[k], a[k + 1] - a[k], 1.0 - a[k + 1])[j] for j in roles)
            if prob == 0.0:
                continue
            key = (0 if tind else k, roles)
            if key not in cache:
                cache[key] = -log_joint(model, x0, r >= 1, r == 1, float(times[k]))
            total += prob * cache[key]
    return total


def any_order_terms(model, x0):
    """For a t-independent model: ``(log p, continuous bound)`` of the continuous-time sampler, exactly.
    It reveals one token at a time in a uniformly random order from the prior-averaged marginals, so
    ``p = mean_sigma prod_j m^{sigma_j}`` and its ELBO is ``mean_sigma sum_j -log m^{sigma_j}``."""
    logs = []
    for order in itertools.permutations(range(L)):
        masked = torch.ones(L, dtype=torch.bool)
        lp = 0.0
        for i in order:
            only = torch.zeros(L, dtype=torch.bool)
            only[i] = True
            lp += log_joint(model, x0, masked.clone(), only, 0.5)
            masked[i] = False
        logs.append(lp)
    logs = torch.tensor(logs, dtype=torch.float64)
    return float(torch.logsumexp(logs, 0) - math.log(len(logs))), float(-logs.mean())


def mc(model, x0, reps, ks, spec, seed=0, estimator="count", proposal="auto"):
    """Monte-Carlo bound of one state repeated ``reps`` times: ``{K: (mean, stderr)}``."""
    x = x0.expand(reps, L).clone()
    res = bounds.evaluate(model, x, ks, [spec], seed=seed, batch_size=reps, estimator=estimator,
                          proposal=proposal)[spec]
    return {k: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))) for k, v in res.items()}


# ---- the process the bound masks with is the one the sampler runs ------------------------------------
@pytest.mark.parametrize("sched", [LogLinear(1e-3), LogLinear(0.2), Linear(), Cosine()], ids=repr)
def test_sampler_schedule_is_the_samplers_reveal_law(sched):
    times = time_grid(7)
    a = sampler_schedule(sched).alpha(times)
    assert float(a[0]) == pytest.approx(0.0, abs=1e-12) and float(a[-1]) == pytest.approx(1.0, abs=1e-12)
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    when = reveal_steps(sched, times, u)
    freq = torch.bincount(when, minlength=7).double() / len(u)
    assert torch.allclose(freq, a[1:] - a[:-1], atol=4e-3)
    s = sampler_schedule(sched)
    assert torch.allclose(s.t_of_alpha(s.alpha(times)), times, atol=1e-6)
    assert torch.allclose(s.weight(torch.tensor([0.5], dtype=torch.float64)),
                          -s.dalpha(torch.tensor([0.5], dtype=torch.float64)) / (1 - s.alpha(torch.tensor([0.5]))))


@pytest.mark.parametrize("prior", ["standard", "gmm"])
def test_vadd_sampler_draws_from_the_exact_pT_that_the_steps_bound_bounds(prior):
    """200k draws of the fresh-z sampler (T = 2, log-linear with eps = 0.2, where the old bound and the
    sampler disagreed) match p_T summed over reveal paths, state by state."""
    model = random_vadd(LogLinear(0.2), seed=3, prior=prior)
    T, n = 2, 200_000
    p = torch.tensor([math.exp(exact_log_pT(model, s, T)) for s in STATES], dtype=torch.float64)
    assert abs(float(p.sum()) - 1.0) < 1e-6
    x, _ = sample(model, n, T, "vadd", seed=0)
    codes = (x * torch.tensor([V * V, V, 1])).sum(1)
    freq = torch.bincount(codes, minlength=V**L).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-4).all(), (freq - p).abs().max()


@pytest.mark.parametrize("algo", ["vadd", "vadd-gmm", "mdm"])
@pytest.mark.parametrize("T", [1, 2, 3])
def test_steps_bound_is_the_path_elbo_and_never_below_exact_pT(algo, T):
    sched = LogLinear(0.1)
    model = (random_mdm(sched, seed=1) if algo == "mdm"
             else random_vadd(sched, seed=1, prior="gmm" if algo == "vadd-gmm" else "standard"))
    ks = (1, 10, 1000) if algo != "mdm" else (1,)
    for idx in (0, 13, 22):
        x0 = STATES[idx]
        exact = -exact_log_pT(model, x0, T)
        elbo = exact_path_elbo(model, x0, T)
        assert elbo >= exact - 1e-9, (elbo, exact)          # Jensen over paths
        if T == 1:
            assert elbo == pytest.approx(exact, abs=1e-9)    # one path: the bound is exact as K -> inf
        est = mc(model, x0, 400, ks, bounds.BoundSpec("steps", T), seed=idx)
        for k, (m, se) in est.items():
            assert m >= elbo - 4 * se - 1e-6 * elbo, (k, m, elbo, se)   # never below, at any K
        m, se = est[ks[-1]]
        assert m <= elbo + 4 * se + (0.02 if algo != "mdm" else 1e-6 * elbo), (m, elbo, se)  # tight at large K


@pytest.mark.parametrize("prior", ["standard", "gmm"])
def test_continuous_bound_is_at_or_above_the_exact_any_order_likelihood(prior):
    model = random_vadd(Linear(), seed=2, time_conditioning=False, prior=prior)
    for idx in range(len(STATES)):
        logp, cont = any_order_terms(model, STATES[idx])
        assert cont >= -logp - 1e-9, (idx, cont, -logp)
    spec = bounds.BoundSpec("continuous")
    for idx in (4, 17):
        logp, cont = any_order_terms(model, STATES[idx])
        for est in ("count", "time", "path"):
            res = mc(model, STATES[idx], 4000, (1, 30), spec, seed=idx, estimator=est)
            (m1, se1), (m, se) = res[1], res[30]
            assert m1 >= cont - 4 * se1 and cont - 4 * se <= m < m1, (est, res, cont)
    # tight as K grows (here with the prior as the proposal, which covers this smooth decoder well)
    torch.nn.init.zeros_(model.encoder.head.weight)
    torch.nn.init.zeros_(model.encoder.head.bias)
    _, cont = any_order_terms(model, STATES[4])
    m, se = mc(model, STATES[4], 4000, (1000,), spec, seed=0)[1000]
    assert cont - 4 * se <= m <= cont + 4 * se + 0.01, (m, se, cont)


# ---- the sampler with one z per sample (VADD-CS) ---------------------------------------------------
@pytest.mark.parametrize("prior", ["standard", "gmm"])
def test_fixed_z_sampler_draws_from_the_exact_pT_that_its_steps_bound_bounds(prior):
    model = random_vadd(LogLinear(0.2), seed=3, prior=prior)
    T, n = 2, 200_000
    p = torch.tensor([math.exp(fixed_z_path_terms(model, s, T)[0]) for s in STATES], dtype=torch.float64)
    assert abs(float(p.sum()) - 1.0) < 1e-6
    p_fresh = torch.tensor([math.exp(exact_log_pT(model, s, T)) for s in STATES], dtype=torch.float64)
    assert (p - p_fresh).abs().max() > 1e-3  # a different model from the fresh-z sampler's
    x, _ = sample(model, n, T, "vadd-cs", seed=0)
    freq = torch.bincount((x * torch.tensor([V * V, V, 1])).sum(1), minlength=V**L).double() / n
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-4).all(), (freq - p).abs().max()


@pytest.mark.parametrize("prior", ["standard", "gmm"])
@pytest.mark.parametrize("T", [1, 3])
def test_fixed_z_steps_bound_never_below_exact_pT_and_tight_in_K(T, prior):
    model = random_vadd(LogLinear(0.1), seed=1, prior=prior)
    spec = bounds.BoundSpec("steps", T, "vadd-cs")
    for idx in (0, 13, 22):
        x0 = STATES[idx]
        log_p, limit = fixed_z_path_terms(model, x0, T)
        assert limit >= -log_p - 1e-9                      # Jensen over paths; equal at T = 1 (one path)
        if T == 1:
            assert limit == pytest.approx(-log_p, abs=1e-9)
        for prop in ("auto", "mixture"):  # r(z | x0, all), and its mixture with the prior
            est = mc(model, x0, 400, (1, 10, 1000), spec, seed=idx, proposal=prop)
            for k, (m, se) in est.items():
                assert m >= limit - 4 * se - 1e-6, (prop, k, m, limit, se)
            assert est[1][0] > est[10][0] > est[1000][0]
            (m1, _), (m, se) = est[1], est[1000]
            assert m - limit <= 0.05 * (m1 - limit) + 4 * se, (prop, m, m1, limit, se)  # closes the K = 1 gap


@pytest.mark.parametrize("prior", ["standard", "gmm"])
def test_fixed_z_continuous_bound_is_the_elbo_over_z_and_above_the_exact_likelihood(prior):
    """For a t-independent model the fixed-z sampler's continuous-time limit reveals one token at a time in
    a uniformly random order given one ``z ~ p``: ``p(x) = E_p(z) mean_sigma prod_j mu^{sigma_j}(z)``. Its
    bound is ``E_r [log r - log p + mean_sigma sum_j -log mu^{sigma_j}(z)]`` with ``r = r(z | x0, all)``,
    computed here by quadrature on ``r``; the Monte-Carlo bound matches it and is reported at K = 1 only."""
    model = random_vadd(Linear(), seed=2, time_conditioning=False, prior=prior)
    spec = bounds.BoundSpec("continuous", sampler="vadd-cs")
    nodes, logw = prior_nodes(model)
    for idx in (4, 17):
        x0 = STATES[idx]
        orders = list(itertools.permutations(range(L)))

        def order_sums(z):  # [n, orders] sum_j log mu^{sigma_j}(z)
            cols = []
            for order in orders:
                masked, lp = torch.ones(L, dtype=torch.bool), 0.0
                for i in order:
                    only = torch.zeros(L, dtype=torch.bool)
                    only[i] = True
                    lp = lp + log_joint_given_z(model, x0, masked.clone(), only, 0.5, z)
                    masked[i] = False
                cols.append(lp)
            return torch.stack(cols, 1)

        by_order = order_sums(nodes)
        log_p = float(torch.logsumexp(torch.logsumexp(by_order, 1) - math.log(len(orders)) + logw, 0))
        with torch.no_grad():
            post = model.posterior(x0[None], torch.ones(1, L, dtype=torch.bool))
        mu, sd = float(post.mean), float(post.std)
        zr = (mu + sd * GH_Z).unsqueeze(1)
        log_ratio = (-0.5 * ((zr[:, 0] - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)
                     - model.prior.log_prob(zr).double())  # log r - log p
        elbo = float((GH_LOGW.exp() * (log_ratio.double() - order_sums(zr).mean(1))).sum())
        assert elbo >= -log_p - 1e-9, (elbo, -log_p)
        for est in ("count", "time"):
            res = mc(model, x0, 4000, (1, 30), spec, seed=idx, estimator=est)
            assert list(res) == [1]
            m, se = res[1]
            assert abs(m - elbo) <= 4 * se, (est, m, se, elbo)
        # on one reveal path (an order) shared by the draws: K = 1 is the same ELBO, and as K -> inf it tends
        # to mean_sigma -log E_p(z) prod_j mu^{sigma_j}(z), never below -log p (Jensen over orders)
        limit = float(-torch.logsumexp(by_order + logw.unsqueeze(1), 0).mean())
        assert -log_p - 1e-9 <= limit < elbo - 0.1, (-log_p, limit, elbo)
        for prop in ("auto", "mixture"):  # r(z | x0, all) (this random one fits poorly), and its mix with p(z)
            # 1,000 repeats: K = 1000 costs a million model calls per repeat set; the standard error stays a
            # twentieth of the K = 1 gap, so the tightness check below still has its teeth
            res = mc(model, x0, 1000, (1, 10, 1000), spec, seed=idx, estimator="path", proposal=prop)
            for k, (m, se) in res.items():
                assert m >= limit - 4 * se - 1e-6, (prop, k, m, se, limit)
            assert res[1][0] > res[10][0] > res[1000][0], (prop, res)
        assert abs(res[1000][0] - limit) <= 0.02 * (res[1][0] - limit) + 4 * res[1000][1], (res, limit)
        res = mc(model, x0, 4000, (1,), spec, seed=idx, estimator="path")
        assert abs(res[1][0] - elbo) <= 4 * res[1][1], (res, elbo)
    with pytest.raises(ValueError, match="VADD model"):
        bounds.evaluate(random_mdm(Linear()), STATES[:2], [1], [spec])


@pytest.mark.parametrize("algo,sampler", [("vadd", None), ("vadd", "vadd-cs"), ("mdm", None)])
def test_path_estimator_is_the_steps_bound_on_the_same_paths_as_T_grows(algo, sampler):
    """The ``path`` estimator of the continuous bound is the ``steps`` bound of the same uniforms as
    ``T -> inf``: for a t-independent model, identical once ``T`` separates every reveal."""
    make = random_vadd if algo == "vadd" else random_mdm
    model = make(Linear(), seed=5, time_conditioning=False)
    x = STATES[torch.randint(0, len(STATES), (64,), generator=torch.Generator().manual_seed(1))]
    ks = (1, 10) if model.latent_dim else (1,)
    cont, big = bounds.BoundSpec("continuous", sampler=sampler), bounds.BoundSpec("steps", 10**6, sampler)
    a = bounds.evaluate(model, x, ks, [cont], seed=3, estimator="path", proposal="mixture")[cont]
    b = bounds.evaluate(model, x, ks, [big], seed=3, proposal="mixture")[big]
    for k in ks:  # two code paths that call the float32 network on other batch shapes: equal within rounding
        np.testing.assert_allclose(a[k], b[k], rtol=F32_RTOL)


def test_every_proposal_gives_a_valid_bound_and_the_prior_suits_one_tokens_marginal():
    """A sharp, informative recognition model (each draw pays a large KL) is the right proposal for the joint
    of all tokens and a poor one for a single token's marginal: the continuous bound with it stays valid but
    loose, the prior (what ``auto`` takes there) is tight, and the mixture is valid everywhere."""
    model = random_vadd(Linear(), seed=2, time_conditioning=False)
    with torch.no_grad():  # posterior means far out, standard deviation 0.05
        model.encoder.head.weight.mul_(8.0)
        model.encoder.head.bias[D:] = -6.0
    x0 = STATES[17]
    _, cont = any_order_terms(model, x0)
    spec = bounds.BoundSpec("continuous")
    got = {}
    for prop in ("auto", "prior", "posterior", "mixture"):
        x = x0.expand(2000, L).clone()
        v = bounds.evaluate(model, x, [30], [spec], seed=1, batch_size=2000, proposal=prop)[spec][30]
        got[prop] = (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))))
        assert got[prop][0] >= cont - 4 * got[prop][1], (prop, got, cont)
    assert got["auto"] == got["prior"] and got["prior"][0] <= cont + 0.05, (got, cont)
    assert got["posterior"][0] > got["mixture"][0] > got["prior"][0], got
    with pytest.raises(ValueError, match="proposal"):
        bounds.evaluate(model, x0.expand(2, L), [1], [spec], proposal="encoder")


def test_steps_bound_approaches_the_continuous_bound_as_T_grows():
    model = random_vadd(LogLinear(1e-3), seed=2, time_conditioning=False)
    x0 = STATES[11]
    _, cont = any_order_terms(model, x0)
    gaps = [abs(exact_path_elbo(model, x0, T) - cont) for T in (1, 4, 32, 512)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.01 * gaps[0] and gaps[-1] < 5e-3, gaps


def test_mdm_one_step_bound_is_the_product_of_marginals_cross_entropy():
    model = random_mdm(LogLinear(1e-3), seed=4)
    x0 = STATES[torch.randint(0, len(STATES), (64,), generator=torch.Generator().manual_seed(0))]
    got = bounds.evaluate(model, x0, [1], [bounds.BoundSpec("steps", 1)])[bounds.BoundSpec("steps", 1)][1]
    with torch.no_grad():
        lp = model.log_probs(torch.full_like(x0, V), torch.ones(len(x0))).double()
    want = -lp.gather(-1, x0.unsqueeze(-1)).squeeze(-1).sum(-1)
    assert np.allclose(got, want.numpy(), atol=1e-6)


# ---- the regression: a perfect VADD of x1 = x2 -----------------------------------------------------
class CopyDenoiser(torch.nn.Module):
    """x1 = x2, a fair bit (V = 2): both masked -> the bit is ``[z > 0]``; one masked -> copy the other."""

    def forward(self, xt, t, z):
        one = (z[:, 0] > 0).double()
        p1 = torch.where((xt == 2).all(1), one, torch.where(xt[:, 0] == 2, xt[:, 1], xt[:, 0]).double())
        p1 = p1.clamp(1e-9, 1 - 1e-9)
        return torch.stack([torch.log1p(-p1), torch.log(p1)], -1).float().unsqueeze(1).expand(-1, 2, -1)


class BitEncoder(torch.nn.Module):
    """A proposal on the bit's side of 0, about as wide as the prior there."""

    def forward(self, x0, masked):
        mean = (2.0 * x0[:, :1].float() - 1.0) * 0.8
        return mean, torch.zeros_like(mean)


def old_joint_integral(model, x0, K, seed=0):
    """What was reported before (the regression this file guards): the integral over t of the IW bound on
    the *joint* of the masked tokens. Not a bound: ``ln 2 / 2`` for the perfect model of ``x1 = x2``."""
    g = torch.Generator().manual_seed(seed)
    t, masked, weight = process.count_draw(len(x0), 2, sampler_schedule(model.schedule), generator=g)
    xt = process.apply_mask(x0, masked, model.mask_id)
    torch.manual_seed(seed)
    with torch.no_grad():
        term, _ = model.bound_term(x0, xt, masked, t, num_samples=K)
    return -(weight * term).double()


def test_perfect_vadd_of_a_shared_bit_never_reports_below_ln2():
    model = VADD(CopyDenoiser(), BitEncoder(), Linear(), 2, 2, 1).eval()
    x0 = torch.tensor([[0, 0], [1, 1]]).repeat(2000, 1)
    ln2 = math.log(2.0)
    res = bounds.evaluate(model, x0, [1, 10, 100], bounds.specs([1, 2, 5, 50]), num_t=2, seed=0)
    for spec, by_k in res.items():
        for k, v in by_k.items():
            se = v.std(ddof=1) / math.sqrt(len(v))
            assert v.mean() >= ln2 - 3 * se, (spec, k, v.mean())
    t1 = res[bounds.BoundSpec("steps", 1)][100]
    assert abs(t1.mean() - ln2) < 0.01  # the one-step model is exact, and IW with K = 100 nearly is
    old = old_joint_integral(model, x0, 100)
    se = old.std() / math.sqrt(len(old))
    assert abs(old.mean() - ln2 / 2) < 4 * se + 0.01, old.mean()


# ---- the evaluator: paired, reproducible, off the global stream ------------------------------------------
def test_evaluate_is_paired_across_k_reproducible_and_leaves_the_global_stream_alone():
    model = random_vadd(LogLinear(1e-3), seed=5)
    x0 = STATES[torch.randint(0, len(STATES), (50,), generator=torch.Generator().manual_seed(1))]
    spec = bounds.specs([2])
    state = torch.get_rng_state()
    a = bounds.evaluate(model, x0, [1, 10], spec, seed=3, num_t=2)
    assert torch.equal(state, torch.get_rng_state())
    b = bounds.evaluate(model, x0, [1], spec, seed=3, num_t=2)
    # K = 1 is the first draw of the K = 10 stream: the same z, t and masks. Alone it is evaluated on other
    # batch shapes, where CPU matrix kernels may round the float32 network differently (seen: 17.43798257 vs
    # 17.43798305), so equal within float32's rounding, not bit for bit
    for s in spec:
        np.testing.assert_allclose(a[s][1], b[s][1], rtol=F32_RTOL)
    c = bounds.evaluate(model, x0, [1, 10], spec, seed=4, num_t=2)
    assert not np.array_equal(a[spec[0]][10], c[spec[0]][10])
    # MDM and VADD at any K see the same (t, mask) draws: an MDM scored twice is identical, and its
    # continuous draws match the masks the VADD draws used (the same generator calls)
    mdm = random_mdm(LogLinear(1e-3), seed=5)
    m1 = bounds.evaluate(mdm, x0, [1], spec, seed=3)
    np.testing.assert_allclose(m1[spec[0]][1], bounds.evaluate(mdm, x0, [5], spec, seed=3)[spec[0]][1], rtol=F32_RTOL)


def test_bad_requests_are_clear_errors():
    model = random_vadd(Linear())
    x0 = STATES[:4]
    with pytest.raises(ValueError, match="K"):
        bounds.evaluate(model, x0, [0])
    with pytest.raises(ValueError, match="draws"):
        bounds.evaluate(model, x0, [1], num_t=0)
    with pytest.raises(ValueError, match="steps"):
        bounds.specs([0])
    with pytest.raises(ValueError, match="estimator"):
        bounds.evaluate(model, x0, [1], estimator="quadrature")
    with pytest.raises(ValueError, match="vocabulary"):
        bounds.evaluate(model, torch.tensor([[0, 1, 7]]), [1])


def test_latent_gap_is_zero_when_the_decoder_ignores_z():
    """The diagnostic compares the decoder's predictions with posterior z and prior-averaged z per masked
    fraction: exactly equal for a decoder that ignores z, different for one that reads it."""
    model = random_vadd(Linear(), seed=2)
    x0 = STATES[torch.randint(0, len(STATES), (300,), generator=torch.Generator().manual_seed(0))]
    got = bounds.latent_gap(model, x0, fractions=(1 / 3, 1.0), K=20)
    assert [g["masked_fraction"] for g in got] == [1 / 3, 1.0] and [g["masked_tokens"] for g in got] == [300, 900]
    assert all(math.isfinite(g["gap"]) and g["gap"] != 0.0 for g in got)

    class Blind(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, xt, t, z=None):
            return self.inner(xt, t, torch.zeros_like(z))

    model.denoiser = Blind(model.denoiser)
    for g in bounds.latent_gap(model, x0, fractions=(1 / 3, 1.0), K=20):
        assert abs(g["gap"]) < 1e-5 and g["nll_posterior_z"] > 0, g
    with pytest.raises(ValueError, match="VADD"):
        bounds.latent_gap(random_mdm(Linear()), x0)


def test_pipeline_bounds_name_their_sampler_and_fixed_z_is_a_renamed_argument():
    """``Pipeline.nll_bound(sampler=...)`` is the evaluator's bound of that sampler on the same draws (a name or
    the object); MDM takes only its own sampler; the old ``fixed_z=`` argument is a one-line error naming the new."""
    from vadd import samplers
    from vadd.api import Pipeline
    model = random_vadd(Linear(), seed=3)
    pipe, x = Pipeline(model, {}), STATES[:16]
    for name, obj in (("vadd", samplers.FRESH_Z), ("vadd-cs", samplers.FIXED_Z)):
        spec = bounds.BoundSpec("steps", 2, obj)
        want = bounds.evaluate(model, x, [4], [spec], seed=5)[spec][4]
        assert np.array_equal(pipe.nll_bound(x, num_samples=4, steps=2, sampler=name, seed=5), want)
    recs = pipe.bounds(x, ks=(1, 4), steps=(2,), samplers=("vadd", "vadd-cs"))
    assert {(r["bound"], r["fixed_z"]) for r in recs} == {(b, f) for b in ("continuous", "steps") for f in (False, True)}
    with pytest.raises(ValueError, match="fixed_z= was renamed: pass sampler='vadd-cs'"):
        pipe.nll_bound(x, fixed_z=True)
    with pytest.raises(ValueError, match="needs a model with a latent"):
        Pipeline(random_mdm(Linear()), {}).nll_bound(x, sampler="vadd-cs")
