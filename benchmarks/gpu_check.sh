#!/usr/bin/env bash
# The GPU checks in one run (about 9 minutes on an H200), for when a GPU machine is lent:
#   1. training cost, bf16 eager, paper-scale backbones (U-Net CIFAR-10, DiT small L = 1024)   ~1 min
#   2. the DiT small again with both networks compiled (trainer.compile's setting)             ~3-4 min
#   3. sampling cost of the DiT small (events mode, T up to 1024)                               ~3 min
#   4. a 300-step Lightning run with trainer=gpu (bf16-mixed, compiled)                         ~40 s
#   5. 200 steps of a small DiT VADD with trainer=fsdp (FSDP2, bf16-mixed) on one GPU          ~40 s
# Each step has its own time limit, so a slow one cannot take the others' results with it.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]      # default runs/gpu_check
#
# Needs a CUDA build of torch and the package's dependencies importable (pip install -e . does both).
set -u
OUT=$(realpath -m "${1:-runs/gpu_check}")   # at most 7 files under it (logs go to stdout)
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} > "$OUT/device.txt" 2>&1
T0=$(date +%s)
timeout 150 "$PY" benchmarks/train_throughput.py --device cuda --bf16 --preset gpu --threads 4 \
  --out "$OUT/train_bf16" 2>&1 | grep -v Warning
timeout 300 "$PY" benchmarks/train_throughput.py --device cuda --bf16 --compile --preset gpu --only dit \
  --threads 4 --out "$OUT/train_bf16_compile" 2>&1 | grep -v Warning
timeout 240 "$PY" benchmarks/sampling_cost.py --device cuda --backbone dit_owt --num-samples 16 --modes events \
  --steps 1 8 32 128 1024 --repeats 20 --out "$OUT/sampling" 2>&1 | tail -20
timeout 90 "$PY" -m vadd.cli train experiment=demo algo=vadd trainer=gpu trainer.devices=1 trainer.max_steps=300 \
  trainer.progress=false trainer.print_every=100 trainer.compile=true run_dir=/tmp/vadd_gpu_check 2>&1 \
  | tail -20 > "$OUT/lightning_gpu.log"
timeout 120 "$PY" -m vadd.cli train experiment=demo algo=vadd model=dit model.denoiser.size=null \
  model.denoiser.depth=4 model.denoiser.width=256 model.denoiser.heads=4 model.encoder.size=null \
  model.encoder.depth=2 model.encoder.width=128 model.encoder.heads=2 trainer=fsdp trainer.devices=1 \
  trainer.max_steps=200 trainer.val_every=100 trainer.progress=false trainer.print_every=100 \
  run_dir=/tmp/vadd_gpu_fsdp 2>&1 | tail -20 > "$OUT/fsdp_gpu.log"
echo "total $(( $(date +%s) - T0 )) s" >> "$OUT/device.txt"
echo "wrote $OUT"
