"""``vadd`` command line: train | sample | eval | fit-prior | demo | compare | bench-images | bench-text.

    vadd demo --out runs/demo                      # the main job: MDM vs VADD on the 2D toys
    vadd compare --data my_tokens.npy --seeds 0 1 2 # MDM vs VADD on your data, over training seeds
    vadd train algo=vadd data.name=swissroll run_dir=runs/swiss trainer.max_steps=3000
    vadd sample runs/swiss --steps 1 5 10 --sampler vadd --num-samples 10000 --out samples/
    vadd eval runs/swiss -K 1 100 --steps 1 5 --out eval.json   # continuous and T-step bounds
    vadd fit-prior runs/swiss --out runs/swiss/model-gmm          # VADD: z from a mixture fitted to the codes

Errors a user can cause (bad config, bad data, wrong checkpoint, a run folder in use) print one line and
exit with 2; SIGTERM / SIGINT exit with 143 / 130 (training saves a checkpoint first). Anything else is a
bug: a traceback and exit 1. ``VADD_DEBUG=1`` shows the traceback of every error.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .errors import ConfigError, RunError, RunInterrupted, VaddError
from .samplers import NAMES as SAMPLER_NAMES


def _cmd_train(args) -> int:
    from .config import compose
    from .train import train

    cfg = compose(args.overrides)
    _, run_dir, rec = train(cfg, resume=args.resume or cfg.get("resume"), overwrite=args.overwrite or None)
    print(json.dumps({"run_dir": str(run_dir), "steps": rec["steps"], "wall_s": round(rec["train_wall_s"], 1),
                      **{k: round(v, 5) for k, v in rec["train_metrics"].items()}}, indent=1))
    return 0


def _cmd_sample(args) -> int:
    from . import hub, io, runs
    from .api import load

    out = io.check_output(args.out, folder=True)
    pipe = load(args.model)
    samplers = args.sampler or [s.name for s in pipe.samplers]
    for sampler in samplers:  # before any file is written
        for T in args.steps:
            pipe.check_sample_request(args.num_samples, T, sampler)
    from .sampling import check_temperature
    check_temperature(args.temperature)
    setting = {"weights_sha256": hub.tensors_digest(pipe.model.state_dict()), "seed": args.seed,
               "num_samples": args.num_samples, "grid": args.grid, "cache": not args.no_cache,
               **({"temperature": args.temperature} if args.temperature != 1.0 else {})}
    with runs.owned_output(out, own_run=runs.run_of_model(args.model)) as out:
        record = dict(model=str(args.model), **_sample_record(out, setting, args.overwrite))
        done = {(r["sampler"], r["steps"]) for r in record["runs"]}
        if done:
            print(f"vadd sample: resuming {out}: {len(done)} (sampler, T) already sampled with these settings are kept")
        for sampler in samplers:
            for T in args.steps:
                if (sampler, T) in done:
                    continue
                t0 = time.time()
                tokens, st = pipe.sample(args.num_samples, steps=T, sampler=sampler, seed=args.seed,
                                         cache=not args.no_cache, return_stats=True, progress=True, grid=args.grid,
                                         temperature=args.temperature)
                stem, recorded = f"{sampler}_T{T}", False
                try:
                    files = pipe.save_samples(tokens, out, stem)
                    record["runs"].append({"sampler": sampler, "steps": T, "grid": args.grid, "nfe": st.nfe,
                                           "row_evals": st.row_evals, "wall_s": time.time() - t0,
                                           "files": [f.name for f in files]})
                    io.write_json(out / SAMPLE_RECORD, record)  # after each T: the record describes what is there
                    recorded = True
                finally:  # stopped between the files and their record: remove the undescribed ones
                    if not recorded:
                        for f in out.iterdir():
                            if f.name.startswith((f"{stem}.", f"{stem}_")) and f.is_file():
                                f.unlink()
                print(f"{sampler} T={T}: {args.num_samples} samples -> {files[0]}")
    return 0


SAMPLE_RECORD = "sample.json"


def _sample_record(out, setting: dict, overwrite: bool) -> dict:
    """The record of ``vadd sample`` in ``out``: a new one, or the earlier one of the same settings whose
    files are all there (a resumed sampling keeps them). A folder holding other outputs is refused unless
    ``overwrite``; then the files the earlier record describes (and it) are removed, nothing else."""
    from . import io

    fresh = dict(setting, runs=[])
    path = out / SAMPLE_RECORD
    if path.exists():
        try:
            old = dict(io.read_json(path))
            old_runs = [r for r in old.get("runs", []) if all((out / f).is_file() for f in r.get("files", ["?"]))]
        except (OSError, ValueError, TypeError, AttributeError):
            old, old_runs = {}, []
        same = {k: old.get(k) for k in setting} == setting
        if same and not overwrite:
            return dict(fresh, runs=old_runs)
        if not overwrite:
            diff = ", ".join(k for k in setting if old.get(k) != setting[k]) or "an unreadable record"
            raise RunError(f"--out {out} holds samples drawn with other settings ({diff}); give another --out, or "
                           "--overwrite to replace them")
        for r in old.get("runs", []) if isinstance(old.get("runs"), list) else []:
            for f in r.get("files", []) if isinstance(r, dict) else []:
                if isinstance(f, str) and "/" not in f and (out / f).is_file():
                    (out / f).unlink()
        path.unlink()
        return fresh
    clashes = sorted(p.name for p in out.iterdir() if p.suffix in (".npy", ".png") or p.name.endswith("_text.json"))
    if clashes and not overwrite:
        raise RunError(f"--out {out} holds other sample files ({', '.join(clashes[:3])}{' ...' if len(clashes) > 3 else ''}) "
                       "that no sample.json describes; give another --out, or --overwrite to write over them")
    return fresh


def _cmd_eval(args) -> int:
    from . import io, runs
    from .api import load
    from .bounds import check_request, specs
    from .data.tokens import load_array, validate_tokens
    from .data.toy2d import heldout_tokens, is_toy_name
    from .samplers import FRESH_Z, get

    chosen = {None: (None,), "both": ("vadd", "vadd-cs")}.get(args.sampler, (args.sampler,))  # None: the model's own
    wanted = specs(args.steps or (), continuous=not args.no_continuous, samplers=chosen)  # fail before any work
    check_request(args.num_samples, args.num_t)
    if args.out:
        io.check_output(args.out)
        runs.check_outside_other_runs(Path(args.out).parent, runs.run_of_model(args.model))
    pipe = load(args.model)
    if args.latent_gap and FRESH_Z not in pipe.samplers:
        raise ConfigError("--latent-gap (of VADD's fresh-z sampler) needs a VADD model")
    for name in chosen:
        if name is not None and get(name) not in pipe.samplers:
            raise ConfigError(f"--sampler {args.sampler} needs a{' VADD' if get(name).needs_latent else 'n MDM'} model; "
                              f"this is a {pipe.model.name} model (its samplers: "
                              f"{', '.join(s.name for s in pipe.samplers)})")
    if args.data:
        tokens = validate_tokens(load_array(args.data), pipe.model.vocab_size, args.data)
    elif pipe.config.get("data", {}).get("kind") in ("images", "text"):
        tokens = pipe.test_tokens()
    elif is_toy_name(str(pipe.config.get("data", {}).get("name"))):
        tokens = heldout_tokens(dict(pipe.config.get("data", {})), args.max_examples, args.seed)
    else:  # token files, point files: the test split the run held out, rebuilt from its manifest
        tokens = _run_test_split(args.model)
    tokens = tokens[: args.max_examples]
    recs = pipe.bounds(tokens, ks=args.num_samples, steps=list(dict.fromkeys(s.steps for s in wanted if s.steps)),
                       continuous=any(s.bound == "continuous" for s in wanted), samplers=chosen,
                       num_t=args.num_t, seed=args.seed,
                       estimator=args.estimator, grid=args.grid, proposal=args.proposal, progress=True)
    result = {"model": str(args.model), "algo": pipe.model.name, "num_examples": int(len(tokens)),
              "seq_len": pipe.model.seq_len, "num_t": args.num_t, "estimator": args.estimator, "grid": args.grid,
              "proposal": args.proposal,
              "seed": args.seed, "bounds": recs,
              "note": "upper bounds on -log p(x) of the model sampled with a fresh z per step, or with one z "
                      "per sample where fixed_z (VADD-CS) (continuous: T -> inf; steps: the T-step sampler); "
                      "the DELBO training objective is not a bound"}
    if args.latent_gap:
        from .bounds import latent_gap
        result["latent_gap"] = latent_gap(pipe.model, tokens, K=max(args.num_samples), seed=args.seed)
        for g in result["latent_gap"]:
            print(f"latent gap at {g['masked_fraction']:.2f} masked: -log mu per masked token {g['nll_posterior_z']:.4f} "
                  f"with posterior z, {g['nll_prior_marginal']:.4f} prior-averaged (K={g['K']}): gap {g['gap']:+.4f}")
    for r in recs:
        name = "continuous" if r["bound"] == "continuous" else r["bound"] if r["steps"] is None else f"T={r['steps']}"
        algo = "vadd-cs" if r.get("fixed_z") else pipe.model.name
        print(f"{algo} {name:<10} K={r['K']:<5} {r['nats_per_example']:.4f} +- "
              f"{r['stderr_nats_per_example']:.4f} nats/example, {r['bits_per_dim']:.4f} bits/dim, "
              f"ppl {r['perplexity']:.3f}")
    if args.out:
        io.write_json(args.out, result)
    return 0


def _run_test_split(model_path):
    """The held-out split of the data a run trained on, rebuilt from ``RUN/manifest.json`` (same config and
    seed, so the same rows), for a model whose saved data info alone cannot rebuild it."""
    from . import io, runs
    from .data import build_data
    from .errors import MissingFile

    run = runs.run_of_model(model_path)
    if run is None or not (run / "manifest.json").is_file():
        raise MissingFile(f"give --data PATH: {model_path} is not in a run folder, and its saved config cannot "
                          "rebuild its test data")
    manifest = io.read_json(run / "manifest.json")
    return build_data(dict(manifest["config"]["data"]), seed=int(manifest.get("seed", 0))).test.numpy()


def _cmd_fit_prior(args) -> int:
    from . import hub, io, runs
    from .api import load
    from .data import build_data
    from .errors import MissingFile
    from .train import fit_prior

    out = io.check_output(args.out, folder=True)
    run = Path(args.run)
    run = run.parent if run.name == "model" and not (run / "manifest.json").exists() else run
    if not (run / "manifest.json").exists():
        raise MissingFile(f"{run} is not a run folder (no manifest.json): fit-prior needs the run's config to "
                          "rebuild its training data")
    if out.resolve() == (run / "model").resolve():
        raise ConfigError(f"--out {out} is the run's own model: give a new folder (e.g. {run / 'model-gmm'})")
    runs.check_outside_other_runs(out, run)
    held = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    if held and not args.overwrite:
        raise RunError(f"--out {out} is not empty ({', '.join(held[:3])}{' ...' if len(held) > 3 else ''}); give a "
                       "new folder, or --overwrite to replace the model in it")
    manifest = io.read_json(run / "manifest.json")
    pipe = load(run)
    if not pipe.samplers[0].needs_latent:
        raise ConfigError(f"fit-prior needs a VADD model; {run} holds a {pipe.model.name} model")
    seed = int(manifest.get("seed", 0))
    data = build_data(dict(manifest["config"]["data"]), seed=seed)
    metrics = fit_prior(pipe.model, data, seed, args.components, args.examples)
    extra = {k: v for k, v in pipe.config.items() if k not in ("vadd_format", "model")}  # data info, seed
    with runs.owned_output(out, own_run=run):
        hub.save_pretrained(pipe.model, out, extra=extra)
    print(json.dumps({"model": str(out), "prior": pipe.model.spec["prior"], **metrics}, indent=1))
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out=args.out, seed=args.seed, data=args.data, quick=args.quick, num_samples=args.num_samples,
             overrides=args.overrides, workers=args.workers)
    return 0


def _cmd_compare(args) -> int:
    from .compare import run_compare

    run_compare(args.data, out=args.out, seeds=args.seeds, steps=args.steps, quick=args.quick,
                num_samples=args.num_samples, bound_examples=args.bound_examples, bound_k=args.bound_k,
                matched_mdm=not args.no_matched_mdm, overrides=args.overrides, workers=args.workers,
                judge=args.judge, fid_features=args.fid_features)
    return 0


def _cmd_bench_images(args) -> int:
    from .bench_images import EXPERIMENTS, run_bench

    run_bench(out=args.out, seed=args.seed, quick=args.quick, experiments=args.experiments or EXPERIMENTS,
              overrides=args.overrides, features=args.features, workers=args.workers)
    return 0


def _cmd_bench_text(args) -> int:
    from .bench_text import run_bench

    run_bench(out=args.out, seed=args.seed, quick=args.quick, experiment=args.experiment, overrides=args.overrides,
              judge=args.judge, workers=args.workers)
    return 0


def _job_parser(sub, name: str, help: str, out: str, overrides_help: str) -> argparse.ArgumentParser:
    """A demo / benchmark command: the output folder, seed, quick budget, workers and Hydra overrides."""
    q = sub.add_parser(name, help=help)
    q.add_argument("--out", default=out)
    q.add_argument("--seed", type=_seed, default=0)
    q.add_argument("--quick", action="store_true", help="a tiny budget (for tests)")
    q.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="parallel worker processes (default: one per core, at most 2); 1 runs in-process")
    q.add_argument("overrides", nargs="*", help=overrides_help)
    return q


def _int_at_least(lo: int):
    """An argparse type: an integer ``>= lo``, else argparse's one-line error naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {value}")
        return value
    return parse


def _seed(text: str) -> int:
    """An argparse type: a seed in ``[0, 2^32 - 1]``, the range every seeded generator accepts."""
    from .rng import MAX_SEED
    value = _int_at_least(0)(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2^32 - 1], got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its default prints the whole usage first), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vadd", description="Variational autoencoding discrete diffusion (and MDM).")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train a model from Hydra overrides (key=value ...)")
    t.add_argument("overrides", nargs="*", help="e.g. algo=vadd data.name=swissroll run_dir=runs/x")
    t.add_argument("--resume", default=None, help="a Lightning checkpoint to resume from (default: RUN/checkpoints/last.ckpt)")
    t.add_argument("--overwrite", action="store_true",
                   help="if run_dir holds another run, move it aside (RUN.replaced-<time>) and start afresh")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="sample from a trained model")
    s.add_argument("model", help="a run folder or its model/ folder")
    s.add_argument("--steps", type=int, nargs="+", default=[10])
    s.add_argument("--sampler", nargs="+", choices=SAMPLER_NAMES, default=None,
                   help="the samplers to draw with (default: every sampler of the model)")
    s.add_argument("--num-samples", type=int, default=10_000)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--no-cache", action="store_true")
    s.add_argument("--grid", choices=["uniform", "cosine"], default="uniform", help="time grid of the T steps")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="draw each token from p^(1/temperature) renormalised (1: the model; <1 sharper, less diverse)")
    s.add_argument("--out", default="samples")
    s.add_argument("--overwrite", action="store_true",
                   help="replace samples of other settings in --out (a rerun of the same command resumes)")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("eval", help="likelihood bounds on held-out data (JSON out)")
    e.add_argument("model")
    e.add_argument("--data", default=None,
                   help="token array (N, L); default: fresh points for a named 2D toy, the test split for images and text")
    e.add_argument("--num-samples", "-K", type=int, nargs="+", default=[1, 10, 100],
                   help="K of the importance weighting (VADD), several allowed (paired: the first K draws)")
    e.add_argument("--steps", "-T", type=int, nargs="+", default=None,
                   help="also the bound of the T-step sampler for each T (the likelihood of few-step generation)")
    e.add_argument("--no-continuous", action="store_true", help="skip the continuous-time bound")
    e.add_argument("--grid", choices=["uniform", "cosine"], default="uniform", help="time grid of the T steps")
    e.add_argument("--num-t", type=int, default=16, help="Monte-Carlo draws per example ((t, mask) or reveal paths)")
    e.add_argument("--estimator", choices=("count", "time", "path"), default="count",
                   help="estimator of the continuous bound: count (masked-count rewrite; default), time "
                        "(antithetic times) or path (one reveal path in continuous time, L network calls per "
                        "draw: the one that importance-weights VADD-CS's continuous bound at every K); same bound")
    e.add_argument("--proposal", choices=("auto", "mixture", "posterior", "prior"), default="auto",
                   help="importance proposal of z (VADD): auto (default) = the prior for the continuous bound "
                        "and the even mixture of prior and recognition model for the T-step bounds; every "
                        "choice is a valid bound")
    e.add_argument("--sampler", choices=(*SAMPLER_NAMES, "both"), default=None,
                   help="whose bounds: the model's own sampler (default: mdm, or vadd, a fresh z per step), "
                        "vadd-cs (VADD, one z per sample: its continuous bound is an ELBO over z, reported at K = 1 "
                        "except with --estimator path), or both of VADD's")
    e.add_argument("--latent-gap", action="store_true",
                   help="VADD: also print how much worse the decoder predicts masked tokens with prior-averaged z "
                        "(what the fresh-z sampler's T -> inf limit uses) than with posterior z, per masked fraction")
    e.add_argument("--max-examples", type=_int_at_least(1), default=10_000)
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--out", default=None)
    e.set_defaults(func=_cmd_eval)

    f = sub.add_parser("fit-prior", help="VADD: fit a Gaussian-mixture prior over z to a trained run's aggregate "
                                         "posterior and write the model with it (samplers and bounds then use it)")
    f.add_argument("run", help="a VADD run folder (its manifest rebuilds the training data)")
    f.add_argument("--out", required=True, help="the new model folder (the run's own model is left as it is)")
    f.add_argument("--components", type=_int_at_least(1), default=16, help="mixture components")
    f.add_argument("--examples", type=_int_at_least(2), default=50_000, help="training rows it is fitted to (the first ones)")
    f.add_argument("--overwrite", action="store_true", help="replace what --out holds (never another run's folder)")
    f.set_defaults(func=_cmd_fit_prior)

    d = _job_parser(sub, "demo", "the main job: MDM vs VADD on the 2D toys, JS against steps", "runs/demo",
                    "Hydra overrides, e.g. trainer.max_steps=2000")
    d.add_argument("--data", default=None, help="one toy name or a .npy file of 2D points (default: all three toys)")
    d.add_argument("--num-samples", type=_int_at_least(1), default=None)
    d.set_defaults(func=_cmd_demo)

    c = sub.add_parser("compare", help="does VADD beat MDM on this data, at how many steps? (over seeds)")
    c.add_argument("--out", default="runs/compare")
    c.add_argument("--quick", action="store_true", help="a tiny budget (for tests)")
    c.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="parallel worker processes (default: one per core, at most 2); 1 runs in-process")
    c.add_argument("overrides", nargs="*", help="Hydra overrides for both methods (algo.* for VADD only)")
    c.add_argument("--data", required=True,
                   help="a 2D toy or .npy of 2D points; an integer token array (N, L) (.npy/.npz/.txt/.csv); images "
                        "(binarized-mnist, fashion-mnist, a folder of PNG/JPEG or a uint8 .npy); a text corpus "
                        "(brown, bbc, kjv, a .txt/.jsonl/.parquet file or a folder of .txt)")
    c.add_argument("--seeds", type=_seed, nargs="+", default=[0], help="training seeds (an axis: mean, spread, paired)")
    c.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50], help="sampling steps T")
    c.add_argument("--num-samples", type=_int_at_least(1), default=None, help="samples per sampler and T (default 20,000; toys 100,000)")
    c.add_argument("--bound-examples", type=_int_at_least(1), default=None, help="held-out rows bounded (default 1,000)")
    c.add_argument("--bound-k", type=_int_at_least(1), default=None, help="VADD's importance samples of z (default 100)")
    c.add_argument("--judge", default="auto",
                   help="text: the judge LM for gen-PPL at matched entropy and MAUVE: auto (SmolLM2 when installed), "
                        "smollm2, none, or a local causal-LM folder")
    c.add_argument("--fid-features", default="auto", choices=["auto", "inception", "random", "none"],
                   help="images: FID's feature network (auto: Inception when installed; random measures nothing)")
    c.add_argument("--no-matched-mdm", action="store_true",
                   help="skip the third model: MDM trained for VADD's training FLOPs (the compute-matched baseline)")
    c.set_defaults(func=_cmd_compare)

    b = _job_parser(sub, "bench-images", "MDM vs VADD on binarized MNIST (BPD) and Fashion-MNIST (FID, BPD)",
                    "runs/images", "Hydra overrides applied to every experiment")
    b.add_argument("--experiment", dest="experiments", action="append", default=None,
                   help="an experiment config to run, repeatable (default: images_mnist and images_fmnist)")
    b.add_argument("--features", choices=["inception", "random"], default="inception",
                   help="FID feature network (random: a stand-in for tests, not FID)")
    b.set_defaults(func=_cmd_bench_images)

    x = _job_parser(sub, "bench-text", "MDM vs VADD (and AR) on text: perplexity, zero-shot, gen-PPL vs steps",
                    "runs/text", "Hydra overrides")
    x.add_argument("--experiment", default="text_cpu128",
                   help="the protocol: text_cpu128 (rows of 128 tokens, the default), text_cpu (64), text_char, ...")
    x.add_argument("--judge", default="smollm2", help="smollm2 (installed asset), a local HF model folder, or none")
    x.set_defaults(func=_cmd_bench_text)
    return p


# what rerunning an interrupted command does (training and the experiments resume from their checkpoints)
RERUN = {"sample": "rerun the same command to resume: the (sampler, T) files in sample.json are kept",
         "eval": "rerun the same command to start the evaluation again (it keeps no partial results)",
         "fit-prior": "rerun the same command to fit the prior again (nothing was written)"}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    rerun = RERUN.get(args.command, "rerun the same command to resume")

    def on_sigterm(signum, frame):  # outside training (which saves first): stop with the scheduler's status
        raise RunInterrupted(signum, -1, None, rerun)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        return args.func(args)
    except RunInterrupted as e:
        print(f"vadd {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except VaddError as e:
        if os.environ.get("VADD_DEBUG", "") not in ("", "0"):
            raise
        print(f"vadd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vadd {args.command}: interrupted; {rerun}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
