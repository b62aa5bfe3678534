"""Paired test bounds of an MDM and a VADD text run trained on the same data (e.g. two
``text_recipe_probe.py`` runs): both scored on the MDM run's held-out rows with the same masked-count
draws (``vadd.bench_text.bound_nats``, as ``vadd bench-text`` does), VADD at each K, and VADD minus MDM
row by row in nats per token with its standard error.

    .venv/bin/python dev/probes/text_pair_bounds.py runs/text_probe_runs/L128_mdm runs/text_probe_runs/L128_vadd \\
        --k 1 100 --out docs/pair.json
"""
from __future__ import annotations

import argparse
import time

import torch

import vadd
from vadd.bench_text import add_bound_arguments, bound_nats, paired_difference, perplexity_summary
from vadd.io import write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mdm", help="an MDM text run folder (or its model/ folder)")
    ap.add_argument("vadd", help="a VADD text run folder trained on the same data")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 100], help="VADD's importance samples")
    add_bound_arguments(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    mdm, va = vadd.load(args.mdm), vadd.load(args.vadd)
    if mdm.model.latent_dim or not va.model.latent_dim:
        raise SystemExit("give an MDM run first and a VADD run second")
    test = torch.as_tensor(mdm.test_tokens()[:args.rows])
    L = test.shape[1]
    t0 = time.time()
    m = bound_nats(mdm.model, test, [1], args.seed, draws=args.draws)[1]
    res = {"mdm_run": args.mdm, "vadd_run": args.vadd, "rows": len(test), "draws": args.draws, "estimator": "count",
           "mdm": perplexity_summary(m, L), "vadd": {}}
    for K in args.k:
        v = bound_nats(va.model, test, [K], args.seed, draws=args.draws)[K]
        d = paired_difference(v, m, L)
        res["vadd"][str(K)] = dict(perplexity_summary(v, L), minus_mdm=d["mean"], minus_mdm_stderr=d["stderr"])
        print(f"K={K}: VADD {res['vadd'][str(K)]['ppl']:.2f} against MDM {res['mdm']['ppl']:.2f}; VADD - MDM "
              f"{d['mean']:+.4f} +- {d['stderr']:.4f} nats/token ({time.time() - t0:.0f} s)", flush=True)
    if args.out:
        write_json(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
