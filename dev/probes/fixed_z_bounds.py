"""Issue 31: valid bounds of VADD-CS (one ``z`` per sample) next to MDM's and fresh-``z`` VADD's, on the saved
models of an image benchmark run, every model on the same draws (paired differences with standard errors).

    .venv/bin/python dev/probes/fixed_z_bounds.py RUN/runs/fmnist/mdm RUN/runs/fmnist/vadd --out fixed_z_fmnist.json

Two trained models of one data set (``vadd bench-images`` writes them to ``RUN/runs/<dataset>/{mdm,vadd}``). Continuous bounds:
MDM, VADD fresh ``z`` (K = 10, prior proposal) and VADD-CS (its ELBO over ``z``, K = 1), on the first
``--images`` test images with ``--draws`` masked-count draws each. T-step bounds: MDM, VADD fresh ``z``
(K = 10) and VADD-CS (K = 1 and ``--cs-k``) on the first ``--step-images``, one reveal path each. With
``--path-images N``: the continuous bounds on one reveal path in continuous time (estimator ``path``, ``L``
network calls per draw), MDM and VADD-CS (K = 1 and ``--cs-k``: importance-weighted), paired, on the first N.
``--images 0`` and ``--steps`` with no value skip the other parts.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vadd import bounds
from vadd.api import load
from vadd.io import write_json


def _bpd(a: np.ndarray, L: int) -> dict:
    a = np.asarray(a) / (L * math.log(2))
    return {"bpd": float(a.mean()), "stderr": float(a.std(ddof=1) / math.sqrt(len(a)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mdm")
    ap.add_argument("vadd")
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--step-images", type=int, default=100)
    ap.add_argument("--steps", type=int, nargs="*", default=[5, 10, 20, 50, 100])
    ap.add_argument("--path-images", type=int, default=0)
    ap.add_argument("--cs-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-fresh", action="store_true", help="VADD-CS only (skip the fresh-z sampler's bounds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    mdm, vadd = load(args.mdm).model.eval(), load(args.vadd)
    x = vadd.test_tokens()
    vadd = vadd.model.eval()
    L = vadd.seq_len
    kw = dict(seed=0, batch_size=50, num_t=args.draws)
    cont, fresh, cs = (bounds.BoundSpec("continuous"), bounds.BoundSpec("continuous"),
                       bounds.BoundSpec("continuous", sampler="vadd-cs"))
    xc = x[:args.images]
    out = {"mdm": args.mdm, "vadd": args.vadd, "images": len(xc), "draws": args.draws, "continuous": {}, "steps": {}}
    if args.path_images:
        xp, pkw = x[:args.path_images], dict(kw, num_t=1, estimator="path")
        row = {"mdm": bounds.evaluate(mdm, xp, [1], [cont], **pkw)[cont][1]}
        print("path: mdm", f"{time.time() - t0:.0f}s", flush=True)
        r = bounds.evaluate(vadd, xp, sorted({1, args.cs_k}), [cs], progress=True, **pkw)[cs]
        row.update({f"vadd-cs K={k}": v for k, v in r.items()})
        out["path"] = {"images": len(xp), **{name: _bpd(v, L) for name, v in row.items()}}
        out["path"].update({f"{name} - mdm": _bpd(v - row["mdm"], L) for name, v in row.items() if name != "mdm"})
        print("path", {k: round(v["bpd"], 5) for k, v in out["path"].items() if k != "images"},
              f"{time.time() - t0:.0f}s", flush=True)
    per = {}
    if len(xc):
        per = {"mdm": bounds.evaluate(mdm, xc, [1], [cont], **kw)[cont][1],
               "vadd-cs": bounds.evaluate(vadd, xc, [1], [cs], **kw)[cs][1]}
        if not args.no_fresh:
            per["vadd"] = bounds.evaluate(vadd, xc, [10], [fresh], **kw)[fresh][10]
    for name, v in per.items():
        out["continuous"][name] = _bpd(v, L)
        if name != "mdm":
            out["continuous"][f"{name} - mdm"] = _bpd(v - per["mdm"], L)
    print("continuous", {k: round(v["bpd"], 4) for k, v in out["continuous"].items()}, f"{time.time() - t0:.0f}s",
          flush=True)
    xs = x[:args.step_images]
    kw["num_t"] = 1
    for T in args.steps:
        s, sc = bounds.BoundSpec("steps", T), bounds.BoundSpec("steps", T, "vadd-cs")
        row = {"mdm": bounds.evaluate(mdm, xs, [1], [s], **kw)[s][1]}
        if not args.no_fresh:
            row["vadd K=10"] = bounds.evaluate(vadd, xs, [10], [s], **kw)[s][10]
        r = bounds.evaluate(vadd, xs, sorted({1, args.cs_k}), [sc], **kw)[sc]
        row.update({f"vadd-cs K={k}": v for k, v in r.items()})
        out["steps"][str(T)] = {name: _bpd(v, L) for name, v in row.items()}
        out["steps"][str(T)].update({f"{name} - mdm": _bpd(v - row["mdm"], L) for name, v in row.items()
                                     if name != "mdm"})
        print(f"T={T}", {k: round(v["bpd"], 4) for k, v in out["steps"][str(T)].items()},
              f"{time.time() - t0:.0f}s", flush=True)
    out["wall_s"] = time.time() - t0
    write_json(args.out, out)


if __name__ == "__main__":
    main()
