"""Training: ``train(cfg)`` is what ``vadd train``, the demo and the benchmarks call.

Lightning does device placement, DDP/FSDP, precision, checkpoints, progress bars and logging; the maths
lives in :mod:`vadd.algorithms`. The seams: the LightningModule and EMA in :mod:`vadd.lit`, step-indexed
batches in :mod:`vadd.data.batches`, checkpoint I/O and signals in :mod:`vadd.checkpoints`, run folders in
:mod:`vadd.runs`, collapse diagnostics in :mod:`vadd.metrics.latent`. Here: the trainer a config asks for
and the run from data to saved model.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import torch

from . import fsdp, hub, io, runs
from .build import build_model, model_spec
from .checkpoints import atomic_checkpoint_io, final_checkpoint, read_checkpoint, stop_checkpoint, stop_on_signals
from .config import validate
from .data import TokenData, build_data
from .data.batches import StepBatches
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MissingFile,
    RunError,
    RunInterrupted,
    VaddError,
    first_line,
)
from .latent import fit_mixture_prior
from .manifest import run_manifest
from .metrics.latent import collapse_diagnostics


def _lightning():
    import logging
    import warnings

    import lightning as L  # imported lazily: the core never needs it

    # keep the console for what matters: progress and our own lines
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for pattern in (".*isinstance\\(treespec, LeafSpec\\).*", ".*module\\(s\\) in eval mode.*",
                    ".*does not have many workers.*", ".*litlogger.*", ".*exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)
    return L


def step_reporter(report, every_s: float = 2.0):
    """A callback that calls ``report(step=..., total=...)`` at most every ``every_s`` seconds and at the
    last step: how parallel benchmark jobs show their progress (``vadd.jobs.report_progress``)."""
    import lightning.pytorch as pl

    class StepReporter(pl.Callback):
        last = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.time()
            if now - self.last >= every_s or trainer.global_step >= trainer.max_steps:
                self.last = now
                report(step=int(trainer.global_step), total=int(trainer.max_steps))

    return StepReporter()


def metric_curve(run_dir, key: str) -> list[list[float]]:
    """``[[step, value], ...]`` of one logged metric of a run (``RUN/logs/metrics.csv``), in step order, steps
    counted as optimiser steps done (Lightning's column is one less). A resumed run's rewritten steps keep the
    last value written."""
    import csv
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        points = {int(r["step"]) + 1: float(r[key]) for r in csv.DictReader(f) if r.get(key) not in (None, "")}
    return [[s, points[s]] for s in sorted(points)]


def world_size(t: dict) -> int:
    devices = t.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        n = len(devices)
    elif devices in (-1, "auto", "-1"):
        n = torch.cuda.device_count() if t.get("accelerator") in ("gpu", "cuda") else 1
    else:
        n = int(devices)
    return max(1, n) * int(t.get("num_nodes", 1))


def accumulation_steps(t: dict) -> int:
    """Gradient accumulation: given, or derived from ``global_batch_size`` (per-device batch x devices x
    nodes x accumulation = global batch)."""
    gbs = t.get("global_batch_size")
    if not gbs:
        return int(t.get("accumulate_grad_batches", 1))
    per_step = int(t["batch_size"]) * world_size(t)
    if int(gbs) % per_step:
        raise ConfigError(f"trainer.global_batch_size={gbs} is not a multiple of batch_size x devices x nodes "
                         f"= {per_step}")
    return int(gbs) // per_step


def build_trainer(cfg: dict, run_dir: Path, extra_callbacks=()):
    """The Lightning Trainer a config asks for (built without launching anything)."""
    L = _lightning()
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    t = cfg["trainer"]
    accumulate = accumulation_steps(t)
    strategy = t.get("strategy", "auto")
    if strategy == "fsdp":
        strategy = fsdp.strategy(world_size(t))
    ckpt_every = int(t.get("ckpt_every", 0)) or None
    callbacks = [ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=ckpt_every,
                                 save_last=True, save_top_k=0 if ckpt_every else 1, enable_version_counter=False),
                 *([final_checkpoint(run_dir / "checkpoints" / "last.ckpt", ckpt_every)] if ckpt_every else []),
                 *extra_callbacks]
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    try:
        return L.Trainer(
            accelerator=t.get("accelerator", "cpu"), devices=t.get("devices", 1), num_nodes=int(t.get("num_nodes", 1)),
            strategy=strategy, precision=t.get("precision", "32-true"),
            max_steps=int(t["max_steps"]), max_epochs=-1,
            accumulate_grad_batches=accumulate,
            gradient_clip_val=t.get("grad_clip", 1.0) or None,
            logger=CSVLogger(str(run_dir), name="logs", version=""), callbacks=callbacks,
            plugins=[atomic_checkpoint_io()],
            enable_progress_bar=bool(t.get("progress", True)), enable_model_summary=False,
            log_every_n_steps=int(t.get("log_every", 50)), default_root_dir=str(run_dir),
            deterministic=bool(t.get("deterministic", False)), num_sanity_val_steps=0,
            limit_val_batches=0, benchmark=False,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as e:  # Lightning checks trainer.*
        if isinstance(e, VaddError):
            raise
        raise ConfigError(f"invalid config: trainer: {first_line(e)}") from None


def compile_networks(model) -> None:
    """``torch.compile`` the denoiser and, for VADD, the recognition model, in place.

    ``Module.compile`` keeps the parameter names (no ``_orig_mod.`` prefix), so checkpoints and EMA
    weights of a compiled run load into an uncompiled model. Both networks: compiling the denoiser alone
    leaves VADD's encoder eager, which made VADD's step relatively slower, not faster.
    """
    for name in ("denoiser", "encoder"):
        net = getattr(model, name, None)
        if isinstance(net, torch.nn.Module):
            net.compile()


def train(cfg: dict, data: TokenData | None = None, run_dir: str | os.PathLike | None = None,
          resume: str | None = None, callbacks=(), overwrite: bool | None = None):
    """Train the model ``cfg`` describes; returns ``(ema_model, run_dir, record)``.

    Writes ``RUN/model`` (EMA weights as safetensors + ``config.json``), ``RUN/checkpoints/last.ckpt``
    (full training state for resuming), ``RUN/logs/metrics.csv`` and ``RUN/manifest.json``. The folder is
    locked while the run lasts and never receives another run (:mod:`vadd.runs`); ``overwrite`` (default:
    ``cfg["overwrite"]``) moves a folder holding another run aside first.
    """
    validate(cfg)  # a config edited after compose() gets the same checks
    L = _lightning()
    t0 = time.time()
    seed = int(cfg.get("seed", 0))
    run_dir = Path(run_dir or cfg.get("run_dir") or "runs/default")
    overwrite = bool(cfg.get("overwrite", False)) if overwrite is None else bool(overwrite)
    L.seed_everything(seed, workers=True, verbose=False)
    if data is None:
        data = build_data(cfg["data"], seed=seed)
    spec = model_spec(cfg["model"], cfg["algo"], data.vocab_size, data.seq_len, data.info)
    model = build_model(spec)  # a config the model rejects fails before the run folder is touched
    t = cfg["trainer"]
    global_batch = int(t["batch_size"]) * world_size(t) * accumulation_steps(t)
    preflight(cfg, data)
    with runs.owned_run(run_dir, cfg, overwrite, resume, global_batch) as run_dir, _torch_settings(t):
        try:
            return _train(L, cfg, data, model, run_dir, resume, callbacks, t0, seed)
        except OSError as e:
            if isinstance(e, VaddError) or e.errno not in io.USER_OS_ERRORS:
                raise
            raise RunError(f"{run_dir}: {e.strerror} while training ({getattr(e, 'filename', None) or 'a run file'}); "
                           "free space or fix the permissions, then rerun the same command to resume") from None


def preflight(cfg: dict, data: TokenData) -> None:
    """What would otherwise fail at the first step or after the last one, checked before the run folder is
    touched: the data against one global batch, and the mixture prior's rows against its components."""
    t, algo = cfg["trainer"], cfg["algo"]
    per_step = int(t["batch_size"]) * world_size(t)
    if len(data.train) < per_step:
        raise DataError(f"training data has {len(data.train)} sequences, fewer than one global batch ({per_step} = "
                        "trainer.batch_size x devices x nodes): lower trainer.batch_size or give more data")
    if algo.get("name") == "vadd" and algo.get("prior", "standard") != "standard":
        rows = min(len(data.train), int(algo.get("prior_examples", 50_000)))
        components = int(algo.get("prior_components", 16))
        if rows < 2 * components:
            raise ConfigError(f"algo.prior={algo['prior']} fits {components} components (algo.prior_components) to "
                              f"{rows} training rows; it needs at least {2 * components}: lower "
                              "algo.prior_components, or use algo.prior=standard")


def first_step_claim(run_dir: Path, cfg: dict, global_batch: int):
    """A callback that records the run's identity (:func:`vadd.runs.claim`) once it has trained a step, or
    before any checkpoint is written, whichever comes first: a start that fails leaves the folder free."""
    import lightning.pytorch as pl

    class ClaimOnFirstStep(pl.Callback):
        done = False

        def _claim(self):
            if not self.done:
                runs.claim(run_dir, cfg, global_batch)
                self.done = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._claim()

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            self._claim()

    return ClaimOnFirstStep()


@contextlib.contextmanager
def _torch_settings(t: dict):
    """The run's thread count and fp32 matmul precision, restored when training returns or fails: both are
    process-wide in torch, and a caller's later work (sampling, a second run) should not inherit them."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_num_threads(int(t.get("num_threads", 0)) or threads)
    if t.get("float32_matmul_precision"):  # TF32 tensor cores for fp32 matmuls on GPUs ("high")
        torch.set_float32_matmul_precision(t["float32_matmul_precision"])
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)


def fit_prior(model, data: TokenData, seed: int, components: int = 16, examples: int = 50_000) -> dict:
    """Fit the Gaussian-mixture prior to the aggregate posterior of the first ``examples`` training rows (as
    training sees them: through the data's transform) and install it in ``model`` (VADD); returns its
    metrics (vadd.latent.fit_mixture_prior)."""
    x = data.train[: int(examples)]
    if data.train_transform is not None:
        x = data.train_transform(x, torch.Generator().manual_seed(int(seed)))
    prior, fit = fit_mixture_prior(model, x, int(components), seed=int(seed))
    model.install_prior(prior)
    return {"prior_log_density_fitted": fit["log_density_fitted"],
            "prior_log_density_standard": fit["log_density_standard"]}


def _train(L, cfg, data, model, run_dir, resume, callbacks, t0, seed):
    spec = model.spec
    if cfg["trainer"].get("compile", False):  # a switch: worth it on GPUs and long runs
        compile_networks(model)
    val_rows = int(cfg["trainer"].get("val_rows", 256) or 0)
    from .lit import LitDiffusion

    lit = LitDiffusion(model, cfg, diag_tokens=data.test[:1024], val_tokens=data.test[:val_rows])
    bs = int(cfg["trainer"]["batch_size"])
    trainer = build_trainer(cfg, run_dir, extra_callbacks=callbacks)
    for tmp in io.own_temp_files(run_dir / "checkpoints"):
        tmp.unlink()  # the remains of a save that was killed midway; the checkpoint it replaced is intact
    ckpt = resume
    if ckpt is None and cfg["trainer"].get("auto_resume", True) and (run_dir / "checkpoints" / "last.ckpt").exists():
        ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    if ckpt and not Path(ckpt).exists():
        raise MissingFile(f"no such checkpoint to resume from: {ckpt}")
    start_batch = 0
    if ckpt:
        saved = read_checkpoint(ckpt)
        try:
            hub.check_state(lit.state_dict(), saved["state_dict"], str(ckpt))
        except ValueError as e:
            raise CheckpointError(f"{e}; it cannot resume this run: use a new run_dir (demo/bench: --out), "
                             "resume=PATH of a checkpoint of this model, or --overwrite (train: overwrite=true) to move the old run aside") from None
        start_batch = int(saved["global_step"]) * trainer.accumulate_grad_batches
        del saved
    loader = torch.utils.data.DataLoader(StepBatches(data.train, bs, seed, start_batch, data.train_transform), batch_size=None,
                                         num_workers=0)
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.callbacks.insert(0, first_step_claim(run_dir, cfg, bs * world_size(cfg["trainer"]) *
                                                 trainer.accumulate_grad_batches))
    with stop_on_signals() as stop:
        trainer.callbacks.append(stop_checkpoint(last, stop))
        try:
            trainer.fit(lit, train_dataloaders=loader, ckpt_path=ckpt, weights_only=True)
        except RunInterrupted:
            raise
        except SystemExit as e:  # Lightning's SIGTERMException (distributed runs): status 0 would read as success
            if stop["signum"] is None and not trainer.received_sigterm:
                raise
            raise RunInterrupted(stop["signum"] or signal.SIGTERM, trainer.global_step, last) from e
    ema_model = lit.ema.model
    if fsdp.is_sharded(ema_model):  # gathered on every rank (collective), an ordinary model from here on
        ema_model = fsdp.gathered_copy(ema_model, build_model(spec))
    ema_model = ema_model.cpu()
    ema_model.spec = spec
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(lit.event_metrics)  # the last diagnostics and validation of the run
    prior_failed = None
    metrics.update(collapse_diagnostics(ema_model, data.test[:1024]))  # VADD's posterior; nothing for MDM
    algo = cfg["algo"]
    if algo.get("prior", "standard") != "standard" and hasattr(ema_model, "install_prior"):
        try:  # algo.prior=gmm (VADD's: an experiment's algo.prior does not apply to MDM)
            metrics.update(fit_prior(ema_model, data, seed, algo["prior_components"], algo["prior_examples"]))
        except VaddError as e:  # keep what trained; the prior can be fitted again from the saved run
            prior_failed = e
    record = {"train_metrics": metrics, "train_wall_s": time.time() - t0, "steps": int(trainer.global_step)}
    if prior_failed is not None:
        record["prior_fit_failed"] = str(prior_failed)
    if trainer.is_global_zero:
        hub.save_pretrained(ema_model, run_dir / "model", extra={"data": data.info, "seed": seed})
        io.write_json(run_dir / "manifest.json", run_manifest(cfg, seed, time.time() - t0, record))
    if prior_failed is not None:
        raise RunError(f"{run_dir}: trained {record['steps']} steps and saved the model with the N(0, I) prior, but "
                       f"fitting algo.prior={cfg['algo'].get('prior')} failed ({prior_failed}); fit it with: vadd "
                       f"fit-prior {run_dir} --out {run_dir / 'model-gmm'}")
    return ema_model, run_dir, record
