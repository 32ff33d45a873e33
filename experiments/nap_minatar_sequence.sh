#!/usr/bin/env bash
# The MinAtar task-sequence check of NaP (Lyle et al. 2024), sized for this 2-core CPU machine:
# three games, STEPS_PER_TASK env steps each (default 50k), the sequence played twice, 3 seeds per arm;
# arms DQN, DQN + LayerNorm, DQN + NaP (LayerNorm + projection), constant learning rate. Epsilon decays
# over the first half of every task (the schedule restarts at each switch). The fresh references are
# plain DQN trained from scratch on each game for the same steps, with the same padded 6-channel input
# and 6 actions. Re-running this script skips finished runs and resumes interrupted ones, exactly:
# checkpoints every 25k steps hold the replay buffer too (a few MB here); compare ignores both settings.
set -euo pipefail
PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # the CLI that `make demo` / `make test` installed
OUT=${OUT:-runs}
STEPS_PER_TASK=${STEPS_PER_TASK:-50000}
SUFFIX=$([ "$STEPS_PER_TASK" = 50000 ] || echo "-$STEPS_PER_TASK")
SEQ="$OUT/nap-minatar-seq$SUFFIX" FRESH="$OUT/nap-minatar-fresh$SUFFIX"
TASKS=minatar:breakout,minatar:asterix,minatar:space_invaders
COMMON=(--set train.steps_per_task=$STEPS_PER_TASK --set agent.epsilon_decay_steps=$((STEPS_PER_TASK / 2))
        --set train.eval_every=10000 --set train.eval_episodes=10 --set train.checkpoint_every=25000 --set train.save_replay=true
        --seeds 1,2,3 --jobs "${JOBS:-2}")

rlsuite sweep dqn-minatar --env minatar:breakout --set train.tasks=$TASKS --set train.cycles=2 \
    --grid agent.nap.norm=none,layer "${COMMON[@]}" --out "$SEQ"
rlsuite sweep dqn-minatar --env minatar:breakout --set train.tasks=$TASKS --set train.cycles=2 \
    --set agent.nap.norm=layer --grid agent.nap.project=true "${COMMON[@]}" --out "$SEQ"
rlsuite sweep dqn-minatar --env minatar:breakout --grid train.tasks=$TASKS --set env.pad_channels=6 \
    "${COMMON[@]}" --out "$FRESH"
rlsuite compare "$SEQ" --reference "$FRESH" --out "$SEQ/compare"
