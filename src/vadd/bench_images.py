"""Image benchmark: MDM against VADD on binarized MNIST (BPD) and Fashion-MNIST (FID and BPD).

For each experiment config (``images_mnist``, ``images_fmnist``): train MDM and VADD with the same
U-Net, budget and seed; measure the test bound in bits per dimension (VADD: importance-weighted with
``K`` samples, the bound against ``K`` reported; both models evaluated on the same ``(t, xt)`` draws);
sample with MDM, VADD and VADD-CS at each ``T`` and score FID against real training images with the
Inception network, at one sample count for every entry; write sample grids. ``bench.path_images``: VADD-CS's
continuous bound importance-weighted on reveal paths (``L`` network calls per image and draw), MDM's on the
same paths.

    vadd bench-images --out runs/images            # the CPU protocol (several hours on 2 cores)
    vadd bench-images --quick                      # a tiny run (tests)
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from . import bounds, io
from .algorithms import ALGORITHMS, LABELS
from .config import compose
from .data import build_data
from .data.images import ImageGrid, save_grid_png
from .errors import ConfigError
from .jobs import plan_workers, report, report_progress, run_jobs, stamp
from .metrics.fid import RandomFeatures, feature_stats, frechet_distance, make_features  # noqa: F401 (re-exported)
from .sampling import sample
from .train import step_reporter, train

EXPERIMENTS = ("images_mnist", "images_fmnist")
QUICK = ["data.n_train=256", "data.n_test=32", "model.denoiser.ch=8", "model.encoder.ch=8",
         "model.denoiser.cond_dim=16", "algo.latent_dim=4", "trainer.max_steps=6", "trainer.batch_size=16",
         "trainer.warmup_steps=2", "trainer.progress=false", "trainer.ckpt_every=0", "trainer.diag_every=3",
         "trainer.log_every=2", "trainer.print_every=0", "bench.steps=[2,5]", "bench.grid_samples=8",
         "bench.bpd_images=8", "bench.bpd_k=[1,4]", "bench.bpd_k_max=8", "bench.bpd_k_max_images=4",
         "bench.bound_steps=[2]", "bench.bound_steps_images=4", "bench.path_images=2", "bench.path_k=[1,2]"]


@torch.no_grad()
def bound_bpd(model, tokens: torch.Tensor, ks, seed: int, steps: int | None = None, sampler=None,
              estimator: str = "count") -> dict:
    """Per-image bounds in bits per dimension, ``{K: array}``: the ``continuous`` bound, or the bound of the
    ``steps``-step sampler (``vadd.bounds.evaluate``: every model and K on the same draws, paired), of
    ``sampler`` (default: the model's own; VADD-CS's continuous bound is an ELBO over ``z``, K = 1 only, except
    on reveal paths: ``estimator="path"``)."""
    spec = bounds.BoundSpec("continuous", sampler=sampler) if steps is None else \
        bounds.BoundSpec("steps", int(steps), sampler)
    res = bounds.evaluate(model, tokens, ks, [spec], seed=seed, batch_size=50, estimator=estimator)[spec]
    return {k: (v / model.seq_len / math.log(2)).astype(np.float64) for k, v in res.items()}


def _summ(v: np.ndarray) -> dict:
    return {"bpd": float(v.mean()), "stderr": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0,
            "n": int(len(v))}


def _quick(cfg: dict, quick: bool) -> dict:
    if quick and int(cfg["bench"]["fid_samples"]):  # keep FID on where the experiment has it, tiny
        cfg["bench"].update(fid_samples=16, fid_reference=32)
    return cfg


def reference_features(td, n: int, seed: int, features: str = "inception") -> np.ndarray:
    """Features of ``n`` real training images drawn with ``seed``: the FID reference (float32)."""
    grid = ImageGrid.from_info(td.info)
    n = min(int(n), len(td.train))
    rows = torch.randperm(len(td.train), generator=torch.Generator().manual_seed(seed))[:n]
    imgs = grid.decode(_as_tokens(td, td.train[rows]).numpy())
    return make_features(features)(imgs).astype(np.float32)


def _job(p: dict) -> dict:
    torch.set_num_threads(int(p["threads"]))
    out, seed, cfg, algo, label = Path(p["out"]), p["seed"], p["cfg"], p["algo"], p["label"]
    bench = cfg["bench"]
    td = build_data(cfg["data"], seed=seed)
    if p["kind"] == "reference":
        feats = reference_features(td, int(bench["fid_reference"]), seed, p["features"])
        io.write_npy(out / "features" / label / "reference.npy", feats)
        return {"kind": "reference", "n": len(feats)}
    model, run_dir, rec = train(cfg, data=td, run_dir=out / "runs" / label / algo,
                                callbacks=[step_reporter(lambda **kw: report_progress(p, **kw))])
    report_progress(p, stage="sampling and scoring")
    model.eval()
    grid = ImageGrid.from_info(td.info)
    res = {"kind": "model", "algo": algo, "train": {"wall_s": rec["train_wall_s"], "steps": rec["steps"],
                                                    "metrics": rec["train_metrics"], "run_dir": str(run_dir)},
           "bpd": {}, "sample_wall_s": {}, "nfe": {}}
    # likelihood: valid bounds only (MDM has no latent: K = 1); the continuous bound at every K in bpd_k,
    # K = bpd_k_max on the first images, and the bound of the T-step sampler at the sampling T's; VADD's for
    # both of its samplers. The per-image values are saved for the paired differences to MDM (_paired).
    t0 = time.time()
    test = td.test[:int(bench["bpd_images"])]

    def scored(key, arrays):
        for k, v in arrays.items():
            io.write_npy(out / "bounds" / label / f"{algo}_{key}_K{k}.npy", v)
        return {str(k): _summ(v) for k, v in arrays.items()}

    for smp in model.samplers:  # MDM's; VADD's with a fresh z per step and VADD-CS's ("-cs" keys and files)
        fz = smp.fixed_z
        res["bpd"]["cs" if fz else "all"] = scored("continuous" + "-cs" * fz,
                                                  bound_bpd(model, test, smp.ks("continuous", bench["bpd_k"], "count"),
                                                            seed, sampler=smp))
    m = int(bench.get("bpd_k_max_images", 0))
    if m:
        res["bpd"]["subset"] = {str(k): _summ(v) for k, v in
                                bound_bpd(model, test[:m], [bench["bpd_k_max"]], seed).items()}
    # VADD-CS's continuous bound importance-weighted on reveal paths (L network calls per image and draw),
    # MDM's on the same paths: the paired comparison of the two samplers as T -> inf without the KL of z
    m = int(bench.get("path_images", 0))
    if m:
        smp = model.samplers[-1]  # VADD-CS for VADD, MDM's own
        res["bpd"]["path"] = scored("path" + "-cs" * smp.fixed_z,
                                    bound_bpd(model, test[:m], smp.ks("continuous", bench.get("path_k", [1]), "path"),
                                              seed, sampler=smp, estimator="path"))
    m = int(bench.get("bound_steps_images", 0))
    for smp in model.samplers:
        fz = smp.fixed_z
        res["bpd_steps_cs" if fz else "bpd_steps"] = {
            str(T): scored(f"T{T}" + "-cs" * fz, bound_bpd(model, test[:m], bench.get("bound_steps_k", [1]), seed,
                                                             int(T), sampler=smp))
            for T in (bench.get("bound_steps") or []) if m}
    res["bpd_wall_s"] = time.time() - t0
    feats = make_features(p["features"]) if int(bench["fid_samples"]) else None
    n = max(int(bench["fid_samples"]), int(bench["grid_samples"]))
    for sampler in (s.name for s in model.samplers):
        for T in bench["steps"]:
            t0 = time.time()
            x, st = sample(model, n, int(T), sampler, seed=seed, batch_size=256)
            res["sample_wall_s"].setdefault(sampler, {})[str(T)] = time.time() - t0
            res["nfe"].setdefault(sampler, {})[str(T)] = st.nfe
            imgs = grid.decode(x.numpy())
            io.write_npy(out / "samples" / label / f"{sampler}_T{T}.npy", imgs)
            save_grid_png(imgs[:int(bench["grid_samples"])], out / "grids" / label / f"{sampler}_T{T}.png")
            if feats is not None:
                f = feats(imgs[:int(bench["fid_samples"])])
                io.write_npy(out / "features" / label / f"{sampler}_T{T}.npy", f.astype(np.float32))
    return res


def _as_tokens(td, x: torch.Tensor) -> torch.Tensor:
    """Training rows as tokens (dynamic binarization stores gray values: binarize at 0.5 for reference)."""
    if td.train_transform is not None:
        return (x.double() / 255.0 > 0.5).long()
    return x


def run_bench(out: str | Path = "runs/images", seed: int = 0, quick: bool = False, experiments=EXPERIMENTS,
              overrides=(), features: str = "inception", workers: int | None = None, log=print) -> dict:
    """Train, sample and score every (experiment, method); returns and writes ``OUT/results.json``."""
    t_start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers, threads = plan_workers(workers)
    results = {"experiments": {}, "seed": seed, "quick": quick, "features": features, "workers": workers}
    jobs = []
    for exp in experiments:
        base = _quick(compose([f"experiment={exp}", f"seed={seed}", *(QUICK if quick else []), *overrides]), quick)
        label = exp.removeprefix("images_")
        results["experiments"][label] = {"experiment": exp, "data": base["data"], "bench": base["bench"],
                                         "config": base, "models": {}}
        for algo in ("vadd", "mdm"):
            cfg = _quick(compose([f"experiment={exp}", f"seed={seed}", f"algo={algo}", *(QUICK if quick else []),
                                  *[o for o in overrides if algo == "vadd" or not o.lstrip("+~").startswith("algo.")]]),
                         quick)
            cfg["trainer"]["progress"] = workers == 1 and cfg["trainer"].get("progress", True)
            jobs.append({"kind": "model", "cfg": cfg, "algo": algo, "label": label, "seed": seed, "out": str(out),
                         "desc": f"{label} {LABELS[algo]}",
                         "threads": threads, "features": features})
        if int(base["bench"]["fid_samples"]):
            jobs.append({"kind": "reference", "cfg": base, "algo": None, "label": label, "seed": seed,
                         "desc": f"{label} FID reference",
                         "out": str(out), "threads": threads, "features": features})
    order = {"vadd": 0, "mdm": 1, None: 2}
    jobs.sort(key=lambda j: (order[j["algo"]], -int(j["cfg"]["bench"].get("fid_samples", 0))))

    def collect(job, res):
        if res["kind"] == "model":
            results["experiments"][job["label"]]["models"][job["algo"]] = res
            log(f"{job['label']}: {LABELS[job['algo']]} trained to step {res['train']['steps']} in "
                f"{res['train']['wall_s']:.0f}s; sampled and scored ({time.time() - t_start:.0f}s elapsed)")
        else:
            log(f"{job['label']}: FID reference features of {res['n']} training images "
                f"({time.time() - t_start:.0f}s elapsed)")
        io.write_json(out / "results.json", stamp(results, t_start))

    run_jobs(jobs, _job, workers, collect, log=log)
    for label, e in results["experiments"].items():
        e["fid"] = _fids(out, label, e) if int(e["bench"]["fid_samples"]) else {}
        e["paired"] = _paired(out, label)
    return report(out, results, t_start, draw_figures, format_tables, log)


def _paired(out: Path, label: str) -> dict:
    """VADD's and VADD-CS's bounds minus MDM's, image by image on the same draws (bits per dimension):
    ``{bound: {K: {bpd, stderr, n}}}`` with ``bound`` ``continuous``, ``T<T>`` and their ``-cs`` twins."""
    folder = out / "bounds" / label
    mdm = {p.stem.removeprefix("mdm_").rsplit("_K", 1)[0]: np.load(p) for p in folder.glob("mdm_*_K1.npy")}
    res = {}
    for p in sorted(folder.glob("vadd_*.npy")):
        key, k = p.stem.removeprefix("vadd_").rsplit("_K", 1)
        ref = mdm.get(key.removesuffix("-cs"))
        if ref is not None:
            res.setdefault(key, {})[k] = _summ(np.load(p) - ref)
    return {key: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for key, v in res.items()}


def _fids(out: Path, label: str, e: dict) -> dict:
    ref = feature_stats(np.load(out / "features" / label / "reference.npy").astype(np.float64))
    fids = {}
    for algo in ("mdm", "vadd"):
        for sampler in (s.name for s in ALGORITHMS[algo].samplers):
            fids[sampler] = {}
            for T in e["bench"]["steps"]:
                f = np.load(out / "features" / label / f"{sampler}_T{T}.npy").astype(np.float64)
                fids[sampler][str(T)] = frechet_distance(feature_stats(f), ref)
    return fids


def format_tables(results) -> str:
    lines = []
    for label, e in results["experiments"].items():
        models, b = e["models"], e["bench"]
        if "mdm" not in models or "vadd" not in models:
            continue
        d = e["data"]
        lines.append(f"### {label}: {d['name']} (test bound, bits per dimension; lower is better)\n")
        mdm_all = next(iter(models["mdm"]["bpd"]["all"].values()))
        paired = e.get("paired", {})

        def diff(key, k):  # "+0.0123 ± 0.0004", VADD minus MDM on the same images and draws
            d = paired.get(key, {}).get(str(k))
            return f"{d['bpd']:+.4f} ± {d['stderr']:.4f}" if d else "-"

        lines.append("| model | K | BPD bound | ± s.e. | minus MDM (paired) | test images |")
        lines.append("|---|---|---|---|---|---|")
        lines.append(f"| MDM | - | {mdm_all['bpd']:.4f} | {mdm_all['stderr']:.4f} | - | {mdm_all['n']} |")
        for k, v in models["vadd"]["bpd"]["all"].items():
            lines.append(f"| VADD | {k} | {v['bpd']:.4f} | {v['stderr']:.4f} | {diff('continuous', k)} | {v['n']} |")
        for k, v in models["vadd"]["bpd"].get("cs", {}).items():
            lines.append(f"| VADD-CS (ELBO over z) | {k} | {v['bpd']:.4f} | {v['stderr']:.4f} | "
                         f"{diff('continuous-cs', k)} | {v['n']} |")
        if "subset" in models["vadd"]["bpd"]:
            ms = next(iter(models["mdm"]["bpd"]["subset"].values()))
            lines.append(f"| MDM (first {ms['n']}) | - | {ms['bpd']:.4f} | {ms['stderr']:.4f} | - | {ms['n']} |")
            for k, v in models["vadd"]["bpd"]["subset"].items():
                lines.append(f"| VADD (first {v['n']}) | {k} | {v['bpd']:.4f} | {v['stderr']:.4f} | - | {v['n']} |")
        if "path" in models["vadd"]["bpd"] and "path" in models["mdm"]["bpd"]:
            mp = models["mdm"]["bpd"]["path"]["1"]
            lines.append(f"| MDM (reveal paths, first {mp['n']}) | - | {mp['bpd']:.4f} | {mp['stderr']:.4f} | - | "
                         f"{mp['n']} |")
            for k, v in models["vadd"]["bpd"]["path"].items():
                lines.append(f"| VADD-CS (reveal paths, first {v['n']}) | {k} | {v['bpd']:.4f} | {v['stderr']:.4f} | "
                             f"{diff('path-cs', k)} | {v['n']} |")
        lines.append("")
        for name, key in (("VADD", "all"), ("VADD-CS", "cs")):
            if models["vadd"]["bpd"].get(key):
                best = min(v["bpd"] for v in models["vadd"]["bpd"][key].values())
                rel = 100 * (best / mdm_all["bpd"] - 1)
                lines.append(f"{name}'s bound (best K) is {abs(rel):.1f}% {'below' if rel < 0 else 'above'} MDM's.")
        if "path" in models["vadd"]["bpd"] and "path" in models["mdm"]["bpd"]:
            k, v = min(models["vadd"]["bpd"]["path"].items(), key=lambda kv: kv[1]["bpd"])
            rel = 100 * (v["bpd"] / models["mdm"]["bpd"]["path"]["1"]["bpd"] - 1)
            lines.append(f"On reveal paths (the same first {v['n']} images and paths), VADD-CS's bound at K = {k} is "
                         f"{abs(rel):.1f}% {'below' if rel < 0 else 'above'} MDM's.")
        lines.append("(Continuous-time bounds: each sampler as T -> inf; lower is better.)\n")
        if models["vadd"].get("bpd_steps"):
            steps_t = list(models["vadd"]["bpd_steps"])
            n = next(iter(next(iter(models["vadd"]["bpd_steps"].values())).values()))["n"]
            lines.append(f"### {label}: bound of the T-step sampler (bits per dimension, first {n} test images; "
                         "lower is better)\n")
            lines.append("| model | K | " + " | ".join(f"T={T}" for T in steps_t) + " |")
            lines.append("|---|---|" + "---|" * len(steps_t))
            for algo, key in (("mdm", "bpd_steps"), ("vadd", "bpd_steps"), ("vadd-cs", "bpd_steps_cs")):
                rows = models["mdm" if algo == "mdm" else "vadd"].get(key, {})
                for k in next(iter(rows.values()), {}):
                    lines.append(f"| {LABELS[algo]} | {k if algo != 'mdm' else '-'} | " + " | ".join(
                        f"{rows[T][k]['bpd']:.4f} ± {rows[T][k]['stderr']:.4f}" for T in steps_t) + " |")
            if any(f"T{T}" in paired for T in steps_t):
                lines.append("\nMinus MDM's, paired (the same images and reveal paths):\n")
                lines.append("| model | K | " + " | ".join(f"T={T}" for T in steps_t) + " |")
                lines.append("|---|---|" + "---|" * len(steps_t))
                for name, sfx in (("VADD", ""), ("VADD-CS", "-cs")):
                    for k in paired.get(f"T{steps_t[0]}{sfx}", {}):
                        lines.append(f"| {name} | {k} | " + " | ".join(diff(f"T{T}{sfx}", k) for T in steps_t) + " |")
            lines.append("")
        if e.get("fid"):
            steps = b["steps"]
            n = b["fid_samples"]
            feat = "Inception" if results["features"] == "inception" else "random-feature stand-in (not FID)"
            lines.append(f"### {label}: FID against {b['fid_reference']} training images, {n} samples each "
                         f"({feat}); lower is better\n")
            lines.append("| sampler | " + " | ".join(f"T={T}" for T in steps) + " |")
            lines.append("|---|" + "---|" * len(steps))
            for sampler, row in e["fid"].items():
                lines.append(f"| {LABELS[sampler]} | " + " | ".join(f"{row[str(T)]:.1f}" for T in steps) + " |")
            for sampler in ("vadd", "vadd-cs"):
                lines.append(f"| {LABELS[sampler]} / MDM | " + " | ".join(
                    f"{e['fid'][sampler][str(T)] / e['fid']['mdm'][str(T)]:.2f}" for T in steps) + " |")
            lines.append("")
    return "\n".join(lines)


def draw_figures(out: Path, results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    for label, e in results["experiments"].items():
        steps = e["bench"]["steps"]
        samplers = [s.name for a in ("mdm", "vadd") if a in e["models"] for s in ALGORITHMS[a].samplers]
        if not samplers:
            continue
        fig, axes = plt.subplots(len(samplers), len(steps), figsize=(2.2 * len(steps), 2.3 * len(samplers)),
                                 squeeze=False)
        for r, s in enumerate(samplers):
            for c, T in enumerate(steps):
                ax = axes[r, c]
                ax.imshow(np.asarray(Image.open(out / "grids" / label / f"{s}_T{T}.png")), cmap="gray",
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                title = f"T = {T}"
                if e.get("fid"):
                    title += f"  FID {e['fid'][s][str(T)]:.0f}"
                ax.set_title(title, fontsize=8)
                if c == 0:
                    ax.set_ylabel(LABELS[s], fontsize=9)
        fig.suptitle(f"{e['data']['name']}: samples against steps T", fontsize=10)
        fig.tight_layout()
        io.save_figure(fig, out / f"samples_{label}.png")
        plt.close(fig)
        if e.get("fid"):
            fig, ax = plt.subplots(figsize=(4.2, 3.2))
            for s, row in e["fid"].items():
                ax.plot(steps, [row[str(T)] for T in steps], marker="o", label=LABELS[s])
            ax.set_xscale("log")
            ax.set_xlabel("sampling steps T")
            ax.set_ylabel(f"FID ({e['bench']['fid_samples']} samples)")
            ax.set_title(e["data"]["name"])
            ax.legend(fontsize=8)
            fig.tight_layout()
            io.save_figure(fig, out / f"fid_vs_steps_{label}.png")
            plt.close(fig)
