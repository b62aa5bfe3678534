"""Markdown tables of the valid bounds in a `vadd bench-images` results.json (continuous bound at each K,
and the T-step sampler's bound), as docs/results/images.md shows them.

    .venv/bin/python dev/image_tables.py runs/images/results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def tables(res: dict) -> str:
    out = []
    for label, e in res["experiments"].items():
        m = e["models"]
        if not {"mdm", "vadd"} <= set(m):
            continue
        out += [f"**{e['data']['name']}**: continuous-time bound (bits per dimension; lower is better)\n",
                "| model | K | BPD bound | ± s.e. | test images |", "|---|---:|---:|---:|---:|"]
        for algo in ("mdm", "vadd"):
            for part in ("all", "subset"):
                for k, v in m[algo]["bpd"].get(part, {}).items():
                    name = ("MDM" if algo == "mdm" else "VADD") + (f", first {v['n']}" if part == "subset" else "")
                    out.append(f"| {name} | {k if algo == 'vadd' else '-'} | {v['bpd']:.4f} | {v['stderr']:.4f} | {v['n']} |")
        steps = list(m["vadd"].get("bpd_steps", {}))
        if steps:
            n = next(iter(m["vadd"]["bpd_steps"][steps[0]].values()))["n"]
            out += ["", f"Bound of the T-step sampler (bits per dimension, the first {n} test images, one reveal path "
                        "each; lower is better)\n",
                    "| model | K | " + " | ".join(f"T={T}" for T in steps) + " |", "|---|---:|" + "---:|" * len(steps)]
            for algo in ("mdm", "vadd"):
                rows = m[algo]["bpd_steps"]
                for k in rows[steps[0]]:
                    out.append(f"| {'MDM' if algo == 'mdm' else 'VADD'} | {k if algo == 'vadd' else '-'} | " + " | ".join(
                        f"{rows[T][k]['bpd']:.4f} ± {rows[T][k]['stderr']:.4f}" for T in steps) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/images/results.json").read_text())))
