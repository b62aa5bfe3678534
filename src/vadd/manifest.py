"""Run records: what produced a number (config, seed, commit, versions, hardware, wall time)."""
from __future__ import annotations

import os
import platform
import subprocess
import time


def git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None


def versions() -> dict:
    import numpy
    import torch

    from . import __version__
    v = {"vadd": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
         "python": platform.python_version()}
    for mod in ("lightning", "hydra", "sklearn"):
        try:
            v[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return v


def hardware() -> dict:
    import torch
    hw = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def run_manifest(cfg: dict, seed: int, wall_s: float, metrics: dict) -> dict:
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed, "config": cfg,
            "git_commit": git_commit(), "versions": versions(), "hardware": hardware(), "wall_s": wall_s,
            "metrics": metrics}
