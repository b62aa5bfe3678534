"""Recompute the likelihood bounds of a finished `vadd bench-images` run from its saved models, with the
bench's own settings (``bench.bpd_k``, ``bpd_k_max`` on the first ``bpd_k_max_images``, the T-step bounds),
and write them into its results.json (``bpd``, ``bpd_steps``, ``bounds_git_commit``). For a run whose bounds
were computed by an earlier evaluator; training and samples are untouched.

    .venv/bin/python dev/probes/images_rebound.py runs/images --part continuous   # and, in parallel:
    .venv/bin/python dev/probes/images_rebound.py runs/images --part steps
    .venv/bin/python dev/probes/images_rebound.py runs/images --merge
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vadd import io
from vadd.api import load
from vadd.bench_images import _summ, bound_bpd
from vadd.data import build_data
from vadd.manifest import git_commit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--part", choices=("continuous", "steps"))
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    out = Path(args.out)
    res = json.loads((out / "results.json").read_text())
    if args.merge:
        for label, e in res["experiments"].items():
            for algo, m in e["models"].items():
                for part in ("continuous", "steps"):
                    f = out / f"rebound_{label}_{algo}_{part}.json"
                    if f.exists():
                        m.update(json.loads(f.read_text()))
        res["bounds_git_commit"] = git_commit()
        io.write_json(out / "results.json", res)
        return 0
    torch.set_num_threads(args.threads)
    for label, e in res["experiments"].items():
        bench, seed = e["bench"], int(res["seed"])
        test = build_data(e["config"]["data"], seed=seed).test[:int(bench["bpd_images"])]
        for algo in ("mdm", "vadd"):
            model = load(out / "runs" / label / algo / "model").model.eval()
            t0 = time.time()
            summ = lambda d: {str(k): _summ(v) for k, v in d.items()}  # noqa: E731
            if args.part == "continuous":
                got = {"bpd": {"all": summ(bound_bpd(model, test, bench["bpd_k"], seed))}}
                m = int(bench.get("bpd_k_max_images", 0))
                if m:
                    got["bpd"]["subset"] = summ(bound_bpd(model, test[:m], [bench["bpd_k_max"]], seed))
            else:
                m = int(bench.get("bound_steps_images", 0))
                got = {"bpd_steps": {str(T): summ(bound_bpd(model, test[:m], bench.get("bound_steps_k", [1]), seed, int(T)))
                                     for T in (bench.get("bound_steps") or []) if m}}
            got[f"bpd_{args.part}_wall_s"] = time.time() - t0
            io.write_json(out / f"rebound_{label}_{algo}_{args.part}.json", got)
            print(label, algo, args.part, f"{time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
