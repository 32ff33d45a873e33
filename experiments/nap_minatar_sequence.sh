#!/usr/bin/env bash
# The MinAtar task-sequence check of NaP (Lyle et al. 2024), sized for this 2-core CPU machine:
# three games, STEPS_PER_TASK env steps each (default 100k), the sequence played twice, SEEDS seeds
# per arm (default 5); arms DQN, DQN + LayerNorm, DQN + NaP (LayerNorm + projection), constant
# learning rate. Epsilon decays over the first half of every task (the schedule restarts at each
# switch). Every arm has its own fresh references: the same network trained from scratch on each
# game for the same steps, with the same padded 6-channel input and 6 actions, so each arm's
# normalised scores divide by what that network reaches fresh. JOBS runs at a time (default 1) at
# the lowest CPU priority, seed by seed (every arm's seed 1 and its references, then seed 2, ...), so
# an interrupted study always holds whole seeds of every arm. Within a seed the six sweeps (three
# sequences of 600k steps, three sets of three 100k references) are queued JOBS at a time, longest
# first, so two cores stay busy (a sequence is one run and cannot be split); re-running skips finished
# runs and resumes interrupted ones, exactly (checkpoints every 25k steps hold the replay buffer too,
# a few MB); compare ignores both settings. Finished runs are kept without checkpoints in
# experiments/records/ (experiments/records.py), so a new machine continues where the last stopped.
set -euo pipefail
PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # the CLI that `make demo` / `make test` installed
OUT=${OUT:-runs}
STEPS_PER_TASK=${STEPS_PER_TASK:-100000}
STUDY="$OUT/nap-minatar-$((STEPS_PER_TASK / 1000))k-per-task"
TASKS=minatar:breakout,minatar:asterix,minatar:space_invaders
COMMON=(--set train.steps_per_task=$STEPS_PER_TASK --set agent.epsilon_decay_steps=$((STEPS_PER_TASK / 2))
        --set train.eval_every=10000 --set train.eval_episodes=10 --set train.checkpoint_every=25000
        --set train.save_replay=true --set train.torch_threads=1 --jobs 1)
declare -A ARM=([dqn]="--set agent.nap.norm=none" [ln]="--set agent.nap.norm=layer"
                [nap]="--set agent.nap.norm=layer --set agent.nap.project=true")

RECORDS="$(dirname "$0")/records/$(basename "$STUDY")"
python "$(dirname "$0")/records.py" restore "$RECORDS" "$STUDY"
pids=()
queue() {  # start "$@" in the background once fewer than JOBS sweeps run; a failed sweep stops the script
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-1}" ]; do wait -n; done
  nice -n 19 "$@" &
  pids+=($!)
}
for seed in ${SEEDS:-1 2 3 4 5}; do
  for arm in dqn ln nap; do
    # shellcheck disable=SC2086  # ${ARM[$arm]} is a list of --set options
    queue rlsuite sweep dqn-minatar --env minatar:breakout --set train.tasks=$TASKS --set train.cycles=2 \
        ${ARM[$arm]} "${COMMON[@]}" --seeds "$seed" --out "$STUDY/seq-$arm"
  done
  for arm in dqn ln nap; do
    # shellcheck disable=SC2086
    queue rlsuite sweep dqn-minatar --env minatar:breakout --grid train.tasks=$TASKS --set env.pad_channels=6 \
        ${ARM[$arm]} "${COMMON[@]}" --seeds "$seed" --out "$STUDY/fresh-$arm"
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  pids=()
  python "$(dirname "$0")/records.py" save "$STUDY" "$RECORDS"
done
# one table and figure for the three arms, each normalized by its own fresh runs (compare matches them on
# the settings that tell the arms apart: agent.nap.norm and agent.nap.project)
rlsuite compare "$STUDY"/seq-{dqn,ln,nap} --reference "$STUDY"/fresh-{dqn,ln,nap} --out "$STUDY/compare"
