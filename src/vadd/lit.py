"""The LightningModule (training glue) and the EMA of the weights. Imported by :func:`vadd.train.train`
only: the core never needs Lightning."""
from __future__ import annotations

import copy
import math

import lightning as L
import torch

from . import fsdp
from .bounds import heldout_bound
from .data.batches import step_generator
from .errors import TrainingDiverged
from .metrics.latent import collapse_diagnostics


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


class LitDiffusion(L.LightningModule):
    """The LightningModule of every algorithm: one training step of ``model.loss`` with the KL weight and the
    importance-weighted phase scheduled by step, step-indexed noise, EMA after each optimiser step, periodic
    diagnostics and validation, AdamW with warm-up and a cosine or constant schedule."""

    def __init__(self, model, cfg: dict, diag_tokens: torch.Tensor | None = None,
                 val_tokens: torch.Tensor | None = None):
        super().__init__()
        self.tcfg = cfg["trainer"]
        self.model = model
        self.ema = EMA(model, self.tcfg.get("ema_decay", 0.999))
        self.seed = int(cfg.get("seed", 0))
        self.diag_tokens = diag_tokens
        self.val_tokens = val_tokens
        self._events_done = 0  # the last step whose periodic events (progress line, diagnostics, validation) ran
        self.event_metrics = {}
        self.max_steps = int(self.tcfg["max_steps"])
        # VADD's KL warm-up and late importance-weighted phase; MDM's objective does not move
        self.anneal = model.annealing(cfg["algo"], self.max_steps)

    def configure_model(self):
        # trainer.strategy=fsdp: shard both networks and, alike, their EMA copy (vadd.fsdp); a no-op
        # for every other strategy (no device mesh) and on a second call
        mesh = getattr(self, "device_mesh", None)  # (the attribute is new in lightning 2.4)
        if mesh is not None and not fsdp.is_sharded(self.model):
            fsdp.shard(self.model, mesh["data_parallel"])
            fsdp.shard(self.ema.model, mesh["data_parallel"])

    def training_step(self, batch, batch_idx):
        lam = self.anneal.kl_weight(self.global_step)
        accum = self.trainer.accumulate_grad_batches
        micro = self.global_step * accum + batch_idx % accum
        g = step_generator(self.seed, micro, batch.device)
        shard = (self.global_rank, self.trainer.world_size)
        iw = self.anneal.iw(self.global_step)
        if iw and self.anneal.iw_split:  # batch / K examples x K draws: a step costs no more than a DELBO step
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
            if self.anneal.scheduled:
                self.log("train/kl_weight", lam)
                self.log("train/iw_k", float(iw or 1))
        return loss

    def _log_now(self) -> bool:
        """Log only at the steps the logger writes (every ``log_every_n_steps``, as Lightning counts them, and
        the last): ``self.log`` costs ~0.4 ms a call, a sixth of a toy training step."""
        step = self.global_step + 1
        return step % max(1, int(self.trainer.log_every_n_steps)) == 0 or step >= self.max_steps

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
        pe = int(self.tcfg.get("print_every", 0))
        if pe and step % pe == 0 and self.trainer.is_global_zero:
            print(f"step {step}", flush=True)  # plain progress lines for logs without a TTY
        every = int(self.tcfg.get("diag_every", 0))
        diag = every and self.diag_tokens is not None and step % every == 0
        if diag:  # nothing for a model without a recognition model (MDM)
            self._log_event(collapse_diagnostics(self.model, self.diag_tokens.to(self.device)))
        every = int(self.tcfg.get("val_every", 0) or 0)
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
        kw = dict(lr=float(self.tcfg["lr"]), weight_decay=float(self.tcfg.get("weight_decay", 0.0)),
                  betas=tuple(self.tcfg.get("betas", (0.9, 0.999))))
        try:  # one fused kernel instead of a Python loop over tensors (CPU and CUDA)
            opt = torch.optim.AdamW(self.model.parameters(), fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            opt = torch.optim.AdamW(self.model.parameters(), **kw)
        warm = int(self.tcfg.get("warmup_steps", 0))
        floor = float(self.tcfg.get("min_lr_ratio", 0.0))

        def lr_at(step):
            if step < warm:
                return (step + 1) / warm
            if self.tcfg.get("lr_schedule", "cosine") == "constant":
                return 1.0
            frac = min(1.0, (step - warm) / max(1, self.max_steps - warm))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
