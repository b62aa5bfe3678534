"""Training through Lightning, saving/loading, the Python API and the CLI, including bad input."""
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import F32_RTOL

import vadd
from vadd import io
from vadd.config import ConfigError, compose, validate
from vadd.data import TokenData, build_data
from vadd.train import train

TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=5", "trainer.warmup_steps=5",
        "trainer.ckpt_every=0"]
VADD_BIN = str(Path(sys.executable).parent / "vadd")


def tiny_cfg(tmp_path, *extra):
    return compose([*TINY, "data.n_train=4000", "data.n_test=200", "trainer.max_steps=15",
                    "trainer.batch_size=128", f"run_dir={tmp_path / 'run'}", *extra])


@pytest.mark.parametrize("algo", ["mdm", "vadd"])
def test_train_save_load_sample_eval(tmp_path, algo):
    cfg = tiny_cfg(tmp_path, f"algo={algo}")
    model, run_dir, rec = train(cfg)
    assert rec["steps"] == 15
    for f in ("model/model.safetensors", "model/config.json", "manifest.json", "checkpoints/last.ckpt"):
        assert (run_dir / f).exists(), f
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["seed"] == 0 and man["config"]["algo"]["name"] == algo and "torch" in man["versions"]
    pipe = vadd.load(run_dir)
    assert pipe.model.name == algo
    for a, b in zip(pipe.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    tokens = pipe.sample(50, steps=3)
    assert tokens.shape == (50, 2) and tokens.min() >= 0 and tokens.max() < 64
    pts = pipe.decode(tokens)
    assert pts.shape == (50, 2) and np.all(np.abs(pts) < 4)
    written = pipe.save_samples(tokens, tmp_path / "s", "x")
    assert [p.name for p in written] == ["x.npy", "x_decoded.npy"]
    assert np.array_equal(np.load(written[0]), tokens) and np.allclose(np.load(written[1]), pts)
    nll = pipe.nll_bound(tokens, num_samples=3)
    assert nll.shape == (50,) and np.isfinite(nll).all() and (nll > 0).all()
    if algo == "vadd":
        assert "diag/active_units_t1" in rec["train_metrics"] and "diag/kl_t1" in rec["train_metrics"]
        infilled = pipe.infill(tokens, np.array([[True, False]] * 50), steps=2)
        assert np.array_equal(infilled[:, 0], tokens[:, 0])


def test_train_restores_process_wide_torch_settings(tmp_path):
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    other = "medium" if precision != "medium" else "high"
    train(tiny_cfg(tmp_path, "trainer.max_steps=2", "trainer.num_threads=1", f"trainer.float32_matmul_precision={other}"))
    assert torch.get_num_threads() == threads and torch.get_float32_matmul_precision() == precision
    with pytest.raises(FileNotFoundError):  # restored on failure too
        train(tiny_cfg(tmp_path / "b", "trainer.num_threads=1", f"trainer.float32_matmul_precision={other}"),
              resume=str(tmp_path / "missing.ckpt"))
    assert torch.get_num_threads() == threads and torch.get_float32_matmul_precision() == precision


def test_latent_use_reads_nothing_without_a_z_path_and_leaves_rng_and_mode_alone(tmp_path):
    from vadd.metrics.latent import latent_use

    model, _, rec = train(tiny_cfg(tmp_path, "algo=vadd", "model.denoiser.latent_adaln=true"))  # the paper's adaLN
    assert "diag/z_use_t1" in rec["train_metrics"]
    x0 = torch.as_tensor(np.random.default_rng(0).integers(0, 64, (300, 2)))
    model.train()
    state = torch.get_rng_state()
    first = latent_use(model, x0)
    assert torch.equal(state, torch.get_rng_state()) and model.training
    assert latent_use(model, x0) == first and math.isfinite(first) and first != 0.0  # the z path is live
    assert latent_use(model, x0, max_logits=64 * 2 * 7) == pytest.approx(first, abs=1e-4)  # chunks of 7 rows
    den = model.denoiser  # cut every path from z into the denoiser: it then reads exactly nothing
    with torch.no_grad():
        for lin in [den.cond.latent[-1], den.z_in]:
            if lin is not None:
                lin.weight.zero_()
                lin.bias.zero_()
    assert latent_use(model, x0) == 0.0


def test_collapse_diagnostics_and_validation_do_not_change_training(tmp_path):
    a, _, _ = train(tiny_cfg(tmp_path / "a", "algo=vadd", "trainer.deterministic=true", "trainer.diag_every=0"))
    b, _, _ = train(tiny_cfg(tmp_path / "b", "algo=vadd", "trainer.deterministic=true", "trainer.diag_every=3",
                             "trainer.val_every=4", "trainer.val_rows=64"))
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("algo", ["mdm", "vadd"])
def test_validation_curve_scores_the_saved_ema_model(tmp_path, algo):
    """The last logged val/nll is the saved (EMA) model's bound on the first val_rows test rows, recomputed."""
    from vadd.bounds import heldout_bound
    cfg = tiny_cfg(tmp_path, f"algo={algo}", "trainer.val_every=3", "trainer.val_rows=100")  # log_every=5
    model, run_dir, rec = train(cfg)
    rows = [r for r in csv_rows(run_dir / "logs" / "metrics.csv") if r.get("val/nll")]
    # written once each, after optimiser steps 3, 6, ..., 15 (Lightning's step column counts from 0), not
    # repeated at the logging steps in between
    assert [int(r["step"]) for r in rows] == [2, 5, 8, 11, 14]
    assert rec["train_metrics"]["val/nll"] == float(rows[-1]["val/nll"])
    data = build_data(cfg["data"], seed=0)
    again = heldout_bound(vadd.load(run_dir).model, data.test[:100], seed=0)
    # the validation loop evaluates other batch shapes than heldout_bound: float32 rounding, not bit for bit
    assert float(rows[-1]["val/nll"]) == pytest.approx(again, rel=F32_RTOL)
    assert float(rows[-1]["val/nats_per_token"]) == pytest.approx(again / data.seq_len, rel=F32_RTOL)
    assert heldout_bound(model, data.test[:100], seed=0) == again  # same draws every call
    assert heldout_bound(model, data.test[:100], seed=1) != again
    with pytest.raises(ValueError, match="unknown bound estimator 'quadrature'"):
        vadd.load(run_dir).nll_bound(data.test[:4], estimator="quadrature")


def csv_rows(path):
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_seed_same_weights(tmp_path):
    a, _, _ = train(tiny_cfg(tmp_path / "a", "algo=vadd", "trainer.deterministic=true"))
    b, _, _ = train(tiny_cfg(tmp_path / "b", "algo=vadd", "trainer.deterministic=true"))
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_trained_bounds_on_heldout_are_not_below_entropy(tmp_path):
    """Every bound vadd reports (continuous and T-step, every K, both methods) on held-out samples of an
    enumerable, strongly correlated distribution averages at or above its exact entropy (3 s.e.). The
    integral of VADD's per-step joint, reported before, went 0.5 nats below it on such data."""
    V, L = 5, 4
    states = torch.tensor(list(itertools.product(range(V), repeat=L)))
    p = 0.01 + 4.0 * ((states[:, 0] == states[:, 1]) & (states[:, 2] == states[:, 3])) \
        + 4.0 * (states == states[:, :1]).all(1)   # entropy 3.51 nats; the old integral said 2.61 here
    p = (p / p.sum()).double()
    g = torch.Generator().manual_seed(0)
    train_x = states[torch.multinomial(p.float(), 20000, replacement=True, generator=g)]
    test_x = states[torch.multinomial(p.float(), 2000, replacement=True, generator=g)]
    data = TokenData(train_x, test_x, V, info={"kind": "tokens", "vocab_size": V})
    entropy = float(-(p * p.log()).sum())
    for algo in ("mdm", "vadd"):
        extra = ["algo.latent_dim=4", "algo.kl_warmup=300"] if algo == "vadd" else []
        cfg = compose([*TINY, f"algo={algo}", *extra, "trainer.max_steps=1500", "trainer.batch_size=256",
                       "model.denoiser.hidden=64", f"run_dir={tmp_path / algo}"])
        model, _, _ = train(cfg, data=data)
        pipe = vadd.Pipeline(model, {})
        recs = pipe.bounds(test_x, ks=(1, 10, 100), steps=(1, 2, 5), num_t=2)
        assert len(recs) == (4 if algo == "mdm" else 12)
        for r in recs:
            assert r["nats_per_example"] >= entropy - 3 * r["stderr_nats_per_example"], (algo, r, entropy)
            # and it learned (uniform: 6.44 = MDM's one-step bound here, the marginals being uniform); VADD's
            # K = 1 bounds are valid but loose
            if r["bound"] == "continuous" and r["K"] == (100 if algo == "vadd" else 1):
                assert r["nats_per_example"] < entropy + 1.0, (algo, r)


def test_loading_weights_of_another_model_is_a_clear_error(tmp_path):
    mdm, run_mdm, _ = train(tiny_cfg(tmp_path / "m", "algo=mdm"))
    vad, run_vadd, _ = train(tiny_cfg(tmp_path / "v", "algo=vadd"))
    (run_vadd / "model" / "model.safetensors").write_bytes((run_mdm / "model" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="another model"):
        vadd.load(run_vadd)
    # a truncated weights file
    raw = (run_mdm / "model" / "model.safetensors").read_bytes()
    (run_mdm / "model" / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        vadd.load(run_mdm)
    with pytest.raises(FileNotFoundError, match="not a saved vadd model"):
        vadd.load(tmp_path / "nowhere")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        io.write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind
    # the probe scripts' log: one JSON line per call, numpy and torch scalars as numbers
    log = tmp_path / "sub" / "probes.jsonl"
    io.append_jsonl(log, {"js": np.float32(0.5), "kl": torch.tensor(1.5)})
    io.append_jsonl(log, {"js": 0.25})
    assert [json.loads(x) for x in log.read_text().splitlines()] == [{"js": 0.5, "kl": 1.5}, {"js": 0.25}]


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="trainer.nope"):
        compose(["trainer.nope=1"])
    with pytest.raises(ConfigError, match="max_steps=abc: Value 'abc' of type 'str' could not be converted to Integer"):
        compose(["trainer.max_steps=abc"])
    cfg = compose([])
    cfg["trainer"]["max_steps"] = "abc"  # a dict edited in Python gets the same schema
    with pytest.raises(ConfigError, match="trainer.max_steps must be int, got 'abc'"):
        validate(cfg)
    img = compose(["data=images"])
    img["data"]["levels"] = 1  # the data group's schema is chosen by its kind
    with pytest.raises(ConfigError, match="data.levels must be >= 2, got 1"):
        validate(img)
    with pytest.raises(ConfigError, match="data.tokenizer"):  # the schema of the kind the dict names
        validate({**img, "data": {"kind": "text", "tokenizer": "llama"}})
    with pytest.raises(ConfigError, match="must be > 0"):
        compose(["trainer.lr=-1"])
    with pytest.raises(ConfigError, match="neither a toy"):
        compose(["data.name=moons"])
    with pytest.raises(ConfigError):
        compose(["algo=vae"])
    with pytest.raises(ConfigError, match="float32_matmul_precision must be"):
        compose(["trainer.float32_matmul_precision=fast"])
    with pytest.raises(ConfigError, match="algo.kl_delay must be >= 0"):
        compose(["algo=vadd", "algo.kl_delay=-5"])
    with pytest.raises(ConfigError, match="algo.kl_max must be >= 0"):
        compose(["algo=vadd", "algo.kl_max=-0.5"])
    with pytest.raises(ConfigError, match="algo.iw_k must be >= 1"):
        compose(["algo=vadd", "algo.iw_k=0"])
    with pytest.raises(ConfigError, match="trainer.val_every must be >= 0"):
        compose(["trainer.val_every=-1"])
    with pytest.raises(ConfigError, match="algo.kl_warmup=soon: .*could not be converted to Float"):
        compose(["algo=vadd", "algo.kl_warmup=soon"])
    for bad, needle in ((["trainer.grad_clip=-1"], "trainer.grad_clip must be >= 0"),
                        (["trainer.lr_schedule=linear"], "lr_schedule must be one of cosine, constant"),
                        (["trainer.min_lr_ratio=2"], "min_lr_ratio must be <= 1"),
                        (["data=tokens", "data.train=x.npy", "data.vocab_size=12.5"], "data.vocab_size=12.5: .*could not be converted to Integer"),
                        (["data=tokens", "data.train=x.npy", "data.vocab_size=0"], "data.vocab_size must be >= 1")):
        with pytest.raises(ConfigError, match=needle):
            compose(bad)
    assert compose(["trainer=gpu"])["trainer"]["float32_matmul_precision"] == "high"


def test_iw_phase_trains_on_the_importance_weighted_bound_after_the_warm_up(tmp_path):
    over = ["algo=vadd", "algo.kl_warmup=4", "algo.iw_k=4", "trainer.log_every=1"]
    with pytest.raises(ConfigError, match="must start after the KL warm-up"):  # caught at compose time
        tiny_cfg(tmp_path / "a", *over, "algo.iw_from=2")
    with pytest.raises(ConfigError, match="needs algo.kl_max <= 1"):
        tiny_cfg(tmp_path / "b", *over, "algo.iw_from=8", "algo.kl_max=1.5")
    # a beta < 1 phase before the bound-training phase is allowed (the phase ignores the KL weight)
    assert tiny_cfg(tmp_path / "b", *over, "algo.iw_from=8", "algo.kl_max=0.5")["algo"]["kl_max"] == 0.5
    cfg = tiny_cfg(tmp_path / "a", *over, "algo.iw_from=8")
    cfg["algo"]["iw_from"] = 2  # a dict edited after compose: train() checks it again
    with pytest.raises(ConfigError, match="must start after the KL warm-up"):
        train(cfg)
    with pytest.raises(ConfigError, match="algo.iw_k must be >= 1"):
        compose(["algo=vadd", "algo.iw_k=0"])
    train(tiny_cfg(tmp_path / "c", *over, "algo.iw_from=8"))
    import csv
    rows = [r for r in csv.DictReader(open(tmp_path / "c" / "run" / "logs" / "metrics.csv")) if r.get("train/iw_k")]
    phase = {int(r["step"]): float(r["train/iw_k"]) for r in rows}
    assert phase and all(k == (4.0 if s >= 8 else 1.0) for s, k in phase.items())
    assert min(phase) < 8 <= max(phase)


def test_kl_schedule_delay_then_linear_warmup():
    from vadd.latent import kl_weight
    assert [kl_weight(s, 4) for s in (0, 1, 2, 4, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert [kl_weight(s, 4, delay_steps=3) for s in (0, 2, 3, 4, 7, 20)] == [0.0, 0.0, 0.0, 0.25, 1.0, 1.0]
    assert kl_weight(0, 0, delay_steps=3) == 0.0 and kl_weight(3, 0, delay_steps=3) == 1.0
    assert kl_weight(1, 4, start=0.2, delay_steps=2) == 0.2
    # algo.kl_max: the weight the warm-up ends at (a beta-VAE weight when not 1)
    assert [kl_weight(s, 4, end=0.5) for s in (0, 2, 4, 9)] == [0.0, 0.25, 0.5, 0.5]
    assert kl_weight(5, 0, end=1.5) == 1.5 and kl_weight(0, 0, delay_steps=1, end=1.5) == 0.0


def test_unknown_dataset_and_bad_token_files(tmp_path):
    with pytest.raises(ValueError, match="unknown 2D dataset"):
        build_data({"kind": "toy2d", "name": "spirals"})
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0, 1], [2, 9]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build_data({"kind": "tokens", "train": str(bad), "vocab_size": 5})
    np.save(bad, np.array([[0.5, 1.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="must be integers"):
        build_data({"kind": "tokens", "train": str(bad)})
    pts = tmp_path / "pts.npy"
    np.save(pts, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        build_data({"kind": "toy2d", "name": str(pts)})


def test_user_token_data_trains(tmp_path):
    g = np.random.default_rng(0)
    arr = g.integers(0, 7, size=(3000, 5))
    arr[:, 1] = arr[:, 0]  # a correlation to learn
    np.save(tmp_path / "tok.npy", arr)
    cfg = compose([*TINY, "data=tokens", f"data.train={tmp_path / 'tok.npy'}", "trainer.max_steps=10",
                   "trainer.batch_size=64", f"run_dir={tmp_path / 'run'}"])
    model, run_dir, _ = train(cfg)
    assert model.vocab_size == 7 and model.seq_len == 5
    pipe = vadd.load(run_dir)
    assert pipe.sample(10, steps=2).shape == (10, 5)


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([VADD_BIN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize("args,needle", [
    (["train", "trainer.nope=1"], "trainer.nope"),
    (["train", "trainer.max_steps=abc"], "max_steps"),
    (["train", "data.name=moons"], "moons"),
    (["train", "algo=vae"], "algo"),
    (["sample", "/nonexistent/run"], "not a saved vadd model"),
    (["demo", "--data", "spirals"], "spirals"),
])
def test_cli_bad_input_is_one_line_exit_2(args, needle):
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and needle in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_cli_train_sample_eval_and_errors(tmp_path):
    run = tmp_path / "run"
    r = _cli("train", *TINY, "algo=vadd", "data.n_train=2000", "data.n_test=100", "trainer.max_steps=5",
             "trainer.batch_size=64", f"run_dir={run}")
    assert r.returncode == 0, r.stderr
    r = _cli("sample", str(run), "--steps", "1", "3", "--num-samples", "20", "--out", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    for name in ("vadd_T1.npy", "vadd-cs_T3.npy", "vadd_T3_decoded.npy", "sample.json"):
        assert (tmp_path / "s" / name).exists()
    r = _cli("eval", str(run), "-K", "1", "4", "--steps", "1", "3", "--num-t", "2", "--max-examples", "50",
             "--sampler", "both", "--out", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["num_examples"] == 50
    got = {(b["bound"], b["steps"], b["fixed_z"], b["K"]) for b in res["bounds"]}
    want = {(b, T, fz, k) for b, T in (("continuous", None), ("steps", 1), ("steps", 3)) for fz in (False, True)
            for k in (1, 4)}
    assert got == want - {("continuous", None, True, 4)}  # VADD-CS's continuous bound is an ELBO: K = 1
    one = {(b["steps"], b["fixed_z"], b["K"]): b["nats_per_example"] for b in res["bounds"] if b["steps"] == 1}
    assert one[(1, True, 4)] == pytest.approx(one[(1, False, 4)], rel=0.05)  # T = 1: the same model (own draws)
    for b in res["bounds"]:
        assert b["nats_per_example"] > 0 and b["stderr_nats_per_example"] > 0 and b["num_examples"] == 50
        assert b["bits_per_dim"] == pytest.approx(b["nats_per_token"] / np.log(2))
    # on reveal paths VADD-CS's continuous bound is importance-weighted too
    r = _cli("eval", str(run), "-K", "1", "4", "--num-t", "1", "--max-examples", "20", "--sampler", "vadd-cs",
             "--estimator", "path", "--out", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["estimator"] == "path"
    got = {(b["bound"], b["fixed_z"], b["K"]) for b in res["bounds"]}
    assert got == {("continuous", True, 1), ("continuous", True, 4)}
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    for bad, needle in ((["-K", "0"], "K"), (["--num-t", "0"], "draws"), (["--steps", "0"], "steps"),
                        (["--out", str(tmp_path / "a_dir")], "is a directory"),
                        (["--out", str(tmp_path / "a_file" / "e.json")], "cannot write")):
        r = _cli("eval", str(run), *bad, "--max-examples", "5")
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("sample", str(run), "--out", str(tmp_path / "a_file"))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("sample", str(run), "--steps", "0")
    assert r.returncode == 2 and "sampling steps" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0, 70], [1, 2]]))
    r = _cli("eval", str(run), "--data", str(bad))
    assert r.returncode == 2 and "outside the vocabulary" in r.stderr and "Traceback" not in r.stderr


def test_demo_quick_writes_results_samples_and_figure(tmp_path):
    out = tmp_path / "demo"
    r = _cli("demo", "--quick", "--workers", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert set(res["datasets"]) == {"checkerboard", "swissroll", "circles"}
    assert res["grid"] == {"bins": 64, "range": [-4.0, 4.0], "tokens": "bins"}
    assert {"seed", "wall_s", "versions", "num_samples"} <= set(res)
    n = res["num_samples"]
    for name, e in res["datasets"].items():
        assert 0 < e["noise_floor"] < math.log(2)
        assert set(e["js"]) == {"mdm", "vadd", "vadd-cs"}
        for sampler, row in e["js"].items():
            assert set(row) == {str(T) for T in (1, 2, 5, 10, 20, 50)}
            assert all(0 <= v <= math.log(2) for v in row.values())
            for T in row:
                arr = np.load(out / name / "samples" / "seed0" / f"{sampler}_T{T}.npy")  # its comparison's
                assert arr.shape == (n, 2) and arr.dtype == np.float32
        # VADD at T = 1 and VADD-CS at T = 1 are the same sampler: identical samples
        assert e["js"]["vadd"]["1"] == e["js"]["vadd-cs"]["1"]
        # valid bounds for every T and the continuous limit, MDM at K = 1, VADD at each K; none below the
        # entropy of the grid (near uniform after 20 steps: at most 2 ln 64)
        assert 0 < e["entropy"] <= 2 * math.log(64) + 1e-9
        got = {(a, r["bound"], r["steps"], r["K"]) for a, recs in e["bounds"].items() for r in recs}
        specs = [("continuous", None)] + [("steps", T) for T in (1, 2, 5, 10, 20, 50)]
        assert got == {("mdm", b, T, 1) for b, T in specs} | {("vadd", b, T, k) for b, T in specs for k in (1, 4)}
        assert abs(e["data_nll"] - e["entropy"]) < 0.5  # the held-out points' own exact NLL
        for recs in e["bounds"].values():
            for rec in recs:
                assert rec["nats_per_example"] >= e["entropy"] - 3 * rec["stderr_nats_per_example"], (name, rec)
                assert rec["minus_data_nll"] >= -3 * rec["minus_data_nll_stderr"], (name, rec)
                assert rec["nats_per_example"] - rec["minus_data_nll"] == pytest.approx(e["data_nll"])
    assert (out / "figure.png").stat().st_size > 10_000 and (out / "js_vs_steps.png").exists()
    assert (out / "nll_vs_steps.png").exists()
    assert "JS divergence" in r.stdout and "ratio" in r.stdout and "Likelihood bound" in r.stdout
    for name in res["datasets"]:  # each toy is a vadd compare run of one seed, written beside the demo's tables
        cmp = json.loads((out / name / "results.json").read_text())
        assert cmp["seeds"] == [0] and cmp["per_seed"]["0"]["stats"]["vadd"]["1"]["js"] == res["datasets"][name]["js"]["vadd"]["1"]
    # the same command again, with two workers this time: the same numbers bit for bit (every job runs with
    # the same threads whatever --workers is; batches, noise and samples are functions of the seed)
    again = _cli("demo", "--quick", "--workers", "2", "--out", str(tmp_path / "demo2"))
    assert again.returncode == 0, again.stderr
    res2 = json.loads((tmp_path / "demo2" / "results.json").read_text())
    for name, e in res["datasets"].items():
        e2 = res2["datasets"][name]
        assert e2["js"] == e["js"] and e2["bounds"] == e["bounds"] and e2["noise_floor"] == e["noise_floor"]
        assert {a: t["metrics"] for a, t in e2["train"].items()} == {a: t["metrics"] for a, t in e["train"].items()}


def test_demo_on_a_user_point_file(tmp_path):
    pts = np.random.default_rng(0).normal(size=(5000, 2))
    np.save(tmp_path / "blob.npy", pts)
    r = _cli("demo", "--quick", "--workers", "1", "--data", str(tmp_path / "blob.npy"), "--out", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "d" / "results.json").read_text())
    # bounded on the file's held-out split; its law is unknown, so no exact NLL beside the bounds
    blob = res["datasets"]["blob"]
    assert list(res["datasets"]) == ["blob"] and set(blob["bounds"]) == {"mdm", "vadd"} and "data_nll" not in blob
    assert all("minus_data_nll" not in rec for recs in blob["bounds"].values() for rec in recs)
    assert (tmp_path / "d" / "blob" / "results.json").exists()  # the comparison the demo ran


def test_ema_tracks_in_place_updates_and_a_new_source_model():
    """The EMA caches its tensor lists: in-place optimiser updates must still be seen, and another source
    model gets its own lists."""
    from vadd.lit import EMA
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(net, decay=0.5)
    for n in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)  # in place, as optimisers do
            net[1].running_mean.add_(2.0)
        before = [e.clone() for e in ema.model.parameters()]
        ema.update(net)
        d = min(0.5, (1.0 + n) / (10.0 + n))
        for b, e, p in zip(before, ema.model.parameters(), net.parameters()):
            assert torch.allclose(e, d * b + (1 - d) * p)
        assert torch.equal(ema.model[1].running_mean, net[1].running_mean)
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema.update(other)
    before = [e.clone() for e in ema.model.parameters()]
    n = int(ema.updates)
    ema.update(other)
    d = min(0.5, (1.0 + n) / (10.0 + n))
    for b, e, p in zip(before, ema.model.parameters(), other.parameters()):
        assert torch.allclose(e, d * b + (1 - d) * p)


def test_ema_sees_a_moved_model():
    """``.to()`` swaps parameter data but keeps the Parameter objects: the cached lists must follow."""
    from vadd.lit import EMA
    net = torch.nn.Linear(3, 4)
    ema = EMA(net, decay=0.5)
    ema.update(net)
    net.to(torch.float64)
    ema.model.to(torch.float64)
    with torch.no_grad():
        net.weight.fill_(2.0)
    before = ema.model.weight.clone()
    n = int(ema.updates)
    ema.update(net)
    d = min(0.5, (1.0 + n) / (10.0 + n))
    assert torch.allclose(ema.model.weight, d * before + (1 - d) * 2.0)


def test_compile_switch_compiles_both_networks_and_keeps_parameter_names():
    """trainer.compile compiles the denoiser and VADD's recognition model in place: parameter names stay
    those of the eager model, so a compiled run's checkpoints and EMA weights load without it. (The
    compiled forward itself runs on the first call; nothing is compiled here.)"""
    from vadd.build import build_model, model_spec
    from vadd.train import compile_networks
    cfg = compose([*TINY, "algo=vadd"])
    model = build_model(model_spec(cfg["model"], cfg["algo"], 64, 2, None))
    names = list(model.state_dict())
    compile_networks(model)
    assert list(model.state_dict()) == names and not any("_orig_mod" in n for n in names)
    assert model.denoiser._compiled_call_impl is not None and model.encoder._compiled_call_impl is not None
    mdm_cfg = compose([*TINY, "algo=mdm"])
    mdm = build_model(model_spec(mdm_cfg["model"], mdm_cfg["algo"], 64, 2, None))
    compile_networks(mdm)                      # MDM has no encoder: only its denoiser
    assert mdm.denoiser._compiled_call_impl is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_queues_follow_ups_after_their_job(workers):
    """A job's follow-ups (the demo's sampling jobs after a training job) run after it, and every job,
    follow-ups included, is collected exactly once, in-process and in spawned workers alike."""
    from vadd.jobs import run_jobs
    seen = []

    def collect(job, res):
        seen.append((job, res))
        return [job * 10, job * 10 + 1] if abs(job) < 10 else []

    run_jobs([-3, 4], abs, workers, collect)     # abs: a picklable function for the spawned workers
    assert sorted(seen) == sorted((j, abs(j)) for j in (-3, 4, -30, -29, 40, 41))
    order = [j for j, _ in seen]
    for parent in (-3, 4):
        assert all(order.index(parent) < order.index(f) for f in (parent * 10, parent * 10 + 1))


def _reporting_job(job):
    """A picklable job for the spawned workers: reports steps 1..4 a little apart, then returns its name."""
    import time as _time

    from vadd.jobs import report_progress
    for step in range(1, 5):
        report_progress(job, step=step, total=4)
        _time.sleep(0.15)
    return job["desc"]


def test_parallel_jobs_print_a_status_line_with_each_running_jobs_progress():
    from vadd.jobs import run_jobs
    lines, seen = [], []
    run_jobs([{"desc": "alpha"}, {"desc": "beta"}], _reporting_job, 2, lambda job, res: seen.append(res),
             log=lines.append, every=0.2)
    assert sorted(seen) == ["alpha", "beta"]
    assert lines and all(ln.startswith("  ... ") for ln in lines)
    assert any("alpha " in ln and "/4" in ln for ln in lines) and any("beta " in ln for ln in lines), lines


def test_finish_acceptance_prints_each_criterion_and_writes_the_report(tmp_path):
    """The acceptance checks' common end: the exit status is 0 only when every criterion passes, the report
    lands next to the results file, and each line says PASS/FAIL with its value (and s.e. when given)."""
    from vadd.jobs import finish_acceptance
    lines = []
    rows = [{"criterion": "a", "value": 1.0, "pass": True}, {"criterion": "b", "value": 0.25, "stderr": 0.5, "pass": False}]
    rc = finish_acceptance(tmp_path / "results.json", {"criteria": rows, "all_pass": False}, width=4,
                           details=["detail"], log=lines.append)
    assert rc == 1 and lines[:3] == ["PASS  a    1", "FAIL  b    0.25 ± 0.5", "detail"]
    assert json.loads((tmp_path / "acceptance.json").read_text())["criteria"] == rows
    assert finish_acceptance(tmp_path / "results.json", {"criteria": rows[:1], "all_pass": True}, log=lines.append) == 0


def test_perf_acceptance_checks_each_cost_criterion(tmp_path):
    """dev/perf_acceptance.py: sampling <= 1.05x MDM at every T of the default sampler (the worst row
    decides), cached VADD-CS calls <= cached MDM's, training <= 1.5x / 1.25x, the half-width encoder keeps
    >= 90% of the one-step gain, MFU >= 30%; the report is written under its own name."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "perf_acceptance", Path(__file__).resolve().parents[1] / "dev" / "perf_acceptance.py")
    pa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pa)

    def row(T, mode, sampler, ratio, calls):
        return {"T": T, "mode": mode, "sampler": sampler, "time_ratio_to_mdm": ratio, "calls": calls}
    samp = tmp_path / "s.json"
    rows = [row(1, "events", "mdm", 1.0, 1), row(1, "events", "vadd", 1.05, 1), row(1, "events", "vadd-cs", 1.0, 1),
            row(9, "events", "mdm", 1.0, 2), row(9, "events", "vadd", 1.01, 2), row(9, "events", "vadd-cs", 1.0, 2),
            row(9, "cached", "mdm", 1.0, 8), row(9, "cached", "vadd", 3.0, 9), row(9, "cached", "vadd-cs", 1.0, 8)]
    samp.write_text(json.dumps({"backbone": "mlp", "overrides": [], "rows": rows}))
    got = pa.sampling_rows(str(samp))
    assert [r["pass"] for r in got] == [True, True] and got[0]["worst"] == {"T": 1, "sampler": "vadd", "rounds": 1}
    assert got[0]["stderr"] == 0.0   # no quartiles recorded: no spread
    rows[4]["time_ratio_to_mdm"], rows[8]["calls"] = 1.051, 9
    samp.write_text(json.dumps({"backbone": "mlp", "overrides": [], "rows": rows}))
    got = pa.sampling_rows(str(samp))
    assert [r["pass"] for r in got] == [False, False] and got[0]["worst"]["T"] == 9 and got[1]["value"] == 1

    tt = tmp_path / "t.json"
    tt.write_text(json.dumps({"backbones": {"b": {"ratio_vadd_equal_mdm": 1.5, "ratio_vadd_half_mdm": 1.26,
                                                  "mdm": {"mfu": 0.31}, "vadd": {"mfu": 0.29}}}}))
    assert [r["pass"] for r in pa.training_rows(str(tt), "b")] == [True, False]
    assert pa.mfu_rows(str(tt), "b")[0]["value"] == 0.29 and not pa.mfu_rows(str(tt), "b")[0]["pass"]

    def demo(path, vadd_js):
        path.write_text(json.dumps({"datasets": {"toy": {"js": {"mdm": {"1": 0.2}, "vadd": {"1": vadd_js}}}}}))
        return str(path)
    full = demo(tmp_path / "full.json", 0.01)
    kept = pa.kept_rows(full, demo(tmp_path / "half.json", 0.029))
    assert kept[0]["value"] == pytest.approx(0.9) and kept[0]["pass"]
    assert not pa.kept_rows(full, demo(tmp_path / "half.json", 0.03))[0]["pass"]

    from vadd.jobs import finish_acceptance
    assert finish_acceptance(samp, {"criteria": got, "all_pass": False}, log=lambda *_: None, name="perf.json") == 1
    assert json.loads((tmp_path / "perf.json").read_text())["all_pass"] is False
