#!/usr/bin/env bash
# Every run behind the README's DT-Mem section, in the order this session ran them: the three MinAtar
# teachers and their nine datasets (experiments/dt_minatar_teachers.sh, dt_minatar.sh with SEEDS=""),
# claim 1's DT-Mem and matched-DT arms (stage 1 of claims 2 and 3), claims 2 and 3
# (experiments/dtmem_adapt.sh), then claim 1's released-memory ablation; the report last.
# Resumable: re-running continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash experiments/dt_minatar_teachers.sh
SEEDS="" bash experiments/dt_minatar.sh
ARMS="dtmem mgdt-matched" REPORT=0 bash experiments/dtmem_minatar.sh
REPORT=0 bash experiments/dtmem_adapt.sh
ARMS="dtmem-released" REPORT=0 bash experiments/dtmem_minatar.sh
.venv/bin/python experiments/dtmem_report.py --data data/minatar
