#!/usr/bin/env bash
# The retention comparison on closefar:tworoom (two MiniGrid rooms joined by a door, the goal in
# the second, FAR, room): a PPO teacher pre-trained from FAR starts (room 2) for 100k steps, then
# fine-tuned from CLOSE starts (room 1) for STEPS steps: scratch, vanilla FT, FT+EWC (lambda 1e3),
# FT+BC, FT+KS, SEEDS seeds each; FAR success every 5k steps. Resumable (experiments/common.sh).
#   bash experiments/retention_tworoom.sh        # OUT=runs/retention-tworoom STEPS=100000 SEEDS="1 2 3"
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/retention-tworoom}
STEPS=${STEPS:-100000}
SEEDS=${SEEDS:-1 2 3}
FAR=(--set finetune.far_eval_every=5000 --set finetune.far_eval_episodes=20 --set train.eval_every=10000)

once "$OUT/teacher" rlsuite train ppo-closefar --env closefar:tworoom --set env.start=far --steps 100000 --seed 100
for seed in $SEEDS; do
  once "$OUT/runs/scratch-s$seed" rlsuite train ppo-closefar --env closefar:tworoom --steps "$STEPS" --seed "$seed" \
       --set train.eval_every=10000
  for arm in none bc ks; do
    once "$OUT/runs/$arm-s$seed" rlsuite finetune --from "$OUT/teacher" --env closefar:tworoom --retention "$arm" \
         --steps "$STEPS" --seed "$seed" "${FAR[@]}"
  done
  once "$OUT/runs/ewc-s$seed" rlsuite finetune --from "$OUT/teacher" --env closefar:tworoom --retention ewc \
       --set finetune.ewc.coef=1000 --steps "$STEPS" --seed "$seed" "${FAR[@]}"
done
rlsuite compare "$OUT"/runs/* --out "$OUT/compare"
