"""Saved models: safetensors weights with a JSON config (the Hugging Face folder layout), written and read
back with their checks.

Nothing here unpickles. Saved weights carry a SHA-256 of their tensors in the safetensors metadata and are
checked on load, with every value finite and every tensor's name and shape those of the model the config
builds; the files are written atomically (:mod:`vadd.io`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError, MissingFile
from .io import atomic_write_bytes, read_json, write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def save_pretrained(model, folder, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (the model spec and ``extra``, e.g. data info)."""
    from safetensors.torch import save

    folder = Path(folder)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("model has no .spec; build it with vadd.build.build_model")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(state, metadata={"format": "pt", "vadd_sha256": tensors_digest(state)}))
    write_json(folder / CONFIG, {"vadd_format": FORMAT_VERSION, "model": spec, **(extra or {})})
    return folder


def from_pretrained(folder, map_location: str = "cpu"):
    """Rebuild a model from a folder written by :func:`save_pretrained`; returns ``(model, config)``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from .build import build_model

    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        raise MissingFile(f"{folder} is not a saved vadd model (needs {CONFIG} and {WEIGHTS})")
    try:
        config = read_json(folder / CONFIG)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{folder / CONFIG} is not valid JSON ({e})") from None
    if "model" not in config:
        raise CheckpointError(f"{folder / CONFIG} has no 'model' spec: not a vadd model folder")
    fmt = config.get("vadd_format", FORMAT_VERSION)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise CheckpointError(f"{folder / CONFIG}: model format {fmt!r}, written by a newer vadd; this one reads "
                              f"format {FORMAT_VERSION}: upgrade vadd to load it")
    try:
        model = build_model(config["model"])
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{folder / CONFIG}: invalid model spec ({e})") from None
    try:
        state = load_file(str(folder / WEIGHTS), device=map_location)
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            digest = (f.metadata() or {}).get("vadd_sha256")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / WEIGHTS} is truncated or not a safetensors file ({e})") from None
    if digest is not None and digest != tensors_digest(state):
        raise CheckpointError(f"{folder / WEIGHTS}: the weights do not match their checksum (a corrupted file); "
                              "rerun the training command to rewrite the model")
    check_finite(state, str(folder / WEIGHTS))
    load_state_checked(model, state, str(folder))
    return model, config


def tensors_digest(state: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict's tensors, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_finite(state: dict, where: str) -> None:
    """Refuse weights holding NaN or infinity (a run that diverged would sample one constant token)."""
    for k, v in state.items():
        if torch.is_floating_point(v) and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{where}: weight {k!r} holds NaN or infinite values (the run diverged); "
                                  "retrain with a lower trainer.lr")


def load_state_checked(model, state: dict, where: str) -> None:
    """Load a state dict, or explain in one line why it belongs to another model."""
    check_state(model.state_dict(), state, where)
    model.load_state_dict(state)


def check_state(own: dict, state: dict, where: str) -> None:
    """Raise ``ValueError`` (one line) unless ``state`` has exactly the tensor names and shapes of ``own``."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{where}: weights belong to another model ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[0]!r})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: weights belong to another model: {k} has shape "
                             f"{tuple(state[k].shape)}, this model expects {tuple(v.shape)}")
