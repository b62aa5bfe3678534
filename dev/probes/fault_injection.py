"""Kill a training run with SIGKILL at random moments, resume it each time, and compare the end
result with an uninterrupted run of the same config (deterministic mode, CPU).

    .venv/bin/python dev/probes/fault_injection.py --out runs/fault_injection

Writes OUT/fault_injection.json: kills survived, steps lost per kill (work redone since the last
checkpoint), bytes of corrupt files left, and whether the final parameters equal the reference.
One kill is aimed at a checkpoint write (the moment its temporary file appears).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from vadd.io import write_json

VADD = str(Path(sys.executable).parent / "vadd")
CONFIG = ["algo=vadd", "data.n_train=20000", "data.n_test=200", "trainer.batch_size=128", "trainer.max_steps=2000",
          "trainer.ckpt_every=25", "trainer.progress=false", "trainer.print_every=1", "trainer.deterministic=true",
          "trainer.log_every=25", "trainer.num_threads=1", "model.denoiser.hidden=64", "model.encoder.hidden=64"]


def run(run_dir: Path, kill_at_step: int | None = None, kill_on_save_after: int | None = None):
    """Run (or resume) training; SIGKILL it once it has printed ``kill_at_step``, or at the first
    checkpoint write after step ``kill_on_save_after``. Returns (how it was killed, last step seen, rc)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([VADD, "train", *CONFIG, f"run_dir={run_dir}"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    seen = {"step": None}

    def reader():
        for line in proc.stdout:
            m = re.match(r"^step (\d+)$", line.strip())
            if m:
                seen["step"] = int(m.group(1))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    killed = False
    ckdir = run_dir / "checkpoints"
    while proc.poll() is None:
        step = seen["step"]
        if kill_on_save_after is not None and step is not None and step >= kill_on_save_after and ckdir.exists() \
                and any(p.name.endswith(".tmp") for p in ckdir.iterdir()):
            proc.send_signal(signal.SIGKILL)
            killed = "during a checkpoint write"
        elif kill_at_step is not None and step is not None and step >= kill_at_step:
            proc.send_signal(signal.SIGKILL)
            killed = f"at step {step}"
        if killed:
            break
        time.sleep(0.0005)
    proc.wait()
    th.join(timeout=5)
    return killed, seen["step"], proc.returncode


def last_step(run_dir: Path):
    p = run_dir / "checkpoints" / "last.ckpt"
    if not p.exists():
        return 0, 0
    try:
        return int(torch.load(p, map_location="cpu", weights_only=True)["global_step"]), 0
    except Exception:
        return None, p.stat().st_size


def weights(run_dir: Path):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/fault_injection")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    rng = random.Random(args.seed)
    t0 = time.time()
    _, _, rc = run(out / "reference")
    assert rc == 0, "the reference run failed"
    faulty = out / "faulty"
    events, corrupt = [], 0
    targets = sorted(rng.sample(range(60, 1900), args.kills))
    for i, target in enumerate(targets):
        before, _ = last_step(faulty)
        on_save = i == args.kills // 2
        killed, step_at_kill, rc = run(faulty, kill_at_step=None if on_save else target,
                                       kill_on_save_after=target if on_save else None)
        ckpt_step, bad_bytes = last_step(faulty)
        corrupt += bad_bytes
        events.append({"kill": i + 1, "when": killed or "not killed (run finished first)", "resumed_from": before,
                       "step_at_kill": step_at_kill, "last_checkpoint_after_kill": ckpt_step,
                       "steps_lost": (step_at_kill - ckpt_step) if (killed and step_at_kill is not None
                                                                     and ckpt_step is not None) else 0,
                       "checkpoint_loadable": bad_bytes == 0})
        print(events[-1], flush=True)
    _, _, rc = run(faulty)  # finish
    leftovers = [p for p in (faulty / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    corrupt += sum(p.stat().st_size for p in leftovers)
    ref, got = weights(out / "reference"), weights(faulty)
    equal = set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)
    result = {"kills": args.kills, "kills_survived": sum(bool(e["checkpoint_loadable"]) for e in events),
              "steps_lost": [e["steps_lost"] for e in events], "max_steps_lost": max(e["steps_lost"] for e in events),
              "checkpoint_every": 25, "corrupt_bytes_left": corrupt, "final_parameters_equal_reference": equal,
              "final_exit_code": rc, "events": events, "config": CONFIG, "wall_s": time.time() - t0}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "fault_injection.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("events", "config")}, indent=1))
    return 0 if equal and corrupt == 0 and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
