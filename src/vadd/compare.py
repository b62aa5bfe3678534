"""``vadd compare``: does VADD beat MDM on this data, and at how many steps? Over training seeds.

For each seed, MDM and VADD are trained with the same backbone, budget, data and seed; every sampler of
each (MDM; VADD with a fresh ``z`` per step; VADD-CS with one ``z`` per sample) draws ``N`` samples at
every ``T``, scored against held-out data with the modality's statistic; and both models bound the
negative log-likelihood of held-out rows (``continuous``: ``T -> inf``, and each ``T``-step sampler's
bound; valid upper bounds, VADD importance-weighted). Seeds are an axis: per-seed numbers, their mean and
spread, and every VADD-minus-MDM difference paired by seed with a 95% interval. The run ends with plain
sentences that say where VADD wins, by how much, and how sure that is.

Data (``--data``):

- a 2D toy name or a ``.npy`` file of 2D points: the demo's recipe (``experiment=demo``), scored by the
  JS divergence of the samples' grid histogram to the target cells (:mod:`vadd.demo`);
- a plain integer array ``(N, L)`` (``.npy``, ``.npz``, ``.txt``, ``.csv``): the library defaults
  (``data=tokens``), a fixed seeded 10% held out, scored by :func:`vadd.metrics.tokens.token_stats`
  (the exact sequence distribution where ``V^L`` is small, else pairs of positions).

Every job uses the same number of threads whatever ``--workers`` is, so a rerun of the same command on
the same machine gives the same numbers with any number of workers.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import bounds, io
from .algorithms import ALGORITHMS
from .budget import check_alloc
from .api import load
from .config import compose
from .data.toy2d import TOYS, Grid2D, PointSource, heldout_tokens, is_toy_name
from .errors import ConfigError, DataError, first_line
from .jobs import plan_workers, report_progress, run_jobs, stamp
from .sampling import LABELS, check_steps
from .train import step_reporter, train

STEPS = (1, 2, 5, 10, 20, 50)
# the runs trained per seed: (run name, algorithm); "mdm-matched" is MDM given VADD's training FLOPs
RUNS = (("vadd", "vadd"), ("mdm", "mdm"), ("mdm-matched", "mdm"))
NAMES = {**LABELS, "mdm-matched": "MDM-matched"}
DATA_SPLIT_SEED = 0  # a token file's held-out rows are the same for every training seed (paired across seeds)


# ---- what is compared: the data and its statistic ----------------------------------------------------------
@dataclass
class Target:
    """The data of a comparison and how samples are scored: ``kind`` ``toy2d`` or ``tokens``."""

    data: str
    kind: str
    label: str

    @classmethod
    def resolve(cls, data: str) -> "Target":
        if is_toy_name(data):
            return cls(data, "toy2d", data)
        if not os.path.exists(data):
            raise ConfigError(f"--data {data}: neither a 2D toy ({', '.join(TOYS)}) nor an existing file")
        label = os.path.splitext(os.path.basename(data.rstrip("/")))[0]
        if os.path.isdir(data):
            raise ConfigError(f"--data {data} is a folder: vadd compare reads a token array or 2D points for now "
                              "(images and text corpora: vadd bench-images / bench-text, or vadd train per method)")
        if data.endswith(".npy"):
            try:
                io.check_npy_header(data)
                head = np.load(data, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"{data}: not a readable .npy array ({first_line(e)})") from None
            if head.ndim == 2 and head.shape[1] == 2 and np.issubdtype(head.dtype, np.floating) \
                    and not np.array_equal(np.asarray(head[:1000]), np.round(np.asarray(head[:1000]))):
                PointSource(data)  # checks the file
                return cls(data, "toy2d", label)
        return cls(data, "tokens", label)

    def config(self, algo: str, seed: int, quick: bool, overrides=()) -> dict:
        """The training config of one method: the demo's recipe for 2D data, the library defaults else."""
        own = [o for o in overrides if algo == "vadd" or not o.lstrip("+~").startswith("algo.")]
        if self.kind == "toy2d":
            base = ["experiment=demo_quick" if quick else "experiment=demo", f"data.name={self.data}"]
        else:
            base = ["data=tokens", f"data.train={os.path.abspath(self.data)}"]
            base += ["experiment=compare_quick"] if quick else []
        return compose([*base, f"seed={seed}", f"algo={algo}", *own])

    def token_data(self, cfg: dict, seed: int):
        """The training data (toys: drawn with the seed, as the demo; token files: a fixed split)."""
        from .data import build_data
        return build_data(cfg["data"], seed=seed if self.kind == "toy2d" else DATA_SPLIT_SEED)

    def heldout(self, cfg: dict, n: int, seed: int) -> np.ndarray:
        """Held-out rows for the likelihood bounds (toys: fresh points, else the first rows of the test split)."""
        if self.kind == "toy2d" and is_toy_name(self.data):
            return heldout_tokens(cfg["data"], n, seed)
        return self.token_data(cfg, seed).test[:n].numpy()

    def scorer(self, cfg: dict, n: int, seed: int, reference_factor: int = 100) -> "Scorer":
        if self.kind == "toy2d":
            from .demo import demo_target
            grid = Grid2D.from_info(cfg["data"])
            target, floor = demo_target(PointSource(self.data), grid, n, seed, reference_factor)
            return Scorer("js", {"js": floor}, lambda tok: {"js": _grid_js(grid, target, tok)}, grid.decode)
        from .metrics.tokens import primary_stat, token_stats
        td = self.token_data(cfg, seed)
        ref = td.test.numpy()
        # the floor: n training rows (a perfect model's sample, up to overfitting) against the same reference
        rows = np.random.default_rng([seed, 23]).integers(0, len(td.train), n)
        floor = token_stats(td.train.numpy()[rows], ref, td.vocab_size)
        return Scorer(primary_stat(td.vocab_size, td.seq_len), floor,
                      lambda tok: token_stats(tok, ref, td.vocab_size), None)


def _grid_js(grid, target, tokens) -> float:
    from .metrics import histogram_js
    return histogram_js(grid.token_cells(tokens), target, grid.bins)


@dataclass
class Scorer:
    primary: str          # the statistic the sentences are about (lower is better)
    floor: dict           # the statistics of true data of the same size: what a perfect model reaches
    score: object         # tokens (N, L) -> {statistic: value}
    decode: object        # tokens -> what is saved beside them (2D points), or None


# ---- the jobs (run in worker processes) -----------------------------------------------------------------
def _job(p: dict) -> dict:
    torch.set_num_threads(int(p["threads"]))
    target, cfg, seed, out = Target(**p["target"]), p["cfg"], p["seed"], Path(p["out"])
    run_dir = out / "runs" / f"seed{seed}" / p["run"]
    if p["kind"] == "train":
        _, run_dir, rec = train(cfg, data=target.token_data(cfg, seed), run_dir=run_dir,
                                callbacks=[step_reporter(lambda **kw: report_progress(p, **kw))])
        return {"wall_s": rec["train_wall_s"], "steps": rec["steps"], "metrics": rec["train_metrics"]}
    report_progress(p, stage=p["kind"])
    model = load(run_dir / "model").model.eval()
    if p["kind"] == "bounds":
        t0 = time.time()
        x = target.heldout(cfg, int(p["bound_examples"]), seed)
        ks = [1] if not model.latent_dim else sorted({1, int(p["bound_k"])})
        res = bounds.evaluate(model, x, ks, bounds.specs(p["steps"]), num_t=int(p["bound_draws"]), seed=seed)
        return {"bounds": bounds.records(res, model.seq_len), "wall_s": time.time() - t0}
    from .sampling import sample
    scorer = target.scorer(cfg, p["n"], seed, int(p.get("reference_factor", 100)))
    rows = {}
    for T in p["steps"]:
        t0 = time.time()
        x, st = sample(model, p["n"], T, p["sampler"], seed=seed)
        tokens = x.numpy()
        rows[str(T)] = {**scorer.score(tokens), "nfe": st.nfe, "wall_s": time.time() - t0}
        io.write_npy(out / "samples" / f"seed{seed}" / f"{p['method']}_T{T}.npy",
                     tokens if scorer.decode is None else scorer.decode(tokens).astype(np.float32))
    return {"stats": rows}


# ---- the runner ---------------------------------------------------------------------------------------------
def training_flops(cfg: dict, data) -> int:
    """FLOPs of one training step (forward and backward, one batch) of the model ``cfg`` describes on
    ``data``, counted by torch's FLOP counter: machine-independent, so a compute-matched budget derived from
    it is the same on every rerun."""
    from torch.utils.flop_counter import FlopCounterMode

    from .build import build_model, model_spec
    torch.manual_seed(0)
    model = build_model(model_spec(cfg["model"], cfg["algo"], data.vocab_size, data.seq_len, data.info)).train()
    x = data.train[: int(cfg["trainer"]["batch_size"])]
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.loss(x, generator=torch.Generator().manual_seed(0))
        loss.backward()
    return int(counter.get_total_flops())


def run_compare(data: str, out: str | Path = "runs/compare", seeds=(0,), steps=STEPS, quick: bool = False,
                num_samples: int | None = None, bound_examples: int | None = None, bound_k: int | None = None,
                bound_draws: int | None = None, matched_mdm: bool = True, overrides=(), workers: int | None = None,
                log=print) -> dict:
    """Train, sample, score and bound MDM and VADD (and MDM given VADD's training FLOPs, unless
    ``matched_mdm`` is false) on ``data`` for every seed; returns (and writes under ``out``) the results:
    ``results.json``, ``tables.md``, ``compare.png`` and ``samples/``."""
    t_start = time.time()
    target = Target.resolve(str(data))
    seeds = [int(s) for s in dict.fromkeys(seeds)]
    steps = sorted({int(T) for T in steps})
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds must be non-negative integers, got {seeds}")
    if not steps or steps[0] < 1:
        raise ConfigError(f"--steps must be positive integers, got {steps}")
    runs = [(r, a) for r, a in RUNS if matched_mdm or r != "mdm-matched"]
    cfgs = {(a, s): target.config(a, s, quick, overrides) for a in ("vadd", "mdm") for s in seeds}  # fail early
    workers, threads = plan_workers(workers)
    for cfg in cfgs.values():  # a progress bar only where one job runs at a time (else one line per 20 s)
        cfg["trainer"]["progress"] = workers == 1 and cfg["trainer"].get("progress", True)
    d = cfgs[("vadd", seeds[0])].get("demo", {})
    n = int(num_samples or d.get("num_samples") or (2000 if quick else 20_000))
    settings = {"num_samples": n, "bound_examples": int(bound_examples or d.get("bound_examples") or (64 if quick else 1000)),
                "bound_k": int(bound_k or max(d.get("bound_k") or [4 if quick else 100])),
                "bound_draws": int(bound_draws or d.get("bound_draws") or (1 if quick else 2)),
                "reference_factor": int(d.get("reference_factor", 100))}
    for v in settings.values():
        if v < 1:
            raise ConfigError(f"sample and bound counts must be positive, got {settings}")
    check_steps(steps[-1])  # what sampling and scoring would refuse, refused before any training
    td = target.token_data(cfgs[("vadd", seeds[0])], seeds[0])
    per_sample = 16.0 * (settings["reference_factor"] if target.kind == "toy2d" else 2 * td.seq_len)
    check_alloc(n * per_sample, f"--num-samples {n:,} (with the reference data it is scored against)", "--num-samples")
    budget = {}
    if matched_mdm:
        flops = {a: training_flops(cfgs[(a, seeds[0])], td) for a in ("vadd", "mdm")}
        mdm_steps = int(cfgs[("mdm", seeds[0])]["trainer"]["max_steps"])
        matched = int(math.ceil(mdm_steps * flops["vadd"] / flops["mdm"]))
        budget = {"flops_per_step": flops, "ratio": flops["vadd"] / flops["mdm"], "mdm_steps": mdm_steps,
                  "matched_steps": matched}
        for s in seeds:
            cfgs[("mdm-matched", s)] = dict(cfgs[("mdm", s)], trainer=dict(cfgs[("mdm", s)]["trainer"], max_steps=matched))
        log(f"compute matching: a VADD step costs {budget['ratio']:.3f}x an MDM step in FLOPs; the matched MDM "
            f"trains {matched} steps instead of {mdm_steps}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"data": str(data), "kind": target.kind, "label": target.label, "seeds": seeds, "steps": steps,
               **settings, "compute_matching": budget, "workers": workers, "threads_per_job": threads,
               "overrides": list(overrides), "per_seed": {str(s): {"train": {}, "stats": {}, "bounds": {}} for s in seeds}}
    jobs = [{"kind": "train", "target": target.__dict__, "cfg": cfgs[(r if r == "mdm-matched" else a, s)], "run": r,
             "algo": a, "seed": s, "n": n, "steps": steps, "out": str(out), "threads": threads,
             "desc": f"seed {s} {NAMES[r]}", **settings} for s in seeds for r, a in runs]
    total = len(jobs) + sum(len(ALGORITHMS[j["algo"]].samplers) + 1 for j in jobs)
    done = 0
    log(f"vadd compare: {target.label} ({target.kind}), seeds {seeds}, T = {steps}, N = {n:,}; "
        f"{len(jobs)} trainings, {workers} worker(s) x {threads} thread(s)")

    def collect(job, res):
        nonlocal done
        done += 1
        entry = results["per_seed"][str(job["seed"])]
        when = f"({time.time() - t_start:.0f}s elapsed)"
        if job["kind"] == "train":
            entry["train"][job["run"]] = res
            log(f"[{done}/{total}] seed {job['seed']}: {NAMES[job['run']]} trained to step {res['steps']} in "
                f"{res['wall_s']:.0f}s  {when}")
            follow = [dict(job, kind="sample", sampler=s, method=job["run"] if job["algo"] == "mdm" else s,
                           desc=f"seed {job['seed']} {NAMES[job['run'] if job['algo'] == 'mdm' else s]}")
                      for s in ALGORITHMS[job["algo"]].samplers]
            return follow + [dict(job, kind="bounds", desc=f"seed {job['seed']} {NAMES[job['run']]} bounds")]
        if job["kind"] == "bounds":
            entry["bounds"][job["run"]] = res["bounds"]
            log(f"[{done}/{total}] seed {job['seed']}: {NAMES[job['run']]} likelihood bounds in "
                f"{res['wall_s']:.0f}s  {when}")
        else:
            entry["stats"][job["method"]] = res["stats"]
            log(f"[{done}/{total}] seed {job['seed']}: {NAMES[job['method']]} sampled and scored at T = {steps}  "
                f"{when}")
        return []

    run_jobs(jobs, _job, workers, collect, log=log)
    scorer = target.scorer(cfgs[("mdm", seeds[0])], n, seeds[0], settings["reference_factor"])
    results["statistic"], results["floor"] = scorer.primary, scorer.floor
    results["summary"] = summarize(results)
    results["sentences"] = sentences(results)
    stamp(results, t_start)
    io.write_json(out / "results.json", results)
    text = format_tables(results)
    io.atomic_write_bytes(out / "tables.md", text.encode())
    draw(out / "compare.png", results)
    log(text)
    log(f"wrote {out / 'results.json'}, {out / 'tables.md'}, {out / 'compare.png'} and samples/ "
        f"({results['wall_s']:.0f}s)")
    return results


# ---- statistics over seeds ---------------------------------------------------------------------------------
def spread(values) -> dict:
    """Mean, sample standard deviation and the 95% t-interval half-width of the mean over seeds."""
    v = np.asarray(list(values), dtype=np.float64)
    if len(v) < 2:
        return {"mean": float(v.mean()), "std": None, "ci95": None, "n": len(v)}
    from scipy.stats import t as student_t  # scipy comes with scikit-learn, a dependency
    std = float(v.std(ddof=1))
    t = float(student_t.ppf(0.975, len(v) - 1))
    return {"mean": float(v.mean()), "std": std, "ci95": t * std / math.sqrt(len(v)), "n": len(v)}


def _bound_key(rec: dict) -> str:
    return "continuous" if rec["bound"] == "continuous" else f"T{rec['steps']}"


METHODS = ("mdm", "mdm-matched", "vadd", "vadd-cs")  # table order
BASELINES = ("mdm", "mdm-matched")


def _bound_of(recs: list, key: str, K: int | None = None) -> float:
    """The nats per example of bound ``key`` (``continuous`` or ``T5``) at ``K`` (default: the largest)."""
    mine = [r for r in recs if _bound_key(r) == key]
    K = max(r["K"] for r in mine) if K is None else K
    return next(r["nats_per_example"] for r in mine if r["K"] == K)


def summarize(results: dict) -> dict:
    """Mean and spread over seeds of every statistic and bound, and each VADD sampler's difference from each
    MDM paired by seed (the seeds where it is lower, the ratio MDM / VADD, the difference's 95% interval)."""
    seeds, stat = [str(s) for s in results["seeds"]], results["statistic"]
    per = results["per_seed"]
    methods = [m for m in METHODS if all(m in per[k]["stats"] for k in seeds)]
    out = {"stats": {}, "paired": {}, "bounds": {}, "bounds_paired": {}}
    for m in methods:
        out["stats"][m] = {T: {name: spread(per[k]["stats"][m][T][name] for k in seeds)
                               for name in per[seeds[0]]["stats"][m][T] if name not in ("nfe", "wall_s")}
                           for T in per[seeds[0]]["stats"][m]}
    for m in (m for m in methods if m.startswith("vadd")):
        for base in (b for b in BASELINES if b in methods):
            rows = out["paired"].setdefault(m, {}).setdefault(base, {})
            for T in out["stats"][m]:
                a = np.array([per[k]["stats"][m][T][stat] for k in seeds])
                b = np.array([per[k]["stats"][base][T][stat] for k in seeds])
                ratio = np.exp(np.mean(np.log(np.maximum(b, 1e-12) / np.maximum(a, 1e-12))))
                rows[T] = {"diff": spread(a - b), "wins": int((a < b).sum()), "seeds": len(seeds),
                           "ratio_mdm_over": float(ratio)}
    runs = [r for r in ("mdm", "mdm-matched", "vadd") if all(r in per[k]["bounds"] for k in seeds)]
    for r in runs:
        recs = {k: {(_bound_key(x), x["K"]): x["nats_per_example"] for x in per[k]["bounds"][r]} for k in seeds}
        out["bounds"][r] = {f"{b}/K{K}": spread(recs[k][(b, K)] for k in seeds) for b, K in recs[seeds[0]]}
    if "vadd" in runs:
        for base in (b for b in BASELINES if b in runs):
            for key in (x.split("/")[0] for x in out["bounds"][base]):
                v = [_bound_of(per[k]["bounds"]["vadd"], key) - _bound_of(per[k]["bounds"][base], key) for k in seeds]
                mean_base = out["bounds"][base][f"{key}/K1"]["mean"]
                out["bounds_paired"].setdefault(base, {})[key] = {
                    "K": max(x["K"] for x in per[seeds[0]]["bounds"]["vadd"]), "diff": spread(v),
                    "relative": float(np.mean(v) / mean_base), "lower_at": int(sum(x < 0 for x in v)),
                    "seeds": len(seeds)}
    return out


def _verdict(p: dict) -> str:
    """``win`` (lower at every seed and, with seeds to tell, the interval excludes 0), ``loss`` (the reverse),
    ``mixed`` otherwise."""
    d, n = p["diff"], p["seeds"]
    sure = d["ci95"] is None or abs(d["mean"]) > d["ci95"]
    if p["wins"] == n and sure:
        return "win"
    if p["wins"] == 0 and sure and d["mean"] > 0:
        return "loss"
    return "mixed"


def _ts(Ts) -> str:
    return ", ".join(str(T) for T in Ts)


def _pm(d: dict, fmt: str = ".4g") -> str:
    return f"{d['mean']:+{fmt}}" + (f" ± {d['ci95']:{fmt}}" if d["ci95"] is not None else "")


def sentences(results: dict) -> list[str]:
    """The plain reading of the tables: for each VADD sampler against each MDM, the T where it is lower at every
    seed (with a 95% interval of the paired difference that excludes 0), higher, or within seed spread; then
    the likelihood bounds. Generated from ``summary`` alone, so they always match the tables."""
    S, stat, n = results["summary"], results["statistic"], len(results["seeds"])
    seeds = f"{n} training seed{'s' if n > 1 else ''}" + ("" if n > 1 else ", so no interval: use --seeds 0 1 2")
    lines = []
    for m, by_base in S["paired"].items():
        for base, byT in by_base.items():
            Ts = sorted(byT, key=int)
            v = {T: _verdict(byT[T]) for T in Ts}
            win, loss, mixed = ([T for T in Ts if v[T] == w] for w in ("win", "loss", "mixed"))
            who = NAMES[base] + (" (MDM given VADD's training FLOPs)" if base == "mdm-matched" else "")
            head = f"{NAMES[m]} against {who} ({stat}, lower is better; {seeds}): "
            if win:
                T0 = min(win, key=int)
                r = byT[T0]
                head += (f"lower at every seed at T = {_ts(win)}; at T = {T0} {S['stats'][m][T0][stat]['mean']:.4g} "
                         f"against {S['stats'][base][T0][stat]['mean']:.4g} ({r['ratio_mdm_over']:.1f}x lower, "
                         f"difference {_pm(r['diff'])})")
            else:
                head += "lower at every seed at no T"
            if loss:
                head += f"; higher at every seed at T = {_ts(loss)}"
            if mixed:
                head += f"; not lower at every seed (or within the interval) at T = {_ts(mixed)}"
            lines.append(head + ".")
    for base, byb in S["bounds_paired"].items():
        if "continuous" in byb:
            p = byb["continuous"]
            side = "below" if p["diff"]["mean"] < 0 else "above"
            lines.append(f"VADD's continuous-time likelihood bound (K = {p['K']}) is {abs(p['relative']) * 100:.2f}% "
                         f"{side} {NAMES[base]}'s ({_pm(p['diff'])} nats per example, paired by seed; lower at "
                         f"{p['lower_at']} of {p['seeds']} seeds).")
        few = sorted((b for b in byb if b != "continuous"), key=lambda b: int(b[1:]))
        if few:
            lower = [b[1:] for b in few if byb[b]["lower_at"] == byb[b]["seeds"]]
            lines.append(f"VADD's T-step likelihood bound is below {NAMES[base]}'s at every seed at "
                         + (f"T = {_ts(lower)}" if lower else "no T") + f" (of T = {_ts(b[1:] for b in few)}).")
    return lines


# ---- tables and figure --------------------------------------------------------------------------------------
def _cell(sp: dict, digits: int = 4) -> str:
    """``mean ± sd``: ``digits`` significant figures for the mean, two for the spread (statistics near 0 keep
    their digits; bounds of a few nats read to the third decimal)."""
    return f"{sp['mean']:.{digits}g}" + (f" ± {sp['std']:.2g}" if sp["std"] is not None else "")


def format_tables(results: dict) -> str:
    S, stat, steps = results["summary"], results["statistic"], results["steps"]
    n = len(results["seeds"])
    head = "| sampler | " + " | ".join(f"T={T}" for T in steps) + " |"
    rule = "|---|" + "---:|" * len(steps)
    budget = results.get("compute_matching") or {}
    out = [f"# vadd compare: {results['label']}", "",
           f"{stat} of {results['num_samples']:,} samples against held-out data (lower is better); mean ± standard "
           f"deviation over {n} training seed(s) {results['seeds']}; true data of the same size reaches "
           f"{results['floor'].get(stat, float('nan')):.4f}. Ratios: MDM / VADD, geometric mean over seeds, and the "
           "seeds where VADD is lower."]
    if budget:
        out += ["", f"{NAMES['mdm-matched']}: the compute-matched baseline, MDM trained {budget['matched_steps']} steps instead of "
                    f"{budget['mdm_steps']}, the FLOPs of VADD's training (a VADD step costs {budget['ratio']:.3f}x an "
                    "MDM step, counted by torch's FLOP counter)."]
    out += ["", head, rule]
    for m, byT in S["stats"].items():
        out.append(f"| {NAMES[m]} | " + " | ".join(_cell(byT[str(T)][stat]) for T in steps) + " |")
    for m, by_base in S["paired"].items():
        for base, byT in by_base.items():
            out.append(f"| *{NAMES[base]} / {NAMES[m]}* | " + " | ".join(
                f"*{byT[str(T)]['ratio_mdm_over']:.1f}x ({byT[str(T)]['wins']}/{byT[str(T)]['seeds']})*"
                for T in steps) + " |")
    if S["bounds"]:
        keys = ["continuous"] + [f"T{T}" for T in steps]
        out += ["", "Likelihood bounds (nats per held-out example; valid upper bounds on -log p of each model's T-step "
                    "sampler and of its T -> inf limit, VADD importance-weighted with K draws of z):", "",
                "| model | T -> inf | " + " | ".join(f"T={T}" for T in steps) + " |", "|---|" + "---:|" * len(keys)]
        for r, recs in S["bounds"].items():
            for K in sorted({int(k.split("/K")[1]) for k in recs}):
                label = NAMES[r] if r != "vadd" else f"VADD K={K}"
                out.append(f"| {label} | " + " | ".join(_cell(recs[f"{b}/K{K}"], 5) if f"{b}/K{K}" in recs else "-"
                                                       for b in keys) + " |")
    out += ["", "## Reading", ""] + [f"- {line}" for line in results["sentences"]]
    return "\n".join(out) + "\n"


def draw(path: Path, results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S, stat, steps = results["summary"], results["statistic"], results["steps"]
    panels = 2 if S["bounds"] else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    for m, byT in S["stats"].items():
        ax.errorbar(steps, [byT[str(T)][stat]["mean"] for T in steps],
                    yerr=[byT[str(T)][stat]["std"] or 0.0 for T in steps], marker="o", capsize=3, label=NAMES[m],
                    ls="--" if m == "mdm-matched" else "-")
    ax.axhline(results["floor"].get(stat, np.nan), color="gray", ls="--", label="true data, same N")
    ax.set(xscale="log", yscale="log", xlabel="sampling steps T", ylabel=f"{stat} (mean ± sd over seeds)",
           title=results["label"])
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0, 1]
        for r, recs in S["bounds"].items():
            K = max(int(k.split("/K")[1]) for k in recs)
            line = ax.errorbar(steps, [recs[f"T{T}/K{K}"]["mean"] for T in steps],
                               yerr=[recs[f"T{T}/K{K}"]["std"] or 0.0 for T in steps], marker="o", capsize=3,
                               label=NAMES[r] if r != "vadd" else f"VADD K={K}", ls="--" if r == "mdm-matched" else "-")
            ax.axhline(recs[f"continuous/K{K}"]["mean"], color=line[0].get_color(), ls=":", lw=1)
        ax.set(xscale="log", xlabel="sampling steps T (dotted: T -> inf)", ylabel="NLL bound (nats per example)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    from .demo import _savefig
    _savefig(fig, path)
    plt.close(fig)
