#!/bin/bash
# Multi-node training without SLURM: run this script on EVERY node, with that node's rank.
#
#   # on node 0 (its address 10.0.0.1 must be reachable from the others):
#   NODE_RANK=0 NNODES=2 GPUS_PER_NODE=8 MASTER_ADDR=10.0.0.1 \
#       bash launch/torchrun_multinode.sh configs/telugu16k.yaml run.name=tel-2n
#   # on node 1, the same line with NODE_RANK=1
#
# Two equivalent launchers; pick with LAUNCHER=accelerate (default) or LAUNCHER=torchrun.
# Both start GPUS_PER_NODE processes here and meet the other nodes at MASTER_ADDR:MASTER_PORT.
# torchrun works because the trainer builds its Accelerator from the torchrun environment
# (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); DeepSpeed needs `accelerate launch`
# with a DeepSpeed config (ACCEL_CONFIG=launch/deepspeed_zero2.yaml).
# To stop all nodes cleanly (checkpoint + export, exit 0), touch the run's stop file,
# runs/<name>/STOP, where node 0 sees it (one rank seeing it stops all); `--resume` continues.
set -euo pipefail
CONFIG=${1:?usage: bash launch/torchrun_multinode.sh configs/<preset>.yaml [key=value ...]}
shift
: "${NODE_RANK:?set NODE_RANK (0 .. NNODES-1)}"
: "${MASTER_ADDR:?set MASTER_ADDR (node 0 address)}"
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MASTER_PORT=${MASTER_PORT:-29500}
ACCEL_CONFIG=${ACCEL_CONFIG:-launch/multi_node.yaml}

if [ "${LAUNCHER:-accelerate}" = torchrun ]; then
  exec torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS_PER_NODE" --node_rank "$NODE_RANK" \
    --rdzv_backend static --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    -m trainer.train --config "$CONFIG" "$@" --resume
fi
exec accelerate launch --config_file "$ACCEL_CONFIG" \
  --num_machines "$NNODES" --num_processes $(( NNODES * GPUS_PER_NODE )) \
  --machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
  -m trainer.train --config "$CONFIG" "$@" --resume
