"""The prior over z that samplers draw from and bounds weigh by: N(0, I), or a Gaussian mixture fitted to the
aggregate posterior after training (``algo.prior=gmm``). Its density is exact, its draws follow it, the
standard prior's random stream is unchanged, and a fitted prior survives saving and loading. (That every
bound stays valid under a mixture prior is checked against exact values in test_bounds.py.)"""
import math

import pytest
import torch

import vadd
from vadd.config import ConfigError, compose
from vadd.latent import GaussianMixturePrior, StandardNormalPrior, build_prior
from vadd.train import train

TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.warmup_steps=5", "trainer.ckpt_every=0",
        "data.n_train=4000", "data.n_test=200", "trainer.max_steps=15", "trainer.batch_size=128"]


def mixture(d=3, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    prior = GaussianMixturePrior(d, c)
    prior.log_weights.copy_(torch.log_softmax(torch.randn(c, generator=g), 0))
    prior.means.copy_(2.0 * torch.randn(c, d, generator=g))
    tril = torch.tril(0.4 * torch.randn(c, d, d, generator=g), -1) + torch.diag_embed(0.3 + torch.rand(c, d, generator=g))
    prior.scale_tril.copy_(tril)
    return prior


def test_mixture_density_is_the_mixture_of_full_covariance_gaussians():
    prior = mixture()
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.log_weights.double()),
        torch.distributions.MultivariateNormal(prior.means.double(), scale_tril=prior.scale_tril.double()))
    z = 3.0 * torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(1))  # any leading dims
    assert torch.allclose(prior.log_prob(z.double()), ref.log_prob(z.double()), atol=1e-10)
    assert prior.log_prob(z).dtype == torch.float32 and prior.log_prob(z).shape == (7, 5)


def test_mixture_draws_follow_its_density_and_are_reproducible():
    prior = mixture()
    n = 200_000
    z = prior.sample(n, torch.Generator().manual_seed(0)).double()
    assert torch.equal(z.float(), prior.sample(n, torch.Generator().manual_seed(0)))
    w, mu, tril = prior.log_weights.double().exp(), prior.means.double(), prior.scale_tril.double()
    mean = w @ mu
    cov = sum(w[c] * (tril[c] @ tril[c].T + torch.outer(mu[c] - mean, mu[c] - mean)) for c in range(3))
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((z.mean(0) - mean).abs() <= 5 * se).all(), (z.mean(0), mean)
    assert torch.allclose(torch.cov(z.T), cov, rtol=0.03, atol=0.03)
    # components moved far apart: the share of draws nearest each mean is its weight
    prior.means.copy_(torch.tensor([[0.0, 0, 0], [20, 0, 0], [0, 20, 0]]))
    z = prior.sample(n, torch.Generator().manual_seed(1))
    share = torch.bincount(torch.cdist(z, prior.means).argmin(1), minlength=3).double() / n
    assert ((share - w).abs() <= 5 * (w * (1 - w) / n).sqrt()).all(), (share, w)


def test_standard_prior_draws_the_stream_of_earlier_versions():
    prior = StandardNormalPrior(4)
    assert torch.equal(prior.sample(6, torch.Generator().manual_seed(3)),
                       torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))
    z = torch.randn(10, 4)
    assert torch.allclose(prior.log_prob(z), -0.5 * (z**2).sum(-1) - 2.0 * math.log(2 * math.pi))
    assert isinstance(build_prior(None, 4), StandardNormalPrior)
    with pytest.raises(ConfigError, match="latent prior"):
        build_prior({"name": "flow"}, 4)
    with pytest.raises(ConfigError, match="components"):
        GaussianMixturePrior(4, 0)


def test_fitted_prior_is_saved_reloaded_and_sampled_from(tmp_path):
    cfg = compose([*TINY, "algo=vadd", "algo.prior=gmm", "algo.prior_components=3", "algo.prior_examples=1000",
                   f"run_dir={tmp_path / 'run'}"])
    model, run_dir, rec = train(cfg)
    assert isinstance(model.prior, GaussianMixturePrior) and model.prior.components == 3
    assert model.spec["prior"] == {"name": "gmm", "components": 3}
    m = rec["train_metrics"]
    # the mean log-density of the fitted codes under the mixture and under N(0, I) (EM's local optimum need
    # not beat N(0, I) on codes that are nearly standard normal, as this barely trained model's are)
    assert abs(m["prior_log_density_fitted"] - m["prior_log_density_standard"]) < 1.0
    pipe = vadd.load(run_dir)
    assert isinstance(pipe.model.prior, GaussianMixturePrior)
    for name in ("log_weights", "means", "scale_tril"):
        assert torch.equal(getattr(pipe.model.prior, name), getattr(model.prior, name))
    a = pipe.sample(300, steps=2, sampler="vadd", seed=5)
    assert (a == torch.as_tensor(vadd.sample(model, 300, 2, "vadd", seed=5)[0]).numpy()).all()
    nll = pipe.nll_bound(a[:20], num_samples=3)
    assert nll.shape == (20,) and (nll > 0).all()
    # the prior is not part of training: the checkpoint is N(0, I)'s, and a standard run has no mixture
    std, _, _ = train(compose([*TINY, "algo=vadd", f"run_dir={tmp_path / 'std'}"]))
    assert isinstance(std.prior, StandardNormalPrior) and "prior" not in std.spec
    with pytest.raises(ConfigError, match="prior"):
        compose([*TINY, "algo=vadd", "algo.prior=flow"])


def test_fit_prior_command_writes_a_new_model_and_refuses_bad_requests(tmp_path, capsys):
    from vadd.cli import main

    train(compose([*TINY, "algo=vadd", f"run_dir={tmp_path / 'v'}"]))
    before = (tmp_path / "v" / "model" / "model.safetensors").read_bytes()
    assert main(["fit-prior", str(tmp_path / "v"), "--out", str(tmp_path / "gmm"), "--components", "2",
                 "--examples", "500"]) == 0
    assert (tmp_path / "v" / "model" / "model.safetensors").read_bytes() == before  # the run's model untouched
    pipe = vadd.load(tmp_path / "gmm")
    assert isinstance(pipe.model.prior, GaussianMixturePrior) and pipe.model.prior.components == 2
    assert pipe.config["data"]["kind"] == "toy2d" and pipe.decode(pipe.sample(5, steps=1)).shape == (5, 2)
    assert main(["fit-prior", str(tmp_path / "v"), "--out", str(tmp_path / "v" / "model")]) == 2
    train(compose([*TINY, "algo=mdm", f"run_dir={tmp_path / 'm'}"]))
    assert main(["fit-prior", str(tmp_path / "m"), "--out", str(tmp_path / "x")]) == 2
    assert main(["fit-prior", str(tmp_path / "gmm"), "--out", str(tmp_path / "y")]) == 2  # no manifest: not a run
    err = capsys.readouterr().err
    assert "run's own model" in err and "needs a VADD model" in err and "not a run folder" in err
