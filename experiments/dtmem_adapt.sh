#!/usr/bin/env bash
# DT-Mem's second and third claims at MinAtar scale (DTMEM_RETENTION.md §1.10 (b), (c)).
# Stage 1 is claim 1 (experiments/dtmem_minatar.sh, run it first): DT-Mem (dtmem-s<seed>) and the
# parameter-matched plain DT (mgdt-matched-s<seed>) trained on Breakout and Asterix. Stage 2: Space
# Invaders, held out, from 2,000 steps of each quality (6,000 transitions: 10% of the 60,000 of its
# three full datasets), ADAPT updates, six arms per seed:
#   lora-memory: rlsuite finetune --lora memory   (rank 4, alpha 1: the paper's method)
#   lora-memory-lr<K>: the same with the adapters at K x the rate (agent.lora.lr_scale=K, default
#                K=10), as LoRA practice trains adapters faster than full fine-tuning
#   lora-all:    rlsuite finetune --lora all      (the blocks' and the memory's linears: the released code's GPT stack)
#   full:        rlsuite finetune                  (every weight trains)
#   scratch:     rlsuite train dtmem-minatar on the 10% data alone
#   dt-full:     the plain DT's full fine-tune (claim 3's DT side)
# Claim (b) compares the first four on Space Invaders. Claim (c), the sequential probe, reads the
# Breakout and Asterix scores every fine-tune keeps evaluating (offline.eval_parent_games: update 0
# is the parent, the last evaluation after stage 2): full (DT-Mem) against dt-full (DT).
# Fine-tunes keep the parent's optimiser settings (lr 3e-4, as the released code's LoRA path), in bf16
# as their parents (PRECISION=fp32 to change).
# Re-running resumes interrupted runs and skips finished ones. Report: experiments/dtmem_report.py.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ADAPT=${ADAPT:-500}
STAGE1=${STAGE1:-runs/dtmem-minatar-20k}  # claim 1's runs (the first run of this study: runs/dtmem-minatar)
RUNS=${RUNS:-runs/dtmem-adapt-$(basename "$STAGE1")}
SEEDS=${SEEDS:-"1 2 3"}
held=space_invaders
for q in "expert 0.05" "medium 0.3" "random 1.0"; do
  set -- $q
  out=data/minatar/$held-$1-10pct
  [ -f "$out/manifest.json" ] && continue
  rm -rf "$out"
  rlsuite collect --from "$(teacher_of $held)" --steps 2000 --epsilon "$2" --num-envs 4 --seed 200 --out "$out"
done
new_data=$(for q in expert medium random; do printf "data/minatar/%s-%s-10pct," "$held" "$q"; done)
new_data=${new_data%,}
finetune_once() {  # dir, finetune args...
  local dir=$1; shift
  if [ -d "$dir/checkpoints" ] && [ -n "$(ls -A "$dir/checkpoints")" ]; then
    nice -n 19 rlsuite train --resume "$dir" --no-progress > /dev/null
  elif [ -f "$dir/config.toml" ] && rlsuite train --resume "$dir" --no-progress > /dev/null 2>&1; then
    :  # a record (experiments/records.py): finished, its checkpoints removed
  else
    rm -rf "$dir"; nice -n 19 rlsuite finetune "$@" --run-dir "$dir" --no-progress > "$dir.log" 2>&1
  fi
  echo "done: $dir"
}
mkdir -p "$RUNS"
for seed in $SEEDS; do  # stage 2 (stage 1: claim 1)
  pre=$STAGE1/dtmem-s$seed
  common=(--dataset "$new_data" --seed "$seed" --steps "$ADAPT" --set train.eval_every=$((ADAPT / 2))
          --set train.torch_threads=1 --set agent.warmup_updates=50 --set train.precision="${PRECISION:-bf16}")
  finetune_once $RUNS/lora-memory-s$seed --from "$pre" --lora memory "${common[@]}" &
  finetune_once $RUNS/lora-all-s$seed --from "$pre" --lora all "${common[@]}" &
  finetune_once $RUNS/full-s$seed --from "$pre" "${common[@]}" &
  wait
  finetune_once $RUNS/lora-memory-lr${LORA_LR_SCALE:-10}-s$seed --from "$pre" --lora memory "${common[@]}" \
      --set agent.lora.lr_scale="${LORA_LR_SCALE:-10}" &
  finetune_once $RUNS/dt-full-s$seed --from $STAGE1/mgdt-matched-s$seed "${common[@]}" &
  once $RUNS/scratch-s$seed nice -n 19 rlsuite train dtmem-minatar "${common[@]}" &
  wait
done
if [ "${REPORT:-1}" = 1 ]; then .venv/bin/python experiments/dtmem_report.py --data data/minatar --claim1 "$STAGE1" --adapt "$RUNS"; fi
