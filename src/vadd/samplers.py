"""The samplers of a masked diffusion model, one object each (method.md §5).

A sampler decides both how samples are drawn and which model a likelihood bound is about:

- :data:`MDM`: no latent; the masked-diffusion ancestral sampler.
- :data:`FRESH_Z` (``vadd``): a fresh ``z`` from the prior at every reveal event of a row (the paper's VADD
  sampler); its bounds importance-weight each step's joint (``steps``) or each token's marginal
  (``continuous``), with ``K`` draws per step.
- :data:`FIXED_Z` (``vadd-cs``): one ``z`` per sample for the whole trajectory (VADD-CS); its model is
  ``E_{p(z)} p(x0 | z)`` with ``z`` a latent of the whole sample, so its bounds importance-weight the whole
  path (``steps``, and ``continuous`` on one reveal path) or are an ELBO over ``z`` (``continuous``, ``K = 1``).

The sampling loop (:func:`vadd.sampling.sample_batch`) asks a sampler for the ``z`` of each reveal event;
the bounds (:mod:`vadd.bounds`) ask it for its default importance proposal and the ``K`` it accepts. A model
lists the samplers it runs (``model.samplers``, its own first); :func:`get` turns a name into the object.
"""
from __future__ import annotations

from .errors import ConfigError


class Sampler:
    """One way to draw from a model. ``policy``: how ``z`` is drawn for a row's reveal events (``none``,
    ``per_step`` or ``fixed``)."""

    name = ""
    label = ""
    policy = "none"
    needs_latent = False
    fixed_z = False  # z is a latent of the whole sample: its bounds weigh whole paths

    def check(self, model) -> "Sampler":
        """This sampler, or a one-line error when ``model`` cannot run it."""
        if getattr(model, "name", "") == "ar":
            raise ConfigError("the autoregressive baseline is for likelihood tables; sample from an MDM or VADD model")
        if self not in model.samplers:
            need = "a model with a latent (a VADD model)" if self.needs_latent else "an MDM model"
            raise ConfigError(f"sampler {self.name!r} needs {need}; this one is {model.name!r}, whose samplers "
                              f"are {', '.join(s.name for s in model.samplers)}")
        return self

    def z(self, latents, rows, event):
        """``z [n, d]`` for ``rows`` at their reveal events ``event`` (an int or a tensor like ``rows``) from
        the stream ``latents`` (:class:`vadd.sampling.EventLatents`); ``None`` without a latent."""
        return None

    def release(self, latents, event: int) -> None:
        """Free the draws no row needs after round ``event`` of the event-driven loop."""

    def proposal(self, bound: str, proposal: str) -> str:
        """The importance proposal of ``z`` for ``bound`` (``continuous`` or ``steps``): ``auto`` resolved."""
        return proposal

    def ks(self, bound: str, ks, estimator: str) -> list:
        """The numbers of importance draws this sampler's ``bound`` is reported at, from those asked."""
        return list(ks) if self.needs_latent else [1]

    def __repr__(self) -> str:
        return f"<sampler {self.name}>"

    def __reduce__(self):  # one object per sampler, also across processes: pickles by name
        return (get, (self.name,))


class _MDM(Sampler):
    name, label = "mdm", "MDM"


class _FreshZ(Sampler):
    name, label, policy, needs_latent = "vadd", "VADD", "per_step", True

    def z(self, latents, rows, event):
        return latents.get(rows, event)

    def release(self, latents, event: int) -> None:
        latents.release_below(event + 1)

    def proposal(self, bound: str, proposal: str) -> str:
        # one token's marginal (continuous): the prior's draws fit it; a step revealing one token or many:
        # the even mixture of prior and recognition model
        if proposal != "auto":
            return proposal
        return "prior" if bound == "continuous" else "mixture"


class _FixedZ(Sampler):
    name, label, policy, needs_latent, fixed_z = "vadd-cs", "VADD-CS", "fixed", True, True

    def z(self, latents, rows, event):
        return latents.get(rows, 0)  # event 0's draw for the whole trajectory: at T = 1 the same as VADD's

    def proposal(self, bound: str, proposal: str) -> str:
        return "posterior" if proposal == "auto" else proposal  # z explains every token: r(z | x0, all)

    def ks(self, bound: str, ks, estimator: str) -> list:
        # the continuous bound is an ELBO over z (K = 1) except on one reveal path, which weights it at any K
        return [1] if bound == "continuous" and estimator != "path" else list(ks)


MDM, FRESH_Z, FIXED_Z = _MDM(), _FreshZ(), _FixedZ()
ALL = (MDM, FRESH_Z, FIXED_Z)
NAMES = tuple(s.name for s in ALL)


def get(sampler) -> Sampler:
    """The sampler named ``sampler`` (``mdm``, ``vadd``, ``vadd-cs``), or ``sampler`` itself."""
    if isinstance(sampler, Sampler):
        return sampler
    for s in ALL:
        if s.name == sampler:
            return s
    raise ConfigError(f"unknown sampler {sampler!r}; choose one of {list(NAMES)}")
