"""SIGTERM a training run at a random step, rerun the same command, and compare the final weights with an
uninterrupted run's, bit for bit; N trials (the scheduler's preemption, as SLURM and Kubernetes send it).

    .venv/bin/python dev/probes/sigterm_trials.py --trials 5 --out runs/sigterm_trials

Writes OUT/sigterm_trials.json: per trial the step signalled, the first process's exit status and line,
the resumed run's status, and whether its weights equal the reference run's.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from vadd.io import write_json

VADD = str(Path(sys.executable).parent / "vadd")
CONFIG = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
          "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
          "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=50", "trainer.warmup_steps=5",
          "trainer.ckpt_every=1000", "trainer.print_every=1", "trainer.max_steps=400", "trainer.batch_size=64",
          "trainer.deterministic=true", "data.n_train=4000", "data.n_test=64", "algo=vadd"]
ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def train(run_dir: Path, term_at: int | None = None):
    p = subprocess.Popen([VADD, "train", *CONFIG, f"run_dir={run_dir}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    if term_at is not None:
        for line in p.stdout:
            if line.strip() == f"step {term_at}":
                p.send_signal(signal.SIGTERM)
                break
    _, err = p.communicate(timeout=900)
    return p.returncode, [ln for ln in err.splitlines() if ln.strip()]


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model" / "model.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/sigterm_trials")
    args = ap.parse_args()
    out = Path(args.out)
    rng = random.Random(args.seed)
    rc, _ = train(out / "reference")
    assert rc == 0
    ref = weights(out / "reference")
    trials = []
    for i in range(args.trials):
        run = out / f"trial{i}"
        at = rng.randrange(10, 390)
        rc1, lines = train(run, term_at=at)
        rc2, _ = train(run)
        w = weights(run) if rc2 == 0 else {}
        equal = w.keys() == ref.keys() and all(torch.equal(w[k], ref[k]) for k in ref)
        trials.append({"signalled_at_step": at, "first_exit": rc1, "first_stderr": lines, "resume_exit": rc2,
                       "bit_identical": bool(equal)})
        print(trials[-1], flush=True)
    ok = sum(t["first_exit"] == 143 and len(t["first_stderr"]) == 1 and t["bit_identical"] for t in trials)
    write_json(out / "sigterm_trials.json", {"config": CONFIG, "trials": trials, "passed": ok, "of": len(trials)})
    print(f"{ok} of {len(trials)} trials: exit 143 with one line, resumed bit for bit")


if __name__ == "__main__":
    main()
