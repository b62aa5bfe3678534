"""Markdown tables of a `vadd demo` results.json: the JS table and the few-step likelihood table, as the
README and docs/results/toys.md show them.

    .venv/bin/python dev/toy_tables.py runs/demo/results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {"mdm": "MDM", "vadd": "VADD", "vadd-cs": "VADD-CS"}


def js_table(res: dict) -> str:
    steps = res["steps"]
    out = ["| dataset | sampler | " + " | ".join(f"T={T}" for T in steps) + " | noise floor |",
           "|---|---|" + "---:|" * (len(steps) + 1)]
    for name, e in res["datasets"].items():
        for s, row in e["js"].items():
            out.append(f"| {name} | {LABELS[s]} | " + " | ".join(f"{row[str(T)]:.4f}" for T in steps)
                       + f" | {e['noise_floor']:.4f} |")
        out.append("| | *MDM / VADD* | " + " | ".join(
            f"*{e['js']['mdm'][str(T)] / e['js']['vadd'][str(T)]:.1f}x*" for T in steps) + " | |")
    return "\n".join(out)


def nll_table(res: dict, ks=None) -> str:
    steps = res["steps"]
    out = ["| dataset | model | " + " | ".join(f"T={T}" for T in steps) + " | T -> inf | data | entropy |",
           "|---|---|" + "---:|" * (len(steps) + 3)]
    for name, e in res["datasets"].items():
        for algo in ("mdm", "vadd"):
            recs = e["bounds"].get(algo, [])
            for k in sorted({r["K"] for r in recs}):
                if ks is not None and algo == "vadd" and k not in ks:
                    continue
                cell = {("cont" if r["bound"] == "continuous" else r["steps"]): r for r in recs if r["K"] == k}
                label = "MDM" if algo == "mdm" else f"VADD, K = {k}"
                out.append(f"| {name} | {label} | " + " | ".join(
                    f"{cell[T]['nats_per_example']:.3f}" for T in steps)
                    + f" | {cell['cont']['nats_per_example']:.3f} | {e['data_nll']:.3f} | {e['entropy']:.3f} |")
    return "\n".join(out)


def main(path: str) -> int:
    res = json.loads(Path(path).read_text())
    print(js_table(res))
    print()
    print(nll_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/results.json"))
