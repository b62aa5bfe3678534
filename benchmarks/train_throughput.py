"""Training cost of VADD against MDM, side by side in one run, for each backbone (toy MLP, image U-Net,
text DiT at their CPU-protocol sizes): time per optimiser step, examples/s and tokens/s, the VADD/MDM
ratio with the full recognition model and with a half-width one, and the model FLOP utilisation of
the training step against the matmul peak measured in the same run.

    .venv/bin/python benchmarks/train_throughput.py --out runs/train_throughput

FLOPs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions,
forward and backward); MFU = counted FLOPs / step time / peak. Steps are interleaved across models
(round-robin) so that drifts in machine load hit every model alike; the median is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vadd.build import build_model, model_spec
from vadd.config import compose
from vadd.io import write_json

BACKBONES = {
    # name: (experiment overrides, vocab, seq_len, data info for image geometry, batch)
    "mlp (toys)": (["experiment=demo"], 64, 2, None, 512),
    "unet (fashion-mnist 14x14)": (["experiment=images_fmnist"], 256, 196,
                                   {"kind": "images", "channels": 1, "height": 14, "width": 14}, 64),
    "dit (text_cpu, chars, L=256)": (["experiment=text_cpu"], 27, 256, None, 32),
}


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def half_encoder(cfg: dict) -> dict:
    enc = dict(cfg["model"]["encoder"])
    for key in ("hidden", "ch", "width"):
        if key in enc and enc[key]:
            enc[key] = max(8, int(enc[key]) // 2)
    return enc


def build(over, V, L, info, algo, encoder=None):
    cfg = compose([*over, f"algo={algo}"])
    if encoder is not None:
        cfg["model"]["encoder"] = encoder
    torch.manual_seed(0)
    return build_model(model_spec(cfg["model"], cfg["algo"], V, L, info)), cfg


def step_fn(model, x):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        loss, _ = model.loss(x, kl_weight=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def flops_of(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step()
    return int(fc.get_total_flops())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/train_throughput")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    results = {"threads": args.threads, "matmul_peak_gflops": peak / 1e9, "backbones": {}}
    for name, (over, V, L, info, B) in BACKBONES.items():
        x = torch.randint(0, V, (B, L))
        variants = {}
        mdm, _ = build(over, V, L, info, "mdm")
        vadd, cfg = build(over, V, L, info, "vadd")
        vadd_half, _ = build(over, V, L, info, "vadd", half_encoder(cfg))
        for key, model in (("mdm", mdm), ("vadd", vadd), ("vadd_half_encoder", vadd_half)):
            model.train()
            variants[key] = {"model": model, "step": step_fn(model, x), "times": [],
                             "params": sum(p.numel() for p in model.parameters())}
            variants[key]["step"]()                      # warm-up
            variants[key]["flops"] = flops_of(variants[key]["step"])
        for _ in range(args.steps):                      # round-robin: load drifts hit all alike
            for v in variants.values():
                t0 = time.perf_counter()
                v["step"]()
                v["times"].append(time.perf_counter() - t0)
        row = {}
        for key, v in variants.items():
            t = statistics.median(v["times"])
            row[key] = {"s_per_step": t, "examples_per_s": B / t, "tokens_per_s": B * L / t, "params": v["params"],
                        "gflop_per_step": v["flops"] / 1e9, "mfu": v["flops"] / t / peak}
        row["ratio_vadd_mdm"] = row["vadd"]["s_per_step"] / row["mdm"]["s_per_step"]
        row["ratio_vadd_half_mdm"] = row["vadd_half_encoder"]["s_per_step"] / row["mdm"]["s_per_step"]
        row["batch"], row["seq_len"], row["vocab"] = B, L, V
        results["backbones"][name] = row
        print(f"{name}: MDM {row['mdm']['s_per_step'] * 1e3:.1f} ms, VADD {row['vadd']['s_per_step'] * 1e3:.1f} ms "
              f"({row['ratio_vadd_mdm']:.2f}x), half encoder {row['ratio_vadd_half_mdm']:.2f}x; "
              f"MFU MDM {100 * row['mdm']['mfu']:.1f}% VADD {100 * row['vadd']['mfu']:.1f}% "
              f"(peak {peak / 1e9:.0f} GFLOP/s)", flush=True)
    write_json(f"{args.out}/train_throughput.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
