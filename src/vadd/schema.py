"""The schema of the ``trainer``, ``algo`` (VADD) and ``data`` config groups: each key's type, range and
choices, in one place. Hydra reads it (the group YAML files extend these dataclasses, so a wrong type fails at
composition) and :func:`vadd.config.validate` checks ranges and choices from it, also for config dicts edited
in Python. The values themselves live in the YAML files (``configs/trainer/cpu.yaml``, ``configs/algo/vadd.yaml``,
``configs/data/*.yaml``); a field here is ``MISSING`` so that a key without a value there fails loudly.
The model group is checked where its backbones are built (``vadd.models``), whose keys depend on the backbone.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

MISSING = "???"  # OmegaConf's marker of a value that must be given (the same string), without importing it
# options that no shipped experiment used, removed (the results pages and notes keep the record of the trials)
REMOVED = {k: "it helped in no shipped experiment; the results pages keep the record" for k in
           ("algo.free_bits", "algo.mmd_weight", "algo.prior_z", "algo.prior_z_masked")}


def _key(lo=None, hi=None, *, gt=None, below=None, choices=None, doc: str = ""):
    """A field without a default (the YAML gives it) and its constraints: ``lo <= v <= hi``, ``v > gt``,
    ``v < below``, ``v in choices``."""
    meta = {k: v for k, v in dict(lo=lo, hi=hi, gt=gt, below=below, choices=choices, doc=doc).items()
            if v is not None and v != ""}
    return field(default=MISSING, metadata=meta)


@dataclass
class TrainerSchema:
    accelerator: str = _key()
    devices: Any = _key()  # an int, "auto" or a list of device ids
    num_nodes: int = _key(1)
    strategy: str = _key()
    precision: Any = _key()  # Lightning's precision names ("32-true", "bf16-mixed", ...)
    max_steps: int = _key(gt=0)
    batch_size: int = _key(gt=0)
    accumulate_grad_batches: int = _key(gt=0)
    global_batch_size: Optional[int] = _key(gt=0)
    lr: float = _key(gt=0)
    lr_schedule: str = _key(choices=("cosine", "constant"))
    min_lr_ratio: float = _key(0, 1)
    warmup_steps: int = _key(0)
    weight_decay: float = _key(0)
    betas: List[float] = _key()
    grad_clip: Optional[float] = _key(0)
    ema_decay: float = _key(0, below=1)
    ckpt_every: Optional[int] = _key(0)
    log_every: int = _key(1)
    print_every: int = _key(0)
    diag_every: int = _key(0)
    val_every: Optional[int] = _key(0)
    val_rows: Optional[int] = _key(0)
    progress: bool = _key()
    deterministic: bool = _key()
    auto_resume: bool = _key()
    num_threads: int = _key(0)
    compile: bool = _key()
    float32_matmul_precision: Optional[str] = _key(choices=("highest", "high", "medium"))


@dataclass
class VaddSchema:
    name: str = _key(choices=("vadd",))
    latent_dim: int = _key(1)
    kl_warmup: float = _key(0)
    kl_max: float = _key(0)
    kl_delay: float = _key(0)
    iw_k: int = _key(1)
    iw_from: float = _key(0)
    iw_split: bool = _key()
    mask_gate: bool = _key()
    objective: str = _key(choices=("delbo", "fixed_z"))
    prior: str = _key(choices=("standard", "gmm"))
    prior_components: int = _key(1)
    prior_examples: int = _key(2)


@dataclass
class Toy2dSchema:
    kind: str = _key(choices=("toy2d",))
    name: str = _key()  # a toy's name or a .npy file of points (checked by validate)
    bins: int = _key(2)
    range: List[float] = _key()
    tokens: str = _key(choices=("bins", "binary"))
    n_train: int = _key(gt=0)
    n_test: int = _key(gt=0)


@dataclass
class TokensSchema:
    kind: str = _key(choices=("tokens",))
    train: str = _key()
    test: Optional[str] = _key()
    vocab_size: Optional[int] = _key(1)
    test_fraction: float = _key(gt=0, below=1)


@dataclass
class ImagesSchema:
    kind: str = _key(choices=("images",))
    name: str = _key(choices=("binarized-mnist", "fashion-mnist", "cifar10", "images"))
    path: Optional[str] = _key()
    levels: int = _key(2, 256)
    size: Optional[int] = _key(1)
    binarization: str = _key(choices=("static", "dynamic"))
    split: List[int] = _key()
    n_train: Optional[int] = _key(gt=0)
    n_test: Optional[int] = _key(gt=0)
    test_fraction: float = _key(gt=0, below=1)


@dataclass
class TextSchema:
    kind: str = _key(choices=("text",))
    corpus: str = _key()  # an installed corpus or "user" (with path)
    path: Optional[str] = _key()
    field: str = _key()
    tokenizer: str = _key(choices=("gpt2", "bert-base-uncased", "char"))
    vocab_limit: Optional[int] = _key(2)
    seq_len: int = _key(2)
    convention: str = _key(choices=("pack", "pad"))
    test_fraction: float = _key(gt=0, below=1)
    max_docs: Optional[int] = _key(2)


# (group, the name the group's YAML file extends, dataclass, (key, value) that selects it or None: always);
# which schema a group's values are checked by
SCHEMAS = (("trainer", "_schema", TrainerSchema, None),
           ("algo", "_vadd_schema", VaddSchema, ("name", "vadd")),
           ("data", "_toy2d_schema", Toy2dSchema, ("kind", "toy2d")),
           ("data", "_tokens_schema", TokensSchema, ("kind", "tokens")),
           ("data", "_images_schema", ImagesSchema, ("kind", "images")),
           ("data", "_text_schema", TextSchema, ("kind", "text")))
DATA_KINDS = tuple(sel[1] for group, _, _, sel in SCHEMAS if group == "data")


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name, node, _ in SCHEMAS:
        cs.store(group=group, name=name, node=node)


def schema_for(group: str, values: dict):
    """The dataclass ``values`` of ``group`` are checked by, or None (MDM / AR algo: no keys of their own)."""
    for g, _, node, sel in SCHEMAS:
        if g == group and (sel is None or values.get(sel[0]) == sel[1]):
            return node
    return None


def _type_ok(value, typ) -> bool:
    origin = str(typ)
    if value is None:
        return origin.startswith("Optional")
    base = origin.removeprefix("Optional[").removesuffix("]")
    if base == "Any":
        return True
    if base == "bool":
        return isinstance(value, bool)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base == "str":
        return isinstance(value, str)
    if base.startswith("List"):
        return isinstance(value, (list, tuple))
    raise AssertionError(f"schema type {typ} not handled")


def problems(group: str, values: dict, schema) -> list[str]:
    """What is wrong with ``values`` under ``schema``: one line per key (empty when all is well)."""
    out = []
    for f in fields(schema):
        if f.name not in values:
            continue
        v, m = values[f.name], f.metadata
        where = f"{group}.{f.name}"
        if not _type_ok(v, f.type):
            out.append(f"{where} must be {str(f.type).replace('Optional[', '').rstrip(']')}"
                       f"{' (or null)' if str(f.type).startswith('Optional') else ''}, got {v!r}")
            continue
        if v is None or isinstance(v, (bool, str, list, tuple)) and "choices" not in m:
            continue
        if "choices" in m and v not in m["choices"]:
            out.append(f"{where} must be one of {', '.join(map(str, m['choices']))}"
                       f"{' (or null)' if str(f.type).startswith('Optional') else ''}, got {v!r}")
        elif "gt" in m and not v > m["gt"]:
            out.append(f"{where} must be > {m['gt']}, got {v!r}")
        elif "lo" in m and not v >= m["lo"]:
            out.append(f"{where} must be >= {m['lo']}, got {v!r}")
        elif "hi" in m and not v <= m["hi"]:
            out.append(f"{where} must be <= {m['hi']}, got {v!r}")
        elif "below" in m and not v < m["below"]:
            out.append(f"{where} must be < {m['below']}, got {v!r}")
    return out
