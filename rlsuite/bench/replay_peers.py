"""Peer replay buffers on the same Atari-shaped data as rlsuite.bench.replay (`make bench-peers`).

Each peer runs as its users run it (numpy observations of full 4-frame stacks, 8 envs, 1-step)
in its own subprocess with glibc's malloc trim/mmap thresholds raised, the same settings as the
rlsuite run. One JSON line per configuration; a peer that cannot run says why ("unavailable").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from rlsuite.bench.replay import NUM_ENVS, STACK, _peak_rss_mb

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
PEERS = ("sb3", "cpprb", "torchrl", "tianshou")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (8, NUM_ENVS, STACK, 84, 84), dtype=np.uint8)
    return obs, rng.integers(0, 18, (8, NUM_ENVS, 1)), rng.normal(size=(8, NUM_ENVS)).astype(np.float32)


def _rate(step, seconds: float) -> float:
    items, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += step()
    return items / (time.perf_counter() - start)


def _sb3(capacity: int, seconds: float) -> list[dict]:
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    space = spaces.Box(0, 255, (STACK, 84, 84), np.uint8)
    buf = ReplayBuffer(capacity // NUM_ENVS, space, spaces.Discrete(18), device="cpu", n_envs=NUM_ENVS,
                       optimize_memory_usage=True, handle_timeout_termination=False)
    obs, act, rew = _data()
    done, infos, i = np.zeros(NUM_ENVS, bool), [{}] * NUM_ENVS, [0]

    def add() -> int:
        k = i[0] % 8
        buf.add(obs[k], obs[(k + 1) % 8], act[k], rew[k], done, infos)
        i[0] += 1
        return NUM_ENVS

    while buf.full is False:
        add()
    rows = [("add", None, _rate(add, seconds))]
    for batch in (32, 256):
        rows.append(("sample", batch, _rate(lambda: buf.sample(batch) and batch, seconds)))
    nbytes = buf.observations.nbytes + buf.actions.nbytes + buf.rewards.nbytes + buf.dones.nbytes
    return [_row("sb3", op, b, r, capacity, nbytes, prioritized=False) for op, b, r in rows]


def _cpprb(capacity: int, seconds: float) -> list[dict]:
    from cpprb import PrioritizedReplayBuffer, ReplayBuffer

    env = {"obs": {"shape": (STACK, 84, 84), "dtype": np.uint8}, "act": {"dtype": np.int64},
           "rew": {}, "next_obs": {"shape": (STACK, 84, 84), "dtype": np.uint8}, "done": {}}
    obs, act, rew = _data()
    rows = []
    for prioritized in (False, True):
        buf = (PrioritizedReplayBuffer if prioritized else ReplayBuffer)(capacity, env)
        i = [0]

        def add() -> int:
            k = i[0] % 8
            buf.add(obs=obs[k], act=act[k], rew=rew[k], next_obs=obs[(k + 1) % 8], done=np.zeros(NUM_ENVS))
            i[0] += 1
            return NUM_ENVS

        while buf.get_stored_size() < capacity:
            add()
        if not prioritized:
            rows.append(("add", None, _rate(add, seconds), prioritized))
        for batch in (32, 256):
            def step() -> int:
                s = buf.sample(batch)
                if prioritized:
                    buf.update_priorities(s["indexes"], np.random.random(batch))
                return batch

            rows.append(("sample+update" if prioritized else "sample", batch, _rate(step, seconds), prioritized))
        del buf
    nbytes = capacity * (2 * STACK * 84 * 84 + 8 + 4 + 4)
    return [_row("cpprb", op, b, r, capacity, nbytes, prioritized=p) for op, b, r, p in rows]


def _row(impl: str, op: str, batch, rate: float, capacity: int, nbytes: int, prioritized: bool) -> dict:
    return {"bench": "replay", "impl": impl, "op": op, "prioritized": prioritized, "batch_size": batch,
            "capacity": capacity, "num_envs": NUM_ENVS, "frame_stack": STACK, "n_step": 1, "rate": round(rate, 1),
            "unit": "transitions/s" if op == "add" else "samples/s", "bytes_per_transition": round(nbytes / capacity, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _unavailable(peer: str, capacity: int, why: str) -> dict:
    return {"bench": "replay", "impl": peer, "capacity": capacity, "unavailable": why}


def run_peer(peer: str, capacity: int, seconds: float) -> list[dict]:
    """Measure one peer in this process (called in a subprocess by bench_peers)."""
    full_stack_bytes = capacity * 2 * STACK * 84 * 84
    if peer in ("cpprb", "tianshou") and full_stack_bytes > 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):
        return [_unavailable(peer, capacity, f"stores full obs+next stacks: {full_stack_bytes / 1e9:.0f} GB > RAM")]
    try:
        if peer == "sb3":
            return _sb3(capacity, seconds)
        if peer == "cpprb":
            return _cpprb(capacity, seconds)
        if peer == "torchrl":
            import torchrl.data  # noqa: F401
        if peer == "tianshou":
            import tianshou.data  # noqa: F401
    except ImportError as exc:
        return [_unavailable(peer, capacity, f"import failed: {exc}")]
    return [_unavailable(peer, capacity, "runner not implemented in this version of the bench")]


def bench_peers(capacity: int = 200_000, seconds: float = 3.0, peers: tuple[str, ...] = PEERS) -> list[dict]:
    rows = []
    for peer in peers:
        cmd = [sys.executable, "-m", "rlsuite.bench.replay_peers", peer, str(capacity), str(seconds)]
        out = subprocess.run(cmd, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True)
        lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        rows += lines or [_unavailable(peer, capacity, f"crashed: {out.stderr.strip()[-300:]}")]
    return rows


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    if len(sys.argv) == 4:
        for row in run_peer(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])):
            print(json.dumps(row), flush=True)
    else:
        for row in bench_peers(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000):
            print(json.dumps(row), flush=True)
