#!/usr/bin/env bash
# The GPU path, measured (docs/speed.md): Dopamine DQN (the `dqn` preset) on Pong end to end on one GPU,
# with the replay on the GPU (replay.on_device), envpool stepping the game and the update on the GPU,
# profiled (train.profile): env steps/s, where the time goes (env, act, add, sample, update, learn,
# other; evaluation apart) and the time 10M frames would take at the measured rates.
#
#   bash experiments/gpu_pong.sh                               # a lent GPU: 500k frames (125k env steps)
#   FRAMES=2000000 bash experiments/gpu_pong.sh                # a longer probe
#   DEVICE=cpu FRAMES=160000 bash experiments/gpu_pong.sh      # the same on the CPU (replay in host memory)
#
# Env steps = FRAMES / 4 (frame_skip 4). The first agent.learning_starts = 20k env steps act at
# random with no update, so steps/s is reported for the warm-up and for after learning starts
# (from the TensorBoard charts/SPS points), and 10M frames = 2.5M env steps is extrapolated as
# 20k warm-up steps at the first rate plus the rest at the second. The profile covers the whole
# loop, warm-up included. With train.profile on CUDA every phase boundary synchronises the GPU, which
# removes CPU/GPU overlap: PROFILE=false measures the unprofiled steps/s (no breakdown).
# envpool runs in sync mode here (rlsuite's envpool backend steps all envs as one batch; it has no
# async / batch_size < num_envs mode), one env unless NUM_ENVS says otherwise (the update ratio per
# env step stays Dopamine's at any width). Evaluation and periodic checkpoints are turned off
# except the final ones, so they do not interrupt the timing.
#
# Knobs: DEVICE (cuda), FRAMES (500000), NUM_ENVS (1), PROFILE (true), CAPACITY (replay transitions,
# 1000000 = Dopamine), EVAL_EPISODES (4, the final evaluation only), RUN (runs/gpu-pong-$DEVICE),
# EXTRA (more rlsuite train arguments, e.g. "--set agent.encoder.kind=impala").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PATH="$ROOT/.venv/bin:$PATH"

DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-500000}
NUM_ENVS=${NUM_ENVS:-1}
PROFILE=${PROFILE:-true}
CAPACITY=${CAPACITY:-1000000}
EVAL_EPISODES=${EVAL_EPISODES:-4}
RUN=${RUN:-runs/gpu-pong-$DEVICE}
STEPS=$((FRAMES / 4))
case "$DEVICE" in cuda*) ON_DEVICE=true ;; *) ON_DEVICE=false ;; esac  # replay.on_device needs a GPU learner

rm -rf "$RUN"
mkdir -p "$(dirname "$RUN")"
echo "DQN (dqn preset, Dopamine) on Pong: $FRAMES frames = $STEPS env steps, device $DEVICE, replay.on_device=$ON_DEVICE," \
     "envpool (sync), $NUM_ENVS env(s), profile $PROFILE"
# shellcheck disable=SC2086  # EXTRA is split on purpose
python -m rlsuite train dqn --env pong --steps "$STEPS" --num-envs "$NUM_ENVS" --run-dir "$RUN" --no-progress \
  --set train.device="$DEVICE" --set replay.on_device="$ON_DEVICE" --set env.backend=envpool \
  --set train.profile="$PROFILE" --set replay.capacity="$CAPACITY" --set train.eval_every=0 \
  --set train.checkpoint_every=0 --set train.eval_episodes="$EVAL_EPISODES" --set train.status_every=30 \
  ${EXTRA:-} 2>&1 | tee "$RUN.log"

python - "$RUN" <<'EOF'
"""Steps/s of the warm-up and after learning starts, from the charts/SPS points the run logged
(about one a second, each stamped with its wall time), and the extrapolated time of 10M frames."""
import json
import sys
import tomllib
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = Path(sys.argv[1])
cfg = tomllib.loads((run / "config.toml").read_text())
starts, skip = cfg["agent"]["learning_starts"], cfg["env"]["frame_skip"]
events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
points = [(e.step, e.wall_time) for e in events.Scalars("charts/SPS")]


def rate(lo, hi):
    inside = [p for p in points if lo <= p[0] <= hi]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
        return None, 0
    (s0, w0), (s1, w1) = inside[0], inside[-1]
    return (s1 - s0) / (w1 - w0), s1 - s0


warm, warm_n = rate(0, starts)
# from the first point past learning_starts on (the window that ends there straddles the start)
learn, learn_n = rate(starts + 1, float("inf"))
fmt = lambda v: "-" if v is None else f"{v:,.0f}"
print(f"\nenv steps/s: warm-up (random actions, no update) {fmt(warm)} over {warm_n:,} steps;"
      f" after learning starts {fmt(learn)} over {learn_n:,} steps")
if learn:
    total = 10_000_000 // skip
    seconds = min(starts, total) / (warm or learn) + max(0, total - starts) / learn
    print(f"10M frames = {total:,} env steps at these rates: {seconds / 3600:.2f} h "
          f"({seconds / 60:,.0f} min; training only, evaluation not included)")
profile = run / "profile.json"
if profile.exists():
    shares = json.loads(profile.read_text())
    print("profile (whole loop, warm-up included): " +
          ", ".join(f"{k} {100 * v['fraction']:.1f}%" for k, v in shares.items()))
EOF
