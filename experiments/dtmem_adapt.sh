#!/usr/bin/env bash
# DT-Mem's second claim at MinAtar scale (issue 16; DTMEM_RETENTION.md §1.10 (b)): adapting to a
# held-out game with 10% of its data. Pre-train DT-Mem (dtmem-minatar) on Breakout and Asterix (the
# six datasets of experiments/dt_minatar.sh), then adapt to Space Invaders from 2,000 steps of each
# quality (6,000 transitions, 10% of the 60,000 the multi-game study uses), four ways, SEEDS seeds:
#   lora-memory: rlsuite finetune --lora memory   (rank 4, alpha 1: the paper's method)
#   lora-all:    rlsuite finetune --lora all
#   full:        rlsuite finetune                  (every weight trains)
#   scratch:     rlsuite train dtmem-minatar on the 10% data alone
# Re-running resumes interrupted runs and skips finished ones.
set -euo pipefail
source "$(dirname "$0")/common.sh"
PRE=${PRE:-8000}
ADAPT=${ADAPT:-2000}
SEEDS=${SEEDS:-"1 2 3"}
held=space_invaders
for q in "expert 0.05" "medium 0.3" "random 1.0"; do
  set -- $q
  out=data/minatar/$held-$1-10pct
  [ -f "$out/manifest.json" ] && continue
  rm -rf "$out"
  rlsuite collect --from runs/dt-minatar/teacher-$held --steps 2000 --epsilon "$2" --num-envs 4 --seed 200 --out "$out"
done
pre_data=$(for g in breakout asterix; do for q in expert medium random; do printf "data/minatar/%s-%s," "$g" "$q"; done; done)
new_data=$(for q in expert medium random; do printf "data/minatar/%s-%s-10pct," "$held" "$q"; done)
pre_data=${pre_data%,}; new_data=${new_data%,}
finetune_once() {  # dir, finetune args...
  local dir=$1; shift
  if [ -d "$dir/checkpoints" ] && [ -n "$(ls -A "$dir/checkpoints")" ]; then
    rlsuite train --resume "$dir" --no-progress > /dev/null
  else
    rm -rf "$dir"; rlsuite finetune "$@" --run-dir "$dir" --no-progress > /dev/null
  fi
  echo "done: $dir"
}
for seed in $SEEDS; do
  pre=runs/dtmem-adapt/pre-s$seed
  once "$pre" rlsuite train dtmem-minatar --dataset "$pre_data" --seed "$seed" --steps "$PRE" --set train.torch_threads=1
  common=(--dataset "$new_data" --seed "$seed" --steps "$ADAPT" --set train.eval_every=$((ADAPT / 4))
          --set train.torch_threads=1 --set agent.warmup_updates=100)
  finetune_once runs/dtmem-adapt/lora-memory-s$seed --from "$pre" --lora memory "${common[@]}" &
  finetune_once runs/dtmem-adapt/lora-all-s$seed --from "$pre" --lora all "${common[@]}" &
  finetune_once runs/dtmem-adapt/full-s$seed --from "$pre" "${common[@]}" &
  once runs/dtmem-adapt/scratch-s$seed rlsuite train dtmem-minatar "${common[@]}" &
  wait
done
