"""Running a benchmark's (dataset, method) jobs on the CPU cores: one single-threaded worker process
per core (at most 2 by default), or in-process with ``workers = 1``; stamping a results dict; the common
end of the acceptance checks in ``benchmarks/`` (print each criterion, write ``acceptance.json``); and the
device synchronisation the timing scripts need."""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .manifest import git_commit, hardware, versions


def plan_workers(workers: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` for this machine."""
    cores = os.cpu_count() or 1
    workers = int(workers or min(2, cores))
    return workers, max(1, cores // workers)


def run_jobs(jobs: list, fn, workers: int, collect) -> None:
    """Call ``collect(job, fn(job))`` for every job as it finishes (spawned workers: no shared state).

    ``collect`` may return follow-up jobs (e.g. sampling a model a training job just saved); they are
    queued behind the jobs already waiting, so a follow-up never runs before the job that made it.
    """
    if workers == 1:
        queue = list(jobs)
        while queue:
            job = queue.pop(0)
            queue += list(collect(job, fn(job)) or ())
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(fn, job): job for job in jobs}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                job = futures.pop(fut)
                for follow in collect(job, fut.result()) or ():
                    futures[pool.submit(fn, follow)] = follow


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
