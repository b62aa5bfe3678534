"""Sampler invariants: revealed and given tokens never change, everything is revealed at the end,
cached / uncached / lazy / eager runs agree token for token, exactness at T = 1."""
import pytest
import torch
from conftest import ExactDenoiser, random_table

from vadd.algorithms import VADD, MaskedDiffusion
from vadd.errors import ConfigError
from vadd.models import MLPDenoiser, MLPEncoder
from vadd import samplers
from vadd.sampling import sample, sample_batch, time_grid
from vadd.schedules import Cosine, Linear, LogLinear

V, L = 5, 6


def _model(latent_dim, schedule=None, seed=0, time_conditioning=False):
    torch.manual_seed(seed)
    den = MLPDenoiser(L, V, latent_dim=latent_dim, hidden=32, depth=2, embed_dim=8, cond_dim=16,
                      time_conditioning=time_conditioning)
    sched = schedule or LogLinear()
    if latent_dim == 0:
        m = MaskedDiffusion(den, sched, V, L)
    else:
        m = VADD(den, MLPEncoder(L, V, latent_dim, hidden=16, depth=1, embed_dim=8), sched, V, L, latent_dim)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


CASES = [(0, "mdm"), (3, "vadd"), (3, "vadd-cs")]


@pytest.fixture
def float64():
    """Models built inside run in float64. Lazy, blocked and cached sampling evaluate the network on other
    batch shapes than the eager reference, and CPU kernels may round differently per shape: in float32 the
    log-probabilities differ in the last digits (relative ~1e-7), enough to move a float64 inverse-CDF draw
    across a category boundary about once per 10^6-10^7 draws. In float64 they differ by ~1e-16, so a token
    flips with probability below 1e-10 over a whole test, and token-for-token equality is a sound assertion."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("d,sampler", CASES)
@pytest.mark.parametrize("steps", [1, 3, 10, 40])
def test_revealed_and_given_tokens_never_change(d, sampler, steps):
    model = _model(d)
    g = torch.Generator().manual_seed(0)
    x_init = torch.full((200, L), V)
    given = torch.rand(200, L, generator=g) < 0.3
    x_init[given] = torch.randint(0, V, (int(given.sum()),), generator=g)
    history = []
    x, _ = sample_batch(model, x_init, steps, sampler, generator=g, on_step=lambda k, t, s, x: history.append(x.clone()))
    assert len(history) == steps
    prev = x_init
    for cur in history:
        was = prev != V
        assert torch.equal(cur[was], prev[was])  # nothing revealed (or given) ever changes
        prev = cur
    assert torch.equal(x[given], x_init[given])
    assert (x != V).all() and (x >= 0).all() and (x < V).all()


@pytest.mark.parametrize("d,sampler", CASES)
@pytest.mark.parametrize("schedule", [LogLinear(), Cosine()], ids=repr)
def test_cached_uncached_lazy_eager_agree(d, sampler, schedule, float64):
    model = _model(d, schedule)
    assert not model.time_conditioned and next(model.parameters()).dtype == torch.float64
    outs = {}
    for cache in (True, False):
        for lazy in (True, False):
            x, st = sample(model, 300, 25, sampler, cache=cache, lazy=lazy, seed=11)
            outs[(cache, lazy)] = (x, st)
    ref = outs[(False, False)][0]
    for key, (x, _) in outs.items():
        assert torch.equal(x, ref), key
    # cost: caching never adds calls, lazy evaluation never evaluates more rows
    assert outs[(True, False)][1].row_evals <= outs[(False, False)][1].row_evals
    assert outs[(False, True)][1].row_evals <= outs[(False, False)][1].row_evals
    if sampler != "vadd":
        assert outs[(True, False)][1].row_evals < outs[(False, False)][1].row_evals


@pytest.mark.parametrize("d,sampler", CASES)
def test_bufferless_blocked_sampling_matches_the_cached_buffer(d, sampler, float64):
    """Large vocabularies (text) sample without the [B, L, V] reuse buffer, in row blocks, with chunked
    categorical draws; the tokens are the same as with the buffer."""
    import vadd.sampling as smp
    model = _model(d)
    x_init = torch.full((120, L), V)
    ref, _ = sample_batch(model, x_init, 7, sampler, generator=torch.Generator().manual_seed(5))
    x, _ = sample_batch(model, x_init, 7, sampler, generator=torch.Generator().manual_seed(5),
                        cache_bytes=0, eval_rows=7)
    assert torch.equal(x, ref)
    real = smp._draw_chunked
    smp._draw_chunked = lambda rows, u, V_, budget=1 << 24, temperature=1.0: real(  # 2 positions a chunk
        rows, u, V_, budget=2 * V_, temperature=temperature)
    try:
        x2, _ = sample_batch(model, x_init, 1, sampler, generator=torch.Generator().manual_seed(5),
                             cache_bytes=0)
    finally:
        smp._draw_chunked = real
    ref1, _ = sample_batch(model, x_init, 1, sampler, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x2, ref1)


@pytest.mark.parametrize("d,sampler", CASES)
def test_time_conditioned_model_never_reuses_stale_outputs(d, sampler, float64):
    model = _model(d, time_conditioning=True)
    a, _ = sample(model, 300, 25, sampler, cache=True, lazy=False, seed=3)
    b, _ = sample(model, 300, 25, sampler, cache=False, lazy=False, seed=3)
    c, _ = sample(model, 300, 25, sampler, cache=False, lazy=True, seed=3)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_lazy_sampler_evaluates_each_row_at_most_L_times():
    model = _model(3)
    for sampler in ("vadd", "vadd-cs"):
        _, st = sample(model, 500, 1000, sampler, seed=0)
        assert st.row_evals <= 500 * L


def test_same_seed_same_samples_and_seed_changes_them():
    model = _model(3)
    a, _ = sample(model, 100, 5, "vadd", seed=1)
    b, _ = sample(model, 100, 5, "vadd", seed=1)
    c, _ = sample(model, 100, 5, "vadd", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batching_does_not_change_distribution_shape():
    model = _model(0)
    x, _ = sample(model, 1000, 4, "mdm", seed=0, batch_size=128)
    assert x.shape == (1000, L) and x.dtype == torch.int64


def test_one_step_mdm_is_product_of_marginals_and_many_steps_is_exact():
    """With the exact denoiser: T = 1 gives prod_i p(x^i); many steps give p(x) (up to MC error)."""
    Vs, Ls = 3, 2
    p = random_table(Vs, Ls, seed=4)
    model = MaskedDiffusion(ExactDenoiser(p, Vs, Ls), Linear(), Vs, Ls)
    n = 60000
    def freq(x):
        idx = x[:, 0] * Vs + x[:, 1]
        return torch.bincount(idx, minlength=Vs**Ls).double() / len(x)
    one, _ = sample(model, n, 1, "mdm", seed=0)
    pt = p.view(Vs, Vs)
    product = torch.outer(pt.sum(1), pt.sum(0)).flatten()
    assert (freq(one) - product).abs().max() < 0.01
    many, _ = sample(model, n, 200, "mdm", seed=0)
    assert (freq(many) - p).abs().max() < 0.01


def test_temperature_draws_from_the_tempered_renormalised_distribution():
    """At T = 1 with the exact denoiser each position is drawn from its marginal raised to 1 / tau and
    renormalised; tau = 1 is the untempered sampler token for token; bad temperatures are errors."""
    Vs, Ls = 3, 2
    p = random_table(Vs, Ls, seed=4)
    model = MaskedDiffusion(ExactDenoiser(p, Vs, Ls), Linear(), Vs, Ls)
    n, tau = 60000, 0.5
    x, _ = sample(model, n, 1, "mdm", seed=0, temperature=tau)
    pt = p.view(Vs, Vs)
    for pos, marg in ((0, pt.sum(1)), (1, pt.sum(0))):
        want = marg ** (1 / tau) / (marg ** (1 / tau)).sum()
        got = torch.bincount(x[:, pos], minlength=Vs).double() / n
        assert (got - want).abs().max() < 0.01
    a, _ = sample(model, 500, 3, "mdm", seed=1)
    b, _ = sample(model, 500, 3, "mdm", seed=1, temperature=1.0)
    assert torch.equal(a, b)
    for bad in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ConfigError, match="temperature"):
            sample(model, 4, 1, "mdm", temperature=bad)


def test_time_grid():
    g = time_grid(4)
    assert torch.allclose(g, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    c = time_grid(4, "cosine")
    assert c[0] == 1 and c[-1] == 0 and (c[1:] < c[:-1]).all()


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_steps_below_one_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="sampling steps"):
        sample(_model(0), 10, bad, "mdm")


def test_sampler_model_mismatch_errors():
    with pytest.raises(ValueError, match="needs a model with a latent"):
        sample(_model(0), 10, 2, "vadd")
    with pytest.raises(ValueError, match="needs an MDM model"):
        sample(_model(2), 10, 2, "mdm")
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(_model(0), 10, 2, "ddim")
    # a sampler object is its name; one object per sampler, also through pickling (worker processes)
    import pickle
    a, _ = sample(_model(2), 50, 3, samplers.FIXED_Z, seed=1)
    b, _ = sample(_model(2), 50, 3, "vadd-cs", seed=1)
    assert torch.equal(a, b) and samplers.get("vadd-cs") is samplers.FIXED_Z
    assert all(pickle.loads(pickle.dumps(s)) is s for s in samplers.ALL)
    assert _model(2).samplers == (samplers.FRESH_Z, samplers.FIXED_Z) and _model(0).samplers == (samplers.MDM,)


def test_out_of_vocabulary_prompt_is_a_clear_error():
    x = torch.full((2, L), V)
    x[0, 0] = V + 1
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sample(_model(0), steps=2, sampler="mdm", x_init=x)


def test_one_seed_reveals_the_same_positions_with_every_sampler():
    """Latents have their own stream: MDM, VADD and VADD-CS reveal the same positions at the same steps for
    one seed, so cached VADD-CS makes exactly cached MDM's network calls, lazy evaluation costs every
    sampler the same rows, and at T = 1 VADD and VADD-CS are the same draw."""
    mdm, vadd = _model(0), _model(3)
    for T in (1, 7, 60):
        runs = {(s, lazy): sample(mdm if s == "mdm" else vadd, 400, T, s, cache=True, lazy=lazy, seed=4)
                for s in ("mdm", "vadd", "vadd-cs") for lazy in (True, False)}
        for lazy in (True, False):
            ref = runs[("mdm", lazy)][1]
            cs = runs[("vadd-cs", lazy)][1]
            assert (cs.nfe, cs.row_evals) == (ref.nfe, ref.row_evals)
            assert runs[("vadd", lazy)][1].per_step_revealed == ref.per_step_revealed == cs.per_step_revealed
            assert len(ref.per_step_revealed) == T and sum(ref.per_step_revealed) == 400 * L
        assert runs[("vadd", True)][1].row_evals == runs[("mdm", True)][1].row_evals
    a, _ = sample(vadd, 400, 1, "vadd", seed=9)
    b, _ = sample(vadd, 400, 1, "vadd-cs", seed=9)
    assert torch.equal(a, b)


@pytest.mark.parametrize("schedule", [LogLinear(), Linear(), Cosine()], ids=repr)
@pytest.mark.parametrize("grid", ["uniform", "cosine"])
def test_reveal_steps_follow_the_stepwise_reveal_probabilities(schedule, grid):
    """One inverse-CDF draw per position has the law of one Bernoulli(p_k) draw per position and step."""
    from conftest import reveal_prob
    from vadd.sampling import reveal_steps
    T, n = 6, 400_000
    times = time_grid(T, grid)
    a = schedule.alpha(times)
    still, expected = 1.0, []
    for k in range(T):
        p = 1.0 if k == T - 1 else float(reveal_prob(a[k + 1], a[k]))
        expected.append(still * p)
        still *= 1 - p
    when = reveal_steps(schedule, times, torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    freq = torch.bincount(when, minlength=T).double() / n
    assert when.min() >= 0 and when.max() < T
    assert torch.allclose(freq, torch.tensor(expected, dtype=torch.float64), atol=4 * (0.25 / n) ** 0.5)


def test_event_driven_sampler_makes_at_most_min_T_L_calls():
    mdm, vadd = _model(0), _model(3)
    for T in (1, 4, 1000):
        for s, m in (("mdm", mdm), ("vadd", vadd), ("vadd-cs", vadd)):
            _, st = sample(m, 300, T, s, seed=0)
            assert st.nfe <= min(T, L) and st.row_evals <= 300 * min(T, L)
            _, eager = sample(m, 300, T, s, cache=False, lazy=False, seed=0)
            assert st.nfe <= eager.nfe <= T and st.row_evals <= eager.row_evals


def test_event_driven_vadd_matches_a_stepwise_reference_in_law():
    """The joint law of VADD's tokens (fresh z per step) equals that of a plain step-by-step ancestral loop
    with a Bernoulli reveal per position and step, written here independently (L = 2, V = 3: 9 cells)."""
    Vs, Ls, d, T, n = 3, 2, 2, 3, 120_000
    torch.manual_seed(1)
    den = MLPDenoiser(Ls, Vs, latent_dim=d, hidden=16, depth=1, embed_dim=4, cond_dim=8, time_conditioning=True)
    model = VADD(den, MLPEncoder(Ls, Vs, d, hidden=8, depth=1, embed_dim=4), Linear(), Vs, Ls, d)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)
    model.eval()
    g = torch.Generator().manual_seed(7)
    x = torch.full((n, Ls), Vs)
    times = time_grid(T)
    with torch.no_grad():
        for k in range(T):
            p = 1.0 if k == T - 1 else float((times[k] - times[k + 1]) / times[k])  # linear: alpha = 1 - t
            reveal = (x == Vs) & (torch.rand(n, Ls, generator=g) < p)
            z = torch.randn(n, d, generator=g)
            probs = model.log_probs(x, torch.full((n,), float(times[k])), z).exp()
            draw = torch.multinomial(probs.view(-1, Vs), 1, generator=g).view(n, Ls)
            x = torch.where(reveal, draw, x)
    ours, _ = sample(model, n, T, "vadd", seed=3)
    cells = lambda a: torch.bincount(a[:, 0] * Vs + a[:, 1], minlength=Vs * Vs).double() / n
    assert (cells(ours) - cells(x)).abs().max() < 0.008


def test_batch_constant_conditioning_is_computed_once_and_equals_the_per_row_result():
    """A time-free MDM's ``c`` is one row broadcast over the batch (its adaLN projections run once per
    call); the logits equal those of the per-row computation. A VADD MLP with ``latent_adaln=False``
    keeps that constant modulation and reads ``z`` only through additive projections."""
    torch.manual_seed(0)
    mdm = MLPDenoiser(2, 5, latent_dim=0, hidden=16, depth=2, embed_dim=4, cond_dim=8, time_conditioning=False)
    with torch.no_grad():
        for p in mdm.parameters():
            p.normal_(0.0, 0.3)
    xt, t = torch.randint(0, 6, (7, 2)), torch.rand(7)
    assert mdm.cond(t).shape == (1, 8)
    once = mdm(xt, t)
    mdm.cond.forward = lambda t, z=None: mdm.cond.const.expand(t.shape[0], -1)   # the per-row computation
    assert torch.allclose(once, mdm(xt, t), atol=1e-6)
    del mdm.cond.forward
    with pytest.raises(ValueError, match="no latent"):
        mdm(xt, t, torch.zeros(7, 3))

    vadd = MLPDenoiser(2, 5, latent_dim=3, hidden=16, depth=2, embed_dim=4, cond_dim=8, time_conditioning=False,
                       latent_input=True, latent_adaln="input")
    with torch.no_grad():
        for p in vadd.parameters():
            p.normal_(0.0, 0.3)
    assert vadd.cond.latent is None and vadd.cond(t).shape == (1, 8)
    z = torch.randn(7, 3)
    assert not torch.allclose(vadd(xt, t, z), vadd(xt, t, z + 1.0))
    with pytest.raises(ValueError, match="got none"):
        vadd(xt, t)
    for removed in ("linear", False, "lin"):  # two modes were removed: a clear error, not another network
        with pytest.raises(ValueError, match="latent_adaln must be true"):
            MLPDenoiser(2, 5, latent_dim=3, latent_adaln=removed)


def test_input_latent_path_is_mdm_with_z_columns_in_the_input_layer():
    """``latent_adaln="input"``: ``c`` stays MDM's batch-constant row and ``z`` joins the token features:
    the input layer is MDM's with ``latent_dim`` extra columns. With those columns zeroed the logits equal
    MDM's on the same weights; with them, the input layer's output moves by exactly ``z @ W_z^T``. The
    columns start as a ``Linear(latent_dim, hidden)`` of their own (bound ``1/sqrt(d)``, not the shared
    layer's ``1/sqrt(L E + d)``)."""
    torch.manual_seed(0)
    kw = dict(hidden=16, depth=2, embed_dim=4, cond_dim=8, time_conditioning=False)
    inp = MLPDenoiser(2, 5, latent_dim=3, latent_input=True, latent_adaln="input", **kw)
    assert inp.z_in is None and inp.cond.latent is None
    assert inp.inp.weight.shape == (16, 2 * 4 + 3)
    wz = inp.inp.weight[:, -3:]
    assert wz.abs().max() <= 3 ** -0.5 and wz.abs().max() > (2 * 4 + 3) ** -0.5   # its own layer's scale
    xt, t, z = torch.randint(0, 6, (7, 2)), torch.rand(7), torch.randn(7, 3)
    with torch.no_grad():
        for p in inp.parameters():
            p.normal_(0.0, 0.3)
    assert inp.cond(t).shape == (1, 8)
    mdm = MLPDenoiser(2, 5, latent_dim=0, **kw)
    state = dict(inp.state_dict(), **{"inp.weight": inp.inp.weight[:, :-3]})
    mdm.load_state_dict(state)
    out = inp(xt, t, z)
    assert not torch.allclose(out, mdm(xt, t), atol=1e-3)
    with torch.no_grad():   # the input layer's output shifts by z @ W_z^T: feed MDM's layer that bias per row
        shift = z @ inp.inp.weight[:, -3:].t()
    mdm.inp.register_forward_hook(lambda m, a, o: o + shift)
    assert torch.allclose(out, mdm(xt, t), atol=1e-5)
    perm = torch.randperm(7)
    assert torch.allclose(inp(xt[perm], t[perm], z[perm]), out[perm], atol=1e-6)
    with pytest.raises(ValueError, match="got none"):
        inp(xt, t)


@pytest.mark.parametrize("backbone", ["mlp", "dit"])
def test_time_free_conditioning_path_gets_gradients_at_init(backbone):
    """Without time conditioning MDM's ``c`` is a learned constant. It must start non-zero: adaLN reads
    SiLU(c), and SiLU(0) = 0 would leave every projection weight (and ``c`` itself) without gradient, so
    only the biases could learn and the zero-initialised gates would open far more slowly."""
    from vadd.models import DiTDenoiser
    torch.manual_seed(0)
    den = (MLPDenoiser(2, 5, hidden=16, depth=2, embed_dim=4, cond_dim=8, time_conditioning=False)
           if backbone == "mlp" else
           DiTDenoiser(6, 5, size=None, depth=1, width=16, heads=2, cond_dim=8, time_conditioning=False))
    torch.nn.init.normal_(den.out.weight, std=0.1)   # as after a first step (the DiT's head starts at zero)
    xt = torch.randint(0, 6, (4, den.seq_len))
    den(xt, torch.rand(4)).log_softmax(-1)[..., 0].sum().backward()
    weights = [m.proj[1].weight for m in den.modules() if m.__class__.__name__ == "AdaLNZero"]
    assert weights and all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
