import math

import numpy as np
import pytest
import torch

from vadd.data import toy2d_data
from vadd.data.toy2d import Grid2D, PointSource, checkerboard_cell_probs, reference_cell_probs, toy_points
from vadd.metrics import histogram_js, js_divergence


def test_js_properties():
    p = np.array([0.2, 0.3, 0.5])
    assert js_divergence(p, p) == 0.0
    assert math.isclose(js_divergence([1, 0], [0, 1]), math.log(2), rel_tol=1e-12)
    q = np.array([0.5, 0.25, 0.25])
    assert math.isclose(js_divergence(p, q), js_divergence(q, p), rel_tol=1e-12)
    m = (p + q) / 2
    kl = lambda a, b: float(np.sum(a * np.log(a / b)))
    assert math.isclose(js_divergence(p, q), 0.5 * kl(p, m) + 0.5 * kl(q, m), rel_tol=1e-12)
    with pytest.raises(ValueError):
        js_divergence([1, 2], [1, 2, 3])


def test_product_of_marginals_js_on_checkerboard_is_analytic():
    """What one-step MDM can at best produce: JS(product of marginals, checkerboard) = 3/4 ln(4/3)."""
    grid = Grid2D(64, -4, 4)
    p = checkerboard_cell_probs(grid)
    prod = np.outer(p.sum(1), p.sum(0))
    assert math.isclose(js_divergence(prod, p), 0.75 * math.log(4 / 3), rel_tol=1e-9)


def test_checkerboard_exact_cells_match_the_sampler():
    grid = Grid2D(64, -4, 4)
    exact = checkerboard_cell_probs(grid)
    assert math.isclose(exact.sum(), 1.0) and (exact > 0).sum() == 2048  # 8 squares x 16 x 16 cells
    mc = grid.histogram(grid.cells(toy_points("checkerboard", 2_000_000, np.random.default_rng(0))))
    assert js_divergence(mc, exact) < 2e-4


def test_noise_floor_matches_its_asymptotics():
    """E[JS(empirical of N, p)] ~ (K - 1) / (8 N) for K occupied cells."""
    grid = Grid2D(64, -4, 4)
    exact = checkerboard_cell_probs(grid)
    src = PointSource("checkerboard")
    n = 100_000
    floors = [histogram_js(grid.cells(src.sample(n, np.random.default_rng(s))), exact, 64) for s in range(3)]
    assert abs(np.mean(floors) / (2047 / (8 * n)) - 1) < 0.1


@pytest.mark.parametrize("name", ["checkerboard", "swissroll", "circles"])
def test_toys_follow_their_definitions(name):
    x = toy_points(name, 50_000, np.random.default_rng(1))
    assert x.shape == (50_000, 2) and np.isfinite(x).all()
    if name == "checkerboard":
        assert np.abs(x).max() <= 4
        # the cell parity rule: floor(x1/2) + floor(x2/2) is even
        assert np.all((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0)
    if name == "circles":
        r = np.linalg.norm(x, axis=1)
        assert abs(np.median(r[r > 2.25]) - 3.0) < 0.1 and abs(np.median(r[r < 2.25]) - 1.5) < 0.1
    if name == "swissroll":
        assert np.abs(x).max() < 4.5 and x.std() > 1.0


@pytest.mark.parametrize("tokens", ["bins", "binary"])
def test_tokenisation_round_trip(tokens):
    grid = Grid2D(64, -4, 4, tokens)
    x = toy_points("swissroll", 10_000, np.random.default_rng(2))
    tok = grid.encode(x)
    assert tok.shape == (10_000, grid.seq_len) and tok.max() < grid.vocab_size
    assert np.array_equal(grid.token_cells(tok), grid.cells(x))
    dec = grid.decode(tok)
    inside = np.all(np.abs(x) < 4, axis=1)
    assert np.abs(dec - x)[inside].max() <= grid.hi / grid.bins + 1e-12  # within half a bin
    if tokens == "binary":
        assert grid.seq_len == 12 and grid.vocab_size == 2


def test_grid_and_data_errors():
    with pytest.raises(ValueError, match="power-of-two"):
        Grid2D(60, tokens="binary")
    with pytest.raises(ValueError, match="unknown 2D dataset"):
        PointSource("moons")
    with pytest.raises(ValueError, match="unknown tokenisation"):
        Grid2D(64, tokens="onehot")


def test_toy_data_is_seeded_and_split():
    a = toy2d_data("circles", n_train=1000, n_test=100, seed=3)
    b = toy2d_data("circles", n_train=1000, n_test=100, seed=3)
    c = toy2d_data("circles", n_train=1000, n_test=100, seed=4)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.train, c.train)
    assert a.seq_len == 2 and a.vocab_size == 64


def test_reference_probs_of_user_file_are_its_histogram(tmp_path):
    pts = np.random.default_rng(0).normal(size=(1000, 2))
    np.save(tmp_path / "p.npy", pts)
    grid = Grid2D(16, -4, 4)
    ref = reference_cell_probs(PointSource(str(tmp_path / "p.npy")), grid, 10, 0)
    assert np.allclose(ref, grid.histogram(grid.cells(pts)))


@pytest.mark.parametrize("tokens", ["bins", "binary"])
@pytest.mark.parametrize("latent_dim", [0, 2])
def test_exact_one_step_distribution_matches_one_step_samples(tokens, latent_dim):
    """The one-step cell probabilities (exact over tokens, Monte Carlo over z) are the law of T = 1
    samples; with a latent they are a mixture of products, not the product of their marginals."""
    from vadd.algorithms import VADD, MaskedDiffusion
    from vadd.metrics.onestep import one_step_cell_probs, one_step_report
    from vadd.models import MLPDenoiser, MLPEncoder
    from vadd.sampling import sample
    from vadd.schedules import Linear

    grid = Grid2D(4, -1.0, 1.0, tokens)
    L, V = grid.seq_len, grid.vocab_size
    torch.manual_seed(0)
    den = MLPDenoiser(L, V, latent_dim=latent_dim, hidden=16, depth=1, embed_dim=4, cond_dim=8,
                      time_conditioning=False, latent_input=latent_dim > 0)
    model = (VADD(den, MLPEncoder(L, V, latent_dim, hidden=8, depth=1, embed_dim=4), Linear(), V, L, latent_dim)
             if latent_dim else MaskedDiffusion(den, Linear(), V, L))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if latent_dim else 0.3)
    model.eval()
    probs = one_step_cell_probs(model, grid, num_z=100_000, seed=1)
    assert probs.shape == (4, 4) and abs(probs.sum() - 1) < 1e-5 and probs.max() < 0.6
    n = 200_000
    x, _ = sample(model, n, 1, "vadd" if latent_dim else "mdm", seed=2)
    hist = grid.histogram(grid.token_cells(x.numpy()))
    assert np.abs(hist - probs).max() < 0.006  # ~6 standard errors
    product = np.outer(probs.sum(1), probs.sum(0))
    if latent_dim:
        assert np.abs(probs - product).max() > 0.02  # z correlates the coordinates
    else:
        assert np.abs(probs - product).max() < 1e-6  # float32 network outputs
    rep = one_step_report(probs, probs)
    assert rep["js_exact"] < 1e-12 and rep["mass_off_target"] == 0.0 and 0 < rep["js_of_samples_from_it"] < 1e-3
    with pytest.raises(ValueError, match="does not match"):
        one_step_cell_probs(model, Grid2D(8, -1.0, 1.0, tokens))
