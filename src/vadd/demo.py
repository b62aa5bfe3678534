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
import torch

from . import bounds, io
from .algorithms import ALGORITHMS, LABELS
from .api import load
from .config import compose
from .data import toy2d_data
from .data.toy2d import TOYS, Grid2D, PointSource, heldout_tokens, reference_cell_probs
from .jobs import plan_workers, report_progress, run_jobs, stamp
from .metrics import histogram_js
from .budget import check_alloc
from .rng import numpy_generator
from .sampling import check_steps, sample
from .train import step_reporter, train

STEPS = (1, 2, 5, 10, 20, 50)


def demo_target(source: PointSource, grid: Grid2D, n: int, seed: int, factor: int = 100):
    """The demo's target cell probabilities (from ``factor * n`` reference points; exact for the
    checkerboard) and its noise floor (the JS of ``n`` fresh true points against them). Anything that
    scores against the demo's numbers (vadd compare, dev/probes/toy_recipe_probe.py) uses this."""
    target = reference_cell_probs(source, grid, factor * n, seed + 1)
    floor = histogram_js(grid.cells(source.sample(n, numpy_generator(seed, "demo-floor"))), target, grid.bins)
    return target, floor


def sampled_js(model, grid: Grid2D, target, n: int, steps: int, sampler: str, seed: int):
    """Draw ``n`` points with ``sampler`` in ``steps`` steps and score them as the demo does: returns
    ``(js, tokens, stats)``. The demo's sampling jobs and dev/probes/toy_recipe_probe.py both use it."""
    x, stats = sample(model, n, steps, sampler, seed=seed)
    tokens = x.numpy()
    return histogram_js(grid.token_cells(tokens), target, grid.bins), tokens, stats


def _job(payload: dict) -> dict:
    """One job in a worker: ``train`` one method on one dataset (the model is saved under its run
    folder), or ``sample`` that saved model with one sampler at every T and score it. Sampling is its
    own job so that the two workers share it instead of one waiting for the other's last model."""
    torch.set_num_threads(int(payload["threads"]))
    cfg, name, algo, n, seed = payload["cfg"], payload["name"], payload["algo"], payload["n"], payload["seed"]
    out = Path(payload["out"])
    dcfg = cfg["data"]
    label = PointSource(name).label
    if payload["kind"] == "train":
        td = toy2d_data(seed=seed, **{k: v for k, v in dcfg.items() if k != "kind"})
        _, run_dir, rec = train(cfg, data=td, run_dir=out / "runs" / label / algo,
                                callbacks=[step_reporter(lambda **kw: report_progress(payload, **kw))])
        return {"algo": algo, "train": {"wall_s": rec["train_wall_s"], "steps": rec["steps"],
                                        "metrics": rec["train_metrics"], "run_dir": str(run_dir)}}
    report_progress(payload, stage=payload["kind"])
    model = load(Path(payload["run_dir"]) / "model").model.eval()
    if payload["kind"] == "bounds":
        t0, d = time.time(), cfg["demo"]
        x = heldout_tokens(dcfg, int(d["bound_examples"]), seed)
        cells = Grid2D.from_info(dcfg).token_cells(x)
        data_nll = -np.log(np.maximum(np.asarray(payload["target"])[cells[:, 0], cells[:, 1]], 1e-300))
        res = bounds.evaluate(model, x, d["bound_k"], bounds.specs(payload["steps"]), num_t=int(d["bound_draws"]),
                              seed=seed)
        return {"algo": algo, "bounds": bounds.records(res, model.seq_len, reference=data_nll),
                "data_nll": float(data_nll.mean()), "bound_wall_s": time.time() - t0}
    grid, target, sampler = Grid2D.from_info(dcfg), np.asarray(payload["target"]), payload["sampler"]
    res = {"algo": algo, "js": {sampler: {}}, "nfe": {sampler: {}}, "sample_wall_s": {sampler: {}}}
    for T in payload["steps"]:
        t0 = time.time()
        res["js"][sampler][str(T)], tokens, st = sampled_js(model, grid, target, n, T, sampler, seed)
        res["nfe"][sampler][str(T)] = {"calls": st.nfe, "row_evals_per_sample": st.row_evals / n}
        res["sample_wall_s"][sampler][str(T)] = time.time() - t0
        io.write_npy(out / "samples" / label / f"{sampler}_T{T}.npy", grid.decode(tokens).astype(np.float32))
    return res


def run_demo(out: str | Path = "runs/demo", seed: int = 0, data: str | None = None, quick: bool = False,
             steps=STEPS, num_samples: int | None = None, overrides=(), workers: int | None = None,
             log=print) -> dict:
    """Run the comparison; returns (and writes) the results dict. ``workers`` processes share the
    CPU cores (default: one single-threaded worker per core, at most 2 on small machines)."""
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
    out.mkdir(parents=True, exist_ok=True)
    workers, threads = plan_workers(workers)
    results = {"datasets": {}, "steps": list(steps), "num_samples": n, "seed": seed, "workers": workers}
    jobs, grid = [], None
    for name in names:
        source = PointSource(name)
        dcfg = dict(base["data"], name=name)
        grid = Grid2D.from_info(dcfg)
        target, floor = demo_target(source, grid, n, seed, int(base["demo"]["reference_factor"]))
        positive = target[target > 0]
        results["datasets"][source.label] = {"noise_floor": floor, "entropy": float(-(positive * np.log(positive)).sum()),
                                             "train": {}, "js": {}, "nfe": {}, "sample_wall_s": {}, "bounds": {}}
        log(f"[{source.label}] target ready; noise floor JS = {floor:.5f} (N = {n:,})")
        for algo in ("vadd", "mdm"):  # the longer jobs first
            own = [o for o in overrides if algo == "vadd" or not o.lstrip("+~").startswith("algo.")]
            cfg = compose([exp, f"seed={seed}", f"algo={algo}", *own])
            cfg["data"] = dcfg
            cfg["trainer"]["progress"] = workers == 1 and cfg["trainer"].get("progress", True)
            jobs.append({"kind": "train", "cfg": cfg, "name": name, "label": source.label, "algo": algo, "n": n,
                         "desc": f"{source.label} {LABELS[algo]}",
                         "seed": seed, "steps": list(steps), "out": str(out), "target": target, "threads": threads})
    jobs.sort(key=lambda j: j["algo"] != "vadd")
    with_bounds = data is None or data in TOYS  # held-out points exist for the named toys only
    total = len(jobs) + sum(len(ALGORITHMS[j["algo"]].samplers) + with_bounds for j in jobs)
    done = 0

    def collect(job, res):
        """Record a finished job; a finished training returns its sampling jobs, one per sampler."""
        nonlocal done
        done += 1
        entry = results["datasets"][job["label"]]
        elapsed = f"({time.time() - t_start:.0f}s elapsed)"
        if job["kind"] == "train":
            entry["train"][res["algo"]] = res["train"]
            log(f"[{done}/{total}] {job['label']}: {LABELS[res['algo']]} trained to step {res['train']['steps']} "
                f"in {res['train']['wall_s']:.0f}s  {elapsed}")
            io.write_json(out / "results.json", _finish(results, base, grid, t_start))
            follow = [dict(job, kind="sample", sampler=s.name, run_dir=res["train"]["run_dir"],
                           desc=f"{job['label']} {s.label}") for s in ALGORITHMS[job["algo"]].samplers]
            return follow + ([dict(job, kind="bounds", run_dir=res["train"]["run_dir"])] if with_bounds else [])
        if job["kind"] == "bounds":
            entry["bounds"][res["algo"]] = res["bounds"]
            entry["data_nll"] = res["data_nll"]  # exact -log p_data of the evaluated points: their own floor
            log(f"[{done}/{total}] {job['label']}: {LABELS[res['algo']]} likelihood bounds in {res['bound_wall_s']:.0f}s  "
                f"{elapsed}")
            io.write_json(out / "results.json", _finish(results, base, grid, t_start))
            return []
        for key in ("js", "nfe", "sample_wall_s"):
            entry[key].update(res[key])
        wall = sum(res["sample_wall_s"][job["sampler"]].values())
        log(f"[{done}/{total}] {job['label']}: {LABELS[job['sampler']]} sampled T = {list(steps)} in {wall:.0f}s  "
            f"{elapsed}")
        io.write_json(out / "results.json", _finish(results, base, grid, t_start))
        return []

    run_jobs(jobs, _job, workers, collect, log=log)
    for entry in results["datasets"].values():  # fixed order: MDM, VADD, VADD-CS
        entry["js"] = {k: entry["js"][k] for k in ("mdm", "vadd", "vadd-cs") if k in entry["js"]}
    results = _finish(results, base, grid, t_start)
    io.write_json(out / "results.json", results)
    draw_figure(out, results, grid)
    log(format_table(results))
    log(f"wrote {out / 'results.json'}, {out / 'figure.png'}, {out / 'js_vs_steps.png'}, {out / 'nll_vs_steps.png'} "
        f"and samples/ ({results['wall_s']:.0f}s)")
    return results


def _finish(results, cfg, grid, t_start):
    results.update({"grid": grid.to_dict(), "config": cfg})
    return stamp(results, t_start)


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
            pts = np.load(out / "samples" / name / f"{sampler}_T{T}.npy")
            h = grid.histogram(grid.cells(pts))
            ax.imshow(h.T, origin="lower", cmap="magma", interpolation="nearest")
            js = results["datasets"][name]["js"][sampler][str(T)]
            ax.text(0.03, 0.97, f"{js:.3f}", transform=ax.transAxes, fontsize=7, color="w", va="top")
            if r == 0:
                ax.set_title(f"T = {T}", fontsize=9)
    fig.suptitle("Samples against steps T (JS in corner)", fontsize=10)
    fig.tight_layout()
    _savefig(fig, out / "figure.png")
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
    _savefig(fig, path)
    plt.close(fig)


def _savefig(fig, path: Path) -> None:
    import io as _io
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    io.atomic_write_bytes(path, buf.getvalue())
