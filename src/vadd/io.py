"""Safe, atomic files: JSON, safetensors weights with a JSON config (Hugging Face folder layout).

Nothing here unpickles: weights are safetensors, configs are JSON. Every write goes to a temporary
file in the same folder, is flushed and fsynced, then renamed over the target, so a kill during a
save leaves either the old file or the new one, never a broken one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def check_output(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail before any work if ``path`` cannot be written: a file output that is a directory, a folder
    output that is a file, or a parent that is a file or not writable."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise ValueError(f"{path}: is {'a file' if folder else 'a directory'}; give a {'folder' if folder else 'file'} path")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write there ({parent} is not a writable folder)")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def append_jsonl(path, row: dict) -> None:
    """Append ``row`` as one JSON line to ``path`` (its folder created): the probe scripts' log of runs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row, default=_jsonable) + "\n")


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def write_npy(path, arr: np.ndarray) -> None:
    import io as _io
    buf = _io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def save_pretrained(model, folder, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (the model spec and ``extra``, e.g. data info)."""
    from safetensors.torch import save

    folder = Path(folder)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("model has no .spec; build it with vadd.build.build_model")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(state, metadata={"format": "pt"}))
    write_json(folder / CONFIG, {"vadd_format": FORMAT_VERSION, "model": spec, **(extra or {})})
    return folder


def from_pretrained(folder, map_location: str = "cpu"):
    """Rebuild a model from a folder written by :func:`save_pretrained`; returns ``(model, config)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .build import build_model

    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"{folder} is not a saved vadd model (needs {CONFIG} and {WEIGHTS})")
    try:
        config = read_json(folder / CONFIG)
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / CONFIG} is not valid JSON ({e})") from None
    if "model" not in config:
        raise ValueError(f"{folder / CONFIG} has no 'model' spec: not a vadd model folder")
    try:
        model = build_model(config["model"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{folder / CONFIG}: invalid model spec ({e})") from None
    try:
        state = load_file(str(folder / WEIGHTS), device=map_location)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{folder / WEIGHTS} is truncated or not a safetensors file ({e})") from None
    load_state_checked(model, state, str(folder))
    return model, config


def load_state_checked(model, state: dict, where: str) -> None:
    """Load a state dict, or explain in one line why it belongs to another model."""
    check_state(model.state_dict(), state, where)
    model.load_state_dict(state)


def check_state(own: dict, state: dict, where: str) -> None:
    """Raise ``ValueError`` (one line) unless ``state`` has exactly the tensor names and shapes of ``own``."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{where}: weights belong to another model ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[0]!r})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{where}: weights belong to another model: {k} has shape "
                             f"{tuple(state[k].shape)}, this model expects {tuple(v.shape)}")
