"""Replay buffer throughput on Atari-shaped data (`rlsuite bench replay`).

84x84 uint8 frames, stacks of 4, 8 env streams; episodes end now and then so final slots and
frame-stack masking are exercised. Measured per configuration and backend (native kernels and
the pure-torch reference): steady-state add throughput (transitions/s, in 8-env vector steps,
ring already wrapped), uniform sampling and PER sample + update_priorities at batch 32 and 256
(samples/s), bytes per transition and the process's peak RSS. One flat dict per configuration.
1-step returns match what the peers (rlsuite.bench.replay_peers) compute.
"""
from __future__ import annotations

import gc
import resource
import time
from typing import Callable

import numpy as np
import torch
from gymnasium import spaces

from rlsuite import native
from rlsuite.replay import ReplayBuffer, ReplayConfig

NUM_ENVS, STACK = 8, 4
ATARI = spaces.Box(0, 255, (STACK, 84, 84), np.uint8)
EPISODE_END_P = 1 / 800  # per env step; Atari episodes are hundreds to thousands of steps


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Feeder:
    """Replays a small pool of random vector steps into a buffer (data generation untimed)."""

    def __init__(self, seed: int = 0, pool: int = 32) -> None:
        rng = np.random.default_rng(seed)
        self.obs = rng.integers(0, 256, (pool, NUM_ENVS, STACK, 84, 84), dtype=np.uint8)
        self.action = rng.integers(0, 18, (pool, NUM_ENVS))
        self.reward = rng.normal(size=(pool, NUM_ENVS)).astype(np.float32)
        self.term = rng.random((pool, NUM_ENVS)) < EPISODE_END_P / 2
        self.trunc = rng.random((pool, NUM_ENVS)) < EPISODE_END_P / 2
        self.t = 0

    def add(self, buf: ReplayBuffer) -> None:
        i = self.t % len(self.obs)
        j = (i + 1) % len(self.obs)
        buf.add(self.obs[i], self.action[i], self.reward[i], self.term[i], self.trunc[i], self.obs[j])
        self.t += 1


def _rate(step: Callable[[], int], seconds: float, device: str = "cpu") -> tuple[float, float]:
    """Items per second of `step` (which returns the items it handled), run for `seconds`.

    On CUDA the kernels run asynchronously, so the clock stops only after the queue drains.
    """
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    items, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += step()
    sync()
    elapsed = time.perf_counter() - start
    return items / elapsed, elapsed


def _record(buf: ReplayBuffer, op: str, batch: int | None, rate: float, elapsed: float, capacity: int,
            device: str) -> dict:
    impl = "rlsuite-" + ("native" if native.enabled() else "reference") + ("-cuda" if device == "cuda" else "")
    return {
        "bench": "replay", "impl": impl, "storage_device": device,
        "op": op, "prioritized": buf.cfg.prioritized, "batch_size": batch,
        "capacity": capacity, "num_envs": NUM_ENVS, "frame_stack": STACK, "n_step": buf.n_step,
        "rate": round(rate, 1), "unit": "transitions/s" if op == "add" else "samples/s",
        "seconds": round(elapsed, 2), "bytes_per_transition": round(buf.memory_bytes() / capacity, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
    }


def _bench_one(prioritized: bool, capacity: int, seconds: float, n_step: int, device: str = "cpu") -> list[dict]:
    cfg = ReplayConfig(capacity=capacity, prioritized=prioritized)
    buf = ReplayBuffer(cfg, ATARI, NUM_ENVS, frame_stack=STACK, n_step=n_step, gamma=0.99, seed=0,
                       device=device, storage_device=device if device == "cuda" else None)
    feed = _Feeder()

    def add() -> int:
        feed.add(buf)
        return NUM_ENVS

    while buf.num_added < capacity + NUM_ENVS * 100:  # fill and wrap: steady state from here
        feed.add(buf)
    rate, elapsed = _rate(add, seconds, device)
    rows = [_record(buf, "add", None, rate, elapsed, capacity, device)]
    gen = torch.Generator(device).manual_seed(1)
    for batch in (32, 256):
        def sample() -> int:
            b = buf.sample(batch, beta=0.5)
            if prioritized:
                buf.update_priorities(b.indices, torch.rand(batch, generator=gen, device=device))
            return batch

        buf.sample(batch)  # allocate the reused batch tensors outside the timing
        rate, elapsed = _rate(sample, seconds, device)
        rows.append(_record(buf, "sample+update" if prioritized else "sample", batch, rate, elapsed, capacity,
                            device))
    return rows


def bench_replay(capacity: int = 200_000, seconds: float = 3.0, threads: int = 1,
                 backends: tuple[str, ...] = ("native", "reference"), n_step: int = 1,
                 device: str = "cpu") -> list[dict]:
    """Uniform then prioritized buffer per backend; each measurement runs for `seconds`.

    `device="cuda"` holds the whole buffer (frames, priority trees, sampling) in GPU memory and
    returns batches there, as a GPU learner uses it (`replay.on_device=true`).

    Runs with `threads` torch threads (default 1): the operators are small, and an intra-op
    pool spinning on a loaded machine made the same code up to 10x slower in our runs.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = []
        for backend in backends:
            with native.use_native(backend == "native"):
                for prioritized in (False, True):
                    rows += _bench_one(prioritized, capacity, seconds, n_step, device)
                    gc.collect()  # release the first buffer before the second one fills
                    if device == "cuda":
                        torch.cuda.empty_cache()
        return rows
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":
    import json

    import sys

    # python -m rlsuite.bench.replay [capacity] [seconds] [threads] [backends, comma-separated] [device]
    cap = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    backends = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else ("native", "reference")
    dev = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    for row in bench_replay(capacity=cap, seconds=secs, threads=threads, backends=backends, device=dev):
        print(json.dumps(row), flush=True)
