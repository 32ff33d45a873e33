"""Throughput of the env layer against the raw libraries it wraps (`rlsuite bench envs`).

(a) Atari Pong, 8 envs: raw envpool (its own 4-frame stack) vs our layer on envpool (stack_num=1
    plus our stack, stats and same-step autoreset). Target ratio >= 0.95.
(b) NetHackScore-v0, 8 envs: our layer (gymnasium backend) vs gymnasium's SyncVectorEnv of default
    `gym.make("NetHackScore-v0")` envs. Target ratio >= 2.
The two sides run in alternating slices so load from other processes hits both alike.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

NUM_ENVS = 8
SLICES = 10  # alternations per comparison: load from other processes then hits both sides alike


def _alternate(steps: dict[str, Callable[[], None]], seconds: float) -> dict[str, float]:
    """Vector steps per second of each step function, each given `seconds` in SLICES slices."""
    counts = dict.fromkeys(steps, 0)
    spent = dict.fromkeys(steps, 0.0)
    for _ in range(SLICES):
        for name, step in steps.items():
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / SLICES:
                step()
                counts[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: counts[name] / spent[name] for name in steps}


def _stepper(env, actions: np.ndarray) -> Callable[[], None]:
    state = {"t": 0}

    def step() -> None:
        env.step(actions[state["t"] % len(actions)])
        state["t"] += 1

    return step


def _result(name: str, baseline: str, rates: dict[str, float], target: float) -> dict:
    ours, theirs = rates["ours"] * NUM_ENVS, rates["baseline"] * NUM_ENVS
    return {"name": name, "num_envs": NUM_ENVS, "steps_per_s": round(ours, 1), "baseline": baseline,
            "baseline_steps_per_s": round(theirs, 1), "ratio": round(ours / theirs, 3), "target_ratio": target}


def bench_atari(seconds: float) -> dict:
    import envpool

    from rlsuite.envs import EnvConfig, make

    raw = envpool.make_gymnasium("Pong-v5", num_envs=NUM_ENVS, batch_size=NUM_ENVS, stack_num=4, seed=0)
    ours = make(EnvConfig(id="pong", backend="envpool", sticky_action_prob=0.25), NUM_ENVS, seed=0)
    actions = np.random.default_rng(0).integers(0, 6, (1000, NUM_ENVS)).astype(np.int32)
    raw.reset()
    ours.reset()
    rates = _alternate({"baseline": _stepper(raw, actions), "ours": _stepper(ours, actions)}, seconds)
    raw.close()
    ours.close()
    return _result("atari_pong_envpool", "envpool raw (stack_num=4)", rates, 0.95)


def bench_nethack(seconds: float) -> dict:
    import gymnasium as gym

    from rlsuite.envs import EnvConfig, make
    from rlsuite.errors import require

    require("nle", "nethack")
    base = gym.vector.SyncVectorEnv([lambda: gym.make("NetHackScore-v0") for _ in range(NUM_ENVS)])
    ours = make(EnvConfig(id="NetHackScore-v0", backend="gymnasium"), NUM_ENVS, seed=0)
    actions = np.random.default_rng(0).integers(0, ours.single_action_space.n, (1000, NUM_ENVS))
    base.reset(seed=0)
    ours.reset()
    rates = _alternate({"baseline": _stepper(base, actions), "ours": _stepper(ours, actions)}, seconds)
    base.close()
    ours.close()
    return _result("nethack_score_sync", "gymnasium SyncVectorEnv of default NLE", rates, 2.0)


def bench_envs(seconds: float = 5.0) -> list[dict]:
    """Run both comparisons; each side gets about `seconds` of stepping."""
    return [bench_atari(seconds), bench_nethack(seconds)]


if __name__ == "__main__":
    import json

    for row in bench_envs():
        print(json.dumps(row))
