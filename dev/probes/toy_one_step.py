"""Where a demo's one-step error comes from: the exact T = 1 distribution of each trained toy model.

    .venv/bin/vadd demo --out runs/demo
    .venv/bin/python dev/probes/toy_one_step.py runs/demo            # writes runs/demo/one_step.json

For every dataset and method of a finished demo, the one-step cell probabilities are computed exactly
over the tokens and by Monte Carlo over ``z`` only (``vadd.metrics.onestep``): MDM's product of
marginals, VADD's mixture of products. Reported per model:

- ``js_exact``: JS of that distribution against the target, without the histogram noise of N points;
- ``mass_off_target``: the probability it puts on cells the target never visits (the checkerboard's
  white squares);
- ``js_of_samples_from_it``: the JS of N points drawn from it (what a perfect sampler of this model
  would score in the demo), next to ``js_sampled``, the demo's own T = 1 number.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vadd import api
from vadd.data.toy2d import Grid2D, PointSource
from vadd.demo import demo_target
from vadd.metrics.onestep import one_step_cell_probs, one_step_report


def run(demo_dir: Path, num_z: int = 200_000) -> dict:
    results = json.loads((demo_dir / "results.json").read_text())
    grid = Grid2D.from_info(results["grid"])
    n, seed = int(results["num_samples"]), int(results["seed"])
    factor = int(results["config"]["demo"]["reference_factor"])
    out = {"demo": str(demo_dir), "num_z": num_z, "num_samples": n, "datasets": {}}
    for label, entry in results["datasets"].items():
        target, _ = demo_target(PointSource(label), grid, n, seed, factor)  # as the demo did
        rows = {}
        for algo in ("mdm", "vadd"):
            model_dir = demo_dir / "runs" / label / algo / "model"
            if not model_dir.exists():
                continue
            model = api.load(model_dir).model.eval()
            probs = one_step_cell_probs(model, grid, num_z=num_z, seed=seed)
            rep = one_step_report(probs, target, num_samples=n, seed=seed)
            rep["js_sampled"] = entry["js"][algo]["1"]
            rows[algo] = rep
        out["datasets"][label] = {"noise_floor": entry["noise_floor"], "models": rows}
    return out


def table(out: dict) -> str:
    lines = ["| dataset | model | JS exact | mass off target | JS of N points from it | demo's sampled JS | floor |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, e in out["datasets"].items():
        for algo, r in e["models"].items():
            lines.append(f"| {label} | {algo.upper()} | {r['js_exact']:.4f} | {100 * r['mass_off_target']:.2f}% | "
                         f"{r['js_of_samples_from_it']:.4f} | {r['js_sampled']:.4f} | {e['noise_floor']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo_dir", nargs="?", default="runs/demo")
    ap.add_argument("--num-z", type=int, default=200_000, help="prior draws of z averaged (VADD)")
    args = ap.parse_args(argv)
    demo_dir = Path(args.demo_dir)
    if not (demo_dir / "results.json").exists():
        print(f"{demo_dir / 'results.json'} not found: run `vadd demo --out {demo_dir}` first", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    out = run(demo_dir, args.num_z)
    (demo_dir / "one_step.json").write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {demo_dir / 'one_step.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
