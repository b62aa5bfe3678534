"""Training checkpoints: atomic writes, safe loads (no unpickling), the final checkpoint, and the checkpoint
a SIGTERM / SIGINT leaves behind. Lightning's callbacks and CheckpointIO are the seams."""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import signal
import threading
from pathlib import Path

import torch

from . import io
from .errors import CheckpointError, RunInterrupted, first_line


def _sidecar(path) -> Path:
    return Path(f"{path}.sha256")


def _listed(path) -> list[str]:
    try:
        return list(json.loads(_sidecar(path).read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_checkpoint(path, data: bytes) -> None:
    """Write checkpoint bytes atomically with a SHA-256 sidecar (``PATH.sha256``). The sidecar lists the new
    digest and the one it replaces while the write is under way, so a kill at any moment leaves a checkpoint
    whose digest is listed; a later flipped bit or truncation is not."""
    current = _listed(path)[:1] or ([_file_digest(path)] if Path(path).is_file() else [])
    new = hashlib.sha256(data).hexdigest()
    io.atomic_write_bytes(_sidecar(path), json.dumps({"sha256": [new, *current]}).encode())
    io.atomic_write_bytes(path, data)
    io.atomic_write_bytes(_sidecar(path), json.dumps({"sha256": [new]}).encode())


def verify_checkpoint(path) -> None:
    """Raise :class:`CheckpointError` if a checkpoint file does not match its sidecar's digest (a checkpoint
    without a sidecar, from an older vadd or a sharded directory, is not checked)."""
    listed = _listed(path)
    if listed and Path(path).is_file() and _file_digest(path) not in listed:
        raise CheckpointError(f"{path}: the checkpoint does not match its checksum ({_sidecar(path).name}): a "
                              "corrupted file; resume from another checkpoint (resume=PATH) or --overwrite")


def atomic_checkpoint_io():
    """A Lightning CheckpointIO that writes to a temporary file, fsyncs, then renames over the target
    (a kill during a save leaves the previous checkpoint intact) with a checksum, and loads with
    ``weights_only=True`` after checking it."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            import io as _io
            buf = _io.BytesIO()
            torch.save(checkpoint, buf)
            write_checkpoint(path, buf.getvalue())

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            verify_checkpoint(path)
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)

        def remove_checkpoint(self, path) -> None:
            super().remove_checkpoint(path)
            _sidecar(path).unlink(missing_ok=True)

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


def read_checkpoint(path) -> dict:
    """A Lightning checkpoint, its checksum checked, loaded without unpickling arbitrary objects."""
    verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        int(ckpt["global_step"]), ckpt["state_dict"]
        return ckpt
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
        # torch.load's errors for what is not a checkpoint (zip and pickle layers), and a dict without its keys
        raise CheckpointError(f"{path}: not a readable vadd training checkpoint ({first_line(e)})") from None
