#!/bin/bash
# The same run with torchrun, started once on each node (NODE_RANK=0 on the master, 1 on the other):
#   MASTER_ADDR=node0 NODE_RANK=0 bash scripts/torchrun_multinode.sh
#   MASTER_ADDR=node0 NODE_RANK=1 bash scripts/torchrun_multinode.sh
set -euo pipefail
# VADD_OVERRIDES_BEGIN
OVERRIDES="trainer=gpu trainer.num_nodes=2 trainer.devices=4 trainer.strategy=ddp trainer.precision=bf16-mixed trainer.batch_size=64 trainer.global_batch_size=512 trainer.max_steps=1000000 trainer.ckpt_every=5000 algo=vadd"
# VADD_OVERRIDES_END
.venv/bin/torchrun --nnodes=2 --nproc-per-node=4 --node-rank="${NODE_RANK:?}" \
  --master-addr="${MASTER_ADDR:?}" --master-port="${MASTER_PORT:-29500}" \
  -m vadd.cli train $OVERRIDES run_dir="${RUN_DIR:-runs/torchrun}" "$@"
