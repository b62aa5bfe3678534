"""The Python API: load a trained model, sample, evaluate, train.

    import vadd
    pipe = vadd.load("runs/checkerboard_vadd/model")
    tokens = pipe.sample(10_000, steps=1, sampler="vadd")
    points = pipe.decode(tokens)                      # 2D toys: bin centres
    nats = pipe.nll_bound(test_tokens, num_samples=100)  # continuous-time bound, nats per example
    few = pipe.nll_bound(test_tokens, num_samples=100, steps=1)  # bound of the one-step sampler
    pipe.save_samples(tokens, "samples", "vadd_T1")   # .npy, plus decoded points / images + PNG / text JSON
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import hub, io
from .errors import CheckpointError, DataError, first_line
from .data import decoder_from_info
from .errors import ConfigError
from .samplers import Sampler
from .sampling import SampleStats, check_request, sample


@dataclass
class Pipeline:
    model: torch.nn.Module
    config: dict

    @property
    def samplers(self) -> list[Sampler]:
        """The samplers this model runs (:mod:`vadd.samplers`), its own first; ``s.name`` is what ``sampler=``
        and the CLI's ``--sampler`` take."""
        return list(self.model.samplers)

    def sample(self, num_samples: int | None = None, steps: int = 10, sampler: str | Sampler | None = None,
               seed: int = 0, x_init=None, cache: bool = True, return_stats: bool = False, **kw):
        """Tokens ``[N, L]`` (int64 numpy). ``sampler`` (a name or a :class:`vadd.samplers.Sampler`) defaults
        to the model's own (MDM's / VADD's fresh-``z`` one)."""
        sampler = sampler or self.samplers[0]
        x_init = None if x_init is None else as_tokens(x_init, "x_init")
        x, stats = sample(self.model, num_samples, steps, sampler, cache=cache, x_init=x_init, seed=seed, **kw)
        return (x.numpy(), stats) if return_stats else x.numpy()

    def check_sample_request(self, num_samples: int, steps: int, sampler: str | Sampler | None = None) -> None:
        """Raise the error :meth:`sample` would raise for this request, without drawing anything."""
        check_request(self.model, num_samples, steps, sampler or self.samplers[0])

    def infill(self, tokens, given_mask, steps: int = 10, sampler: str | Sampler | None = None, seed: int = 0):
        """Regenerate the positions where ``given_mask`` is False; keep the others exactly."""
        x = as_tokens(tokens, "infill tokens").clone()
        self.model.check_tokens(x)
        given = np.asarray(given_mask)
        if given.shape != tuple(x.shape) or not (given.dtype == bool or np.isin(given, (0, 1)).all()):
            raise DataError(f"infill: given_mask must be booleans of the tokens' shape {tuple(x.shape)}, got "
                            f"{given.dtype} of shape {given.shape}")
        x[~torch.as_tensor(given.astype(bool))] = self.model.mask_id
        return self.sample(steps=steps, sampler=sampler, seed=seed, x_init=x)

    @property
    def decoder(self):
        """Tokens -> the modality's objects (2D points for the toys), or None when tokens are the output."""
        return decoder_from_info(self.config.get("data", {}))

    def test_tokens(self) -> np.ndarray | None:
        """The held-out split of the data the model was trained on, where it can be rebuilt (images,
        text corpora); None otherwise."""
        info = dict(self.config.get("data", {}))
        if info.get("kind") == "images":
            from .data.images import image_data
            keys = ("name", "path", "levels", "size", "binarization", "split", "n_test", "test_fraction", "seed")
            return image_data(**{k: info[k] for k in keys if k in info}).test.numpy()
        if info.get("kind") == "text":
            from .data.text import text_data
            keys = ("corpus", "path", "field", "tokenizer", "seq_len", "convention", "test_fraction", "max_docs",
                    "vocab")
            return text_data(**{k: info[k] for k in keys if k in info}).test.numpy()
        return None

    def decode(self, tokens):
        """Tokens ``[N, L]`` in the model's vocabulary -> the modality's objects (or the tokens themselves)."""
        x = as_tokens(tokens, "decode")
        self.model.check_tokens(x)
        dec = self.decoder
        return x.numpy() if dec is None else dec(x.numpy())

    def save_samples(self, tokens, folder, stem: str) -> list[Path]:
        """Write ``tokens`` as ``FOLDER/STEM.npy`` and, where the data has an output form, decoded beside it:
        images as ``STEM_images.npy`` and a PNG grid of the first 64, text as ``STEM_text.json`` (one string
        per sample), toy points as ``STEM_decoded.npy``. Returns the paths written."""
        folder, tokens = Path(folder), np.asarray(tokens)
        paths = [folder / f"{stem}.npy"]
        io.write_npy(paths[0], tokens)
        kind = self.config.get("data", {}).get("kind")
        if kind == "images":
            from .data.images import save_grid_png
            images = self.decode(tokens)
            paths += [folder / f"{stem}_images.npy", folder / f"{stem}.png"]
            io.write_npy(paths[1], images)
            save_grid_png(images[:64], paths[2])
        elif kind == "text":
            paths.append(folder / f"{stem}_text.json")
            io.write_json(paths[1], list(self.decode(tokens)))
        elif self.decoder is not None:
            paths.append(folder / f"{stem}_decoded.npy")
            io.write_npy(paths[1], np.asarray(self.decode(tokens), dtype=np.float32))
        return paths

    def nll_bound(self, tokens, num_samples: int = 1, steps: int | None = None, num_t: int = 1,
                  batch_size: int = 256, seed: int = 0, estimator: str = "count", grid: str = "uniform",
                  proposal: str = "auto", sampler: str | Sampler | None = None, progress: bool = False,
                  fixed_z=None) -> np.ndarray:
        """Upper bound on ``-log p(x)`` in nats per example (``vadd.bounds``): ``steps=None`` the
        ``continuous`` bound (fresh ``z`` per step, ``T -> inf``), ``steps=T`` the bound of the ``T``-step
        sampler on ``grid``; importance-weighted with ``K = num_samples`` (VADD), averaged over ``num_t``
        draws per example. The draws come from ``seed`` alone, so two models (or two ``K``) with the same
        seed and batch size are scored on the same draws. ``estimator``: ``count`` (masked-count rewrite,
        weight at most ``L``), ``time`` or ``path`` (one reveal path in continuous time, ``L`` network calls
        per draw of ``z``); all estimate the same bound. ``proposal``:
        the importance proposal of ``z`` (``auto``: the prior for the continuous bound, the mixture of prior
        and recognition model for the steps bound; or ``mixture``, ``posterior``, ``prior``): every choice
        is a valid bound. ``sampler``: whose bounds (default: the model's own); ``"vadd-cs"``, VADD's sampler with
        one ``z`` per sample, has a continuous bound that is an ELBO over ``z`` (``K = 1`` whatever
        ``num_samples`` is) except with ``estimator="path"``, which importance-weights it with ``num_samples``.
        The AR baseline returns its exact NLL."""
        from . import bounds

        _renamed_fixed_z(fixed_z)
        K = bounds.check_request([num_samples], num_t)[0]  # a bad K is an error even for MDM, which ignores it
        spec = bounds.BoundSpec("continuous", sampler=sampler) if steps is None else \
            bounds.specs([steps], continuous=False, samplers=[sampler])[0]
        tokens = as_tokens(tokens, "nll_bound")
        res = bounds.evaluate(self.model, tokens, [K], [spec], num_t=num_t, seed=seed, batch_size=batch_size,
                              estimator=estimator, grid=grid, proposal=proposal, progress=progress)
        by_k = next(iter(res.values()))
        return by_k[K] if K in by_k else by_k[1]

    def bounds(self, tokens, ks=(1,), steps=(), continuous: bool = True, samplers=(None,), fixed_z=None,
               **kw) -> list[dict]:
        """Every requested bound over ``tokens`` as records (``bound``, ``steps``, ``fixed_z``, ``K``, nats per
        example with its standard error, per token, bits per dim, perplexity): what ``vadd eval`` writes.
        ``samplers``: whose bounds (names or :mod:`vadd.samplers` objects; ``None``: the model's own); a record's
        ``fixed_z`` says it is VADD-CS's."""
        from . import bounds

        _renamed_fixed_z(fixed_z)
        tokens = as_tokens(tokens, "bounds")
        res = bounds.evaluate(self.model, tokens, ks, bounds.specs(steps, continuous, samplers), **kw)
        return bounds.records(res, self.model.seq_len)


def _renamed_fixed_z(fixed_z) -> None:
    if fixed_z is not None:
        raise ConfigError("fixed_z= was renamed: pass sampler='vadd-cs' (nll_bound) or samplers=('vadd', 'vadd-cs') "
                          "(bounds)")


def as_tokens(tokens, what: str) -> torch.Tensor:
    """Integer token ids as int64, without truncating: floats must hold whole numbers (a fractional or
    non-finite value, or a boolean array, is an error); the range is checked by the model."""
    from .data.tokens import integer_ids
    a = tokens.detach().cpu().numpy() if torch.is_tensor(tokens) else tokens
    return torch.from_numpy(integer_ids(a, what))


def load(path: str | Path, map_location: str = "cpu") -> Pipeline:
    """Load a model folder written by training (``RUN/model``) or a run folder that contains one."""
    path = Path(path)
    if (path / "model" / hub.CONFIG).exists():
        path = path / "model"
    model, config = hub.from_pretrained(path, map_location=map_location)
    info = config.get("data", {})
    if isinstance(info, dict) and info.get("kind") in ("images", "toy2d"):  # cheap to rebuild: check it now
        try:
            decoder_from_info(info)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise CheckpointError(f"{path / hub.CONFIG}: its data info ({info.get('kind')}) cannot rebuild how "
                                  f"samples are decoded (missing or bad {first_line(e)})") from None
    model.eval()
    return Pipeline(model, config)


__all__ = ["Pipeline", "SampleStats", "load"]
