"""Backbones, picked by name from configs. Every denoiser takes ``(xt, t, z)`` and returns
``[B, L, V]`` logits; every encoder takes ``(x0, masked)`` and returns ``(mean, logvar)``."""
from .conditioning import AdaLNZero, Conditioning, modulate, sinusoidal
from .dit import ARTransformer, DiTDenoiser, TransformerEncoder
from .mlp import MaskModulation, MLPDenoiser, MLPEncoder
from .unet import ConvEncoder, UNetDenoiser

DENOISERS = {"mlp": MLPDenoiser, "unet": UNetDenoiser, "dit": DiTDenoiser}
ENCODERS = {"mlp": MLPEncoder, "conv": ConvEncoder, "transformer": TransformerEncoder}


def build_denoiser(name: str, **kwargs):
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser backbone {name!r}; choose one of {sorted(DENOISERS)}")
    return DENOISERS[name](**kwargs)


def build_encoder(name: str, **kwargs):
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder backbone {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)


__all__ = ["ARTransformer", "AdaLNZero", "Conditioning", "ConvEncoder", "DiTDenoiser", "TransformerEncoder",
           "UNetDenoiser", "DENOISERS", "ENCODERS", "MaskModulation", "MLPDenoiser",
           "MLPEncoder", "build_denoiser", "build_encoder", "modulate", "sinusoidal"]
