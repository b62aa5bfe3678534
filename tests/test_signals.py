"""SIGTERM / SIGINT during training: a checkpoint at the step reached, one line, the scheduler's exit status
(143 / 130), and the same command again finishes with the weights of an uninterrupted run, bit for bit."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

VADD_BIN = str(Path(sys.executable).parent / "vadd")
TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=50", "trainer.warmup_steps=5",
        "trainer.ckpt_every=1000", "trainer.print_every=20", "trainer.max_steps=500", "trainer.batch_size=64",
        "trainer.deterministic=true", "data.n_train=4000", "data.n_test=64", "algo=vadd"]
ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def _interrupt(run_dir, sig, at_step=60):
    """Start `vadd train`, send ``sig`` once it printed ``step at_step``; returns (returncode, stderr)."""
    p = subprocess.Popen([VADD_BIN, "train", *TINY, f"run_dir={run_dir}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    for line in p.stdout:
        if line.strip() == f"step {at_step}":
            p.send_signal(sig)
            break
    out, err = p.communicate(timeout=300)
    return p.returncode, err


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_exits_with_the_scheduler_code_and_resumes_bit_for_bit(tmp_path, sig, code):
    rc, err = _interrupt(tmp_path / "run", sig)
    assert rc == code, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name} at step" in lines[0], err[-2000:]
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    assert 60 <= step < 500
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(ckpt["global_step"]) == step
    assert not (tmp_path / "run" / "model").exists()            # never looks finished
    assert not list((tmp_path / "run").rglob("*.tmp"))
    again = subprocess.run([VADD_BIN, "train", *TINY, f"run_dir={tmp_path / 'run'}"], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    whole = subprocess.run([VADD_BIN, "train", *TINY, f"run_dir={tmp_path / 'whole'}"], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = load_file(tmp_path / "run" / "model" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
