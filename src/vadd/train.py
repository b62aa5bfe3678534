"""Training glue: the LightningModule, the batch loader, EMA, optimiser and schedules.

Lightning does device placement, DDP/FSDP, precision, checkpoints, progress bars and logging; the
maths lives in :mod:`vadd.algorithms`. ``train(cfg)`` is what ``vadd train`` and ``vadd demo`` call.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch

from . import fsdp, io, objectives, runs
from .build import build_model, model_spec
from .config import schedule_steps, validate
from .data import TokenData, build_data
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MissingFile,
    RunError,
    RunInterrupted,
    TrainingDiverged,
    VaddError,
    first_line,
)
from .latent import active_units, kl_weight
from .manifest import run_manifest
from .sampling import eval_mode


class EMA(torch.nn.Module):
    """Exponential moving average of every parameter and buffer of a model (both networks for VADD).

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` so short runs are not dominated
    by the initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        super().__init__()
        self.decay = float(decay)
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._cache = None

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        n = int(self.updates)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        ema_params, params, ema_buffers, buffers = self._lists(model)
        # under FSDP both are sharded alike (vadd.fsdp): each rank averages its own shards
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for e, b in zip(ema_buffers, buffers):
            e.copy_(b)
        self.updates += 1

    def _lists(self, model):
        """The tensor lists of an update, built once per source model: walking the module tree costs as
        much as the update itself on small networks. The lists hold the Parameter objects themselves
        (no detached views), so in-place optimiser steps, checkpoint loads and ``.to()`` moves, which
        keep those objects, stay visible. Under FSDP they hold each parameter's local shard, which the
        sharded parameter shares storage with."""
        if self._cache is None or self._cache[0] is not model:
            lists = (fsdp.local(self.model.parameters()), fsdp.local(model.parameters()),
                     list(self.model.buffers()), list(model.buffers()))
            self._cache = (model, lists)
        return self._cache[1]


class StepBatches(torch.utils.data.IterableDataset):
    """Endless batches where batch ``k`` is a pure function of ``(seed, k)``.

    Epoch ``e = k // n`` uses its own seeded permutation; the global batch (``batch_size`` rows per
    rank times the world size) is cut into one slice per rank. So a resumed run continues with exactly
    the batches an uninterrupted run would have seen, and ``world`` processes together see what one
    process with the global batch sees.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, seed: int, start_batch: int = 0, transform=None):
        self.tokens, self.batch_size, self.seed, self.start_batch = tokens, int(batch_size), int(seed), int(start_batch)
        self.transform = transform  # (global batch, generator seeded by (seed, k)) -> tokens
        self._perm_epoch, self._perm = None, None

    @staticmethod
    def rank_world():
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def batch(self, k: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        G = self.batch_size * world
        n = len(self.tokens) // G
        if n < 1:
            raise DataError(f"training data has {len(self.tokens)} sequences, fewer than one global batch ({G})")
        epoch, pos = divmod(int(k), n)
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.tokens), generator=g), epoch
        rows = self._perm[pos * G:(pos + 1) * G]
        if self.transform is None:
            return self.tokens[rows[rank * self.batch_size:(rank + 1) * self.batch_size]]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int(k) * 7919 + 777) % (2**63 - 1))
        return self.transform(self.tokens[rows], g)[rank * self.batch_size:(rank + 1) * self.batch_size]

    def __iter__(self):
        rank, world = self.rank_world()
        self.batch(0, rank, world)  # validates the size before training starts
        k = self.start_batch
        while True:
            yield self.batch(k, rank, world)
            k += 1


def step_generator(seed: int, batch_index: int, device) -> torch.Generator:
    """The training noise of micro-batch ``batch_index``: a function of the seed and the index only."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(batch_index) * 7919 + 12345) % (2**63 - 1))
    return g


def atomic_checkpoint_io():
    """A Lightning CheckpointIO that writes to a temporary file, fsyncs, then renames over the target
    (a kill during a save leaves the previous checkpoint intact) and loads with ``weights_only=True``."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            import io as _io
            buf = _io.BytesIO()
            torch.save(checkpoint, buf)
            io.atomic_write_bytes(path, buf.getvalue())

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)

    return AtomicCheckpointIO()


def final_checkpoint(path: Path, every: int):
    """A callback that writes ``last.ckpt`` when training ends on a step the periodic checkpoint skipped
    (``max_steps`` not a multiple of ``ckpt_every``): without it the last steps of a finished run were only in
    ``RUN/model``, and raising ``max_steps`` to continue the run retrained them. Called on every rank
    (saving is collective under FSDP), before the strategy is torn down."""
    import lightning.pytorch as pl

    class FinalCheckpoint(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            if trainer.global_step % every:
                trainer.save_checkpoint(str(path))

    return FinalCheckpoint()


@contextlib.contextmanager
def stop_on_signals():
    """While training: SIGTERM (what SLURM and Kubernetes send at preemption) and SIGINT set a flag that the
    :func:`stop_checkpoint` callback turns into a checkpoint and :class:`RunInterrupted` at the next step
    boundary, instead of killing the run or letting it end with status 0. A second SIGINT stops at once."""
    state = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["signum"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop_checkpoint(path: Path, state: dict):
    """The callback of :func:`stop_on_signals`: at the first optimiser-step boundary after a signal, save
    ``last.ckpt`` at that step and raise :class:`RunInterrupted`. Lightning's own SIGTERM check (distributed
    runs) raises before a step; the checkpoint is then written from ``on_exception``, also between steps."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class StopOnSignal(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if state["signum"] is not None and (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
                raise RunInterrupted(state["signum"], trainer.global_step, path)

        def on_exception(self, trainer, pl_module, exception):
            if isinstance(exception, (RunInterrupted, SIGTERMException)):
                trainer.save_checkpoint(str(path))

    return StopOnSignal()


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


def read_checkpoint(path) -> dict:
    """A Lightning checkpoint, loaded without unpickling arbitrary objects."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        int(ckpt["global_step"]), ckpt["state_dict"]
        return ckpt
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable vadd training checkpoint ({first_line(e)})") from None


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


def make_lit_module(model, cfg: dict, diag_tokens: torch.Tensor | None = None,
                    val_tokens: torch.Tensor | None = None):
    L = _lightning()
    tcfg = cfg["trainer"]

    class LitDiffusion(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.ema = EMA(model, tcfg.get("ema_decay", 0.999))
            self.seed = int(cfg.get("seed", 0))
            self.diag_tokens = diag_tokens
            self.val_tokens = val_tokens
            self._events_done = 0  # the last step whose periodic events (progress line, diagnostics, validation) ran
            self.event_metrics = {}
            self.max_steps = int(tcfg["max_steps"])
            warm = float(cfg["algo"].get("kl_warmup", 0.0))
            self.kl_warmup_steps = schedule_steps(warm, self.max_steps)
            self.kl_delay_steps = schedule_steps(float(cfg["algo"].get("kl_delay", 0.0)), self.max_steps)
            self.kl_max = float(cfg["algo"].get("kl_max", 1.0))
            # IWAE phase (VADD): from step iw_from on, the importance-weighted bound with iw_k draws of z
            self.iw_k = int(cfg["algo"].get("iw_k", 1)) if self.model.latent_dim else 1
            self.iw_from_steps = schedule_steps(float(cfg["algo"].get("iw_from", 0.0)), self.max_steps)
            self.iw_split = bool(cfg["algo"].get("iw_split", True))

        def configure_model(self):
            # trainer.strategy=fsdp: shard both networks and, alike, their EMA copy (vadd.fsdp); a no-op
            # for every other strategy (no device mesh) and on a second call
            mesh = getattr(self, "device_mesh", None)  # (the attribute is new in lightning 2.4)
            if mesh is not None and not fsdp.is_sharded(self.model):
                fsdp.shard(self.model, mesh["data_parallel"])
                fsdp.shard(self.ema.model, mesh["data_parallel"])

        def training_step(self, batch, batch_idx):
            lam = (kl_weight(self.global_step, self.kl_warmup_steps, delay_steps=self.kl_delay_steps, end=self.kl_max)
                   if self.model.latent_dim else 1.0)
            accum = self.trainer.accumulate_grad_batches
            micro = self.global_step * accum + batch_idx % accum
            g = step_generator(self.seed, micro, batch.device)
            shard = (self.global_rank, self.trainer.world_size)
            iw = self.iw_k if (self.iw_k > 1 and self.global_step >= self.iw_from_steps) else 0
            if iw and self.iw_split:  # batch / K examples x K draws: a step costs no more than a DELBO step
                # (each rank keeps the first rows of its own slice: under DDP the same training in distribution,
                # not row for row as the DELBO phase is)
                batch = batch[:max(1, len(batch) // iw)]
            loss, stats = self.model.loss(batch, kl_weight=lam, generator=g, shard=shard, num_samples=iw)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                                         "the last good checkpoint is kept. Try a lower trainer.lr")
            if self._log_now():
                self.log("train/loss", loss, prog_bar=True)
                for k, v in stats.items():
                    if k != "loss":
                        self.log(f"train/{k}", v, prog_bar=(k == "kl"))
                if self.model.latent_dim:
                    self.log("train/kl_weight", lam)
                    self.log("train/iw_k", float(iw or 1))
            return loss

        def _log_now(self) -> bool:
            """Log only at the steps the logger writes (and the last): ``self.log`` costs ~0.4 ms a call,
            a sixth of a toy training step."""
            if self.global_step + 1 >= self.max_steps:
                return True
            try:
                return bool(self.trainer._logger_connector.should_update_logs)
            except AttributeError:  # another Lightning version: log every step
                return True

        def optimizer_step(self, *args, **kwargs):
            # here, not in on_train_batch_end: checkpoints (saved from callbacks' on_train_batch_end) then
            # hold the EMA of the step they record, and accumulation updates once per optimiser step
            super().optimizer_step(*args, **kwargs)
            self.ema.update(self.model)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            step = self.global_step
            if step == self._events_done:  # with accumulation, one optimiser step ends several batches
                return
            self._events_done = step
            pe = int(tcfg.get("print_every", 0))
            if pe and step % pe == 0 and self.trainer.is_global_zero:
                print(f"step {step}", flush=True)  # plain progress lines for logs without a TTY
            every = int(tcfg.get("diag_every", 0))
            diag = every and self.model.latent_dim and self.diag_tokens is not None and step % every == 0
            if diag:
                self._log_event(collapse_diagnostics(self.model, self.diag_tokens.to(self.device)))
            every = int(tcfg.get("val_every", 0) or 0)
            val = every and self.val_tokens is not None and len(self.val_tokens) and step % every == 0
            if val:
                nats = heldout_bound(self.ema.model, self.val_tokens.to(self.device), seed=self.seed)
                self._log_event({"val/nll": nats, "val/nats_per_token": nats / self.val_tokens.shape[1]})
            if diag or val:  # trainer.strategy=fsdp: free the weights these evaluations gathered
                fsdp.reshard(self.model)
                fsdp.reshard(self.ema.model)

        def _log_event(self, metrics: dict) -> None:
            """Metrics computed every N steps (diagnostics, validation): written once, at the step they
            describe. ``self.log`` from this hook would repeat the last value at every later logging step
            until the next refresh. Kept in ``event_metrics`` for the run record."""
            metrics = {k: float(v) for k, v in metrics.items()}
            self.event_metrics.update(metrics)
            if self.logger is not None and self.trainer.is_global_zero:
                self.logger.log_metrics(metrics, step=self.global_step - 1)  # Lightning's step convention

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            if not gradient_clip_val:
                return
            if gradient_clip_algorithm not in (None, "norm") or self.trainer.strategy.__class__.__name__.startswith("FSDP"):
                return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            # one multi-tensor pass instead of a Python loop over parameters (Lightning's CPU default)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(gradient_clip_val), foreach=True)

        def configure_optimizers(self):
            kw = dict(lr=float(tcfg["lr"]), weight_decay=float(tcfg.get("weight_decay", 0.0)),
                      betas=tuple(tcfg.get("betas", (0.9, 0.999))))
            try:  # one fused kernel instead of a Python loop over tensors (CPU and CUDA)
                opt = torch.optim.AdamW(self.model.parameters(), fused=True, **kw)
            except (RuntimeError, TypeError, ValueError):
                opt = torch.optim.AdamW(self.model.parameters(), **kw)
            warm = int(tcfg.get("warmup_steps", 0))
            floor = float(tcfg.get("min_lr_ratio", 0.0))

            def lr_at(step):
                if step < warm:
                    return (step + 1) / warm
                if tcfg.get("lr_schedule", "cosine") == "constant":
                    return 1.0
                frac = min(1.0, (step - warm) / max(1, self.max_steps - warm))
                return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return LitDiffusion()


@torch.no_grad()
def heldout_bound(model, x0: torch.Tensor, seed: int = 0, batch: int = 64) -> float:
    """Mean ``continuous`` bound on ``-log p(x0)`` in nats per row (``K = 1``, one masked-count draw per
    row; AR: exact NLL) of the given held-out rows, for the validation curve (``trainer.val_every``).

    ``vadd.bounds.evaluate`` draws from generators seeded by ``seed`` alone, so every call scores the
    same draws (a curve that moves only because the model does) and training's random stream is untouched.
    """
    from . import bounds

    res = bounds.evaluate(model, x0, [1], [bounds.BoundSpec("continuous")], seed=seed, batch_size=batch)
    return float(next(iter(res.values()))[1].mean())


@torch.no_grad()
def collapse_diagnostics(model, x0: torch.Tensor) -> dict:
    """Posterior-collapse diagnostics on a fixed batch at full masking and at a random mask pattern:
    mean KL per example and the number of active latent units; at full masking also how much of it the
    decoder reads (:func:`latent_use`)."""
    out = {}
    full = torch.ones_like(x0, dtype=torch.bool)
    half = torch.rand(x0.shape, device=x0.device) < 0.5
    for name, masked in (("t1", full), ("rand", half)):
        post = model.posterior(x0, masked)
        out[f"diag/kl_{name}"] = float(post.kl_standard().mean())
        out[f"diag/active_units_{name}"] = float(active_units(post.mean))
    out["diag/z_use_t1"] = latent_use(model, x0)
    return out


@torch.no_grad()
def latent_use(model, x0: torch.Tensor, rows: int = 256, seed: int = 0, max_logits: int = 1 << 25) -> float:
    """How much better the decoder predicts each ``x0`` at full masking with its own posterior draw of ``z``
    than with another example's, nats per example:
    ``E log p(x0_i | all masked, z_i) - E log p(x0_i | all masked, z_{i-1})``, ``z_i ~ r(z | x0_i)``.

    0 (up to noise) when ``z`` carries nothing about ``x0`` or the decoder ignores it; exactly 0 when the
    decoder does not depend on ``z``. By Jensen it is an upper bound on what ``z`` buys the reconstruction
    over the mixture of the posteriors, so a value below the KL means the latent costs more than the decoder
    gains from it, and the objective at KL weight 1 pushes it to the prior. Another example's
    ``z`` is used rather than a prior draw: a decoder fitted to posteriors that all sit at one point (KL
    without information) would otherwise look like a heavy user of ``z``. One draw per row from a private
    generator, the model in eval mode for the calls, so training's random stream and mode are left as they
    were. Rows go through the denoiser in chunks of at most ``max_logits`` output logits (a GPT-2 vocabulary at
    length 1,024 is 51 M logits per row).
    """
    x0 = x0[:rows]
    n, L = x0.shape
    if n < 2:
        return 0.0
    chunk = max(1, int(max_logits) // max(1, L * int(model.vocab_size)))
    gen = torch.Generator(device=x0.device).manual_seed(int(seed))
    with eval_mode(model):
        masked = torch.ones_like(x0, dtype=torch.bool)
        post = model.posterior(x0, masked)
        z = post.rsample(torch.randn(post.mean.shape, generator=gen, device=x0.device, dtype=post.mean.dtype))
        gain = 0.0
        for zz, sign in ((z, 1.0), (z.roll(1, 0), -1.0)):
            for i in range(0, n, chunk):
                x, m = x0[i:i + chunk], masked[i:i + chunk]
                xt = torch.full_like(x, model.mask_id)
                t = torch.ones(x.shape[0], device=x.device)
                gain += sign * float(objectives.masked_log_likelihood(model.log_probs(xt, t, zz[i:i + chunk]), x, m).sum())
    return gain / n


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
    with runs.owned_run(run_dir, cfg, overwrite, resume, global_batch) as run_dir, _torch_settings(t):
        try:
            return _train(L, cfg, data, model, run_dir, resume, callbacks, t0, seed)
        except OSError as e:
            if isinstance(e, VaddError) or e.errno not in io.USER_OS_ERRORS:
                raise
            raise RunError(f"{run_dir}: {e.strerror} while training ({getattr(e, 'filename', None) or 'a run file'}); "
                           "free space or fix the permissions, then rerun the same command to resume") from None


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


def _train(L, cfg, data, model, run_dir, resume, callbacks, t0, seed):
    spec = model.spec
    if cfg["trainer"].get("compile", False):  # a switch: worth it on GPUs and long runs
        compile_networks(model)
    val_rows = int(cfg["trainer"].get("val_rows", 256) or 0)
    lit = make_lit_module(model, cfg, diag_tokens=data.test[:1024], val_tokens=data.test[:val_rows])
    bs = int(cfg["trainer"]["batch_size"])
    trainer = build_trainer(cfg, run_dir, extra_callbacks=callbacks)
    for tmp in (run_dir / "checkpoints").glob(".*.tmp") if (run_dir / "checkpoints").exists() else ():
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
            io.check_state(lit.state_dict(), saved["state_dict"], str(ckpt))
        except ValueError as e:
            raise CheckpointError(f"{e}; it cannot resume this run: use a new run_dir (demo/bench: --out), "
                             "resume=PATH of a checkpoint of this model, or --overwrite (train: overwrite=true) to move the old run aside") from None
        start_batch = int(saved["global_step"]) * trainer.accumulate_grad_batches
        del saved
    loader = torch.utils.data.DataLoader(StepBatches(data.train, bs, seed, start_batch, data.train_transform), batch_size=None,
                                         num_workers=0)
    last = run_dir / "checkpoints" / "last.ckpt"
    runs.claim(run_dir, cfg, bs * world_size(cfg["trainer"]) * trainer.accumulate_grad_batches)
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
    if model.latent_dim:
        metrics.update(collapse_diagnostics(ema_model, data.test[:1024]))
    record = {"train_metrics": metrics, "train_wall_s": time.time() - t0, "steps": int(trainer.global_step)}
    if trainer.is_global_zero:
        io.save_pretrained(ema_model, run_dir / "model", extra={"data": data.info, "seed": seed})
        io.write_json(run_dir / "manifest.json", run_manifest(cfg, seed, time.time() - t0, record))
    return ema_model, run_dir, record
