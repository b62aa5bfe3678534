"""Training cost of VADD against MDM, side by side in one run, for each backbone (toy MLP, image U-Net,
text DiT at their CPU-protocol sizes): time per optimiser step, examples/s and tokens/s, the VADD/MDM
ratio with the protocol's recognition model, with one as large as the denoiser and with a half-width
one, a step of VADD's importance-weighted phase (``--iw K``: batch / K rows x K draws of ``z``, as
``algo.iw_split`` trains), and the model FLOP utilisation of the training step against the matmul peak
measured in the same run.

    .venv/bin/python benchmarks/train_throughput.py --out runs/train_throughput
    # on a GPU: bf16 autocast, torch.compile, the paper-scale backbones (U-Net CIFAR-10, DiT small at
    # L = 1024 with the GPT-2 vocabulary); the peak is a bf16 matmul measured in the same run
    python benchmarks/train_throughput.py --device cuda --bf16 --compile --preset gpu --out runs/tt_gpu

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
from vadd.jobs import synchronize
from vadd.train import compile_networks

GPU_BACKBONES = {
    "unet (cifar10 recipe)": (["experiment=cifar10", "data.path=unused"], 256, 3072,
                              {"kind": "images", "channels": 3, "height": 32, "width": 32}, 64),
    "dit small (owt recipe, L=1024)": (["experiment=owt", "data.path=unused"], 50257, 1024, None, 32),
}
BACKBONES = {
    # name: (experiment overrides, vocab, seq_len, data info for image geometry, batch)
    "mlp (toys)": (["experiment=demo"], 64, 2, None, 512),
    # the paper's adaLN: z in the conditioning vector, every block's modulation computed per row
    "mlp (toys), z in adaLN": (["experiment=demo", "model.denoiser.latent_adaln=true"], 64, 2, None, 512),
    # z joins the token features at the input layer: MDM's network plus latent_dim input columns
    "mlp (toys), z at the input": (["experiment=demo", "model.denoiser.latent_adaln=input"], 64, 2, None, 512),
    "unet (fashion-mnist 28x28)": (["experiment=images_fmnist"], 256, 784,
                                   {"kind": "images", "channels": 1, "height": 28, "width": 28}, 64),
    "dit (text_char, chars, L=256)": (["experiment=text_char"], 27, 256, None, 32),
    # the largest backbone that fits a few minutes here: the library's named `tiny` DiT (4 x 256, 4 heads)
    "dit tiny 4x256 (chars, L=256)": (["experiment=text_char", "model.denoiser.size=tiny",
                                       "model.denoiser.depth=null", "model.denoiser.width=null",
                                       "model.denoiser.heads=null", "model.encoder.size=tiny",
                                       "model.encoder.depth=2", "model.encoder.width=null",
                                       "model.encoder.heads=null"], 27, 256, None, 32),
}


def matmul_peak(device="cpu", dtype=torch.float32, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def half_encoder(cfg: dict) -> dict:
    """The recognition model at half width (hidden units, channels or transformer width)."""
    enc = _explicit(cfg["model"]["encoder"])
    for key in ("hidden", "ch", "width"):
        if key in enc and enc[key]:
            enc[key] = max(8, int(enc[key]) // 2)
    return enc


def equal_encoder(cfg: dict) -> dict:
    """The recognition model as large as the denoiser: its depth and width (the U-Net's conv encoder
    already has the denoiser's channels and multipliers: it is returned unchanged)."""
    from vadd.models.dit import _size
    enc, den = _explicit(cfg["model"]["encoder"]), cfg["model"]["denoiser"]
    if enc["name"] == "transformer":
        enc["depth"], enc["width"], enc["heads"] = _size(den.get("size"), den.get("depth"), den.get("width"),
                                                         den.get("heads"))
    elif enc["name"] == "mlp":
        enc["depth"], enc["hidden"] = den["depth"], den["hidden"]
    return enc


def _explicit(enc: dict) -> dict:
    from vadd.models.dit import SIZES
    enc = dict(enc)
    if enc.get("size"):   # a named transformer size: make its shape explicit first
        enc["depth"], enc["width"], enc["heads"] = SIZES[enc.pop("size")]
        enc["size"] = None
    return enc


def build(over, V, L, info, algo, encoder=None):
    cfg = compose([*over, f"algo={algo}"])
    if encoder is not None:
        cfg["model"]["encoder"] = encoder
    torch.manual_seed(0)
    return build_model(model_spec(cfg["model"], cfg["algo"], V, L, info)), cfg


def step_fn(model, x, bf16=False, num_samples=0):
    """One optimiser step on ``x``; ``num_samples = K > 0``: VADD's importance-weighted phase (the caller
    passes ``batch / K`` rows, as ``algo.iw_split`` does)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    device_type = x.device.type
    extra = {"num_samples": num_samples} if num_samples else {}

    def step():
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model.loss(x, kl_weight=1.0, **extra)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(x.device)
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
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (peak measured in bf16)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the denoiser and the recognition model")
    ap.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--batch", type=int, default=0, help="override every backbone's batch size (0: the preset's)")
    ap.add_argument("--only", default="", help="run only the backbones whose name contains this")
    ap.add_argument("--iw", type=int, default=4, help="also time a step of VADD's importance-weighted phase "
                    "(batch / K rows x K draws of z, as algo.iw_split); 0: skip")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.device, torch.bfloat16 if args.bf16 else torch.float32,
                       n=8192 if args.device != "cpu" else 2048)
    results = {"threads": args.threads, "device": args.device, "bf16": args.bf16, "compile": args.compile,
               "matmul_peak_gflops": peak / 1e9, "backbones": {}}
    for name, (over, V, L, info, B) in (GPU_BACKBONES if args.preset == "gpu" else BACKBONES).items():
        if args.only not in name:
            continue
        B = args.batch or B
        x = torch.randint(0, V, (B, L), device=args.device)
        variants = {}
        mdm, _ = build(over, V, L, info, "mdm")
        vadd, cfg = build(over, V, L, info, "vadd")
        vadd_equal, _ = build(over, V, L, info, "vadd", equal_encoder(cfg))
        vadd_half, _ = build(over, V, L, info, "vadd", half_encoder(cfg))
        runs = [("mdm", mdm, 0), ("vadd", vadd, 0), ("vadd_equal_encoder", vadd_equal, 0),
                ("vadd_half_encoder", vadd_half, 0)]
        if args.iw > 1:  # the same VADD model in its importance-weighted phase
            runs.append(("vadd_iw_phase", vadd, args.iw))
        for key, model, k in runs:
            model.to(args.device).train()
            xk = x[:max(1, B // k)] if k else x
            v = variants[key] = {"model": model, "step": step_fn(model, xk, args.bf16, k), "times": [],
                                 "params": sum(p.numel() for p in model.parameters()), "rows": len(xk)}
            v["step"]()                                  # warm-up
            v["flops"] = flops_of(v["step"])             # counted eagerly, before any compilation
            if args.compile:                             # both networks, as trainer.compile does
                compile_networks(model)
                v["step"] = step_fn(model, xk, args.bf16, k)
                v["step"]()                              # compile outside the timed steps
        for _ in range(args.steps):                      # round-robin: load drifts hit all alike
            for v in variants.values():
                t0 = time.perf_counter()
                v["step"]()
                v["times"].append(time.perf_counter() - t0)
        row = {}
        for key, v in variants.items():
            t = statistics.median(v["times"])
            n = v["rows"]
            row[key] = {"s_per_step": t, "examples_per_s": n / t, "tokens_per_s": n * L / t, "params": v["params"],
                        "gflop_per_step": v["flops"] / 1e9, "mfu": v["flops"] / t / peak}
        row["ratio_vadd_mdm"] = row["vadd"]["s_per_step"] / row["mdm"]["s_per_step"]
        row["ratio_vadd_equal_mdm"] = row["vadd_equal_encoder"]["s_per_step"] / row["mdm"]["s_per_step"]
        row["ratio_vadd_half_mdm"] = row["vadd_half_encoder"]["s_per_step"] / row["mdm"]["s_per_step"]
        if "vadd_iw_phase" in row:  # its examples/s count the batch / K examples a phase step sees
            row["iw_k"] = args.iw
            row["ratio_vadd_iw_phase_mdm"] = row["vadd_iw_phase"]["s_per_step"] / row["mdm"]["s_per_step"]
            row["ratio_vadd_iw_phase_vadd"] = row["vadd_iw_phase"]["s_per_step"] / row["vadd"]["s_per_step"]
        row["encoders"] = {"vadd": cfg["model"]["encoder"], "vadd_equal_encoder": equal_encoder(cfg),
                           "vadd_half_encoder": half_encoder(cfg)}
        row["batch"], row["seq_len"], row["vocab"] = B, L, V
        results["backbones"][name] = row
        print(f"{name}: MDM {row['mdm']['s_per_step'] * 1e3:.1f} ms, VADD {row['vadd']['s_per_step'] * 1e3:.1f} ms "
              f"({row['ratio_vadd_mdm']:.2f}x), encoder as large as the denoiser {row['ratio_vadd_equal_mdm']:.2f}x, "
              f"half-width encoder {row['ratio_vadd_half_mdm']:.2f}x; "
              + (f"IW phase step (K = {args.iw}) {row['ratio_vadd_iw_phase_mdm']:.2f}x MDM's, "
                 f"{row['ratio_vadd_iw_phase_vadd']:.2f}x a DELBO step; " if "vadd_iw_phase" in row else "") +
              f"MFU MDM {100 * row['mdm']['mfu']:.1f}% VADD {100 * row['vadd']['mfu']:.1f}% "
              f"(peak {peak / 1e9:.0f} GFLOP/s)", flush=True)
    write_json(f"{args.out}/train_throughput.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
