#!/usr/bin/env bash
# Step 1 of the multi-game MinAtar Decision Transformer study (README, "Decision Transformer"):
# one DQN per game, with the shared 6-action set and observations padded to 6 channels, so the
# datasets they collect share one observation and action space. Interrupting a run (SIGINT) keeps
# its checkpoint; collection (experiments/dt_minatar.sh) uses whatever checkpoint is there.
set -euo pipefail
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-500000}
# A teacher already kept as an export (experiments/records/dt-minatar-teachers, see common.sh) is not
# trained again; a newly trained one is exported there, so later machines collect the same data.
kept="$RECORDS_ROOT/dt-minatar-teachers"
for game in breakout asterix space_invaders; do
  [ -f "$kept/teacher-$game.pt" ] && continue
  once runs/dt-minatar/teacher-$game nice -n 19 rlsuite train dqn-minatar --env minatar:$game --seed 1 --steps "$STEPS" \
    --set env.full_action_space=true --set env.pad_channels=6 --set train.torch_threads=1 &
done
wait
mkdir -p "$kept"
for game in breakout asterix space_invaders; do
  [ -f "$kept/teacher-$game.pt" ] || rlsuite export runs/dt-minatar/teacher-$game --sparse -o "$kept/teacher-$game.pt" > /dev/null
done
