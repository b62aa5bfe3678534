"""Sampling cost of MDM, VADD (fresh z per step) and VADD-CS (fixed z) against T, with and without
caching, measured side by side in one run on the toy MLP (2 tokens, V = 64) or the Fashion-MNIST U-Net
(28x28 = 784 tokens on 2x2 patches, V = 256).

    .venv/bin/python benchmarks/sampling_cost.py --out runs/sampling_cost
    .venv/bin/python benchmarks/sampling_cost.py --backbone unet --num-samples 64 --modes events cached \
        --out runs/sampling_cost
    # on a GPU: the OWT recipe's DiT small (GPT-2 vocabulary, L = 1024)
    python benchmarks/sampling_cost.py --device cuda --backbone dit_owt --num-samples 16 --modes events \
        --steps 1 8 32 128 1024 --out runs/sampling_cost_gpu

Modes: ``events`` (the default event-driven sampler), ``cached`` (step by step with MDLM's per-row
reuse where exact; VADD's fresh z per step cannot reuse), ``uncached`` (step by step, every row with
masked positions evaluated at every step). Writes OUT/sampling_cost[_BACKBONE].json, .md (the
README's table) and .png: batched network calls, network rows per sample, the best wall time per
sample, and each VADD sampler's median paired wall-time ratio to MDM with its quartiles. The models
are untrained (cost does not depend on the weights); VADD's network adds the latent path.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from vadd.build import build_model, model_spec
from vadd.config import compose
from vadd.io import write_json
from vadd.jobs import synchronize
from vadd.sampling import sample

STEPS = (1, 2, 5, 10, 20, 50, 100, 1000)
# (cache, lazy): the default event-driven sampler; step by step with MDLM caching; step by step, naive
MODES = {"events": (True, True), "cached": (True, False), "uncached": (False, False)}


BACKBONES = {
    # name: (experiment overrides, vocab, seq_len, data info for image geometry)
    "mlp": ([], 64, 2, None),
    "unet": (["experiment=images_fmnist"], 256, 784, {"kind": "images", "channels": 1, "height": 28, "width": 28}),
    # the earlier 14x14 protocol (no patches), for the README's first U-Net table
    "unet14": (["experiment=images_fmnist", "data.size=14", "model.denoiser.patch=1", "model.encoder.patch=1"],
               256, 196, {"kind": "images", "channels": 1, "height": 14, "width": 14}),
    # the text CPU protocol's DiT (characters, L = 256) and, for a GPU, the OWT recipe's DiT small
    # (GPT-2 vocabulary, L = 1024): python benchmarks/sampling_cost.py --device cuda --backbone dit_owt
    "dit": (["experiment=text_char"], 27, 256, None),
    "dit_owt": (["experiment=owt", "data.path=unused"], 50257, 1024, None),
}


def models(backbone: str = "mlp", overrides=(), device="cpu"):
    over, V, L, info = BACKBONES[backbone]
    out = {}
    for algo in ("mdm", "vadd"):
        cfg = compose([*over, f"algo={algo}", *overrides])
        torch.manual_seed(0)
        out[algo] = build_model(model_spec(cfg["model"], cfg["algo"], V, L, info)).to(device).eval()
    return out


def measure(runs, T, n, cache, lazy, repeats, budget_s: float = 20.0, min_rounds: int = 3, long_s: float = 60.0):
    """Wall time of each ``(sampler, model)`` in ``runs``, interleaved round-robin.

    Reports the best time per sample and, for each sampler, the median and quartiles of its per-round
    ratio to the first sampler (MDM): paired ratios cancel drifts in machine load, which on a shared
    2-core machine move single timings by +-10%. The order rotates every round, so no sampler always
    runs first or after the same other one. Rounds repeat up to ``repeats`` times, stopping once
    at least ``min_rounds`` are done and they took ``budget_s`` seconds; a round longer than ``long_s``
    (the naive modes at large T) is not repeated."""
    times, stats = {s: [] for s, _ in runs}, {}
    spent = 0.0
    for i in range(repeats):
        for sampler, model in runs[i % len(runs):] + runs[:i % len(runs)]:
            synchronize(model)
            t0 = time.perf_counter()
            _, st = sample(model, n, T, sampler, cache=cache, lazy=lazy, seed=0)
            synchronize(model)
            times[sampler].append(time.perf_counter() - t0)
            spent += times[sampler][-1]
            stats[sampler] = st
        last = sum(v[-1] for v in times.values())
        if last > long_s or (i + 1 >= min_rounds and spent > budget_s):
            break
    ref = times[runs[0][0]]
    out = {}
    for s, v in times.items():
        ratios = [a / b for a, b in zip(v, ref)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        out[s] = {"calls": stats[s].nfe, "rows_per_sample": stats[s].row_evals / n,
                  "us_per_sample": 1e6 * min(v) / n, "rounds": len(v),
                  "time_ratio_to_mdm": statistics.median(ratios), "ratio_quartiles": [q[0], q[2]]}
    return out


def table(rows) -> str:
    """The README's table: per T and mode, calls and rows per sample (MDM / VADD / VADD-CS where they
    differ), MDM's best time per sample and each VADD sampler's median paired time ratio."""
    lines = ["| T | sampling | calls | rows/sample | MDM us/sample | VADD / MDM time | VADD-CS / MDM time |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for T in dict.fromkeys(r["T"] for r in rows):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            by = {r["sampler"]: r for r in rows if r["T"] == T and r["mode"] == mode}
            if not by:
                continue
            calls = [by[s]["calls"] for s in ("mdm", "vadd", "vadd-cs")]
            per = [f"{by[s]['rows_per_sample']:.2f}" for s in ("mdm", "vadd", "vadd-cs")]
            calls_s = str(calls[0]) if len(set(calls)) == 1 else " / ".join(map(str, calls))
            per_s = per[0] if len(set(per)) == 1 else " / ".join(per)
            lines.append(f"| {T} | {mode} | {calls_s} | {per_s} | {by['mdm']['us_per_sample']:.1f} | "
                         f"{by['vadd']['time_ratio_to_mdm']:.2f} | {by['vadd-cs']['time_ratio_to_mdm']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/sampling_cost")
    ap.add_argument("--num-samples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbone", choices=sorted(BACKBONES), default="mlp",
                    help="mlp: the toy network (2 tokens); unet: the Fashion-MNIST U-Net (28x28, 784 tokens); "
                         "unet14: the earlier 14x14 protocol (196 tokens); dit: the text CPU protocol's DiT "
                         "(characters, L = 256); dit_owt: the OWT recipe's DiT small (L = 1024; for a GPU)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (timed with a device synchronisation)")
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--override", nargs="*", default=[],
                    help="config overrides for both models, e.g. model.denoiser.latent_adaln=false")
    ap.add_argument("--tag", default=None, help="output name suffix (sampling_cost[_BACKBONE][_TAG])")
    ap.add_argument("--min-rounds", type=int, default=3,
                    help="paired rounds at least, per T and mode (more: a tighter median ratio at large T)")
    ap.add_argument("--budget-s", type=float, default=20.0,
                    help="after --min-rounds, stop repeating once the rounds took this many seconds")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = models(args.backbone, args.override, args.device)
    rows = []
    for T in args.steps:
        for mode in args.modes:
            cache, lazy = MODES[mode]
            runs = (("mdm", m["mdm"]), ("vadd", m["vadd"]), ("vadd-cs", m["vadd"]))
            for sampler, r in measure(runs, T, args.num_samples, cache, lazy, args.repeats,
                                      budget_s=args.budget_s, min_rounds=args.min_rounds).items():
                rows.append({"T": T, "mode": mode, "sampler": sampler, **r})
                print(rows[-1], flush=True)
    for r in rows:
        ref = next(x for x in rows if x["T"] == r["T"] and x["mode"] == r["mode"] and x["sampler"] == "mdm")
        r["calls_ratio_to_mdm"] = r["calls"] / max(ref["calls"], 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "sampling_cost" if args.backbone == "mlp" else f"sampling_cost_{args.backbone}"
    stem += f"_{args.tag}" if args.tag else ""
    write_json(out / f"{stem}.json", {"backbone": args.backbone, "overrides": args.override, "device": args.device,
                                       "num_samples": args.num_samples, "min_rounds": args.min_rounds,
                                       "budget_s": args.budget_s,
                                       "threads": args.threads, "repeats": args.repeats, "rows": rows})
    (out / f"{stem}.md").write_text(table(rows))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(args.modes), figsize=(4.4 * len(args.modes), 3.6), squeeze=False)
    axes = axes[0]
    for ax, mode in zip(axes, args.modes):
        for sampler in ("mdm", "vadd", "vadd-cs"):
            sel = [r for r in rows if r["mode"] == mode and r["sampler"] == sampler]
            ax.plot([r["T"] for r in sel], [r["us_per_sample"] for r in sel], marker="o", label=sampler)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{mode} sampling")
        ax.set_xlabel("steps T")
    axes[0].set_ylabel("wall time per sample (us)")
    axes[-1].legend()
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
