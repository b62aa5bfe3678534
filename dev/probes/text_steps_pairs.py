"""Paired T-step bounds for a `vadd bench-text` folder written before the benchmark saved them per row:
recomputes MDM's and VADD's bound of the T-step sampler on the benchmark's rows, seed and settings, checks
each mean equals the one in results.json (the evaluation draws from the seed alone, so a rerun is
identical), saves the per-row arrays as the benchmark now does (`bounds/{algo}_test-T{T}_K{k}.npy`) and
rewrites results.json's paired differences and the tables.

    .venv/bin/python dev/probes/text_steps_pairs.py runs/text128
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from vadd import io
from vadd.api import load
from vadd.bench_text import _data, format_tables, paired_differences, steps_bounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.folder)
    results = io.read_json(out / "results.json")
    bench, seed = results["bench"], int(results["seed"])
    td = _data(results["config"])
    L = td.seq_len
    for algo in ("mdm", "vadd"):
        model = load(out / "runs" / algo).model
        for T, got in steps_bounds(model, td.test, bench, seed, out / "bounds", algo).items():
            for k, nats in got.items():
                want = results["models"][algo]["ppl_steps"][T][str(k)]["nats_per_token"]
                have = float(np.mean(nats / L))
                if not math.isclose(have, want, rel_tol=1e-6):
                    raise SystemExit(f"{algo} T={T} K={k}: {have:.6f} nats/token, results.json says {want:.6f}")
                print(f"{algo} T={T} K={k}: {have:.4f} nats/token (reproduces results.json)")
    results["paired"] = paired_differences(out / "bounds", L)
    io.write_json(out / "results.json", results)
    io.atomic_write_bytes(out / "tables.md", format_tables(results).encode())
    for split, per_k in results["paired"].items():
        print(split, {k: f"{v['mean']:+.4f} ± {v['stderr']:.4f}" for k, v in per_k.items()})


if __name__ == "__main__":
    main()
