"""Probe: VADD alone on a `vadd compare` data set with candidate defaults, bounded on the held-out rows
`vadd compare` uses (first N of the fixed split), to set against that comparison's MDM at the same seed.

    .venv/bin/python dev/probes/compare_recipe_probe.py DATA.npy TAG SEED OUT_DIR [overrides ...]

Appends one JSON line to OUT_DIR/probe.jsonl (continuous and T = 1, 5, 50 bounds at K = 1 and 100).
"""
import json
import sys
import time
from pathlib import Path

import torch

from vadd import bounds
from vadd.compare import Target
from vadd.train import train

data, tag, seed, out, *over = sys.argv[1:]
seed, out = int(seed), Path(out)
target = Target.resolve(data)
cfg = target.config("vadd", seed, False, over)
cfg["trainer"]["progress"] = False
torch.set_num_threads(1)
t0 = time.time()
model, _, rec = train(cfg, data=target.token_data(cfg, seed), run_dir=out / f"{tag}_s{seed}")
x = target.heldout(cfg, 500, seed)
res = bounds.evaluate(model.eval(), x, [1, 100], bounds.specs([1, 5, 50]), num_t=2, seed=seed)
row = {"data": data, "tag": tag, "seed": seed, "overrides": over, "wall_s": time.time() - t0,
       "bounds": {f"{r['bound']}{r['steps'] or ''}/K{r['K']}": r["nats_per_example"]
                  for r in bounds.records(res, model.seq_len)},
       "kl": rec["train_metrics"].get("train/kl")}
print(json.dumps(row))
with open(out / "probe.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
