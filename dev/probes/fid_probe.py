"""FID of a saved image model's samplers against a benchmark run's reference features, as ``vadd bench-images``
computes it (the same sample count, batch, Inception network and reference), for models trained outside the
benchmark or for another sampling seed (the sampling part of FID's seed noise). Where the reference file is
missing, ``--experiment`` computes it as the benchmark does (the same training images for the same seed).

    .venv/bin/python dev/probes/fid_probe.py MODEL_DIR --reference RUN/features/fmnist/reference.npy \
        [--experiment images_fmnist] --samplers vadd-cs --steps 5 10 20 50 100 --seed 0 --out fid.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vadd.api import load
from vadd.bench_images import make_features, reference_features
from vadd.data import build_data
from vadd.config import compose
from vadd.data.images import ImageGrid
from vadd.io import write_json
from vadd.metrics.fid import feature_stats, frechet_distance
from vadd.sampling import sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--experiment", default=None, help="compute a missing reference as bench-images does")
    ap.add_argument("--reference-seed", type=int, default=0, help="the benchmark's seed (its reference images)")
    ap.add_argument("--samplers", nargs="+", default=None)
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = load(args.model)
    model = pipe.model.eval()
    grid = ImageGrid.from_info(pipe.config["data"])  # the data info saved with the model
    ref_path = Path(args.reference)
    if not ref_path.exists():
        if args.experiment is None:
            raise SystemExit(f"{ref_path} is missing: give --experiment to compute it")
        cfg = compose([f"experiment={args.experiment}", f"seed={args.reference_seed}"])
        td = build_data(cfg["data"], seed=args.reference_seed)
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(ref_path, reference_features(td, cfg["bench"]["fid_reference"], args.reference_seed))
    ref = feature_stats(np.load(args.reference).astype(np.float64))
    feats = make_features("inception")
    out = {"model": args.model, "reference": args.reference, "seed": args.seed, "samples": args.samples, "fid": {}}
    for sampler in args.samplers or model.samplers:
        for T in args.steps:
            x, _ = sample(model, args.samples, T, sampler, seed=args.seed, batch_size=256)
            f = feats(grid.decode(x.numpy())).astype(np.float64)
            out["fid"].setdefault(sampler, {})[str(T)] = float(frechet_distance(feature_stats(f), ref))
            print(sampler, T, round(out["fid"][sampler][str(T)], 1), f"{time.time() - t0:.0f}s", flush=True)
    out["wall_s"] = time.time() - t0
    write_json(args.out, out)


if __name__ == "__main__":
    main()
