"""Config composition (Hydra) and validation, kept out of the core.

``compose(overrides)`` returns a plain dict; any problem (unknown key, wrong type, bad value) raises
:class:`ConfigError` with one line that names the key.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, first_line  # ConfigError re-exported: vadd.config.ConfigError
from .latent import schedule_steps  # noqa: F401  (re-exported: vadd.config.schedule_steps)
from .rng import MAX_SEED
from .schema import DATA_KINDS, REMOVED, problems, schema_for

CONFIG_DIR = Path(__file__).parent / "configs"


def compose(overrides: list[str] | tuple = (), config_name: str = "config") -> dict:
    """Compose the root config with Hydra overrides; unknown keys, ``+``-added ones included, are errors
    that name the nearest valid key."""
    overrides = list(overrides)
    for o in overrides:
        if _key(o) in REMOVED:
            raise ConfigError(f"invalid config: {_key(o)} was removed ({REMOVED[_key(o)]}); drop the override")
    for o in overrides:  # an optional group (experiment) that does not exist would be skipped silently
        if not o.startswith(("+", "~")) and _key(o) == "experiment" and "=" in o:
            name = o.split("=", 1)[1].strip()
            if name not in ("null", "") and not (CONFIG_DIR / "experiment" / f"{name}.yaml").exists():
                have = sorted(f.stem for f in (CONFIG_DIR / "experiment").glob("*.yaml"))
                raise ConfigError(f"invalid config: no experiment {name!r} (available: {', '.join(have)})")
    out = _compose(overrides, config_name)
    added = [_key(o) for o in overrides if o.startswith("+")]
    if added:
        known = set(_flat_keys(_compose(_group_choices(overrides), config_name, strict=False)))
        for key in added:
            if key not in known and not (key in GROUPS and "." not in key):
                raise ConfigError(f"invalid config: unknown key {key}{_nearest(key, known)}")
    validate(out)
    return out


GROUPS = ("data", "model", "algo", "trainer", "experiment")


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].strip()


def _group_choices(overrides: list[str]) -> list[str]:
    """The overrides that pick a config group (``algo=mdm``, ``experiment=text_cpu``): they decide which
    keys exist."""
    return [o for o in overrides if not o.startswith(("+", "~")) and "=" in o and "." not in _key(o)
            and _key(o) in GROUPS]


def _flat_keys(d: dict, prefix: str = ""):
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        yield name
        if isinstance(v, dict):
            yield from _flat_keys(v, name)


def _nearest(key: str, known) -> str:
    """``"; did you mean X?"``: the closest sibling of the key's last part, else the closest full key."""
    import difflib
    head, _, leaf = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == head]
    best = [f"{head}.{m}" if head else m for m in difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)]
    if not best and head not in known:  # the prefix itself is wrong: compare whole keys
        best = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
    return f"; did you mean {best[0]}?" if best else ""


def _compose(overrides: list[str], config_name: str, strict: bool = True) -> dict:
    from hydra import compose as h_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .schema import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = h_compose(config_name=config_name, overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=strict, throw_on_missing=strict)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        msg = " ".join(lines[:2]) if lines else type(e).__name__
        if e.__cause__ is not None and msg.startswith("Error merging override"):  # the schema's reason
            msg = f"{msg}: {first_line(e.__cause__)}"
        if "Available options" in msg:  # a group option that does not exist: list the ones that do
            msg = f"{lines[0]} (available: {', '.join(ln for ln in lines[2:] if ' ' not in ln and not ln.startswith('_'))})"
        if msg.startswith("Could not override '"):  # Hydra's hint ('+key=value') would add a key nothing reads
            key = msg.split("'")[1]
            choices = _group_choices(overrides)
            known = set(_flat_keys(_compose(choices, config_name, strict=False))) if choices != overrides else set()
            msg = f"unknown key {key}{_nearest(key, known)}"
        raise ConfigError(f"invalid config: {msg}") from None
    finally:
        GlobalHydra.instance().clear()


def validate(cfg: dict) -> None:
    """Check a composed config (or a dict edited in Python): the ``trainer``, VADD ``algo`` and ``data`` keys
    against :mod:`vadd.schema` (the data schema chosen by ``data.kind``), then the rules that join several keys."""
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"invalid config: seed must be int, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"invalid config: seed must be in [0, 2^32 - 1], got {seed}")
    betas = (cfg.get("trainer") or {}).get("betas")
    if betas is not None and (len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas)):
        raise ConfigError(f"invalid config: trainer.betas must be two numbers in [0, 1) (Adam's decay rates), "
                          f"got {list(betas)}")
    kind = (cfg.get("data") or {}).get("kind")
    if "data" in cfg and kind not in DATA_KINDS:
        raise ConfigError(f"invalid config: data.kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
    for group in ("trainer", "algo", "data"):
        values = cfg.get(group) or {}
        schema = schema_for(group, values)
        bad = problems(group, values, schema) if schema is not None else []
        if bad:
            raise ConfigError(f"invalid config: {bad[0]}")
    algo = cfg.get("algo", {})
    if algo.get("name") == "vadd" and int(algo.get("iw_k") or 1) > 1 and algo.get("objective") == "fixed_z":
        raise ConfigError(f"invalid config: algo.iw_k={algo['iw_k']} with algo.objective=fixed_z: the importance-"
                          "weighted phase bounds one t's masked tokens given z; the fixed-z objective's z explains "
                          "the whole sample (use iw_k=1)")
    if algo.get("name") == "vadd" and int(algo.get("iw_k") or 1) > 1:
        # the importance-weighted phase trains the bound itself (the KL weight does not enter it): it starts
        # once the warm-up has reached its final weight, which may be below 1 (a beta-VAE phase that grows the
        # latent before the phase tightens the bound) but not above
        max_steps = int(cfg.get("trainer", {}).get("max_steps", 0))
        start = schedule_steps(float(algo.get("iw_from") or 0.0), max_steps)
        warm_end = (schedule_steps(float(algo.get("kl_delay") or 0.0), max_steps)
                    + schedule_steps(float(algo.get("kl_warmup") or 0.0), max_steps))
        kl_max = float(algo.get("kl_max", 1.0))
        if start < warm_end or kl_max > 1.0:
            raise ConfigError(f"invalid config: algo.iw_k={algo['iw_k']}: the importance-weighted phase trains the "
                              f"bound itself, so it must start after the KL warm-up (algo.iw_from at step {start}, "
                              f"the warm-up ends at step {warm_end}) and needs algo.kl_max <= 1 (got {kl_max})")
    data = cfg.get("data", {})
    if data.get("kind") == "toy2d":
        from .data.toy2d import TOYS
        name = str(data.get("name"))
        if name not in TOYS and not os.path.exists(name):
            raise ConfigError(f"invalid config: data.name={name!r} is neither a toy ({', '.join(TOYS)}) "
                              "nor an existing .npy file of points")
