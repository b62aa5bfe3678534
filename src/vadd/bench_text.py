"""Text benchmark: MDM and VADD (and an autoregressive baseline for likelihoods) with the same DiT,
budget and seed.

Measures, side by side in one run:

- test perplexity bound on the training corpus' held-out documents (MDM: ELBO; VADD: importance-weighted
  with ``K`` samples, the bound against ``K``; AR: exact) and zero-shot on every other installed corpus;
- generative perplexity of ``N`` unconditional samples under the judge LM with their unigram entropy,
  against the number of steps ``T``, for MDM, VADD and VADD-CS;
- prompted continuations (the first tokens of test rows kept, the rest generated) printed as text.

    vadd bench-text --out runs/text            # the CPU protocol (experiment=text_cpu128)
    vadd bench-text --experiment text_cpu      # the same with rows of 64 tokens
    vadd bench-text --quick --judge none       # a tiny run (tests)
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
from .data.text import text_data
from .jobs import plan_workers, report, report_progress, run_jobs, stamp
from .metrics.genppl import unigram_entropy
from .sampling import sample
from .train import metric_curve, step_reporter, train

QUICK = ["data.max_docs=60", "data.seq_len=32", "model.denoiser.depth=1", "model.denoiser.width=32",
         "model.denoiser.heads=2", "model.encoder.depth=1", "model.encoder.width=32", "model.encoder.heads=2",
         "model.denoiser.cond_dim=16", "algo.latent_dim=4",
         "trainer.max_steps=4", "trainer.batch_size=8", "trainer.warmup_steps=1", "trainer.progress=false",
         "trainer.ckpt_every=0", "trainer.diag_every=2", "trainer.log_every=2", "trainer.print_every=0",
         "trainer.val_every=2", "trainer.val_rows=8",
         "bench.steps=[2,4]", "bench.num_samples=4", "bench.ppl_rows=8", "bench.bpd_k=[1,3]", "bench.ppl_draws=2",
         "bench.bound_steps=[2]", "bench.bound_steps_rows=4",
         "bench.zero_shot=[]", "bench.prompt_rows=2", "bench.prompt_tokens=8", "bench.prompt_steps=4"]


def _data(cfg, corpus=None, vocab=None):
    """The run's corpus, or another installed ``corpus`` (zero-shot) in the same token ids: with a limited
    vocabulary, ``vocab`` (the training corpus' kept ids) maps it."""
    d = dict(cfg["data"])
    d.pop("kind", None)
    if corpus:
        d.update(corpus=corpus, path=None, vocab=vocab)
    return text_data(seed=int(cfg.get("seed", 0)), **d)


@torch.no_grad()
def bound_nats(model, tokens: torch.Tensor, ks, seed: int, batch: int = 32, draws: int = 1,
               estimator: str = "count", steps: int | None = None) -> dict:
    """Per-sequence bounds in nats, ``{K: array}``, the mean of ``draws`` Monte-Carlo draws per row: the
    ``continuous`` bound, or with ``steps = T`` the bound of the T-step sampler (AR: exact NLL, MDM:
    ``K = 1``). ``vadd.bounds.evaluate`` draws from ``seed`` and the batch layout alone, so every model and
    every K are scored on the same mask patterns row by row and their differences are paired ones.
    ``estimator="count"`` (the masked-count rewrite, weight at most ``L``) instead of the antithetic-time
    one (weight ``~ 1/t``), whose single draws per row scatter far more on long rows."""
    spec = bounds.BoundSpec("continuous") if steps is None else bounds.BoundSpec("steps", int(steps))
    res = bounds.evaluate(model, tokens, [ks] if isinstance(ks, int) else ks, [spec], num_t=draws, seed=seed,
                          batch_size=batch, estimator=estimator)
    return next(iter(res.values()))


def steps_bounds(model, test: torch.Tensor, bench: dict, seed: int, folder: Path, algo: str) -> dict:
    """The bound of the T-step sampler (the few-step likelihood) on the first ``bench.bound_steps_rows`` rows
    for each ``T`` in ``bench.bound_steps``: ``{str(T): {K: per-row nats}}``, each array also saved as
    ``folder/{algo}_test-T{T}_K{K}.npy`` (the "test-T<T>" split of the paired differences)."""
    m = int(bench.get("bound_steps_rows", 0))
    out = {}
    for T in (bench.get("bound_steps") or []) if m else []:
        out[str(T)] = bound_nats(model, test[:m], bench.get("bound_steps_k", [1]), seed,
                                 estimator=str(bench.get("ppl_estimator", "count")), steps=int(T))
        for k, nats in out[str(T)].items():
            np.save(folder / f"{algo}_test-T{T}_K{k}.npy", nats)
    return out


def add_bound_arguments(ap) -> None:
    """The options of the scripts that score text runs' bounds as the benchmark does (``benchmarks/
    text_prior_z.py``, ``text_pair_bounds.py``): held-out rows, draws per row, seed, threads, output file."""
    ap.add_argument("--rows", type=int, default=256, help="held-out rows (the benchmark's ppl_rows)")
    ap.add_argument("--draws", type=int, default=4, help="(t, xt) draws per row (the benchmark's ppl_draws)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="a JSON file for the results")


def perplexity_summary(nats: np.ndarray, L: int) -> dict:
    """Per-row bounds in nats (rows of ``L`` tokens) as perplexity, mean nats per token and its s.e."""
    per_tok = nats / L
    return {"ppl": float(math.exp(per_tok.mean())), "nats_per_token": float(per_tok.mean()),
            "stderr_nats_per_token": float(per_tok.std(ddof=1) / math.sqrt(len(per_tok))) if len(per_tok) > 1 else 0.0,
            "n": int(len(nats))}


def _job(p: dict) -> dict:
    torch.set_num_threads(int(p["threads"]))
    cfg, algo, out, seed = p["cfg"], p["algo"], Path(p["out"]), p["seed"]
    bench = cfg["bench"]
    td = _data(cfg)
    model, run_dir, rec = train(cfg, data=td, run_dir=out / "runs" / algo,
                                callbacks=[step_reporter(lambda **kw: report_progress(p, **kw))])
    report_progress(p, stage="sampling and scoring")
    model.eval()
    L = td.seq_len
    res = {"algo": algo, "train": {"wall_s": rec["train_wall_s"], "steps": rec["steps"],
                                   "metrics": rec["train_metrics"], "run_dir": str(run_dir),
                                   "val_curve": metric_curve(run_dir, "val/nats_per_token")},
           "ppl": {}, "zero_shot": {}, "samples": {}, "prompted": {}}
    ks = [int(k) for k in bench["bpd_k"]]  # the K each model's sampler reports (MDM, AR: K = 1)
    n = int(bench["ppl_rows"])
    t0 = time.time()
    test = td.test[:n]
    draws, est = int(bench.get("ppl_draws", 1)), str(bench.get("ppl_estimator", "count"))
    folder = out / "bounds"
    folder.mkdir(parents=True, exist_ok=True)
    for k, nats in bound_nats(model, test, ks, seed, draws=draws, estimator=est).items():
        np.save(folder / f"{algo}_test_K{k}.npy", nats)  # per-row nats for the paired differences (report)
        res["ppl"][str(k)] = perplexity_summary(nats, L)
    kz = [k for k in ks if k <= int(bench.get("zero_shot_k", ks[-1]))][-1:] or ks[:1]
    for corpus in bench["zero_shot"]:
        other = _data(cfg, corpus, td.info.get("vocab")).test[:n]
        for k, nats in bound_nats(model, other, kz, seed, draws=draws, estimator=est).items():
            np.save(folder / f"{algo}_{corpus}_K{k}.npy", nats)
            res["zero_shot"][corpus] = {str(k): perplexity_summary(nats, L)}
    res["ppl_steps"] = {} if algo == "ar" else {
        T: {str(k): perplexity_summary(v, L) for k, v in got.items()}
        for T, got in steps_bounds(model, test, bench, seed, folder, algo).items()}
    res["ppl_wall_s"] = time.time() - t0
    for sampler in (s.name for s in model.samplers):
        res["samples"][sampler] = {}
        for T in bench["steps"]:
            t0 = time.time()
            x, st = sample(model, int(bench["num_samples"]), int(T), sampler, seed=seed, batch_size=256)
            texts = td.decode(x.numpy())
            res["samples"][sampler][str(T)] = {"entropy": unigram_entropy(x.numpy()), "nfe": st.nfe,
                                               "wall_s": time.time() - t0}
            io.write_json(out / "samples" / f"{sampler}_T{T}.json", texts)
        # prompted continuations: the first prompt_tokens of test rows are given, the rest generated
        m = min(int(bench["prompt_rows"]), len(td.test))
        x_init = td.test[-m:].clone()
        x_init[:, int(bench["prompt_tokens"]):] = model.mask_id
        x, _ = sample(model, x_init=x_init, steps=int(bench["prompt_steps"]), sampler=sampler, seed=seed)
        k = int(bench["prompt_tokens"])
        res["prompted"][sampler] = [{"prompt": td.decode(x[i:i + 1, :k].numpy())[0],
                                     "continuation": td.decode(x[i:i + 1, k:].numpy())[0]} for i in range(m)]
    return res


def run_bench(out: str | Path = "runs/text", seed: int = 0, quick: bool = False, experiment: str = "text_cpu128",
              overrides=(), judge: str = "smollm2", workers: int | None = None, log=print) -> dict:
    t_start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers, threads = plan_workers(workers)
    extra = [*(QUICK if quick else []), *overrides]
    base = compose([f"experiment={experiment}", f"seed={seed}", *extra])
    for old in (out / "bounds").glob("*.npy"):  # a rerun into the same folder: pair only this run's bounds
        old.unlink()
    results = {"experiment": experiment, "data": base["data"], "bench": base["bench"], "config": base,
               "models": {}, "seed": seed, "quick": quick, "judge": judge, "workers": workers}
    jobs = []
    for algo in ("vadd", "mdm", "ar"):
        own = [o for o in extra if algo == "vadd" or not o.lstrip("+~").startswith("algo.")]
        cfg = compose([f"experiment={experiment}", f"seed={seed}", f"algo={algo}", *own])
        cfg["trainer"]["progress"] = workers == 1 and cfg["trainer"].get("progress", True)
        jobs.append({"cfg": cfg, "algo": algo, "seed": seed, "out": str(out), "threads": threads,
                     "desc": LABELS[algo]})

    def collect(job, res):
        results["models"][job["algo"]] = res
        log(f"{LABELS[job['algo']]} trained to step {res['train']['steps']} in {res['train']['wall_s']:.0f}s; "
            f"scored ({time.time() - t_start:.0f}s elapsed)")
        io.write_json(out / "results.json", stamp(results, t_start))

    run_jobs(jobs, _job, workers, collect, log=log)
    results["paired"] = paired_differences(out / "bounds", int(base["data"]["seq_len"]))
    if judge != "none":
        score_samples(out, results, judge, log)
    return report(out, results, t_start, draw_figure, format_tables, log)


def paired_differences(folder: Path, L: int) -> dict:
    """VADD's bound minus MDM's, row by row on the same draws, in nats per token: ``{split: {K: {mean,
    stderr, n}}}`` (negative: VADD's bound is lower). Pairing removes the rows' own difficulty and the shared
    mask patterns' noise, which dominate each bound's standard error."""
    out = {}
    for mdm in sorted(folder.glob("mdm_*_K1.npy")):
        split = mdm.name[len("mdm_"):-len("_K1.npy")]
        a = np.load(mdm)
        for v in sorted(folder.glob(f"vadd_{split}_K*.npy"), key=lambda p: int(p.stem.rsplit("K", 1)[1])):
            out.setdefault(split, {})[v.stem.rsplit("K", 1)[1]] = paired_difference(np.load(v), a, L)
    return out


def paired_difference(vadd_nats: np.ndarray, mdm_nats: np.ndarray, L: int) -> dict:
    """``{mean, stderr, n}`` of VADD's per-row bound minus MDM's (same rows and draws), in nats per token."""
    d = (vadd_nats - mdm_nats) / L
    return {"mean": float(d.mean()), "stderr": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0,
            "n": int(len(d))}


def _split_order(split: str):
    """The held-out split first, then its T-step bounds by T, then the zero-shot corpora."""
    if split == "test":
        return (0, 0, "")
    if split.startswith("test-T"):
        return (1, int(split[len("test-T"):]), "")
    return (2, 0, split)


def score_samples(out: Path, results: dict, judge: str, log=print) -> None:
    """Generative perplexity of every saved sample set under the judge (loaded once)."""
    from .metrics.genppl import Judge
    t0 = time.time()
    j = Judge.smollm2() if judge == "smollm2" else Judge.from_pretrained(judge)
    results["judge_name"] = j.name
    sets = [(sampler, T, entry) for res in results["models"].values()
            for sampler, rows in res["samples"].items() for T, entry in rows.items()]
    for n, (sampler, T, entry) in enumerate(sets, 1):
        texts = io.read_json(out / "samples" / f"{sampler}_T{T}.json")
        s = j.score(texts)
        entry.update(gen_ppl=s["gen_ppl"], judge_tokens=s["tokens"], gen_nll_stderr=s["nll_stderr"])
        log(f"judge: {LABELS[sampler]} T={T} gen-PPL {s['gen_ppl']:.1f} ({n}/{len(sets)} sets, "
            f"{time.time() - t0:.0f}s)")
    log(f"judge scores done ({time.time() - t0:.0f}s)")


def format_tables(results) -> str:
    models, b, d = results["models"], results["bench"], results["data"]
    vocab = f" limited to {d['vocab_limit']:,} ids with <unk>" if d.get("vocab_limit") else ""
    lines = [f"### Test perplexity bound: {d['corpus']} held-out documents, {d['tokenizer']} tokens{vocab}, "
             f"length {d['seq_len']} ({b['ppl_rows']} rows); lower is better\n",
             "| model | K | perplexity (bound) | nats/token ± s.e. |", "|---|---|---|---|"]
    for algo in ("ar", "mdm", "vadd"):
        for k, v in models.get(algo, {}).get("ppl", {}).items():
            kk = k if algo == "vadd" else "-"
            lines.append(f"| {LABELS[algo]} | {kk} | {v['ppl']:.2f} | {v['nats_per_token']:.4f} ± "
                         f"{v['stderr_nats_per_token']:.4f} |")
    paired = results.get("paired", {})
    if paired:
        ks_all = sorted({k for per_k in paired.values() for k in per_k}, key=int)
        lines += ["", f"VADD minus MDM, row by row on the same draws ({b.get('ppl_draws', 1)} per row, "
                      f"{b.get('ppl_estimator', 'count')} estimator; test-T<T>: the T-step sampler's bound, one "
                      "draw per row), nats/token ± s.e.; negative: VADD lower\n",
                  "| data | " + " | ".join(f"K={k}" for k in ks_all) + " |", "|---|" + "---|" * len(ks_all)]
        for split in sorted(paired, key=_split_order):
            per_k = paired[split]
            lines.append(f"| {split} | " + " | ".join(
                f"{per_k[k]['mean']:+.4f} ± {per_k[k]['stderr']:.4f}" if k in per_k else "-" for k in ks_all) + " |")
    with_steps = [a for a in ("mdm", "vadd") if models.get(a, {}).get("ppl_steps")]
    if with_steps:
        steps_t = list(models[with_steps[0]]["ppl_steps"])
        lines += ["", f"### Bound of the T-step sampler (perplexity, first {b.get('bound_steps_rows')} rows; one "
                      "reveal path per row); lower is better\n",
                  "| model | K | " + " | ".join(f"T={T}" for T in steps_t) + " |", "|---|---|" + "---|" * len(steps_t)]
        for algo in with_steps:
            rows = models[algo]["ppl_steps"]
            for k in rows[steps_t[0]]:
                lines.append(f"| {LABELS[algo]} | {k if algo == 'vadd' else '-'} | " + " | ".join(
                    f"{rows[T][k]['ppl']:.2f}" for T in steps_t) + " |")
    corpora = b.get("zero_shot") or []
    if corpora:
        lines += ["", "### Zero-shot perplexity (bound) on the other corpora\n",
                  "| model | " + " | ".join(corpora) + " |", "|---|" + "---|" * len(corpora)]
        for algo in ("ar", "mdm", "vadd"):
            zs = models.get(algo, {}).get("zero_shot", {})
            if zs:
                lines.append(f"| {LABELS[algo]} | " + " | ".join(
                    f"{list(zs[c].values())[0]['ppl']:.2f}" for c in corpora) + " |")
    steps = b["steps"]
    judge = results.get("judge_name", "no judge")
    lines += ["", f"### Generative perplexity ({judge}) / unigram entropy of {b['num_samples']} samples\n",
              "| sampler | " + " | ".join(f"T={T}" for T in steps) + " |", "|---|" + "---|" * len(steps)]
    for algo in ("mdm", "vadd"):
        for sampler, rows in models.get(algo, {}).get("samples", {}).items():
            cells = []
            for T in steps:
                e = rows[str(T)]
                cells.append((f"{e['gen_ppl']:.1f}" if "gen_ppl" in e else "-") + f" / {e['entropy']:.2f}")
            lines.append(f"| {LABELS[sampler]} | " + " | ".join(cells) + " |")
    b_ = results["bench"]
    lines += ["", f"### Prompted continuations ({b_['prompt_tokens']} given tokens, T = {b_['prompt_steps']})\n"]
    for algo in ("mdm", "vadd"):
        for sampler, items in models.get(algo, {}).get("prompted", {}).items():
            for it in items:
                lines.append(f"- **{LABELS[sampler]}**: `{it['prompt']}` -> {it['continuation']}")
    return "\n".join(lines) + "\n"


def draw_figure(out: Path, results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = results["bench"]["steps"]
    curves = {a: m["train"].get("val_curve") for a, m in results["models"].items() if m["train"].get("val_curve")}
    fig, axes = plt.subplots(1, 3 if curves else 2, figsize=(12 if curves else 8, 3.2))
    color = {"mdm": "C0", "vadd": "C1", "vadd-cs": "C2", "ar": "C3"}  # the same in every panel
    for algo in ("mdm", "vadd"):
        for sampler, rows in results["models"].get(algo, {}).get("samples", {}).items():
            if all("gen_ppl" in rows[str(T)] for T in steps):
                ppl = np.array([rows[str(T)]["gen_ppl"] for T in steps])
                se = np.array([rows[str(T)].get("gen_nll_stderr", 0.0) for T in steps])  # +- 1 s.e., log scale
                axes[0].errorbar(steps, ppl, yerr=[ppl - ppl * np.exp(-se), ppl * np.exp(se) - ppl], marker="o",
                                 capsize=2, color=color[sampler], label=LABELS[sampler])
            axes[1].plot(steps, [rows[str(T)]["entropy"] for T in steps], marker="o", color=color[sampler],
                         label=LABELS[sampler])
    for ax, name in zip(axes, ("generative perplexity (± 1 s.e.)", "unigram entropy (nats)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps T")
        ax.set_ylabel(name)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    if curves:  # the held-out bound while training (trainer.val_every): where a model starts to overfit
        ax = axes[2]
        for algo in ("ar", "mdm", "vadd"):
            if algo in curves:
                ax.plot([s for s, _ in curves[algo]], [math.exp(v) for _, v in curves[algo]], marker=".",
                        color=color[algo], label=LABELS[algo])
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("held-out perplexity bound (K = 1)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{results['data']['corpus']}: judge {results.get('judge_name', 'none')}", fontsize=9)
    fig.tight_layout()
    io.save_figure(fig, out / "genppl_vs_steps.png")
    plt.close(fig)
