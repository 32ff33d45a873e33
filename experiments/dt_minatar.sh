#!/usr/bin/env bash
# The multi-game MinAtar Decision Transformer study (README, "Decision Transformer"):
#   1. experiments/dt_minatar_teachers.sh trains one DQN per game (6 actions, 6 channels);
#   2. each teacher's latest checkpoint collects three qualities of data per game: greedy-ish
#      (epsilon 0.05), medium (epsilon 0.3) and uniformly random (epsilon 1), STEPS steps each;
#      Asterix's expert data is ASTERIX_EXPERT_STEPS (100k) long: its DQN teacher is nearly
#      indifferent between actions (median Q gap 0.3% of its scale) and two of the six actions do
#      the same thing, so 20k steps do not pin its policy down: plain behaviour cloning of them is
#      at chance on held-out episodes (accuracy 0.47 vs Breakout's 0.90), and 5x the data lifts it;
#   3. the multi-game DT (mgdt-minatar) and plain behaviour cloning (bc-minatar, the baseline that
#      tells a data failure from a model failure) train on all nine datasets (equal shares per
#      dataset, so per game), SEEDS seeds, UPDATES gradient updates each;
#   4. experiments/dt_minatar_report.py normalises each game's return by (random data mean, best
#      episode in the data) and aggregates over games and seeds with rliable, BC beside the DT.
# Re-running skips finished datasets and runs (and resumes interrupted runs).
set -euo pipefail
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-20000}
ASTERIX_EXPERT_STEPS=${ASTERIX_EXPERT_STEPS:-100000}
UPDATES=${UPDATES:-8000}
SEEDS=${SEEDS-"1 2 3"}
GAMES="breakout asterix space_invaders"
for game in $GAMES; do
  for q in "expert 0.05" "medium 0.3" "random 1.0"; do
    set -- $q
    out=data/minatar/$game-$1
    [ -f "$out/manifest.json" ] && continue
    rm -rf "$out"
    start=$SECONDS
    mkdir -p runs/dt-minatar
    steps=$STEPS
    [ "$game-$1" = asterix-expert ] && steps=$ASTERIX_EXPERT_STEPS
    rlsuite collect --from "$(teacher_of $game)" --steps "$steps" --epsilon "$2" --num-envs 4 \
      --seed 100 --out "$out"
    echo "collect $out: $((SECONDS - start)) s" >> runs/dt-minatar/timings.txt
  done
done
[ -n "$SEEDS" ] || exit 0  # SEEDS="": collect the datasets only (DT-Mem's scripts use them)
data=$(for g in $GAMES; do for q in expert medium random; do printf "data/minatar/%s-%s," "$g" "$q"; done; done)
data=${data%,}
train_seed() {  # the seeds run side by side, one torch thread each
  local start=$SECONDS
  once runs/dt-minatar/mgdt-s$1 rlsuite train mgdt-minatar --dataset "$data" --seed "$1" --steps "$UPDATES" \
    --set train.eval_every=$((UPDATES / 4)) --set train.torch_threads=1
  echo "train runs/dt-minatar/mgdt-s$1: $((SECONDS - start)) s (seeds in parallel)" >> runs/dt-minatar/timings.txt
  once runs/dt-minatar/bc-s$1 rlsuite train bc-minatar --dataset "$data" --seed "$1" --steps "$UPDATES" \
    --set train.eval_every=$((UPDATES / 4)) --set train.torch_threads=1
}
for seed in $SEEDS; do
  train_seed "$seed" &
done
wait
.venv/bin/python experiments/dt_minatar_report.py runs/dt-minatar/mgdt-s* --data data/minatar --out docs/dt-minatar.png \
  --bc runs/dt-minatar/bc-s*
