#!/usr/bin/env bash
# The short NetHack and Montezuma fine-tunes, from the CPU-scale PPO teachers of
# experiments/cpu_scale_runs.sh (seed 1 of each), vanilla FT against the paper's best method for the
# game, all four at once on this 2-core machine:
#   NetHack: ppo-finetune-nethack (encoder frozen, entropy 0), vanilla vs KS; NLE cannot restore a saved
#            game, so FAR is read from the depth/score of evaluations from the normal start;
#   Montezuma: ppo-finetune-montezuma, vanilla vs BC; FAR starts = emulator states saved 200+ steps into
#            the teacher's own games (the teacher never leaves the first room, so "rooms >= k" has no
#            state to save; these are later, not deeper, states).
# Resumable (experiments/common.sh).   bash experiments/retention_cpu_scale.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/retention-cpu}
TEACHERS=${TEACHERS:-runs/cpu-scale}
NH_STEPS=${NH_STEPS:-40000}
MZ_STEPS=${MZ_STEPS:-50000}
mkdir -p "$OUT"
STATES="$OUT/montezuma-far-states"
[ -f "$STATES/manifest.json" ] || rlsuite states collect --env montezuma --from "$TEACHERS/montezuma-s1" \
    --when "step>=200" --every 50 --count 20 --out "$STATES"
NH=(--critic-warmup 5000 --num-envs 16 --steps "$NH_STEPS" --set finetune.far_eval_every=10000
    --set finetune.far_eval_episodes=8 --set train.eval_every=10000 --set train.eval_episodes=8
    --set finetune.data_steps=4000 --set train.torch_threads=1)
MZ=(--num-envs 8 --steps "$MZ_STEPS" --set "finetune.far=env.start_states=$STATES" --set finetune.far_eval_every=10000
    --set finetune.far_eval_episodes=8 --set train.eval_every=10000 --set train.eval_episodes=8
    --set finetune.data_steps=4000 --set train.torch_threads=1)
once "$OUT/nethack-vanilla" rlsuite finetune --from "$TEACHERS/nethack-s1" ppo-finetune-nethack --retention none "${NH[@]}" &
once "$OUT/nethack-ks" rlsuite finetune --from "$TEACHERS/nethack-s1" ppo-finetune-nethack --retention ks "${NH[@]}" &
once "$OUT/montezuma-vanilla" rlsuite finetune --from "$TEACHERS/montezuma-s1" ppo-finetune-montezuma --retention none "${MZ[@]}" &
once "$OUT/montezuma-bc" rlsuite finetune --from "$TEACHERS/montezuma-s1" ppo-finetune-montezuma --retention bc "${MZ[@]}" &
wait
