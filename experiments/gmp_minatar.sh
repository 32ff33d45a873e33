#!/usr/bin/env bash
# The MinAtar check of the GMP claim (Obando-Ceron et al. 2024), sized for this 2-core CPU machine:
# MinAtar Breakout, DQN (`dqn-minatar`: MinAtar settings, Adam, epsilon 1 -> 0.1 over 100k steps)
# with the Impala ResNet at width x3 and x1, dense vs 95% GMP (ERK, 20%-80% of updates, masks every
# 1000 updates), 5 seeds per arm, 500k env steps per run, 20-episode evaluations every 50k steps,
# plasticity diagnostics on the run's dedicated batch. Every arm runs in bf16 autocast
# (train.precision=bf16: the Impala x3 update is several times faster, and bf16 matched fp32 on
# DQN MinAtar in the speed parity study); set PRECISION=fp32 to run them in fp32.
# One run at a time (JOBS=1), at the lowest CPU priority, so it can share the machine with other
# work across sessions: re-running this script skips finished runs and resumes interrupted ones,
# exactly (checkpoints every 25k steps hold the replay buffer too, 0.06 GB). Neither setting
# changes what is learned, and `rlsuite compare` does not group by them. WIDTHS=1 (or 3) runs one
# width only, to fit what is left of a session. At the end, `rlsuite compare` prints the arms' table
# and experiments/gmp_report.py the statistics behind each of the paper's two predictions.
set -euo pipefail
PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # the CLI that `make demo` / `make test` installed
OUT=${OUT:-runs}
STEPS=${STEPS:-500000}
SWEEP="$OUT/gmp-minatar-breakout-$((STEPS / 1000))k"
# Finished runs are kept without checkpoints in the repository (experiments/records.py), so a new
# machine continues the study where the last one stopped: restore them first, save each seed's runs.
RECORDS="$(dirname "$0")/records/$(basename "$SWEEP")"
python "$(dirname "$0")/records.py" restore "$RECORDS" "$SWEEP"
# Seed by seed (every arm's seed 1, then every arm's seed 2, ...), so that a study interrupted across
# sessions always holds whole seeds of all four arms.
for seed in ${SEEDS:-1 2 3 4 5}; do
  nice -n 19 rlsuite sweep dqn-minatar --env minatar:breakout --grid agent.encoder.width="${WIDTHS:-3,1}" --grid agent.gmp.sparsity=0.95,0 \
      --set agent.encoder.kind=impala --set train.eval_every=50000 --set train.eval_episodes=20 \
      --set train.checkpoint_every=25000 --set train.save_replay=true --set train.torch_threads=1 \
      --set train.precision="${PRECISION:-bf16}" --seeds "$seed" --steps "$STEPS" --jobs "${JOBS:-1}" --out "$SWEEP"
  python "$(dirname "$0")/records.py" save "$SWEEP" "$RECORDS"
done
rlsuite compare "$SWEEP" --tags plasticity/param_norm,plasticity/dormant_fraction,plasticity/srank,sparsity/overall
python "$(dirname "$0")/gmp_report.py" "$SWEEP"
