"""`rlsuite bench dqn`: DQN training throughput against Stable-Baselines3, side by side.

Each measurement runs in a fresh subprocess (`python -m rlsuite.bench.dqn IMPL TASK SECONDS`)
so neither side inherits the other's allocator state, both under the same glibc malloc
settings (trim/mmap thresholds raised: page faults are expensive on small cloud machines, and
both libraries benefit). Both sides use SB3's Pong settings: buffer 100k, learning_starts 1000,
train_freq 4, batch 32, target update 1000, 2 torch threads, one env. The clock starts after
learning starts, so the figure is steady-state env steps/s including gradient updates.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
TASKS = {
    # task: (rlsuite env id, rlsuite encoder kind, SB3 env id)
    "pong": ("pong", "nature", "PongNoFrameskip-v4"),
    "cartpole": ("CartPole-v1", "mlp", "CartPole-v1"),
    "minatar-breakout": ("minatar:breakout", "mlp", "MinAtar/Breakout-v1"),  # MLP both sides, as SB3 MlpPolicy
}
SHARED = dict(buffer=100_000, learning_starts=1_000, train_freq=4, batch=32, target=1_000)


def bench_dqn(seconds: float = 20.0, quick: bool = False) -> list[dict[str, Any]]:
    results = []
    for task in TASKS:
        rows = {impl: _measure_in_subprocess(impl, task, seconds) for impl in ("rlsuite", "sb3")}
        ours, peer = rows["rlsuite"], rows["sb3"]
        ratio = ours["steps_per_s"] / peer["steps_per_s"] if peer.get("steps_per_s") else None
        for impl, row in rows.items():
            results.append({"bench": "dqn", "task": task, "impl": impl, **row,
                            **({"ratio_vs_sb3": round(ratio, 3)} if impl == "rlsuite" and ratio else {})})
    return results


def _measure_in_subprocess(impl: str, task: str, seconds: float) -> dict[str, Any]:
    env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "rlsuite.bench.dqn", impl, task, str(seconds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"steps_per_s": None, "error": reason}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- workers


def _rlsuite_worker(task: str, seconds: float) -> dict[str, Any]:
    import torch

    from rlsuite import config
    from rlsuite.train import build_session

    env_id, encoder, _ = TASKS[task]
    overrides = [f"agent.encoder.kind={encoder}", f"replay.capacity={SHARED['buffer']}",
                 f"agent.learning_starts={SHARED['learning_starts']}", f"agent.train_freq={SHARED['train_freq']}",
                 f"agent.batch_size={SHARED['batch']}", f"agent.target_update_period={SHARED['target']}",
                 "agent.encoder.hidden=64,64", "train.torch_threads=2", "train.num_envs=1",
                 "train.eval_num_envs=1", "train.progress=false", "env.backend=auto"]
    preset = "dqn-cleanrl" if task == "pong" else "dqn-classic"
    if task == "pong":
        overrides.append("env.sticky_action_prob=0")  # SB3's PongNoFrameskip-v4 has no sticky actions
    cfg = config.build_run_config(preset, env_id, overrides)
    cfg.train.total_steps = 10**9
    import tempfile
    from pathlib import Path

    session = build_session(cfg, Path(tempfile.mkdtemp()))
    torch.set_num_threads(2)
    session.obs, _ = session.env.reset(seed=0)
    _run_steps(session, until_step=SHARED["learning_starts"] + 200)
    start_step, start = session.step, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        _run_steps(session, until_step=session.step + 100)
    elapsed = time.perf_counter() - start
    return {"steps_per_s": round((session.step - start_step) / elapsed, 1), "steps": session.step - start_step}


def _run_steps(session: Any, until_step: int) -> None:
    from rlsuite.train import advance

    while session.step < until_step:
        advance(session)


def _sb3_worker(task: str, seconds: float) -> dict[str, Any]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(2)
    _, _, sb3_id = TASKS[task]
    kwargs: dict[str, Any] = dict(buffer_size=SHARED["buffer"], learning_starts=SHARED["learning_starts"],
                                  train_freq=SHARED["train_freq"], batch_size=SHARED["batch"],
                                  target_update_interval=SHARED["target"], verbose=0, seed=0)
    if task == "pong":
        import ale_py
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        env = VecFrameStack(make_atari_env(sb3_id, n_envs=1, seed=0), n_stack=4)
        model = DQN("CnnPolicy", env, optimize_memory_usage=True,
                    replay_buffer_kwargs=dict(handle_timeout_termination=False), **kwargs)
    elif task == "cartpole":
        model = DQN("MlpPolicy", gym.make(sb3_id), policy_kwargs=dict(net_arch=[64, 64]), **kwargs)
    else:
        from minatar.gym import register_envs

        register_envs()
        model = DQN("MlpPolicy", gym.make(sb3_id), policy_kwargs=dict(net_arch=[64, 64]), **kwargs)

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start_step, self.start = None, 0.0

        def _on_step(self) -> bool:
            if self.start_step is None and self.num_timesteps >= SHARED["learning_starts"] + 200:
                self.start_step, self.start = self.num_timesteps, time.perf_counter()
            return self.start_step is None or time.perf_counter() - self.start < seconds

    clock = Clock()
    model.learn(total_timesteps=10**9, callback=clock)
    elapsed = time.perf_counter() - clock.start
    steps = model.num_timesteps - (clock.start_step or 0)
    return {"steps_per_s": round(steps / elapsed, 1), "steps": steps}


if __name__ == "__main__":
    impl_name, task_name, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    worker = _rlsuite_worker if impl_name == "rlsuite" else _sb3_worker
    print(json.dumps(worker(task_name, secs)), flush=True)
