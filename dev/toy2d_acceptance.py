"""Check `vadd demo` results against the core issue's acceptance criteria; writes JSON next to them.

    .venv/bin/vadd demo --out runs/demo
    .venv/bin/python dev/toy2d_acceptance.py runs/demo/results.json

Criteria (all measured side by side in the one demo run):
  - T = 1: VADD's JS <= MDM's / 10 on each toy
  - T = 5: VADD's JS <= MDM's / 3 on the checkerboard
  - T = 1: VADD's JS on the checkerboard <= 3 x the noise floor
  - every likelihood bound (each method, K and T) at or above the exact -log p_data of the same held-out
    points (paired, 3 standard errors), and on the checkerboard at or above ln 2048 (3 s.e.)
  - T = 1 on the checkerboard: VADD's bound (best K) at least 0.5 nats below MDM's
  - the whole demo <= 600 s of wall time
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from vadd.jobs import finish_acceptance


def check(results: dict) -> dict:
    rows = []
    ds = results["datasets"]
    for name, e in ds.items():
        mdm, vadd = e["js"]["mdm"]["1"], e["js"]["vadd"]["1"]
        rows.append({"criterion": f"{name}: JS ratio MDM/VADD at T=1 >= 10", "value": mdm / vadd,
                     "pass": mdm / vadd >= 10})
    if "checkerboard" in ds:
        e = ds["checkerboard"]
        r5 = e["js"]["mdm"]["5"] / e["js"]["vadd"]["5"]
        rows.append({"criterion": "checkerboard: JS ratio MDM/VADD at T=5 >= 3", "value": r5, "pass": r5 >= 3})
        f = e["js"]["vadd"]["1"] / e["noise_floor"]
        rows.append({"criterion": "checkerboard: VADD JS at T=1 <= 3 x noise floor", "value": f, "pass": f <= 3})
    for name, e in ds.items():
        recs = [r for recs in e.get("bounds", {}).values() for r in recs]
        if not recs:
            continue
        worst = min(r["minus_data_nll"] / max(r["minus_data_nll_stderr"], 1e-12) for r in recs)
        rows.append({"criterion": f"{name}: every bound >= data NLL of its points (worst, in s.e.) >= -3",
                     "value": worst, "pass": worst >= -3})
        if name == "checkerboard":
            low = min((r["nats_per_example"] - math.log(2048)) / max(r["stderr_nats_per_example"], 1e-12) for r in recs)
            rows.append({"criterion": "checkerboard: every bound >= ln 2048 (worst, in s.e.) >= -3", "value": low,
                         "pass": low >= -3})
            one = {a: min(r["nats_per_example"] for r in e["bounds"][a] if r["steps"] == 1) for a in ("mdm", "vadd")}
            gap = one["mdm"] - one["vadd"]
            rows.append({"criterion": "checkerboard: T=1 bound, MDM - VADD (nats) >= 0.5", "value": gap,
                         "pass": gap >= 0.5})
    rows.append({"criterion": "demo wall time <= 600 s", "value": results["wall_s"],
                 "pass": results["wall_s"] <= 600})
    return {"source_seed": results["seed"], "num_samples": results["num_samples"],
            "criteria": rows, "all_pass": all(r["pass"] for r in rows)}


def main(path: str) -> int:
    return finish_acceptance(path, check(json.loads(Path(path).read_text())), width=52)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/results.json"))
