"""Build an MDM or VADD model from a plain dict spec (the ``model`` + ``algo`` config groups).

The spec is what ``config.json`` of a saved model holds, so a model can always be rebuilt from its
folder without pickles.
"""
from __future__ import annotations

from typing import Any

import torch

from .algorithms import ALGORITHMS, VADD, Autoregressive, MaskedDiffusion
from .errors import ConfigError
from .budget import check_alloc
from .models import build_denoiser, build_encoder
from .schema import REMOVED
from .schedules import get_schedule

IMAGE_BACKBONES = {"unet", "conv"}


def model_spec(model_cfg: dict, algo_cfg: dict, vocab_size: int, seq_len: int,
               data_info: dict | None = None) -> dict[str, Any]:
    """Merge the config groups into one self-contained spec (image backbones get the data's geometry)."""
    algo = algo_cfg.get("name", "mdm")
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {sorted(ALGORITHMS)}")
    latent_dim = int(algo_cfg.get("latent_dim", 0)) if algo == "vadd" else 0
    if algo == "vadd" and latent_dim < 1:
        raise ConfigError(f"VADD needs latent_dim >= 1, got {latent_dim}")
    if vocab_size < 2:
        raise ConfigError(f"vocab_size must be at least 2, got {vocab_size}")
    if seq_len < 1:
        raise ConfigError(f"seq_len must be at least 1, got {seq_len}")
    spec = {
        "algo": algo,
        "vocab_size": int(vocab_size),
        "seq_len": int(seq_len),
        "latent_dim": latent_dim,
        "schedule": dict(model_cfg.get("schedule", {"name": "loglinear"})),
        "estimator": str(model_cfg.get("estimator", "time")),
        "denoiser": dict(model_cfg["denoiser"]),
    }
    if algo == "vadd":
        spec["encoder"] = dict(model_cfg["encoder"])
        spec["mask_gate"] = bool(algo_cfg.get("mask_gate", False))
        spec["objective"] = str(algo_cfg.get("objective", "delbo"))
    for part in ("denoiser", "encoder"):
        if part in spec and spec[part].get("name") in IMAGE_BACKBONES:
            info = data_info or {}
            if info.get("kind") != "images" and "image_channels" not in spec[part]:
                raise ConfigError(f"the {spec[part]['name']!r} backbone needs image data (data=images), "
                                 f"got data kind {info.get('kind')!r}")
            spec[part].setdefault("image_channels", int(info.get("channels", 1)))
            spec[part].setdefault("height", int(info["height"]) if "height" in info else None)
    return spec


# every key a spec has held (older releases wrote the same set): another key means another writer
SPEC_KEYS = {"algo", "vocab_size", "seq_len", "latent_dim", "schedule", "estimator", "denoiser", "encoder",
             "mask_gate", "objective", "prior", *(k.split(".")[1] for k in REMOVED)}


def _int_key(spec: dict, key: str, lo: int) -> int:
    v = spec.get(key, 0 if key == "latent_dim" else None)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"model spec: {key} must be an integer >= {lo}, got {v!r}")
    return v


def check_spec(spec) -> None:
    """The shape of a spec, before anything is built: a mapping of known keys, sizes that are integers in
    range, and a model whose embeddings and one row of outputs fit in memory."""
    if not isinstance(spec, dict):
        raise ConfigError(f"the model spec must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"model spec: unknown keys {', '.join(map(str, unknown))} (written by a newer or another "
                          "vadd?)")
    used = [k for k in SPEC_KEYS if f"algo.{k}" in REMOVED and spec.get(k, 0.0) != 0.0]
    if used:  # older releases wrote these training options at 0: only a model trained with one is refused
        raise ConfigError(f"model spec: trained with {', '.join(f'{k}={spec[k]}' for k in sorted(used))}, an option "
                          "this version removed; load it with vadd 0.1.0")
    if spec.get("algo") not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {spec.get('algo')!r}; choose one of {sorted(ALGORITHMS)}")
    V, L, d = _int_key(spec, "vocab_size", 2), _int_key(spec, "seq_len", 1), _int_key(spec, "latent_dim", 0)
    for part in ("schedule", "denoiser", *(("encoder",) if spec["algo"] == "vadd" else ())):
        if not isinstance(spec.get(part), dict) or "name" not in spec[part]:
            raise ConfigError(f"model spec: {part} must be a mapping with a name, got {spec.get(part)!r}")
    # one row's logits and a width-1024 embedding per position and per latent dimension, in float32 x 2
    check_alloc(8.0 * L * (V + 1024), f"a model of {L:,} positions and {V:,} tokens", "the sequence length")
    check_alloc(8.0 * d * 1024 * 4, f"a latent of {d:,} dimensions", "algo.latent_dim")


def build_model(spec: dict) -> MaskedDiffusion:
    """Instantiate the model a spec describes (random initialisation), after checking that its parameters,
    their gradients and two optimiser moments fit in memory (counted on the ``meta`` device, no storage)."""
    check_spec(spec)
    sizes = [v for part in ("denoiser", "encoder") for v in dict(spec.get(part) or {}).values()
             if isinstance(v, int) and not isinstance(v, bool)]
    if max(sizes, default=0) > 8192:  # beyond any shipped config: count first (torch's meta device is slow to wake)
        with torch.device("meta"):
            n = sum(p.numel() for p in _build(spec).parameters())
        check_alloc(16.0 * n, f"a model of {n:,} parameters (weights, gradients and two Adam moments in float32)",
                    "the model's sizes (model.denoiser.*, model.encoder.*)")
    return _build(spec)


def _build(spec: dict) -> MaskedDiffusion:
    sched_cfg = dict(spec["schedule"])
    schedule = get_schedule(sched_cfg.pop("name"), **sched_cfg)
    V, L, d = spec["vocab_size"], spec["seq_len"], spec.get("latent_dim", 0)
    den_cfg = dict(spec["denoiser"])
    if spec["algo"] == "ar":
        from .models.dit import ARTransformer
        if den_cfg.pop("name", None) != "dit":
            raise ConfigError("the autoregressive baseline (algo=ar) is a transformer: use model=dit")
        model = Autoregressive(ARTransformer(L, V, **den_cfg), V, L)
        model.spec = spec
        return model
    denoiser = build_denoiser(den_cfg.pop("name"), seq_len=L, vocab_size=V, latent_dim=d, **den_cfg)
    if spec["algo"] == "mdm":
        model = MaskedDiffusion(denoiser, schedule, V, L, estimator=spec.get("estimator", "time"))
    else:
        enc_cfg = dict(spec["encoder"])
        encoder = build_encoder(enc_cfg.pop("name"), seq_len=L, vocab_size=V, latent_dim=d, **enc_cfg)
        model = VADD(denoiser, encoder, schedule, V, L, d, estimator=spec.get("estimator", "time"),
                     mask_gate=bool(spec.get("mask_gate", False)),
                     objective=str(spec.get("objective", "delbo")), prior=spec.get("prior"))
    model.spec = spec
    return model
