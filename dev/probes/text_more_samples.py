"""Draw more samples for chosen (sampler, T) sets of a `vadd bench-text` run and score them under the judge:
a tighter generative perplexity for the comparisons the acceptance criteria hinge on.

    .venv/bin/vadd bench-text --out runs/text
    .venv/bin/python dev/probes/text_more_samples.py runs/text mdm:64 vadd-cs:32 mdm:32 --num-samples 2048 --seed 1

Each set is drawn from the run's trained model (``RUN/runs/mdm`` or ``RUN/runs/vadd``) with a seed of its
own (the benchmark's is 0, so ``--seed 1`` gives new draws, independent of the benchmark's samples) and
scored as the benchmark scores its sets (SmolLM2 judge, unigram entropy). Writes ``--out`` (default
``RUN/more_samples.json``): per set the generative perplexity, the standard error of the mean per-sample
NLL, the entropy, and each set's log-ratio to the first set given with its standard error. About 8-10 min per
2,048 samples on 2 cores, mostly the judge. Needs ``bash scripts/setup_assets.sh text``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import vadd
from vadd.io import write_json
from vadd.metrics.genppl import Judge, unigram_entropy
from vadd.sampling import sample

MODEL = {"mdm": "mdm", "vadd": "vadd", "vadd-cs": "vadd"}


def parse_set(spec: str) -> tuple[str, int]:
    sampler, _, T = spec.partition(":")
    if sampler not in MODEL or not T.isdigit() or int(T) < 1:
        raise argparse.ArgumentTypeError(f"a set is SAMPLER:T with SAMPLER one of {sorted(MODEL)}, got {spec!r}")
    return sampler, int(T)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a bench-text output folder (holds runs/mdm and runs/vadd)")
    ap.add_argument("sets", nargs="+", type=parse_set, help="SAMPLER:T, e.g. mdm:64 vadd-cs:32")
    ap.add_argument("--num-samples", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    judge = Judge.smollm2()
    res = {"run": str(run), "num_samples": args.num_samples, "seed": args.seed, "judge": judge.name, "sets": {}}
    for sampler, T in args.sets:
        pipe = vadd.load(run / "runs" / MODEL[sampler])
        t0 = time.time()
        x, _ = sample(pipe.model.eval(), args.num_samples, T, sampler, seed=args.seed, batch_size=256)
        s = judge.score(pipe.decode(x.numpy()))
        key = f"{sampler}:{T}"
        res["sets"][key] = {"gen_ppl": s["gen_ppl"], "gen_nll_stderr": s["nll_stderr"],
                            "entropy": unigram_entropy(x.numpy()), "judge_tokens": s["tokens"],
                            "wall_s": time.time() - t0}
        print(f"{key}: gen-PPL {s['gen_ppl']:.1f} (s.e. {100 * res['sets'][key]['gen_nll_stderr']:.1f}%), "
              f"entropy {res['sets'][key]['entropy']:.3f}, {time.time() - t0:.0f} s", flush=True)
    ref_key = next(iter(res["sets"]))
    ref = res["sets"][ref_key]
    for key, e in res["sets"].items():  # independent sets: the standard errors add in quadrature
        e[f"log_ratio_to_{ref_key}"] = math.log(e["gen_ppl"] / ref["gen_ppl"])
        e[f"log_ratio_stderr_to_{ref_key}"] = math.hypot(e["gen_nll_stderr"], ref["gen_nll_stderr"]) if key != ref_key else 0.0
    out = Path(args.out) if args.out else run / "more_samples.json"
    write_json(out, res)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
