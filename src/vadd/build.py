"""Build an MDM or VADD model from a plain dict spec (the ``model`` + ``algo`` config groups).

The spec is what ``config.json`` of a saved model holds, so a model can always be rebuilt from its
folder without pickles.
"""
from __future__ import annotations

from typing import Any

from .algorithms import ALGORITHMS, VADD, Autoregressive, MaskedDiffusion
from .errors import ConfigError
from .models import build_denoiser, build_encoder
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
        spec["free_bits"] = float(algo_cfg.get("free_bits", 0.0))
        spec["mask_gate"] = bool(algo_cfg.get("mask_gate", False))
        spec["mmd_weight"] = float(algo_cfg.get("mmd_weight", 0.0))
        spec["prior_z"] = float(algo_cfg.get("prior_z", 0.0))
        spec["prior_z_masked"] = float(algo_cfg.get("prior_z_masked", 0.0))
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


def build_model(spec: dict) -> MaskedDiffusion:
    """Instantiate the model a spec describes (random initialisation)."""
    if spec.get("algo") not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {spec.get('algo')!r}; choose one of {sorted(ALGORITHMS)}")
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
                     free_bits=float(spec.get("free_bits", 0.0)), mask_gate=bool(spec.get("mask_gate", False)),
                     mmd_weight=float(spec.get("mmd_weight", 0.0)), prior_z=float(spec.get("prior_z", 0.0)),
                     prior_z_masked=float(spec.get("prior_z_masked", 0.0)),
                     objective=str(spec.get("objective", "delbo")), prior=spec.get("prior"))
    model.spec = spec
    return model
