#!/usr/bin/env bash
# The retention comparison on closefar:chain (DTMEM_RETENTION.md §2.7; Wołczyk et al., ICML 2024):
# one PPO teacher pre-trained from FAR starts (the lock) for 300k steps, then fine-tuned from CLOSE
# starts (the corridor) for STEPS env steps with each method, SEEDS seeds each:
#   PPO: scratch (no teacher), vanilla FT, FT+EWC (lambda 1e2, 1e3, 1e4: the spec's sweep, and 1e6, 1e8), FT+BC, FT+KS;
#   DQN: a DQN teacher (100k steps from FAR starts), vanilla FT vs FT+EM (10% of every batch protected).
# FAR skill (success from FAR starts) every 5k steps. Re-running skips finished runs and resumes
# interrupted ones (experiments/common.sh); the comparison is then printed and plotted.
#   bash experiments/retention_closefar.sh        # OUT=runs/retention-chain STEPS=200000 SEEDS="1 2 3 4 5"
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/retention-chain}
STEPS=${STEPS:-200000}
SEEDS=${SEEDS:-1 2 3 4 5}
FAR=(--set finetune.far_eval_every=5000 --set finetune.far_eval_episodes=20 --set train.eval_every=10000)

once "$OUT/teacher-ppo" rlsuite train ppo-closefar --env closefar:chain --set env.start=far --steps 300000 --seed 100
once "$OUT/teacher-dqn" rlsuite train dqn-closefar --env closefar:chain --set env.start=far --steps 100000 --seed 100
for seed in $SEEDS; do
  once "$OUT/ppo/scratch-s$seed" rlsuite train ppo-closefar --env closefar:chain --steps "$STEPS" --seed "$seed" \
       --set train.eval_every=10000
  for arm in none bc ks; do
    once "$OUT/ppo/$arm-s$seed" rlsuite finetune --from "$OUT/teacher-ppo" --env closefar:chain --retention "$arm" \
         --steps "$STEPS" --seed "$seed" "${FAR[@]}"
  done
  for coef in 100 1000 10000 1000000 100000000; do  # the spec's 1e2-1e4, and 1e6, 1e8: a confident teacher's Fisher is tiny
    once "$OUT/ppo/ewc$coef-s$seed" rlsuite finetune --from "$OUT/teacher-ppo" --env closefar:chain --retention ewc \
         --set finetune.ewc.coef=$coef --steps "$STEPS" --seed "$seed" "${FAR[@]}"
  done
  for arm in none em; do  # DQN fine-tunes explore from epsilon 0.2 (not the preset's 1.0: a teacher exists)
    once "$OUT/dqn/$arm-s$seed" rlsuite finetune --from "$OUT/teacher-dqn" --env closefar:chain --retention "$arm" \
         --steps $((STEPS / 2)) --seed "$seed" --set agent.epsilon_start=0.2 --set agent.epsilon_decay_steps=10000 "${FAR[@]}"
  done
done
rlsuite compare "$OUT"/ppo/* --out "$OUT/compare-ppo"
rlsuite compare "$OUT"/dqn/* --out "$OUT/compare-dqn"
