"""The main job: MDM against VADD on 2D toys, JS divergence and likelihood against the number of steps.

For each dataset: train MDM and VADD with the same backbone, budget and seed; sample ``N`` points with
MDM, VADD (fresh ``z`` per step) and VADD-CS (fixed ``z``) at each ``T``; measure the JS divergence to
the target cell probabilities and the noise floor (``N`` fresh true samples against the same target);
and bound the negative log-likelihood of fresh held-out points under the ``T``-step samplers and their
continuous-time limit (``vadd.bounds``), with the data's entropy as the floor no model can beat.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import io
from .algorithms import LABELS
from .budget import check_alloc
from .compare import Comparison, demo_target, run_comparisons  # noqa: F401  (demo_target: the probes' import)
from .config import compose
from .data.toy2d import TOYS, Grid2D, PointSource
from .jobs import plan_workers, stamp
from .metrics import histogram_js
from .sampling import check_steps, sample

STEPS = (1, 2, 5, 10, 20, 50)


def sampled_js(model, grid: Grid2D, target, n: int, steps: int, sampler: str, seed: int):
    """Draw ``n`` points with ``sampler`` in ``steps`` steps and score them as the demo does: returns
    ``(js, tokens, stats)``. The demo's sampling jobs and dev/probes/toy_recipe_probe.py both use it."""
    x, stats = sample(model, n, steps, sampler, seed=seed)
    tokens = x.numpy()
    return histogram_js(grid.token_cells(tokens), target, grid.bins), tokens, stats


def run_demo(out: str | Path = "runs/demo", seed: int = 0, data: str | None = None, quick: bool = False,
             steps=STEPS, num_samples: int | None = None, overrides=(), workers: int | None = None,
             log=print) -> dict:
    """Run the comparison; returns (and writes) the results dict. ``workers`` processes share the
    CPU cores (default: one single-threaded worker per core, at most 2 on small machines).

    The demo is ``vadd compare`` on each toy (one seed, no compute-matched MDM), all toys' jobs in one pool:
    each toy's comparison is written under ``out/<toy>/`` (``results.json``, ``tables.md``, ``compare.png``, its
    runs and samples), and the demo's own ``results.json`` gathers them by dataset for its tables and figures."""
    t_start = time.time()
    out = Path(out)
    exp = "experiment=demo_quick" if quick else "experiment=demo"
    base = compose([exp, f"seed={seed}", *overrides])
    n = int(num_samples or base["demo"]["num_samples"])
    names = [data] if data else list(TOYS)
    for name in names:  # a bad toy name or points file fails before anything is written
        PointSource(name)
    check_steps(max(steps))
    factor = int(base["demo"]["reference_factor"])
    check_alloc(16.0 * n * factor, f"--num-samples {n:,} (with a reference of {factor}x as many points)", "--num-samples")
    workers, threads = plan_workers(workers)
    plans = []
    for name in names:
        label = PointSource(name).label
        plans.append(Comparison.plan(name, out / label, [seed], steps, quick, num_samples=n, matched_mdm=False,
                                     overrides=overrides, workers=workers, threads=threads, tag=label, log=log))
        log(f"[{label}] target ready; noise floor JS = {plans[-1].results['floor']['js']:.5f} (N = {n:,})")
    run_comparisons(plans, workers, log, t_start, tables=False)  # the demo prints its own tables
    results = {"datasets": {}, "steps": list(steps), "num_samples": n, "seed": seed, "workers": workers}
    grid = None
    for plan in plans:
        cfg = plan.jobs[0]["cfg"]  # the composed config of its first training
        grid = Grid2D.from_info(cfg["data"])
        results["datasets"][plan.target.label] = _dataset(plan, cfg, seed)
    results.update({"grid": grid.to_dict(), "config": base})
    stamp(results, t_start)
    io.write_json(out / "results.json", results)
    draw_figure(out, results, grid)
    log(format_table(results))
    log(f"wrote {out / 'results.json'}, {out / 'figure.png'}, {out / 'js_vs_steps.png'}, {out / 'nll_vs_steps.png'} "
        f"and each toy's comparison under {out}/<toy>/ ({results['wall_s']:.0f}s)")
    return results


def _dataset(plan, cfg: dict, seed: int) -> dict:
    """One toy's entry of the demo's results, read off its comparison: JS per sampler and T, the noise floor, the
    target's entropy, the trainings, and the bounds with the held-out points' exact NLL where the law is known."""
    r = plan.results
    e = r["per_seed"][str(seed)]
    probs = plan.target.target_cells(cfg, plan.settings, seed, plan.out)[0]
    positive = probs[probs > 0]
    stats = {m: e["stats"][m] for m in ("mdm", "vadd", "vadd-cs") if m in e["stats"]}  # fixed order
    entry = {"noise_floor": r["floor"]["js"], "entropy": float(-(positive * np.log(positive)).sum()),
             "train": {a: dict(t, run_dir=str(plan.out / "runs" / f"seed{seed}" / a)) for a, t in e["train"].items()},
             "js": {m: {T: v["js"] for T, v in byT.items()} for m, byT in stats.items()},
             "nfe": {m: {T: {"calls": v["nfe"]} for T, v in byT.items()} for m, byT in stats.items()},
             "sample_wall_s": {m: {T: v["wall_s"] for T, v in byT.items()} for m, byT in stats.items()},
             "bounds": {a: e["bounds"][a] for a in ("mdm", "vadd") if a in e["bounds"]}}
    if "data_nll" in e:
        entry["data_nll"] = e["data_nll"]  # exact -log p_data of the bounded points: their own floor
    return entry


def samples_path(out: Path, name: str, sampler: str, T: int, seed: int) -> Path:
    """Where the demo's comparison of toy ``name`` keeps ``sampler``'s decoded points at ``T`` steps."""
    return Path(out) / name / "samples" / f"seed{seed}" / f"{sampler}_T{T}.npy"


def format_table(results) -> str:
    return "\n\n".join(t for t in (format_js_table(results), format_bound_table(results)) if t)


def bound_rows(entry: dict) -> list[tuple[str, dict]]:
    """``(label, {T or "cont": nats per example, with "se"})`` per method and K from a dataset's bounds."""
    rows = []
    for algo in ("mdm", "vadd"):
        by_k = {}
        for r in entry.get("bounds", {}).get(algo, []):
            cell = by_k.setdefault(r["K"], {})
            key = "cont" if r["bound"] == "continuous" else r["steps"]
            cell[key], cell.setdefault("se", {})[key] = r["nats_per_example"], r["stderr_nats_per_example"]
        for k, cell in sorted(by_k.items()):
            rows.append((LABELS[algo] if algo == "mdm" else f"VADD K={k}", cell))
    return rows


def format_bound_table(results) -> str:
    steps = results["steps"]
    if not any(e.get("bounds") for e in results["datasets"].values()):
        return ""
    head = (f"{'dataset':<13}{'model':<13}" + "".join(f"{'T=' + str(T):>9}" for T in steps)
            + f"{'T->inf':>9}{'data':>9}{'entropy':>9}")
    lines = ["Likelihood bound (nats per held-out point): valid upper bounds on -log p of the T-step sampler and of "
             "its T -> inf limit; 'data' is the exact -log p_data of the same points, the floor (in expectation) "
             "under every model; lower is better", head, "-" * len(head)]
    for name, e in results["datasets"].items():
        for label, cell in bound_rows(e):
            lines.append(f"{name:<13}{label:<13}" + "".join(f"{cell.get(T, float('nan')):>9.3f}" for T in steps)
                         + f"{cell.get('cont', float('nan')):>9.3f}{e.get('data_nll', float('nan')):>9.3f}"
                         + f"{e['entropy']:>9.3f}")
    return "\n".join(lines)


def format_js_table(results) -> str:
    steps = results["steps"]
    head = f"{'dataset':<13}{'sampler':<9}" + "".join(f"{'T=' + str(T):>9}" for T in steps) + f"{'floor':>9}"
    lines = ["JS divergence (nats) of N = {:,} samples; lower is better".format(results["num_samples"]), head,
             "-" * len(head)]
    for name, e in results["datasets"].items():
        for sampler, row in e["js"].items():
            lines.append(f"{name:<13}{LABELS[sampler]:<9}" + "".join(f"{row[str(T)]:>9.4f}" for T in steps)
                         + f"{e['noise_floor']:>9.4f}")
        if "mdm" in e["js"] and "vadd" in e["js"]:
            lines.append(f"{'':<13}{'ratio':<9}" + "".join(
                f"{e['js']['mdm'][str(T)] / max(e['js']['vadd'][str(T)], 1e-12):>8.1f}x" for T in steps))
    return "\n".join(lines)


def draw_figure(out: Path, results: dict, grid: Grid2D) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["steps"]
    names = list(results["datasets"])
    rows = [(n, s) for n in names for s in results["datasets"][n]["js"]]
    fig, axes = plt.subplots(len(rows), len(steps) + 1, figsize=(1.7 * (len(steps) + 1), 1.7 * len(rows)),
                             squeeze=False)
    for r, (name, sampler) in enumerate(rows):
        truth = None
        for c in range(len(steps) + 1):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                src = PointSource(name) if name in TOYS else None
                if src is not None:
                    truth = grid.histogram(grid.cells(src.sample(results["num_samples"], np.random.default_rng(0))))
                    ax.imshow(truth.T, origin="lower", cmap="magma", interpolation="nearest")
                ax.set_ylabel(f"{name}\n{LABELS[sampler]}", fontsize=8)
                if r == 0:
                    ax.set_title("data", fontsize=9)
                continue
            T = steps[c - 1]
            pts = np.load(samples_path(out, name, sampler, T, results["seed"]))
            h = grid.histogram(grid.cells(pts))
            ax.imshow(h.T, origin="lower", cmap="magma", interpolation="nearest")
            js = results["datasets"][name]["js"][sampler][str(T)]
            ax.text(0.03, 0.97, f"{js:.3f}", transform=ax.transAxes, fontsize=7, color="w", va="top")
            if r == 0:
                ax.set_title(f"T = {T}", fontsize=9)
    fig.suptitle("Samples against steps T (JS in corner)", fontsize=10)
    fig.tight_layout()
    io.save_figure(fig, out / "figure.png")
    plt.close(fig)

    def js_panel(ax, e):
        for sampler, row in e["js"].items():
            ax.plot(steps, [row[str(T)] for T in steps], marker="o", label=LABELS[sampler])
        ax.axhline(e["noise_floor"], color="gray", ls="--", label="noise floor")
        ax.set_yscale("log")
        ax.set_xlabel("sampling steps T")

    def bound_panel(ax, e):
        rows = bound_rows(e)
        vadd_rows = [r for r in rows if r[0].startswith("VADD")]
        for label, cell in [r for r in rows if not r[0].startswith("VADD")] + vadd_rows[-1:]:  # VADD: largest K
            line, = ax.plot(steps, [cell.get(T, np.nan) for T in steps], marker="o", label=label)
            if "cont" in cell:
                ax.axhline(cell["cont"], color=line.get_color(), ls=":", lw=1)
        ax.axhline(e["entropy"], color="gray", ls="--", label="data entropy")
        if "data_nll" in e:
            ax.axhline(e["data_nll"], color="black", ls="-.", lw=1, label="data NLL, same points")
        ax.set_xlabel("sampling steps T (dotted: T -> inf)")

    _panels(out / "js_vs_steps.png", results, names, js_panel, "JS divergence (nats)")
    if any(results["datasets"][n].get("bounds") for n in names):
        _panels(out / "nll_vs_steps.png", results, names, bound_panel, "NLL bound (nats per point)")


def _panels(path: Path, results: dict, names, panel, ylabel: str) -> None:
    """One panel per dataset, against T on a log axis, drawn by ``panel(ax, entry)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        panel(ax, results["datasets"][name])
        ax.set_xscale("log")
        ax.set_title(name)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(fig, path)
    plt.close(fig)
