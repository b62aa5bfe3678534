"""How much of a VADD text model's bound comes from what its latent carries: the benchmark's test bound
(K = 1, the same (t, xt) draws as `vadd bench-text`: masked-count estimator, --draws per row) with the
recognition model's posterior, and again with the posterior replaced by the prior N(0, I), i.e.
E_{z ~ p(z)} ELBO(x | z). Both are valid upper bounds on the model's -log p(x) (the second by Jensen, with
zero KL); their difference, paired row by row, is what z's information buys.

    .venv/bin/python dev/probes/text_prior_z.py runs/text/runs/vadd [--rows 256] [--draws 4] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import math
import sys
import types

import torch

import vadd
from vadd.bench_text import add_bound_arguments, bound_nats, perplexity_summary
from vadd.io import write_json
from vadd.latent import DiagGaussian

SUPERSEDED = ("superseded: the valid continuous bound (vadd.bounds) draws z from the prior by default, so patching "
              "the posterior changes nothing (this probe reported the withdrawn joint integral); use "
              "`vadd eval RUN -K 10 --latent-gap` for what z's information buys at each masking level")


def main(argv=None) -> int:
    if "--force" not in (argv if argv is not None else sys.argv):
        raise SystemExit(SUPERSEDED)
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="a VADD text run folder (or its model/ folder)")
    add_bound_arguments(ap)
    ap.add_argument("--force", action="store_true", help="run anyway (it measures nothing under the valid bounds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = vadd.load(args.run)
    model = pipe.model.eval()
    if not model.latent_dim:
        raise SystemExit(f"{args.run} is not a VADD model")
    test = torch.as_tensor(pipe.test_tokens()[:args.rows])
    L = test.shape[1]
    with_post = bound_nats(model, test, [1], args.seed, draws=args.draws)[1]
    res = {"run": args.run, "rows": len(test), "draws": args.draws, "estimator": "count",
           "posterior": perplexity_summary(with_post, L)}
    posterior = model.posterior

    def prior(self, x0, masked):      # same shapes and device as the posterior, mean 0 and variance 1
        q = posterior(x0, masked)
        return DiagGaussian(torch.zeros_like(q.mean), torch.zeros_like(q.logvar))
    model.posterior = types.MethodType(prior, model)
    with_prior = bound_nats(model, test, [1], args.seed, draws=args.draws)[1]   # the same draws, row by row
    res["prior"] = perplexity_summary(with_prior, L)
    d = (with_prior - with_post) / L
    res["z_buys_nats_per_token"] = float(d.mean())
    res["z_buys_stderr"] = float(d.std(ddof=1) / math.sqrt(len(d)))
    print(f"posterior z: ppl {res['posterior']['ppl']:.2f}; prior z: ppl {res['prior']['ppl']:.2f}; "
          f"z's information buys {res['z_buys_nats_per_token']:.4f} +- {res['z_buys_stderr']:.4f} nats/token")
    if args.out:
        write_json(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
