#!/usr/bin/env bash
# The CPU-scale NetHack and Montezuma runs (docs/results/retention.md): 2 seeds each, all four at once on
# this 2-core machine at the lowest priority, each stopped by SIGINT after WALL (train checkpoints
# and exits), then each final checkpoint evaluated with `rlsuite eval`.
#   bash experiments/cpu_scale_runs.sh [WALL=80m] [OUT=runs/cpu-scale]
set -u
WALL=${1:-80m}
OUT=${2:-runs/cpu-scale}
RL=${RL:-.venv/bin/rlsuite}
mkdir -p "$OUT"
for seed in 1 2; do
  timeout -s INT "$WALL" nice -n 19 "$RL" train ppo-nethack --env NetHackScore-v0 --seed $seed \
    --run-dir "$OUT/nethack-s$seed" --no-progress \
    --set train.torch_threads=1 --set train.eval_every=100000 --set train.eval_episodes=5 \
    --set train.checkpoint_every=100000 > "$OUT/nethack-s$seed.log" 2>&1 &
  timeout -s INT "$WALL" nice -n 19 "$RL" train ppo-rnd-montezuma --env montezuma --seed $seed \
    --run-dir "$OUT/montezuma-s$seed" --no-progress \
    --set train.torch_threads=1 --set train.eval_every=200000 --set train.eval_episodes=5 \
    --set train.checkpoint_every=200000 > "$OUT/montezuma-s$seed.log" 2>&1 &
done
wait
for run in "$OUT"/nethack-s1 "$OUT"/nethack-s2 "$OUT"/montezuma-s1 "$OUT"/montezuma-s2; do
  nice -n 19 "$RL" eval "$run" --episodes 10 --seed 100 > "$run.eval.log" 2>&1
done
