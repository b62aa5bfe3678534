"""Try a VADD training recipe on the text CPU protocol: train VADD alone (``experiment=text_cpu
algo=vadd`` plus Hydra overrides), then draw samples with VADD and VADD-CS at a few step counts and
score them under the judge (generative perplexity, unigram entropy), as ``vadd bench-text`` does.

    .venv/bin/python dev/probes/text_recipe_probe.py kl05 algo.kl_max=0.5

``--algo mdm`` trains and samples MDM with the same overrides instead, for a protocol change (e.g.
``data.seq_len=128``) whose MDM row the benchmark has not measured.

Compare with MDM's row of the benchmark's table (``docs/text64_tables.md``, same judge, sample count and
seed). One JSON line per probe is appended to ``--out`` (default ``runs/text_recipe_probes.jsonl``): the
overrides, the latent diagnostics and validation bound at the end of training (``diag/kl_t1``: KL at full
masking; ``diag/z_use_t1``: what the decoder gains from its posterior ``z``), and per sampler and T the
generative perplexity, the standard error of the mean per-sample NLL and the unigram entropy. Needs
``bash scripts/setup_assets.sh text``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vadd.data import build_data
from vadd.config import compose
from vadd.io import append_jsonl
from vadd.metrics.genppl import Judge, unigram_entropy
from vadd.sampling import sample
from vadd.train import train


SAMPLERS = {"vadd": ("vadd", "vadd-cs"), "mdm": ("mdm",)}


def probe(tag: str, overrides=(), out: str = "runs/text_recipe_probes.jsonl", steps=(4, 8, 16, 64),
          num_samples: int = 128, seed: int = 0, algo: str = "vadd", samplers=None) -> dict:
    cfg = compose(["experiment=text_cpu", f"algo={algo}", *overrides])
    cfg["trainer"]["progress"] = False
    td = build_data(cfg["data"], seed=int(cfg.get("seed", 0)))
    t0 = time.time()
    model, _, record = train(cfg, data=td, run_dir=Path(out).parent / "text_probe_runs" / tag)
    model.eval()
    row = {"tag": tag, "algo": algo, "overrides": list(overrides), "train_wall_s": time.time() - t0,
           "metrics": {k: v for k, v in record["train_metrics"].items() if k.startswith(("diag", "val", "train/kl"))}}
    judge = Judge.smollm2()
    for sampler in samplers or SAMPLERS[algo]:
        for T in steps:
            x, _ = sample(model, num_samples, int(T), sampler, seed=seed, batch_size=256)
            s = judge.score(td.decode(x.numpy()))
            row[f"{sampler}_T{T}"] = {"gen_ppl": s["gen_ppl"], "gen_nll_stderr": s["nll_stderr"],
                                      "entropy": unigram_entropy(x.numpy())}
    append_jsonl(out, row)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tag", help="a name for this probe (its run folder and JSON line)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=text_cpu algo=ALGO")
    ap.add_argument("--algo", choices=sorted(SAMPLERS), default="vadd")
    ap.add_argument("--samplers", nargs="+", help="default: vadd vadd-cs (VADD), mdm (MDM)")
    ap.add_argument("--out", default="runs/text_recipe_probes.jsonl")
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 64])
    ap.add_argument("--num-samples", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = probe(args.tag, args.overrides, args.out, args.steps, args.num_samples, algo=args.algo,
                samplers=args.samplers)
    m = row["metrics"]
    print(f"{args.tag}: KL at full masking {m.get('diag/kl_t1', float('nan')):.2f} nats, "
          f"val {m.get('val/nats_per_token', float('nan')):.3f} nats/token; train {row['train_wall_s']:.0f} s")
    for k, v in row.items():
        if isinstance(v, dict) and "gen_ppl" in v:
            print(f"  {k}: gen-PPL {v['gen_ppl']:.1f} (s.e. {100 * v['gen_nll_stderr']:.1f}%), "
                  f"entropy {v['entropy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
