"""Running a benchmark's (dataset, method) jobs on the CPU cores: one single-threaded worker process
per core (at most 2 by default), or in-process with ``workers = 1``; stamping a results dict; the common
end of the acceptance checks in ``benchmarks/`` (print each criterion, write ``acceptance.json``); and the
device synchronisation the timing scripts need."""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .manifest import git_commit, hardware, versions


def plan_workers(workers: int | None = None) -> tuple[int, int]:
    """``(workers, threads per job)`` for this machine. The threads per job are those of the default plan
    (one worker per core, at most 2) whatever ``workers`` is: CPU kernels may sum in another order with
    another thread count, so this keeps a rerun's numbers the same with any number of workers."""
    cores = os.cpu_count() or 1
    default = min(2, cores)
    return int(workers or default), max(1, cores // default)


def run_jobs(jobs: list, fn, workers: int, collect, log=None, every: float = 20.0) -> None:
    """Call ``collect(job, fn(job))`` for every job as it finishes (spawned workers: no shared state).

    ``collect`` may return follow-up jobs (e.g. sampling a model a training job just saved); they are
    queued behind the jobs already waiting, so a follow-up never runs before the job that made it.
    With ``log`` and parallel workers, every ``every`` seconds one line names each running job (its
    ``job["desc"]``) with what it reported (training: step / total and an ETA), so a long run is never
    silent; jobs report through ``job["progress"]`` (see :func:`report_progress`).
    """
    if workers == 1:
        queue = list(jobs)
        while queue:
            job = queue.pop(0)
            queue += list(collect(job, fn(job)) or ())
        return
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager() if log is not None else contextlib.nullcontext()
    with manager, ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        status = manager.dict() if log is not None else None
        started, count = {}, 0

        def submit(job):
            nonlocal count
            if status is not None:
                job = dict(job, progress=(status, count))
            count += 1
            futures[pool.submit(fn, job)] = job

        futures: dict = {}
        for job in jobs:
            submit(job)
        last = time.time()
        try:
            while futures:
                done, _ = wait(futures, timeout=every if log is not None else None, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    for follow in collect(job, fut.result()) or ():
                        submit(follow)
                if log is not None and time.time() - last >= every and futures:
                    last = time.time()
                    log(progress_line(futures.values(), dict(status), started, last))
        except BaseException:
            # interrupted (or a job failed): cancel what has not started and pass SIGTERM on to the workers,
            # whose training jobs checkpoint at their next step and stop, so the pool closes promptly
            for fut in futures:
                fut.cancel()
            for child in multiprocessing.active_children():
                if child.pid is not None and child.name.startswith("SpawnProcess"):
                    os.kill(child.pid, signal.SIGTERM)
            raise


def report_progress(job: dict, **fields) -> None:
    """From inside a job: publish its progress (e.g. ``step``, ``total``) for the parent's status line."""
    handle = job.get("progress")
    if handle is not None:
        status, key = handle
        status[key] = dict(fields, t=time.time())


def progress_line(running, status: dict, started: dict, now: float) -> str:
    """``desc step/total (ETA)`` for each running job that reported, ``desc`` alone for the others."""
    parts = []
    for job in running:
        key = job["progress"][1]
        info = status.get(key)
        desc = job.get("desc", f"job {key}")
        if info and info.get("total"):
            started.setdefault(key, (info["t"], info["step"]))
            t0, s0 = started[key]
            rate = (info["step"] - s0) / max(info["t"] - t0, 1e-9)
            eta = f", ETA {(info['total'] - info['step']) / rate:.0f}s" if rate > 0 else ""
            parts.append(f"{desc} {info['step']}/{info['total']}{eta}")
        elif info:
            parts.append(f"{desc} {info.get('stage', '')}".rstrip())
        else:
            parts.append(f"{desc} (queued)")
    return "  ... " + " | ".join(p for p in parts if not p.endswith("(queued)"))


def stamp(results: dict, t_start: float) -> dict:
    """Add wall time, package versions, git commit and hardware to a results dict (in place)."""
    results.update({"wall_s": time.time() - t_start, "versions": versions(), "git_commit": git_commit(),
                    "hardware": hardware()})
    return results


def report(out, results: dict, t_start: float, draw, tables, log) -> dict:
    """The common end of a benchmark: stamp and write ``results.json``, draw the figures, write and log
    ``tables.md``."""
    from . import io
    stamp(results, t_start)
    io.write_json(out / "results.json", results)
    draw(out, results)
    text = tables(results)
    io.atomic_write_bytes(out / "tables.md", text.encode())
    log(text)
    log(f"wrote {out / 'results.json'}, {out / 'tables.md'} and figures ({results['wall_s']:.0f}s)")
    return results


def finish_acceptance(results_path, checked: dict, width: int = 60, details=(), log=print,
                      name: str = "acceptance.json") -> int:
    """Print each of ``checked["criteria"]`` (``criterion``, ``value``, ``pass``, optional ``stderr``) as a
    PASS/FAIL line, then ``details`` (lines), and write ``checked`` as ``name`` (``acceptance.json``) next
    to ``results_path``. Returns the exit status: 0 when every criterion passes."""
    for r in checked["criteria"]:
        se = f" ± {r['stderr']:.3g}" if "stderr" in r else ""
        log(f"{'PASS' if r['pass'] else 'FAIL'}  {r['criterion']:<{width}} {r['value']:.4g}{se}")
    for line in details:
        log(line)
    out = Path(results_path).with_name(name)
    out.write_text(json.dumps(checked, indent=2) + "\n")
    log(f"wrote {out}")
    return 0 if checked["all_pass"] else 1


def synchronize(device) -> None:
    """Wait for the device's queued work before reading a clock (CUDA launches are asynchronous; a no-op
    on the CPU). ``device``: a device, its name, or a module whose parameters live there."""
    import torch
    if isinstance(device, torch.nn.Module):
        device = next(device.parameters()).device
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
