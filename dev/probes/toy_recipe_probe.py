"""Try a VADD training recipe on one 2D toy: train VADD alone with the demo's recipe plus Hydra
overrides, then sample N = 100,000 points at T = 1 and T = 5 and score them as the demo does.

    .venv/bin/python dev/probes/toy_recipe_probe.py checkerboard base
    .venv/bin/python dev/probes/toy_recipe_probe.py checkerboard ld1_w4500 algo.latent_dim=1 algo.kl_warmup=4500
    .venv/bin/python dev/probes/toy_recipe_probe.py circles seed1 seed=1 --out runs/probes.jsonl
    .venv/bin/python dev/probes/toy_recipe_probe.py circles mdm_seed1 seed=1 --algo mdm   # the baseline's row

One JSON line per probe is appended to ``--out`` (default ``runs/toy_recipe_probes.jsonl``): the
overrides, JS at T = 1 and 5, the noise floor, their ratio, the training metrics (KL, active units)
and the wall time. Same seed and overrides give the same numbers as the demo's VADD row (the demo
trains each model in its own single-threaded worker; ``--threads`` defaults to 1 for that reason).
This is how the README's recipe comparisons ("Where the remaining one-step error sits") were measured.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vadd.config import compose
from vadd.data import toy2d_data
from vadd.data.toy2d import Grid2D, PointSource
from vadd.demo import demo_target, sampled_js
from vadd.io import append_jsonl
from vadd.train import train


def probe(dataset: str, tag: str, overrides=(), out: str = "runs/toy_recipe_probes.jsonl",
          num_samples: int = 100_000, steps=(1, 5), algo: str = "vadd") -> dict:
    cfg = compose(["experiment=demo", f"algo={algo}", *overrides])
    seed = int(cfg.get("seed", 0))
    cfg["trainer"]["progress"] = False
    dcfg = dict(cfg["data"], name=dataset)
    cfg["data"] = dcfg
    grid = Grid2D.from_info(dcfg)
    target, floor = demo_target(PointSource(dataset), grid, num_samples, seed, int(cfg["demo"]["reference_factor"]))
    data = toy2d_data(seed=seed, **{k: v for k, v in dcfg.items() if k != "kind"})
    t0 = time.time()
    model, _, record = train(cfg, data=data, run_dir=Path(out).parent / "probe_runs" / f"{dataset}_{tag}")
    model.eval()
    row = {"dataset": dataset, "tag": tag, "algo": algo, "overrides": list(overrides), "seed": seed,
           "noise_floor": floor, "train_wall_s": time.time() - t0, "metrics": record["train_metrics"]}
    for T in steps:
        row[f"js_T{T}"] = sampled_js(model, grid, target, num_samples, T, algo, seed)[0]
    row["ratio_T1_to_floor"] = row["js_T1"] / floor if "js_T1" in row else None
    append_jsonl(out, row)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", help="checkerboard | swissroll | circles")
    ap.add_argument("tag", help="a name for this probe (its run folder and JSON line)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=demo algo=ALGO")
    ap.add_argument("--out", default="runs/toy_recipe_probes.jsonl")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--algo", choices=("vadd", "mdm"), default="vadd", help="the model to train (mdm: the baseline)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = probe(args.dataset, args.tag, args.overrides, args.out, algo=args.algo)
    print(f"{args.dataset} {args.tag}: JS T=1 {row['js_T1']:.4f} ({row['ratio_T1_to_floor']:.2f}x the floor "
          f"{row['noise_floor']:.4f}), T=5 {row['js_T5']:.4f}; train {row['train_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
