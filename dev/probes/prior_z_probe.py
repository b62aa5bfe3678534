"""Issue 31 candidate: train VADD with a share of prior draws of z (algo.prior_z) and compare with plain VADD on
binarized MNIST (experiment=images_mnist, 2,000 steps, seed 0), and with MDM trained alike: the continuous and
T-step bounds on the same draws, and the latent gap (prior-averaged against posterior z) per masked fraction.

    for p in 0.0 0.25; do vadd train experiment=images_mnist algo=vadd algo.prior_z=$p trainer.num_threads=1 \
        run_dir=runs/p31/mnist_prior$p & done; wait
    .venv/bin/python dev/probes/prior_z_probe.py runs/p31/mnist_prior0.0 --out runs/p31/prior0.0.json
    .venv/bin/python dev/probes/prior_z_probe.py runs/p31/mnist_prior0.25 --out runs/p31/prior0.25.json
    vadd train experiment=images_mnist algo=mdm trainer.num_threads=1 run_dir=runs/p31/mnist_mdm
    .venv/bin/python dev/probes/prior_z_probe.py runs/p31/mnist_mdm --out runs/p31/mdm.json
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vadd import bounds
from vadd.api import load
from vadd.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--step-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = load(args.run)
    x = pipe.test_tokens()
    L = pipe.model.seq_len
    cont = bounds.evaluate(pipe.model, x[:args.images], [1, 10], [bounds.BoundSpec("continuous")], seed=0)
    steps = bounds.evaluate(pipe.model, x[:args.step_images], [10], bounds.specs([5, 20], continuous=False), seed=0)
    bpd = lambda a: float(np.mean(a) / (L * np.log(2)))  # noqa: E731
    out = {"run": args.run, "prior_z": pipe.config["model"].get("prior_z", 0.0),
           "continuous_bpd": {k: bpd(v) for k, v in next(iter(cont.values())).items()},
           "continuous_nats": {k: v.tolist() for k, v in next(iter(cont.values())).items()},
           "steps_bpd": {s.steps: {k: bpd(v) for k, v in r.items()} for s, r in steps.items()},
           "steps_nats": {s.steps: {k: v.tolist() for k, v in r.items()} for s, r in steps.items()},
           "latent_gap": (bounds.latent_gap(pipe.model, x[:200], fractions=(0.5, 0.8, 0.9, 1.0), K=10, seed=0)
                          if pipe.model.latent_dim else [])}
    out["wall_s"] = time.time() - t0
    write_json(args.out, out)
    print(out["prior_z"], out["continuous_bpd"], out["steps_bpd"],
          [(g["masked_fraction"], round(g["gap"], 4)) for g in out["latent_gap"]], f"{out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
