#!/usr/bin/env bash
# The LRU core against the LSTM core (and the feed-forward policy) on velocity-masked CartPole:
# ppo-classic, 60k env steps, evaluation every 20k (10 greedy games), seeds 1-3, one torch thread,
# at low CPU priority. Prints the best evaluation of every run (docs/components/lru.md).
#   bash experiments/lru_masked_cartpole.sh [OUT_DIR]      (default runs/lru-masked-cartpole)
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/common.sh
out=${1:-runs/lru-masked-cartpole}
for seed in 1 2 3; do
  for core in none lstm lru; do
    once "$out/$core-s$seed" nice -n 10 rlsuite train ppo-classic --env CartPole-v1 --seed "$seed" --steps 60000 \
      --set env.hide_velocities=true --set agent.core="$core" --set train.eval_every=20000 \
      --set train.torch_threads=1 --set train.checkpoint_every=20000
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| core | seed 1 | seed 2 | seed 3 | evaluations (20k / 40k / 60k) |")
print("|---|---|---|---|---|")
for core in ("none", "lstm", "lru"):
    evals = [[json.loads(l)["mean"] for l in (out / f"{core}-s{s}" / "eval.jsonl").read_text().splitlines()]
             for s in (1, 2, 3)]
    print(f"| {core} | " + " | ".join(f"{max(e):.1f}" for e in evals) + " | "
          + "; ".join(" / ".join(f"{v:.0f}" for v in e) for e in evals) + " |")
PY
