"""Run folders are owned: one writer at a time, and a folder holding another run is never overwritten.

``owned_run(run_dir, cfg, overwrite)`` is what :func:`vadd.train.train` wraps a run in:

- a lock file ``RUN/.vadd.lock`` (``flock``, released by the kernel when the process dies, even on
  SIGKILL): a second ``vadd train`` on the same folder stops with one line instead of merging two runs;
- ``RUN/run.json``, the run's identity (algorithm, model, data, seed, global batch), written by :func:`claim`
  once the run has trained its first step (or writes its first checkpoint): a start that fails before that
  leaves the folder free for the fixed config. A later run into the same folder with another identity is
  refused, naming the differing keys,
  unless ``overwrite`` is set; then the old folder is moved aside (``RUN.replaced-<time>``), never deleted.
  A run started with ``trainer.auto_resume=false`` on a folder that holds a run is refused the same way.
  Other changed keys (``trainer.max_steps``, ``trainer.lr``, ...) resume with one warning line per key.

Only the process of global rank 0 takes the lock and writes ``run.json``; the other ranks of a
distributed run (Lightning's launcher, torchrun, SLURM) write the same folder under its lock.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from . import io
from .errors import RunError
from .schema import REMOVED

IDENTITY = "run.json"
LOCK = ".vadd.lock"
# what a checkpoint's training stream depends on: resuming with any of these changed is another run (the
# global batch, rows per optimiser step over all ranks, is added by the caller: a run may resume on another
# number of processes with the same global batch)
IDENTITY_KEYS = ("algo", "model", "data", "seed")
DISPLAY_KEYS = ("trainer.progress:", "trainer.print_every:")


def _rank_zero() -> bool:
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def identity(cfg: dict, global_batch: int | None = None) -> dict:
    out = {} if global_batch is None else {"global_batch": int(global_batch)}
    for key in IDENTITY_KEYS:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = node
    return json.loads(json.dumps(out, default=str))  # as it reads back from run.json


def _flatten(d, prefix=""):
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every leaf that differs (keys missing on one side read as absent; a removed option
    that an older release recorded at 0 is the same run as one without it)."""
    a, b = _flatten(old), _flatten(new)
    a = {k: v for k, v in a.items() if not (k in REMOVED and k not in b and v in (0, 0.0))}
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")]


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / p).exists() for p in (IDENTITY, "checkpoints/last.ckpt", "model/config.json"))


@contextlib.contextmanager
def lock(run_dir: Path):
    """Hold ``RUN/.vadd.lock`` exclusively (POSIX ``flock``; a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot create the run's lock file ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(f"{run_dir} is in use by another vadd process (pid {holder}); wait for it to finish or "
                           "use another run_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def move_aside(run_dir: Path) -> Path:
    here, target = Path.cwd().resolve(), run_dir.resolve()
    if here == target or target in here.parents:
        raise RunError(f"{run_dir}: moving it aside would move the folder this command runs in; run from outside "
                       "it, or give run_dir as a path from there")
    run_dir = Path(os.path.normpath(run_dir.absolute()))  # a link is moved as the link, as before
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        n += 1
        aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    os.replace(run_dir, aside)
    return aside


def make_dir(run_dir: Path) -> None:
    if run_dir.is_symlink() and not run_dir.exists():
        raise RunError(f"{run_dir}: a symbolic link to nothing (or a loop of links); give a folder path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunError(f"{run_dir}: run_dir is a file; give a folder path") from None
    except OSError as e:
        raise RunError(f"{run_dir}: cannot create the folder ({e.strerror})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunError(f"{run_dir}: the run folder is not writable")


def _refusal(run_dir: Path, why: str) -> RunError:
    return RunError(f"{run_dir} holds another run ({why}); use another run_dir, or --overwrite (train: "
                    "overwrite=true) to move it aside and start afresh")


@contextlib.contextmanager
def owned_run(run_dir: str | os.PathLike, cfg: dict, overwrite: bool = False, resume: str | None = None,
              global_batch: int | None = None):
    """The run folder, created, locked and checked against ``cfg`` (see the module docstring)."""
    run_dir = Path(run_dir)
    make_dir(run_dir)
    if not _rank_zero():
        yield run_dir
        return
    with lock(run_dir):
        new = identity(cfg, global_batch)
        record = {}
        if (run_dir / IDENTITY).exists():
            try:
                record = dict(io.read_json(run_dir / IDENTITY))
            except (OSError, ValueError, TypeError):
                record = {}
        saved = record.get("identity")
        diff = differences(saved, new) if saved is not None else []
        fresh_start = not cfg.get("trainer", {}).get("auto_resume", True) and resume is None
        conflict = (diff and f"differs in {'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}") or \
                   (fresh_start and holds_run(run_dir) and "trainer.auto_resume=false would overwrite it")
        if conflict and not overwrite:
            raise _refusal(run_dir, conflict)
        if overwrite and holds_run(run_dir):
            aside = move_aside(run_dir)
            print(f"vadd: moved the earlier run to {aside}", file=sys.stderr)
            make_dir(run_dir)
            with owned_run(run_dir, cfg, overwrite=False, resume=resume, global_batch=global_batch) as d:
                yield d
            return
        if saved is not None:
            old_cfg = record.get("config", {})
            skip = {"run_dir", "resume", "overwrite"}
            for line in differences({k: v for k, v in old_cfg.items() if k not in skip},
                                    {k: v for k, v in cfg.items() if k not in skip}):
                if not line.startswith(DISPLAY_KEYS):  # how progress is shown changes nothing of the run
                    print(f"vadd: warning: resuming {run_dir} with a changed {line}", file=sys.stderr)
        yield run_dir


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The run folder ``path`` is or lies in (a folder holding ``run.json``, or ``manifest.json`` beside
    ``model/``: a finished run of an older vadd), if any."""
    p = Path(path).resolve()
    for q in (p, *p.parents):
        if (q / IDENTITY).is_file() or ((q / "manifest.json").is_file() and (q / "model" / "config.json").is_file()):
            return q
    return None


def run_of_model(model_path: str | os.PathLike) -> Path | None:
    """The run folder a model argument belongs to (``RUN`` or ``RUN/model``), if it is one."""
    p = Path(model_path)
    return enclosing_run(p) if p.exists() else None


def check_outside_other_runs(path: str | os.PathLike, own_run: Path | None, flag: str = "--out") -> None:
    """Refuse an output path in a run folder other than ``own_run`` (the run the command reads from)."""
    inside = enclosing_run(path)
    if inside is not None and (own_run is None or inside != Path(own_run).resolve()):
        raise RunError(f"{flag} {path} is inside the run folder {inside}, which this command does not read from: "
                       "give a path outside it")


@contextlib.contextmanager
def owned_output(out: str | os.PathLike, own_run: Path | None = None, flag: str = "--out"):
    """An output folder of ``sample`` / ``fit-prior``: never inside another run's folder (inside the run the
    command reads from is fine), created, and locked for the command's duration (a second writer stops)."""
    out = Path(out)
    check_outside_other_runs(out, own_run, flag)
    make_dir(out)
    with lock(out):
        yield out


def claim(run_dir: Path, cfg: dict, global_batch: int | None = None) -> None:
    """Record ``cfg`` as the run this folder holds (rank 0; inside :func:`owned_run`)."""
    if _rank_zero():
        io.write_json(Path(run_dir) / IDENTITY, {"identity": identity(cfg, global_batch), "config": cfg})
