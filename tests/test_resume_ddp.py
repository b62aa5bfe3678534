"""Nothing is lost: an interrupted run resumes to the same parameters, and 2 CPU processes (gloo DDP)
train exactly like one process with the global batch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vadd.config import compose
from vadd.data.batches import StepBatches
from vadd.train import train

VADD_BIN = str(Path(sys.executable).parent / "vadd")
TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=1", "trainer.warmup_steps=2",
        "data.n_train=4000", "data.n_test=100", "trainer.deterministic=true", "algo=vadd", "algo.kl_warmup=0.5"]


def _weights(run_dir):
    state = torch.load(Path(run_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return state["global_step"], {k: v for k, v in state["state_dict"].items()}


def test_step_batches_are_a_function_of_the_step_and_split_across_ranks():
    tokens = torch.arange(100).view(50, 2)
    ds = StepBatches(tokens, batch_size=4, seed=3)
    again = StepBatches(tokens, batch_size=4, seed=3, start_batch=7)
    assert torch.equal(ds.batch(7), next(iter(again)))
    whole = StepBatches(tokens, batch_size=8, seed=3).batch(5)
    halves = torch.cat([ds.batch(5, rank=0, world=2), ds.batch(5, rank=1, world=2)])
    assert torch.equal(whole, halves)
    seen = torch.cat([ds.batch(k) for k in range(12)])  # one epoch: no row twice
    assert len(torch.unique(seen[:, 0])) == 48


class Crash(Exception):
    pass


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
    import lightning.pytorch as pl

    class CrashAt(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 7:
                raise Crash()

    # 13 steps, a checkpoint every 3: the finished run's last.ckpt must hold step 13, not 12
    args = [*TINY, "trainer.max_steps=13", "trainer.ckpt_every=3", "trainer.batch_size=64"]
    train(compose([*args, f"run_dir={tmp_path / 'full'}"]))
    with pytest.raises(Crash):
        train(compose([*args, f"run_dir={tmp_path / 'cut'}"]), callbacks=[CrashAt()])
    step, _ = _weights(tmp_path / "cut")
    assert step == 6  # the last checkpoint before the crash; at most 1 step of work lost
    train(compose([*args, f"run_dir={tmp_path / 'cut'}"]))  # auto-resumes last.ckpt
    s_full, w_full = _weights(tmp_path / "full")
    s_cut, w_cut = _weights(tmp_path / "cut")
    assert s_full == s_cut == 13
    for k in w_full:
        assert torch.equal(w_full[k], w_cut[k]), k  # bit for bit, EMA included


def test_a_run_dir_holding_another_models_checkpoint_is_refused_with_a_clear_error(tmp_path):
    args = [*TINY, "trainer.max_steps=2", "trainer.batch_size=16", f"run_dir={tmp_path}"]
    train(compose(args))
    before = _weights(tmp_path)
    with pytest.raises(ValueError, match="holds another run.*model.denoiser.hidden"):
        train(compose([*args, "model.denoiser.hidden=48"]))
    after = _weights(tmp_path)  # the old checkpoint is untouched
    assert before[0] == after[0] == 2 and all(torch.equal(before[1][k], after[1][k]) for k in before[1])


@pytest.mark.parametrize("algo", ["mdm", "vadd"])
def test_two_process_ddp_equals_one_process_with_the_global_batch(tmp_path, algo):
    common = [*TINY, f"algo={algo}", "trainer.max_steps=3", "trainer.ckpt_every=0", "trainer.grad_clip=0"]
    if algo == "mdm":
        common = [c for c in common if not c.startswith("algo.")]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    ddp = subprocess.run([VADD_BIN, "train", *common, "trainer.strategy=ddp", "trainer.devices=2",
                          "trainer.batch_size=32", "trainer.num_threads=1", f"run_dir={tmp_path / 'ddp'}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([VADD_BIN, "train", *common, "trainer.batch_size=64", "trainer.num_threads=1",
                          f"run_dir={tmp_path / 'one'}"], capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    s2, w2 = _weights(tmp_path / "ddp")
    s1, w1 = _weights(tmp_path / "one")
    assert s1 == s2 == 3
    moved = 0
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6), k
        moved += int(not torch.equal(w1[k], torch.zeros_like(w1[k])))
    assert moved > 0


DIT = ["model=dit", "model.denoiser.size=null", "model.denoiser.depth=2", "model.denoiser.width=32",
       "model.denoiser.heads=2", "model.denoiser.cond_dim=16", "model.encoder.size=null", "model.encoder.depth=1",
       "model.encoder.width=32", "model.encoder.heads=2", "trainer.progress=false", "trainer.log_every=1",
       "trainer.warmup_steps=2", "data.n_train=4000", "data.n_test=100", "trainer.deterministic=true", "algo=vadd",
       "algo.kl_warmup=0.5", "trainer.max_steps=6", "trainer.ckpt_every=2", "trainer.val_every=1",
       "trainer.diag_every=1", "trainer.num_threads=1", "trainer.grad_clip=0.01"]

CRASHING_RUN = """
import sys
import lightning.pytorch as pl
from vadd.config import compose
from vadd.train import train

class CrashAt(pl.Callback):  # every rank stops before step 5 (no rank is left waiting in a collective)
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 5:
            raise SystemExit(3)

train(compose(sys.argv[1:]), callbacks=[CrashAt()])
"""


def _val_curve(run_dir):
    from vadd.train import metric_curve
    return metric_curve(run_dir, "val/nll")


def test_two_process_fsdp_trains_like_one_process_and_resumes(tmp_path):
    """trainer.strategy=fsdp (FSDP2: the DiT's blocks, the networks and their EMA copy sharded over 2 gloo
    processes) takes the same steps as one process with the global batch, gradient clipping (binding) and the EMA's
    validation curve included, and a run killed on every rank resumes from its checkpoint to the same weights."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    fsdp = ["trainer.strategy=fsdp", "trainer.devices=2", "trainer.batch_size=32"]

    def run(*args, script=None):
        cmd = [sys.executable, str(script), *DIT, *args] if script else [VADD_BIN, "train", *DIT, *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)

    full = run(*fsdp, f"run_dir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-3000:]
    one = run("trainer.batch_size=64", f"run_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    s2, w2 = _weights(tmp_path / "full")
    s1, w1 = _weights(tmp_path / "one")
    assert s1 == s2 == 6 and w1.keys() == w2.keys()
    for k in w1:  # a full (gathered) checkpoint, the EMA copy included; sums in another order
        err = (w1[k].double() - w2[k].double()).norm() / max(float(w1[k].double().norm()), 1e-12)
        assert float(err) < 1e-4, (k, float(err))
    assert not torch.equal(w1["ema.model.denoiser.blocks.0.mlp.0.weight"], w1["model.denoiser.blocks.0.mlp.0.weight"])
    c1, c2 = _val_curve(tmp_path / "one"), _val_curve(tmp_path / "full")
    assert [s for s, _ in c1] == [s for s, _ in c2] == [1, 2, 3, 4, 5, 6]
    assert c1[-1][1] != c1[0][1]  # the EMA moves, and the sharded copy's evaluation sees it
    for (_, a), (_, b) in zip(c1, c2):
        assert abs(a - b) < 1e-4 * abs(a)
    script = tmp_path / "crashing_run.py"
    script.write_text(CRASHING_RUN)
    cut = run(*fsdp, f"run_dir={tmp_path / 'cut'}", script=script)
    assert cut.returncode == 3, cut.stderr[-3000:]
    assert _weights(tmp_path / "cut")[0] == 4
    shutil.copytree(tmp_path / "cut", tmp_path / "cut_one")
    resumed = run(*fsdp, f"run_dir={tmp_path / 'cut'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    s3, w3 = _weights(tmp_path / "cut")
    assert s3 == 6
    for k in w2:
        assert torch.equal(w2[k], w3[k]), k
    # the sharded run's checkpoint is a full one: a single process with the global batch resumes it and
    # takes the same steps as the single-process run from the start
    alone = run("trainer.batch_size=64", f"run_dir={tmp_path / 'cut_one'}")
    assert alone.returncode == 0, alone.stderr[-3000:]
    s4, w4 = _weights(tmp_path / "cut_one")
    assert s4 == 6
    for k in w1:
        err = (w1[k].double() - w4[k].double()).norm() / max(float(w1[k].double().norm()), 1e-12)
        assert float(err) < 1e-4, (k, float(err))
