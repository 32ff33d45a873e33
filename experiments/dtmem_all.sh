#!/usr/bin/env bash
# Every run behind the DT-Mem study page (docs/results/dtmem.md), seed by seed, so that a study cut
# short across sessions always holds whole seeds:
#   the three MinAtar teachers (experiments/dt_minatar_teachers.sh; kept as exported weights in
#   experiments/records/dt-minatar-teachers) and their nine datasets (dt_minatar.sh with SEEDS="");
#   then per seed: claim 1's three arms two at a time (experiments/dtmem_minatar.sh): DT-Mem, the
#   long pole (about 2 h at 20k updates on the 2-core machine), on one core, the matched DT and then the
#   released-memory arm on the other; then claims 2 and 3 from them (experiments/dtmem_adapt.sh);
#   then that seed's finished runs are kept without checkpoints in experiments/records/ (the
#   fine-tunes need their parents' checkpoints, so a seed is kept only once all of it is done).
# Resumable: re-running continues where it stopped, on this machine or, through the records, another.
# The report last (experiments/dtmem_report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/common.sh
UPDATES=${UPDATES:-20000}
STAGE1=runs/dtmem-minatar-$((UPDATES / 1000))k
STAGE2=runs/dtmem-adapt-$(basename "$STAGE1")
bash experiments/dt_minatar_teachers.sh
SEEDS="" bash experiments/dt_minatar.sh
records restore "$RECORDS_ROOT/$(basename "$STAGE1")" "$STAGE1"
records restore "$RECORDS_ROOT/$(basename "$STAGE2")" "$STAGE2"
for seed in ${SEEDS:-1 2 3}; do
  UPDATES=$UPDATES ARMS="dtmem mgdt-matched dtmem-released" SEEDS=$seed JOBS=2 REPORT=0 bash experiments/dtmem_minatar.sh
  STAGE1=$STAGE1 RUNS=$STAGE2 SEEDS=$seed REPORT=0 bash experiments/dtmem_adapt.sh
  records save "$STAGE1" "$RECORDS_ROOT/$(basename "$STAGE1")"
  records save "$STAGE2" "$RECORDS_ROOT/$(basename "$STAGE2")"
done
.venv/bin/python experiments/dtmem_report.py --data data/minatar --claim1 "$STAGE1" --adapt "$STAGE2"
