#!/usr/bin/env bash
# The small-scale check of the GMP claim (Obando-Ceron et al. 2024), sized for this 2-core CPU
# machine: MinAtar Breakout, DQN (MinAtar settings, Adam) with the Impala ResNet at width x1 and x3,
# dense vs 95% GMP (ERK, 20%-80% of updates, masks every 1000 updates), 3 seeds per arm, 150k env steps
# for every arm, epsilon 1 -> 0.1 over 50k steps, 20-episode evaluations every 25k steps.
# Re-running this script skips finished runs and resumes interrupted ones, exactly: checkpoints every
# 25k steps hold the replay buffer too (0.06 GB here). Neither setting changes what is learned, and
# `rlsuite compare` does not group by them.
set -euo pipefail
PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # the CLI that `make demo` / `make test` installed
OUT=${OUT:-runs}
rlsuite sweep dqn-minatar --env minatar:breakout --grid agent.encoder.width=1,3 --grid agent.gmp.sparsity=0,0.95 \
    --set agent.encoder.kind=impala --set agent.epsilon_decay_steps=50000 --set train.eval_every=25000 \
    --set train.eval_episodes=20 --set train.checkpoint_every=25000 --set train.save_replay=true --seeds 1,2,3 --steps 150000 --jobs "${JOBS:-2}" --out "$OUT/gmp-minatar-breakout"
rlsuite compare "$OUT/gmp-minatar-breakout"
