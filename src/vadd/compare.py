"""``vadd compare``: does VADD beat MDM on this data, and at how many steps? Over training seeds.

For each seed, MDM and VADD are trained with the same backbone, budget, data and seed; every sampler of
each (MDM; VADD with a fresh ``z`` per step; VADD-CS with one ``z`` per sample) draws ``N`` samples at
every ``T``, scored against held-out data with the modality's statistic; and both models bound the
negative log-likelihood of held-out rows (``continuous``: ``T -> inf``, and each ``T``-step sampler's
bound; valid upper bounds, VADD importance-weighted). Seeds are an axis: per-seed numbers, their mean and
spread, and every VADD-minus-MDM difference paired by seed with a 95% interval. The run ends with plain
sentences that say where VADD wins, by how much, and how sure that is.

Data (``--data``), one :class:`Target` class per modality:

- :class:`Points2D`: a 2D toy name or a ``.npy`` file of 2D points: the demo's recipe, scored by the JS
  divergence of the samples' grid histogram to the target cells (``vadd demo`` is this comparison on the toys);
- :class:`Tokens`: a plain integer array ``(N, L)`` (``.npy``, ``.npz``, ``.csv``, a ``.txt`` of integers): the
  library defaults (``data=tokens``), a fixed seeded 10% held out, scored by
  :func:`vadd.metrics.tokens.token_stats` (the exact sequence distribution where ``V^L`` is small, else pairs);
- :class:`Images`: a named set, a folder of PNG / JPEG files or a uint8 array of images: the image recipes,
  scored by FID (Inception, when installed) and the pixel-pair statistic;
- :class:`Text`: a corpus name, a prose ``.txt`` / ``.jsonl`` / ``.parquet`` file or a folder: the CPU text recipe,
  scored by the judge LM's generative perplexity at matched entropy and MAUVE (when the judge is installed),
  the unigram entropy and the token statistics.

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
from .algorithms import ALGORITHMS, LABELS
from .budget import check_alloc
from .api import load
from .config import compose
from .data.toy2d import TOYS, Grid2D, PointSource, heldout_tokens, is_toy_name, reference_cell_probs
from .errors import ConfigError, DataError, MissingDependency, first_line
from .jobs import plan_workers, report_progress, run_jobs, stamp
from .rng import numpy_generator
from .sampling import check_steps
from .train import step_reporter, train

STEPS = (1, 2, 5, 10, 20, 50)
# the runs trained per seed: (run name, algorithm); "mdm-matched" is MDM given VADD's training FLOPs
RUNS = (("vadd", "vadd"), ("mdm", "mdm"), ("mdm-matched", "mdm"))
NAMES = {**LABELS, "mdm-matched": "MDM-matched"}
DATA_SPLIT_SEED = 0  # a token file's held-out rows are the same for every training seed (paired across seeds)


# ---- what is compared: the data and its statistics, one class per modality ---------------------------------
class Target:
    """The data of a comparison: how its two methods are configured, its training and held-out rows, and the
    :class:`Scorer` its samples are measured with. :meth:`resolve` picks the modality from ``--data``."""

    kind = ""
    # samples per sampler and T, held-out rows bounded, VADD's K, bound draws per row: (full run, --quick)
    counts = {"num_samples": (20_000, 2000), "bound_examples": (1000, 64), "bound_k": (100, 4), "bound_draws": (2, 1)}

    def __init__(self, data: str, label: str):
        self.data, self.label = data, label

    def spec(self) -> dict:  # what a worker process needs to rebuild this target
        return {"kind": self.kind, "data": self.data, "label": self.label}

    @staticmethod
    def from_spec(spec: dict) -> "Target":
        return TARGETS[spec["kind"]](spec["data"], spec["label"])

    @staticmethod
    def resolve(data: str) -> "Target":
        if is_toy_name(data):
            return Points2D(data, data)
        if data in IMAGE_SETS:
            return Images(data, data)
        if data in TEXT_CORPORA:
            return Text(data, data)
        if not os.path.exists(data):
            raise ConfigError(f"--data {data}: not a 2D toy ({', '.join(TOYS)}), an image set "
                              f"({', '.join(IMAGE_SETS)}), a corpus ({', '.join(TEXT_CORPORA)}) or an existing file "
                              "or folder")
        label = os.path.splitext(os.path.basename(os.path.abspath(data)))[0]
        if os.path.isdir(data):
            names = [n.lower() for n in os.listdir(data)]
            if any(n.endswith(IMAGE_SUFFIXES) for n in names):
                return Images(data, label)
            if any(n.endswith(".txt") for n in names) or next(Path(data).glob("**/*.arrow"), None) is not None:
                return Text(data, label)
            raise ConfigError(f"--data {data}: a folder of images ({', '.join(IMAGE_SUFFIXES)}) or of text (.txt files, "
                              "or a datasets folder with .arrow files); found neither")
        if data.lower().endswith((".jsonl", ".json", ".parquet")):
            return Text(data, label)
        if data.endswith(".npy"):
            try:
                io.check_npy_header(data)
                head = np.load(data, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"{data}: not a readable .npy array ({first_line(e)})") from None
            if head.ndim in (3, 4) and head.dtype == np.uint8:
                return Images(data, label)
            if head.ndim == 2 and head.shape[1] == 2 and np.issubdtype(head.dtype, np.floating) \
                    and not np.array_equal(np.asarray(head[:1000]), np.round(np.asarray(head[:1000]))):
                PointSource(data)  # checks the file
                return Points2D(data, label)
        if data.lower().endswith(".txt") and not _looks_numeric(data):
            return Text(data, label)
        return Tokens(data, label)

    def base(self, quick: bool) -> list:
        """The overrides that select this data and its recipe."""
        raise NotImplementedError

    def config(self, algo: str, seed: int, quick: bool, overrides=()) -> dict:
        """The training config of one method: the modality's recipe, then ``overrides`` (``algo.*`` for VADD only)."""
        own = [o for o in overrides if algo == "vadd" or not o.lstrip("+~").startswith("algo.")]
        return compose([*self.base(quick), f"seed={seed}", f"algo={algo}", *own])

    def token_data(self, cfg: dict, seed: int):
        """The training data: a fixed split, the same for every training seed (paired across seeds)."""
        from .data import build_data
        return build_data(cfg["data"], seed=DATA_SPLIT_SEED)

    def heldout(self, cfg: dict, n: int, seed: int) -> np.ndarray:
        """Held-out rows for the likelihood bounds: the first rows of the test split."""
        return self.token_data(cfg, seed).test[:n].numpy()

    def heldout_nll(self, cfg: dict, x: np.ndarray, settings: dict, seed: int, out: Path) -> np.ndarray | None:
        """The exact ``-log p_data`` of held-out rows ``x`` where the data's law is known (the 2D toys), else
        None: the floor no model's bound can beat in expectation."""
        return None

    def scorer(self, cfg: dict, settings: dict, seed: int, out: Path) -> "Scorer":
        """How samples are scored; its reference statistics are computed once and kept under ``out``."""
        from .metrics.tokens import primary_stat, token_stats
        td = self.token_data(cfg, seed)
        ref, n = td.test.numpy(), int(settings["num_samples"])
        # the floor: n training rows (a perfect model's sample, up to overfitting) against the same reference
        rows = numpy_generator(seed, "compare-floor").integers(0, len(td.train), n)
        floor = token_stats(td.train.numpy()[rows], ref, td.vocab_size)
        return Scorer(primary_stat(td.vocab_size, td.seq_len), floor,
                      lambda tok, resample: token_stats(tok, ref, td.vocab_size))


def demo_target(source: PointSource, grid: Grid2D, n: int, seed: int, factor: int = 100):
    """A 2D data set's target cell probabilities (from ``factor * n`` reference points; exact for the
    checkerboard) and its noise floor (the JS of ``n`` fresh true points against them): what ``vadd demo`` and
    :class:`Points2D` score samples against (also dev/probes/toy_recipe_probe.py)."""
    from .metrics import histogram_js
    target = reference_cell_probs(source, grid, factor * n, seed + 1)
    floor = histogram_js(grid.cells(source.sample(n, numpy_generator(seed, "demo-floor"))), target, grid.bins)
    return target, floor


def _looks_numeric(path: str) -> bool:
    """A ``.txt`` whose first line is whitespace- or comma-separated integers is a token array, else text."""
    with open(path, "rb") as f:
        first = f.readline(4096).decode("utf-8", "replace").replace(",", " ").split()
    return bool(first) and all(w.lstrip("-").isdigit() for w in first)


class Tokens(Target):
    """A plain integer array ``(N, L)``: the library defaults (``data=tokens``), 10% held out, scored by
    :func:`vadd.metrics.tokens.token_stats` (whole sequences where ``V^L`` is small, else pairs)."""

    kind = "tokens"

    def base(self, quick: bool) -> list:
        return ["data=tokens", f"data.train={os.path.abspath(self.data)}", *(["experiment=compare_quick"] if quick else [])]


class Points2D(Target):
    """A 2D toy or a ``.npy`` of 2D points: the demo's recipe, scored by the JS divergence of the samples' grid
    histogram to the target cells. A toy's points are drawn with the training seed, as the demo does."""

    kind = "toy2d"
    counts = {"num_samples": (100_000, 5000), "bound_examples": (1000, 64), "bound_k": (100, 4), "bound_draws": (2, 1)}

    def base(self, quick: bool) -> list:
        return ["experiment=demo_quick" if quick else "experiment=demo", f"data.name={self.data}"]

    def token_data(self, cfg: dict, seed: int):
        from .data import build_data
        return build_data(cfg["data"], seed=seed)

    def heldout(self, cfg: dict, n: int, seed: int) -> np.ndarray:
        if is_toy_name(self.data):  # fresh points
            return heldout_tokens(cfg["data"], n, seed)
        return self.token_data(cfg, seed).test[:n].numpy()

    def target_cells(self, cfg: dict, settings: dict, seed: int, out: Path) -> tuple:
        """``(the target cell probabilities, the noise floor)`` of ``N`` samples (:func:`demo_target`), computed
        once per comparison folder and seed."""
        grid, n, factor = Grid2D.from_info(cfg["data"]), int(settings["num_samples"]), int(settings["reference_factor"])

        def compute():
            probs, floor = demo_target(PointSource(self.data), grid, n, seed, factor)
            return probs, {"js": float(floor)}

        probs, floor = _cached(out / "reference", ["cells", self.spec(), grid.to_dict(), n, factor, seed], compute,
                               dtype=np.float64)
        return probs, floor["js"]

    def heldout_nll(self, cfg: dict, x: np.ndarray, settings: dict, seed: int, out: Path) -> np.ndarray | None:
        if not is_toy_name(self.data):  # a points file's law is not known
            return None
        cells = Grid2D.from_info(cfg["data"]).token_cells(x)
        probs = self.target_cells(cfg, settings, seed, out)[0]
        return -np.log(np.maximum(probs[cells[:, 0], cells[:, 1]], 1e-300))

    def scorer(self, cfg: dict, settings: dict, seed: int, out: Path) -> "Scorer":
        grid = Grid2D.from_info(cfg["data"])
        target, floor = self.target_cells(cfg, settings, seed, out)
        return Scorer("js", {"js": floor}, lambda tok, resample: {"js": _grid_js(grid, target, tok)},
                      save=lambda tok, stem: io.write_npy(f"{stem}.npy", grid.decode(tok).astype(np.float32)))


IMAGE_SETS = ("binarized-mnist", "fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class Images(Target):
    """Images (a named set, a folder of same-size PNG / JPEG files or a uint8 ``.npy`` ``(N, H, W[, C])``): the
    image recipes (U-Net; ``experiment=images_mnist`` for binarized MNIST, ``images_fmnist`` otherwise).
    Scored by FID against held-out images when a feature network is chosen (``fid_features``: the Inception
    network when installed), and always by the pixel statistics of :func:`vadd.metrics.tokens.token_stats`."""

    kind = "images"
    counts = {"num_samples": (1000, 16), "bound_examples": (200, 8), "bound_k": (100, 4), "bound_draws": (1, 1)}

    def base(self, quick: bool) -> list:
        from .bench_images import QUICK
        exp = "images_mnist" if self.data == "binarized-mnist" else "images_fmnist"
        data = [f"data.name={self.data}"] if self.data in IMAGE_SETS else \
            ["data.name=images", f"data.path={os.path.abspath(self.data)}"]
        return [f"experiment={exp}", *data, *([o for o in QUICK if not o.startswith("bench.")] if quick else [])]

    def scorer(self, cfg: dict, settings: dict, seed: int, out: Path) -> "Scorer":
        from .data.images import ImageGrid, save_grid_png
        from .metrics.fid import feature_stats, frechet_distance, make_features
        base = super().scorer(cfg, settings, seed, out)
        td = self.token_data(cfg, seed)
        grid = ImageGrid.from_info(td.info)
        decode = (lambda tok: grid.decode(tok)) if td.decode is None else (lambda tok: np.asarray(td.decode(tok)))

        def save(tok, stem):
            io.write_npy(f"{stem}.npy", tok)
            save_grid_png(decode(tok[:64]), f"{stem}.png")

        kind = settings["fid_features"]
        if kind == "none":
            return Scorer(base.primary, base.floor, base.score, save=save)
        n = int(settings["num_samples"])

        feats = make_features(kind)

        def reference():  # held-out images (up to fid_reference of them) and the floor: n training images
            ref = feats(decode(td.test[: int(settings["fid_reference"])].numpy()))
            rows = numpy_generator(seed, "compare-fid-floor").choice(len(td.train), min(n, len(td.train)), replace=False)
            train = feature_stats(feats(decode(td.train[np.sort(rows)].numpy())))
            return ref, {"fid": frechet_distance(train, feature_stats(ref))}

        ref_feats, fid_floor = _cached(out / "reference", ["fid", kind, self.spec(), n, settings["fid_reference"], seed],
                                       reference)
        ref = feature_stats(ref_feats)

        def score(tok, resample):
            return {"fid": frechet_distance(feature_stats(feats(decode(tok))), ref), **base.score(tok, resample)}

        return Scorer("fid", {**fid_floor, **base.floor}, score, save=save, secondary=(base.primary,),
                      note=None if kind == "inception" else "FID on random features: not a quality metric")


TEXT_CORPORA = ("brown", "bbc", "kjv")


class Text(Target):
    """A text corpus (an installed one by name, a ``.txt`` (one document per line) / ``.jsonl`` / ``.parquet``
    file, a folder of ``.txt`` files or a datasets folder): the CPU text recipe (``experiment=text_cpu``: GPT-2
    tokens limited to the 4,095 most frequent, rows of 64, a DiT). Scored with the judge LM when one is
    chosen (``judge``): generative perplexity at the sampler's own temperature and **at matched entropy** (the
    temperature at which the samples' unigram entropy equals the held-out rows'), and MAUVE of the samples
    against held-out rows on the judge's features; always the unigram entropy and the token statistics."""

    kind = "text"
    counts = {"num_samples": (256, 16), "bound_examples": (256, 8), "bound_k": (100, 4), "bound_draws": (2, 1)}

    def base(self, quick: bool) -> list:
        from .bench_text import QUICK
        data = [f"data.corpus={self.data}"] if self.data in TEXT_CORPORA else \
            ["data.corpus=user", f"data.path={os.path.abspath(self.data)}"]
        return ["experiment=text_cpu", *data, *([o for o in QUICK if not o.startswith("bench.")] if quick else [])]

    def scorer(self, cfg: dict, settings: dict, seed: int, out: Path) -> "Scorer":
        from .metrics.genppl import Judge, match_temperature, mauve_score, unigram_entropy
        base = super().scorer(cfg, settings, seed, out)
        td = self.token_data(cfg, seed)
        n, judge_name = int(settings["num_samples"]), settings["judge"]
        ref = td.test[:n].numpy()
        data_entropy = unigram_entropy(ref)

        def save(tok, stem):
            io.write_npy(f"{stem}.npy", tok)
            io.write_json(f"{stem}.json", td.decode(tok))

        if judge_name == "none":
            return Scorer(base.primary, {**base.floor, "entropy": data_entropy},
                          lambda tok, resample: {**base.score(tok, resample), "entropy": unigram_entropy(tok)},
                          save=save, secondary=("entropy",), note="no judge LM: token statistics only")
        judge = Judge.smollm2() if judge_name == "smollm2" else Judge.from_pretrained(judge_name)

        def reference():  # the judge on held-out rows and on n training rows (what a perfect model reaches)
            rows = numpy_generator(seed, "compare-floor").integers(0, len(td.train), len(ref))
            held, train = judge.score(td.decode(ref), features=True), judge.score(td.decode(td.train.numpy()[rows]),
                                                                                  features=True)
            floor = {"gen_ppl": train["gen_ppl"], "gen_ppl_matched": train["gen_ppl"],
                     "mauve": mauve(train["features"], held["features"])}
            return held["features"], floor

        def mauve(feats, ref_feats):  # None with fewer than MAUVE's 4 texts a side (a tiny held-out split)
            return mauve_score(feats, ref_feats, seed) if min(len(feats), len(ref_feats)) >= 4 else None

        ref_feats, judge_floor = _cached(out / "reference", ["judge", judge_name, self.spec(), n, seed], reference)

        def score(tok, resample):
            own = judge.score(td.decode(tok), features=True)
            hit = match_temperature(lambda tau: (unigram_entropy(t := resample(tau)), t), data_entropy,
                                    tol=float(settings["entropy_tolerance"]))
            matched = {"gen_ppl_matched": None, "temperature_matched": None, "entropy_matched": None}
            if hit is not None:
                tau, ent, tok_m = hit
                ppl = own["gen_ppl"] if tau == 1.0 else judge.score(td.decode(tok_m))["gen_ppl"]
                matched = {"gen_ppl_matched": ppl, "temperature_matched": tau, "entropy_matched": ent}
            return {**matched, "gen_ppl": own["gen_ppl"], "mauve": mauve(own["features"], ref_feats),
                    "entropy": unigram_entropy(tok), **base.score(tok, resample)}

        return Scorer("gen_ppl_matched", {**base.floor, **judge_floor, "entropy": data_entropy}, score, save=save,
                      note=f"judge: {judge.name}", higher_better=("mauve",),
                      secondary=("mauve", "gen_ppl", "entropy", "temperature_matched", base.primary))


TARGETS = {c.kind: c for c in (Tokens, Points2D, Images, Text)}


def _cached(folder: Path, key: list, compute, dtype=np.float32) -> tuple:
    """``compute() -> (array, floor dict)`` once per comparison folder and ``key`` (what the reference depends
    on: data, counts, seed, network), kept as ``NAME-DIGEST.npy`` (in ``dtype``) / ``.json`` for the worker
    processes (the runner computes it before any job starts) and for a rerun."""
    stem = folder / f"{key[0]}-{_digest(key)[:12]}"
    arr, rec = Path(f"{stem}.npy"), Path(f"{stem}.json")
    if arr.exists() and rec.exists():
        return np.load(arr, allow_pickle=False), io.read_json(rec)
    feats, floor = compute()
    io.write_npy(arr, np.asarray(feats, dtype=dtype))
    io.write_json(rec, floor)
    return np.asarray(feats, dtype=dtype), floor


def _grid_js(grid, target, tokens) -> float:
    from .metrics import histogram_js
    return histogram_js(grid.token_cells(tokens), target, grid.bins)


@dataclass
class Scorer:
    primary: str          # the statistic the sentences are about (lower is better)
    floor: dict           # the statistics of true data of the same size: what a perfect model reaches
    score: object         # (tokens (N, L), resample(temperature) -> tokens) -> {statistic: value or None}
    save: object = None   # (tokens, path stem) -> writes the samples in the modality's formats
    note: str | None = None           # what a reader must know about the numbers (the judge, the features)
    secondary: tuple = ()             # the other statistics tabled beside the primary one
    higher_better: tuple = ()         # secondary statistics where higher is better (MAUVE)

    def __post_init__(self):
        self.save = self.save or (lambda tok, stem: io.write_npy(f"{stem}.npy", tok))


# ---- the jobs (run in worker processes) -----------------------------------------------------------------
def _job(p: dict) -> dict:
    """Run one job, or return its result from the record a finished run of the same job left in ``OUT/jobs/``
    (a rerun of a stopped comparison redoes only what did not finish; the training's own wall time is kept)."""
    torch.set_num_threads(int(p["threads"]))
    out = Path(p["out"])
    record = out / "jobs" / (f"seed{p['seed']}-{p['run']}-{p['kind']}" + (f"-{p['sampler']}" if p["kind"] == "sample"
                                                                          else "") + ".json")
    key = _job_key(p)
    if record.is_file():
        try:
            saved = io.read_json(record)
        except (OSError, ValueError):
            saved = {}
        model = out / "runs" / f"seed{p['seed']}" / p["run"] / "model"
        if saved.get("key") == key and (p["kind"] != "train" or model.is_dir()):
            return dict(saved["result"], kept=True)
    res = _run_job(p)
    io.write_json(record, {"key": key, "result": res})
    return res


def _job_key(p: dict) -> str:
    """What a job's result depends on: everything in its payload but where it is written and how it is shown,
    and the package version."""
    from . import __version__
    return _digest([__version__, {k: v for k, v in p.items() if k not in ("progress", "desc", "plan", "out")}])


def _digest(obj) -> str:
    """SHA-256 of ``obj`` as canonical JSON: the key of a cached reference or a job's record."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _run_job(p: dict) -> dict:
    target, cfg, seed, out = Target.from_spec(p["target"]), p["cfg"], p["seed"], Path(p["out"])
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
        res = bounds.evaluate(model, x, sorted({1, int(p["bound_k"])}), bounds.specs(p["steps"]),
                              num_t=int(p["bound_draws"]), seed=seed)
        ref = target.heldout_nll(cfg, x, p, seed, out)
        return {"bounds": bounds.records(res, model.seq_len, reference=ref), "wall_s": time.time() - t0,
                "data_nll": None if ref is None else float(ref.mean())}
    from .sampling import sample
    scorer = target.scorer(cfg, p, seed, out)
    rows = {}
    for T in p["steps"]:
        t0 = time.time()
        x, st = sample(model, p["n"], T, p["sampler"], seed=seed)
        tokens = x.numpy()

        def resample(tau, T=T, tokens=tokens):  # the same seed at another temperature (1: these samples)
            return tokens if tau == 1.0 else sample(model, p["n"], T, p["sampler"], seed=seed,
                                                    temperature=tau)[0].numpy()

        rows[str(T)] = {**scorer.score(tokens, resample), "nfe": st.nfe, "wall_s": time.time() - t0}
        scorer.save(tokens, out / "samples" / f"seed{seed}" / f"{p['method']}_T{T}")
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
                judge: str = "auto", fid_features: str = "auto", log=print) -> dict:
    """Train, sample, score and bound MDM and VADD (and MDM given VADD's training FLOPs, unless
    ``matched_mdm`` is false) on ``data`` for every seed; returns (and writes under ``out``) the results:
    ``results.json``, ``tables.md``, ``compare.png`` and ``samples/``.

    ``judge`` (text): ``auto`` (the installed SmolLM2 judge, else none), ``smollm2``, ``none`` or a local
    causal-LM folder. ``fid_features`` (images): ``auto`` (Inception when installed, else none),
    ``inception``, ``random`` (a fixed random network: exercises the path, measures nothing) or ``none``."""
    t_start = time.time()
    workers, threads = plan_workers(workers)
    plan = Comparison.plan(data, out, seeds, steps, quick, num_samples=num_samples, bound_examples=bound_examples,
                           bound_k=bound_k, bound_draws=bound_draws, matched_mdm=matched_mdm, overrides=overrides,
                           workers=workers, threads=threads, judge=judge, fid_features=fid_features, log=log)
    run_comparisons([plan], workers, log, t_start)
    return plan.results


@dataclass
class Comparison:
    """One comparison, planned: its target, output folder, seeds, steps, settings, the results it fills and the
    training jobs that start it (:meth:`plan`). :func:`run_comparisons` runs several in one pool of workers
    (``vadd demo``: the three toys)."""

    target: Target
    out: Path
    seeds: list
    steps: list
    settings: dict
    results: dict
    jobs: list
    tag: str = ""  # a prefix of its progress lines when several run together

    @staticmethod
    def plan(data: str, out, seeds=(0,), steps=STEPS, quick: bool = False, num_samples: int | None = None,
             bound_examples: int | None = None, bound_k: int | None = None, bound_draws: int | None = None,
             matched_mdm: bool = True, overrides=(), workers: int = 1, threads: int = 1, judge: str = "auto",
             fid_features: str = "auto", tag: str = "", log=print) -> "Comparison":
        """Check everything that can be checked before any training (the data, the configs, the counts, the
        memory) and compute the reference statistics the scorers need; no job runs yet."""
        target = Target.resolve(str(data))
        seeds = [int(s) for s in dict.fromkeys(seeds)]
        steps = sorted({int(T) for T in steps})
        if not seeds or any(s < 0 for s in seeds):
            raise ConfigError(f"--seeds must be non-negative integers, got {seeds}")
        if not steps or steps[0] < 1:
            raise ConfigError(f"--steps must be positive integers, got {steps}")
        runs = [(r, a) for r, a in RUNS if matched_mdm or r != "mdm-matched"]
        cfgs = {(a, s): target.config(a, s, quick, overrides) for a in ("vadd", "mdm") for s in seeds}  # fail early
        for cfg in cfgs.values():  # a progress bar only where one job runs at a time (else one line per 20 s)
            cfg["trainer"]["progress"] = workers == 1 and cfg["trainer"].get("progress", True)
        d = cfgs[("vadd", seeds[0])].get("demo", {}) if target.kind == "toy2d" else {}
        given = {"num_samples": num_samples, "bound_examples": bound_examples, "bound_k": bound_k,
                 "bound_draws": bound_draws}
        settings = {k: int(given[k] or (max(d[k]) if k == "bound_k" and d.get(k) else d.get(k))
                           or target.counts[k][1 if quick else 0]) for k in given}
        settings.update(reference_factor=int(d.get("reference_factor", 100)), judge=_resolve_judge(judge, target),
                        fid_features=_resolve_features(fid_features, target), fid_reference=2000 if not quick else 32,
                        entropy_tolerance=0.01)
        for k in given:
            if settings[k] < 1:
                raise ConfigError(f"sample and bound counts must be positive, got {settings}")
        n = settings["num_samples"]
        check_steps(steps[-1])  # what sampling and scoring would refuse, refused before any training
        td = target.token_data(cfgs[("vadd", seeds[0])], seeds[0])
        per_sample = 16.0 * (settings["reference_factor"] if target.kind == "toy2d" else 2 * td.seq_len)
        check_alloc(n * per_sample, f"--num-samples {n:,} (with the reference data it is scored against)",
                    "--num-samples")
        budget = {}
        if matched_mdm:
            flops = {a: training_flops(cfgs[(a, seeds[0])], td) for a in ("vadd", "mdm")}
            mdm_steps = int(cfgs[("mdm", seeds[0])]["trainer"]["max_steps"])
            matched = int(math.ceil(mdm_steps * flops["vadd"] / flops["mdm"]))
            budget = {"flops_per_step": flops, "ratio": flops["vadd"] / flops["mdm"], "mdm_steps": mdm_steps,
                      "matched_steps": matched}
            for s in seeds:
                cfgs[("mdm-matched", s)] = dict(cfgs[("mdm", s)],
                                                trainer=dict(cfgs[("mdm", s)]["trainer"], max_steps=matched))
            log(f"compute matching: a VADD step costs {budget['ratio']:.3f}x an MDM step in FLOPs; the matched MDM "
                f"trains {matched} steps instead of {mdm_steps}")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        # the scorer's reference statistics (FID features, the judge on held-out text) once, before any worker
        # needs them
        scorer = target.scorer(cfgs[("mdm", seeds[0])], settings, seeds[0], out)
        results = {"data": str(data), "kind": target.kind, "label": target.label, "seeds": seeds, "steps": steps,
                   **settings, "compute_matching": budget, "workers": workers, "threads_per_job": threads,
                   "overrides": list(overrides), "seq_len": td.seq_len, "vocab_size": td.vocab_size,
                   "per_seed": {str(s): {"train": {}, "stats": {}, "bounds": {}} for s in seeds}}
        results.update(statistic=scorer.primary, floor=scorer.floor, note=scorer.note,
                       secondary=list(scorer.secondary), higher_better=list(scorer.higher_better))
        head = f"{tag} " if tag else ""
        jobs = [{"kind": "train", "target": target.spec(), "cfg": cfgs[(r if r == "mdm-matched" else a, s)],
                 "run": r, "algo": a, "seed": s, "n": n, "steps": steps, "out": str(out), "threads": threads,
                 "desc": f"{head}seed {s} {NAMES[r]}", **settings} for s in seeds for r, a in runs]
        log(f"vadd compare: {target.label} ({target.kind}), seeds {seeds}, T = {steps}, N = {n:,}; "
            f"{len(jobs)} trainings, {workers} worker(s) x {threads} thread(s)")
        return Comparison(target, out, seeds, steps, settings, results, jobs, tag)

    def collect(self, job: dict, res: dict, log) -> list:
        """Record a finished job; a finished training returns its sampling and bounds jobs. Logs one line."""
        entry = self.results["per_seed"][str(job["seed"])]
        head = f"{self.tag}, " if self.tag else ""
        note = " (kept from an earlier run)" if res.pop("kept", False) else ""  # its record in OUT/jobs/
        if job["kind"] == "train":
            entry["train"][job["run"]] = res
            log(f"{head}seed {job['seed']}: {NAMES[job['run']]} trained to step {res['steps']} in {res['wall_s']:.0f}s{note}")
            desc = job["desc"].rsplit(" ", 1)[0]
            follow = [dict(job, kind="sample", sampler=s.name, method=job["run"] if job["algo"] == "mdm" else s.name,
                           desc=f"{desc} {NAMES[job['run'] if job['algo'] == 'mdm' else s.name]}")
                      for s in ALGORITHMS[job["algo"]].samplers]
            return follow + [dict(job, kind="bounds", desc=f"{job['desc']} bounds")]
        if job["kind"] == "bounds":
            entry["bounds"][job["run"]] = res["bounds"]
            if res.get("data_nll") is not None:  # the exact -log p_data of the bounded rows: the bounds' floor
                entry["data_nll"] = res["data_nll"]
            log(f"{head}seed {job['seed']}: {NAMES[job['run']]} likelihood bounds in {res['wall_s']:.0f}s{note}")
        else:
            entry["stats"][job["method"]] = res["stats"]
            log(f"{head}seed {job['seed']}: {NAMES[job['method']]} sampled and scored at T = {self.steps}{note}")
        return []

    def finish(self, t_start: float, log) -> dict:
        """Summary over seeds, sentences, ``results.json``, ``tables.md`` and ``compare.png``."""
        results = self.results
        results["summary"] = summarize(results)
        results["sentences"] = sentences(results)
        stamp(results, t_start)
        io.write_json(self.out / "results.json", results)
        text = format_tables(results)
        io.atomic_write_bytes(self.out / "tables.md", text.encode())
        draw(self.out / "compare.png", results)
        log(text)
        log(f"wrote {self.out / 'results.json'}, {self.out / 'tables.md'}, {self.out / 'compare.png'} and samples/ "
            f"({results['wall_s']:.0f}s)")
        return results


def run_comparisons(plans: list, workers: int, log=print, t_start: float | None = None, tables: bool = True) -> None:
    """Run the jobs of every planned :class:`Comparison` in one pool (the trainings of VADD first, the longest),
    then finish each (``tables``: and print its tables). Every job uses the same threads whatever ``workers`` is:
    the numbers do not depend on it."""
    t_start = time.time() if t_start is None else t_start
    jobs = sorted((dict(j, plan=i) for i, p in enumerate(plans) for j in p.jobs), key=lambda j: j["algo"] != "vadd")
    total = len(jobs) + sum(len(ALGORITHMS[j["algo"]].samplers) + 1 for j in jobs)
    done = 0

    def collect(job, res):
        nonlocal done
        done += 1
        return plans[job["plan"]].collect(
            job, res, lambda line: log(f"[{done}/{total}] {line}  ({time.time() - t_start:.0f}s elapsed)"))

    run_jobs(jobs, _job, workers, collect, log=log)
    for p in plans:
        p.finish(t_start, log if tables else lambda *a: None)


def _installed(asset: str, *modules: str) -> bool:
    """Whether the offline ``asset`` and the Python ``modules`` it needs are installed."""
    import importlib.util

    from .assets import asset_path
    from .errors import MissingAsset
    try:
        asset_path(asset)
    except MissingAsset:
        return False
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _resolve_judge(judge: str, target: Target) -> str:
    """The judge LM for text (``none`` for other data): ``auto`` is the installed SmolLM2 judge or none."""
    if target.kind != "text" or judge == "none":
        return "none"
    if judge == "auto":  # MAUVE and the judge's runtime too
        return "smollm2" if _installed("judge", "mauve", "transformers") else "none"
    if judge != "smollm2" and not os.path.isdir(judge):
        raise ConfigError(f"--judge {judge}: choose auto, smollm2, none or a local causal-LM folder")
    try:
        import mauve  # noqa: F401  (MAUVE is scored with every judge)
    except ImportError:
        raise MissingDependency(f'--judge {judge} scores MAUVE too: pip install -e ".[text]" (mauve-text)') from None
    return judge


def _resolve_features(kind: str, target: Target) -> str:
    """The FID feature network for images (``none`` for other data): ``auto`` is Inception when installed."""
    if target.kind != "images" or kind == "none":
        return "none"
    if kind == "auto":
        return "inception" if _installed("fid-inception") else "none"
    if kind not in ("inception", "random"):
        raise ConfigError(f"--fid-features {kind}: choose auto, inception, random or none")
    return kind


# ---- statistics over seeds ---------------------------------------------------------------------------------
def spread(values) -> dict:
    """Mean, sample standard deviation and the 95% t-interval half-width of the mean over seeds (``None``
    values, e.g. an entropy a sampler cannot be tempered to, are left out; ``n`` counts the rest)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {"mean": None, "std": None, "ci95": None, "n": 0}
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
                both = [k for k in seeds if per[k]["stats"][m][T][stat] is not None
                        and per[k]["stats"][base][T][stat] is not None]  # seeds where both were measured
                if not both:
                    continue
                a = np.array([per[k]["stats"][m][T][stat] for k in both])
                b = np.array([per[k]["stats"][base][T][stat] for k in both])
                ratio = np.exp(np.mean(np.log(np.maximum(b, 1e-12) / np.maximum(a, 1e-12))))
                rows[T] = {"diff": spread(a - b), "wins": int((a < b).sum()), "seeds": len(both),
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
            who = NAMES[base] + (" (MDM given VADD's training FLOPs)" if base == "mdm-matched" else "")
            missing = sorted((T for T in S["stats"][m] if T not in byT), key=int)
            if missing:
                lines.append(f"{NAMES[m]} against {who}: {stat} was not measured for both at T = {_ts(missing)} "
                             "(see the tables).")
            if not Ts:
                continue
            v = {T: _verdict(byT[T]) for T in Ts}
            win, loss, mixed = ([T for T in Ts if v[T] == w] for w in ("win", "loss", "mixed"))
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
    if sp["mean"] is None:
        return "-"
    return f"{sp['mean']:.{digits}g}" + (f" ± {sp['std']:.2g}" if sp["std"] is not None else "")


SECONDARY = {  # how the secondary statistics read in the tables
    "mauve": "MAUVE of the samples against held-out text on the judge's features (higher is better)",
    "gen_ppl": "Generative perplexity at the sampler's own temperature (1; lower is better, but read it with the entropy)",
    "entropy": "Unigram entropy of the samples (nats, mean over samples; the held-out rows' value is the target)",
    "temperature_matched": "The temperature at which the samples' entropy matches the held-out rows' (- : not reachable)",
}


UNIT = {"images": "dimension", "text": "token", "tokens": "token"}


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
                if str(T) in byT else "-" for T in steps) + " |")
    for name in results.get("secondary", []):
        better = "higher" if name in results.get("higher_better", []) else "lower"
        what = SECONDARY.get(name, f"{name} ({better} is better)")
        floor = results["floor"].get(name)
        out += ["", f"{what}" + (f"; true data of the same size: {floor:.4g}" if floor is not None else "") + ":", "",
                head, rule]
        for m, byT in S["stats"].items():
            out.append(f"| {NAMES[m]} | " + " | ".join(_cell(byT[str(T)][name]) if name in byT[str(T)] else "-"
                                                       for T in steps) + " |")
    if results.get("note"):
        out += ["", f"Note: {results['note']}."]
    if S["bounds"]:
        keys = ["continuous"] + [f"T{T}" for T in steps]
        out += ["", "Likelihood bounds (nats per held-out example; valid upper bounds on -log p of each model's T-step "
                    "sampler and of its T -> inf limit, VADD importance-weighted with K draws of z)"
                + (f"; per {UNIT[results['kind']]}: divide by {results['seq_len']} (bits: by {results['seq_len']} ln 2 = "
                   f"{results['seq_len'] * math.log(2):.4g})" if results.get("kind") in UNIT else "") + ":", "",
                "| model | T -> inf | " + " | ".join(f"T={T}" for T in steps) + " |", "|---|" + "---:|" * len(keys)]
        for r, recs in S["bounds"].items():
            for K in sorted({int(k.split("/K")[1]) for k in recs}):
                label = NAMES[r] if r != "vadd" else f"VADD K={K}"
                out.append(f"| {label} | " + " | ".join(_cell(recs[f"{b}/K{K}"], 5) if f"{b}/K{K}" in recs else "-"
                                                       for b in keys) + " |")
    out += ["", "## Reading", ""] + [f"- {line}" for line in results["sentences"]]
    return "\n".join(out) + "\n"


def _num(v) -> float:
    return float("nan") if v is None else v


def draw(path: Path, results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S, stat, steps = results["summary"], results["statistic"], results["steps"]
    panels = 2 if S["bounds"] else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    for m, byT in S["stats"].items():
        ax.errorbar(steps, [_num(byT[str(T)][stat]["mean"]) for T in steps],
                    yerr=[byT[str(T)][stat]["std"] or 0.0 for T in steps], marker="o", capsize=3, label=NAMES[m],
                    ls="--" if m == "mdm-matched" else "-")
    ax.axhline(results["floor"].get(stat, np.nan), color="gray", ls="--", label="true data, same N")
    vals = [v["mean"] for byT in S["stats"].values() for T in steps for v in [byT[str(T)][stat]] if v["mean"] is not None]
    ax.set(xscale="log", yscale="log" if vals and min(vals) > 0 else "linear", xlabel="sampling steps T",
           ylabel=f"{stat} (mean ± sd over seeds)", title=results["label"], xlim=(steps[0] / 1.3, steps[-1] * 1.3))
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
    io.save_figure(fig, path)
    plt.close(fig)
