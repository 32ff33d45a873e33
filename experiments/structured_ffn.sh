#!/usr/bin/env bash
# Structured FFNs in the Decision Transformer (docs/components/structured-ffn.md): three arms at equal
# updates on CartPole-v1 offline data, seeds 1-3, one torch thread, at low CPU priority:
#   dense            the DT's dense FFNs
#   lowrank          LowRank r = d/8 from scratch (the first block's FFN stays dense, as the paper)
#   lowrank-sgt      the same with self-guided training (sgt_ratio 0.5, cosine)
# Data: the PPO CartPole teacher (tests/data/ppo-cartpole-60k.pt) collected as tests/test_dt_learning.py
# collects it: 8 greedy episodes and 32 at epsilon 0.6. Model: d 64, 3 layers, 2 heads, K 10, batch 32,
# 600 updates, evaluation (10 sampled-action games, target data-best) at the end.
# Prints each run's final action cross-entropy (mean of the last 5 logged values), its final
# evaluation return, and each arm's mean.
#   bash experiments/structured_ffn.sh [OUT_DIR]      (default runs/structured-ffn)
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/common.sh
out=${1:-runs/structured-ffn}
data=$out/data
mkdir -p "$out"
if [ ! -f "$data/expert/manifest.json" ]; then
  rm -rf "$data"
  nice -n 10 rlsuite collect --from tests/data/ppo-cartpole-60k.pt --episodes 8 --seed 0 --out "$data/expert" > /dev/null
  nice -n 10 rlsuite collect --from tests/data/ppo-cartpole-60k.pt --episodes 32 --epsilon 0.6 --seed 1 \
    --out "$data/noisy" > /dev/null
fi
common=(--set agent.model.context=10 --set agent.model.embed_dim=64 --set agent.model.n_layer=3
        --set agent.model.n_head=2 --set agent.model.max_timestep=512 --set agent.encoder.hidden=64
        --set agent.batch_size=32 --set agent.lr=1e-3 --set agent.warmup_updates=50 --set agent.eval_sample=true
        --set train.eval_episodes=10 --set train.eval_num_envs=5 --set train.torch_threads=1
        --set train.log_every=10 --set train.eval_every=100000)
declare -A arm=(
  [dense]=""
  [lowrank]="--set agent.model.ffn=lowrank --set agent.model.ffn_rank=8"
  [lowrank-sgt]="--set agent.model.ffn=lowrank --set agent.model.ffn_rank=8 --set agent.model.sgt_ratio=0.5 --set agent.model.sgt_schedule=cosine"
)
for seed in 1 2 3; do
  for name in dense lowrank lowrank-sgt; do
    # shellcheck disable=SC2086
    once "$out/$name-s$seed" nice -n 10 rlsuite train dt --dataset "$data/expert,$data/noisy" --seed "$seed" \
      --steps 600 "${common[@]}" ${arm[$name]}
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

out = Path(sys.argv[1])
print("| arm | seed | final action CE | final eval return | alpha logged (first, last) |")
print("|---|---|---|---|---|")
means = {}
for name in ("dense", "lowrank", "lowrank-sgt"):
    for seed in (1, 2, 3):
        run = out / f"{name}-s{seed}"
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        ce = [e.value for e in events.Scalars("losses/action_ce")][-5:]
        tags = events.Tags()["scalars"]
        alpha = [e.value for e in events.Scalars("charts/sgt_alpha")] if "charts/sgt_alpha" in tags else []
        ret = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])["mean"]
        means.setdefault(name, []).append((sum(ce) / len(ce), ret))
        guided = f"{alpha[0]:.3f}, {alpha[-1]:.3f}" if alpha else "-"
        print(f"| {name} | {seed} | {sum(ce) / len(ce):.3f} | {ret:.1f} | {guided} |")
print()
print("| arm | mean final action CE | mean final eval return |")
print("|---|---|---|")
for name, rows in means.items():
    print(f"| {name} | {sum(r[0] for r in rows) / len(rows):.3f} | {sum(r[1] for r in rows) / len(rows):.1f} |")
PY
