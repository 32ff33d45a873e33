#!/usr/bin/env bash
# Learning parity of the fast modes (docs: "Speed"): does bf16 autocast, or torch.compile, change
# what the agents learn? Same seeds, same budgets, one key changed per arm; `rlsuite compare` gives
# the means with 95% stratified-bootstrap CIs (rliable).
#   DQN on MinAtar Breakout (dqn-minatar, epsilon 1 -> 0.01 over 50k steps): fp32 vs bf16, 5 seeds,
#   100k env steps (the preset's 1M does not fit this 2-core machine ten times over), and
#   compiled fp32 on seeds 1-3 beside them.
#   PPO on MinAtar Breakout (ppo-minatar): fp32 vs bf16, 3 seeds, 300k env steps.
#   The Decision Transformer on CartPole datasets collected from the committed PPO teacher
#   (tests/data/ppo-cartpole-60k.pt: 20 greedy episodes + 40 at epsilon 0.5): fp32 vs bf16, 3 seeds,
#   2000 updates, evaluated at target return 500.
# bf16 needs bf16 units (a CPU with avx512_bf16 or amx_bf16, or a CUDA GPU). Re-running skips
# finished runs and resumes interrupted ones.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PATH="$ROOT/.venv/bin:$PATH"
OUT=${OUT:-runs}/speed-parity
JOBS=${JOBS:-2}
common=(--set train.torch_threads=1 --set train.checkpoint_every=25000 --jobs "$JOBS")

rlsuite sweep dqn-minatar --env minatar:breakout --grid train.precision=fp32,bf16 --seeds 1,2,3,4,5 \
    --steps 100000 --set agent.epsilon_decay_steps=50000 --set train.eval_every=25000 --set train.eval_episodes=20 \
    "${common[@]}" --out "$OUT/dqn-minatar"
rlsuite sweep dqn-minatar --env minatar:breakout --grid train.compile=true --seeds 1,2,3 \
    --steps 100000 --set agent.epsilon_decay_steps=50000 --set train.eval_every=25000 --set train.eval_episodes=20 \
    "${common[@]}" --out "$OUT/dqn-minatar-compiled"
rlsuite sweep ppo-minatar --env minatar:breakout --grid train.precision=fp32,bf16 --seeds 1,2,3 \
    --steps 300000 --set train.eval_every=100000 --set train.eval_episodes=20 \
    "${common[@]}" --out "$OUT/ppo-minatar"

data="$OUT/dt-data"
if [ ! -f "$data/noisy/manifest.json" ]; then
  rm -rf "$data"
  rlsuite collect --from "$ROOT/tests/data/ppo-cartpole-60k.pt" --episodes 20 --epsilon 0 --seed 1 --out "$data/expert" > /dev/null
  rlsuite collect --from "$ROOT/tests/data/ppo-cartpole-60k.pt" --episodes 40 --epsilon 0.5 --seed 2 --out "$data/noisy" > /dev/null
fi
rlsuite sweep dt --env CartPole-v1 --set offline.datasets="$data/expert,$data/noisy" --grid train.precision=fp32,bf16 --seeds 1,2,3 --steps 2000 \
    --set agent.model.context=10 --set agent.model.embed_dim=64 --set agent.model.n_layer=2 --set agent.model.n_head=2 \
    --set agent.model.max_timestep=512 --set agent.encoder.hidden=64 --set agent.batch_size=32 --set agent.lr=1e-3 \
    --set agent.warmup_updates=50 --set agent.eval_sample=true --set agent.eval_target=500 \
    --set train.eval_episodes=20 --set train.eval_num_envs=5 --set train.eval_every=1000 \
    "${common[@]}" --out "$OUT/dt-cartpole"

for study in dqn-minatar ppo-minatar dt-cartpole; do rlsuite compare "$OUT/$study"; done
rlsuite compare "$OUT/dqn-minatar" "$OUT/dqn-minatar-compiled"
