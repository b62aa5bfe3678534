"""Backbones, picked by name from configs. Every denoiser takes ``(xt, t, z)`` and returns
``[B, L, V]`` logits; every encoder takes ``(x0, masked)`` and returns ``(mean, logvar)``."""
from ..errors import ConfigError
from .conditioning import AdaLNZero, Conditioning, modulate, sinusoidal
from .dit import ARTransformer, DiTDenoiser, TransformerEncoder
from .mlp import MaskModulation, MLPDenoiser, MLPEncoder
from .unet import ConvEncoder, UNetDenoiser

DENOISERS = {"mlp": MLPDenoiser, "unet": UNetDenoiser, "dit": DiTDenoiser}
ENCODERS = {"mlp": MLPEncoder, "conv": ConvEncoder, "transformer": TransformerEncoder}


def _build(kind: str, table: dict, name: str, kwargs: dict):
    """``table[name](**kwargs)``; a key the backbone does not take is a config error naming the ones it does."""
    import inspect

    if name not in table:
        raise ConfigError(f"unknown {kind} backbone {name!r}; choose one of {sorted(table)}")
    params = inspect.signature(table[name]).parameters
    extra = sorted(set(kwargs) - set(params))
    if extra and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = sorted(k for k in params if k not in ("seq_len", "vocab_size", "latent_dim"))
        raise ConfigError(f"the {name!r} {kind} takes no {', '.join(extra)} (model.{kind}.* keys it takes: "
                          f"{', '.join(known)})")
    for key, v in kwargs.items():  # sizes: a negative one would fail deep inside torch, or allocate nonsense
        if key in SIZES and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < SIZES[key]):
            raise ConfigError(f"model.{kind}.{key} must be an integer >= {SIZES[key]}, got {v!r}")
        if key == "dropout" and not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise ConfigError(f"model.{kind}.dropout must be in [0, 1), got {v!r}")
    return table[name](**kwargs)


# the integer sizes a backbone takes and their smallest valid value
SIZES = {"hidden": 1, "depth": 0, "embed_dim": 1, "cond_dim": 1, "mult": 1, "width": 1, "heads": 1, "mlp_ratio": 1,
         "patch": 1, "ch": 1, "num_res": 0, "height": 1, "image_channels": 1}


def build_denoiser(name: str, **kwargs):
    return _build("denoiser", DENOISERS, name, kwargs)


def build_encoder(name: str, **kwargs):
    return _build("encoder", ENCODERS, name, kwargs)


__all__ = ["ARTransformer", "AdaLNZero", "Conditioning", "ConvEncoder", "DiTDenoiser", "TransformerEncoder",
           "UNetDenoiser", "DENOISERS", "ENCODERS", "MaskModulation", "MLPDenoiser",
           "MLPEncoder", "build_denoiser", "build_encoder", "modulate", "sinusoidal"]
