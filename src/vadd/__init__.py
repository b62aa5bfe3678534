"""vadd: Variational Autoencoding Discrete Diffusion and its masked-diffusion baseline.

The core (schedules, process, objectives, latent, algorithms, sampling) is pure PyTorch; Lightning and
Hydra are only imported by training and the CLI.
"""
__version__ = "0.1.0"

from .algorithms import VADD, MaskedDiffusion  # noqa: E402
from .api import Pipeline, load  # noqa: E402
from .build import build_model, model_spec  # noqa: E402
from .sampling import sample  # noqa: E402

__all__ = ["MaskedDiffusion", "VADD", "Pipeline", "__version__", "build_model", "load", "model_spec", "sample"]
