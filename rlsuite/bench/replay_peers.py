"""Peer replay buffers on the same Atari-shaped data as rlsuite.bench.replay (`make bench-peers`).

Each peer runs as its users run it (numpy observations of full 4-frame stacks, 8 envs, 1-step)
in its own subprocess with glibc's malloc trim/mmap thresholds raised, the same settings as the
rlsuite run. One JSON line per configuration; a peer that cannot run says why ("unavailable").
Peak RSS is read inside each peer's subprocess (VmHWM of its own address space: ru_maxrss
would report the parent's peak, which a child inherits across fork and exec).

Configurations, as each project's own Atari examples set them up:
* SB3: ReplayBuffer(optimize_memory_usage=True), observations stored once per transition (4-frame stacks);
* cpprb: ReplayBuffer / PrioritizedReplayBuffer with obs and next_obs as full stacks;
* TorchRL: TensorDictReplayBuffer(LazyTensorStorage) with obs and ("next", obs) as full stacks, uniform
  (RandomSampler) or PrioritizedSampler (its C++ segment trees; where the shipped binary does not load
  against this torch it is rebuilt once from the sources the package ships, into ~/.cache/rlsuite);
* Tianshou: VectorReplayBuffer / PrioritizedVectorReplayBuffer with stack_num=4,
  save_only_last_obs=True, ignore_obs_next=True (frames stored once, stacks rebuilt at sample time).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from rlsuite.bench.replay import NUM_ENVS, STACK

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
PEERS = ("sb3", "cpprb", "torchrl", "tianshou")
FRAME = 84 * 84
# Bytes each peer stores per transition (frames only): what decides whether a capacity fits in memory.
PEER_BYTES = {"sb3": STACK * FRAME, "cpprb": 2 * STACK * FRAME, "torchrl": 2 * STACK * FRAME, "tianshou": FRAME}


def _peak_rss_mb() -> float:
    """Peak resident set of this process's own address space (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (8, NUM_ENVS, STACK, 84, 84), dtype=np.uint8)
    return obs, rng.integers(0, 18, (8, NUM_ENVS, 1)), rng.normal(size=(8, NUM_ENVS)).astype(np.float32)


def _rate(step, seconds: float) -> float:
    items, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += step()
    return items / (time.perf_counter() - start)


def _sb3(capacity: int, seconds: float, modes: tuple[bool, ...]) -> list[dict]:
    if False not in modes:
        return []  # SB3 has no prioritized buffer
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    space = spaces.Box(0, 255, (STACK, 84, 84), np.uint8)
    # buffer_size is in transitions: SB3 divides it by n_envs itself.
    buf = ReplayBuffer(capacity, space, spaces.Discrete(18), device="cpu", n_envs=NUM_ENVS,
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


def _cpprb(capacity: int, seconds: float, modes: tuple[bool, ...]) -> list[dict]:
    from cpprb import PrioritizedReplayBuffer, ReplayBuffer

    env = {"obs": {"shape": (STACK, 84, 84), "dtype": np.uint8}, "act": {"dtype": np.int64},
           "rew": {}, "next_obs": {"shape": (STACK, 84, 84), "dtype": np.uint8}, "done": {}}
    obs, act, rew = _data()
    rows = []
    for prioritized in modes:
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
        del buf, add, step
        gc.collect()  # free this buffer before the next one fills
    nbytes = capacity * (2 * STACK * 84 * 84 + 8 + 4 + 4)
    return [_row("cpprb", op, b, r, capacity, nbytes, prioritized=p) for op, b, r, p in rows]


def _torchrl_extension() -> str | None:
    """Make TorchRL's C++ segment trees importable; returns why not, or None when they load.

    PyPI's torchrl binary is built against one torch release; with another its extension fails
    to load (undefined symbols) and PrioritizedSampler refuses to start. Then the extension is
    rebuilt once from the sources the wheel ships (torchrl/csrc) with torch's JIT extension
    builder and registered as torchrl._torchrl before torchrl.data is imported.
    """
    try:
        import torchrl._torchrl  # noqa: F401

        return None
    except ImportError as exc:
        shipped_error = str(exc)[:160]
    import importlib.util

    import torch
    from torch.utils import cpp_extension

    spec = importlib.util.find_spec("torchrl")
    src = os.path.join(os.path.dirname(spec.origin), "csrc")
    sources = [os.path.join(src, name) for name in ("pybind.cpp", "utils.cpp")]
    if not all(os.path.exists(p) for p in sources):
        return f"shipped binary does not load ({shipped_error}) and the wheel has no csrc sources to rebuild"
    from importlib.metadata import version

    build = os.path.expanduser(f"~/.cache/rlsuite/torchrl-ext-{version('torchrl')}-torch{torch.__version__}")
    os.makedirs(build, exist_ok=True)
    try:
        module = cpp_extension.load("_torchrl", sources, build_directory=build, extra_cflags=["-O3"], verbose=False)
    except Exception as exc:  # compiler missing, source incompatible with this torch, ...
        return f"shipped binary does not load ({shipped_error}); rebuilding from its csrc failed: {str(exc)[-200:]}"
    sys.modules["torchrl._torchrl"] = module
    return None


def _torchrl(capacity: int, seconds: float, modes: tuple[bool, ...]) -> list[dict]:
    import torch

    why_not_prioritized = _torchrl_extension()
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.data.replay_buffers.samplers import PrioritizedSampler

    obs, act, rew = _data()
    steps = []
    for k in range(8):  # a TorchRL collector hands out TensorDicts of torch tensors
        steps.append(TensorDict({
            "observation": torch.from_numpy(obs[k]), "action": torch.from_numpy(act[k][:, 0]),
            "next": TensorDict({"observation": torch.from_numpy(obs[(k + 1) % 8]),
                                "reward": torch.from_numpy(rew[k])[:, None],
                                "done": torch.zeros(NUM_ENVS, 1, dtype=torch.bool),
                                "terminated": torch.zeros(NUM_ENVS, 1, dtype=torch.bool)}, batch_size=[NUM_ENVS]),
        }, batch_size=[NUM_ENVS]))
    rows: list[dict] = []
    for prioritized in modes:
        if prioritized and why_not_prioritized:
            rows.append(_unavailable("torchrl", capacity, f"PrioritizedSampler: {why_not_prioritized}"))
            continue
        sampler = PrioritizedSampler(capacity, alpha=0.5, beta=0.4) if prioritized else None
        kwargs = {"sampler": sampler} if sampler is not None else {}
        buf = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), **kwargs)

        def sample(batch: int, buf=buf, prioritized=prioritized) -> None:
            s = buf.sample(batch)
            if prioritized:
                buf.update_priority(s["index"], torch.rand(batch))

        measured = _fill_and_measure(lambda k, buf=buf: buf.extend(steps[k]), sample, lambda buf=buf: len(buf),
                                     capacity, prioritized, seconds)
        nbytes = capacity * (2 * STACK * FRAME + 8 + 4 + 2)
        rows += [_row("torchrl", op, b, r, capacity, nbytes, prioritized) for op, b, r in measured]
        del buf, sample
        gc.collect()  # free this buffer before the next one fills
    return rows


def _tianshou(capacity: int, seconds: float, modes: tuple[bool, ...]) -> list[dict]:
    from tianshou.data import Batch, PrioritizedVectorReplayBuffer, VectorReplayBuffer

    obs, act, rew = _data()
    zeros = np.zeros(NUM_ENVS, bool)
    steps = [Batch(obs=obs[k], act=act[k][:, 0], rew=rew[k], terminated=zeros, truncated=zeros,
                   obs_next=obs[(k + 1) % 8], info={}) for k in range(8)]
    # Tianshou's Atari examples: frames stored once, stacks of 4 rebuilt when sampling.
    atari = {"stack_num": STACK, "save_only_last_obs": True, "ignore_obs_next": True}
    rows = []
    for prioritized in modes:
        buf = (PrioritizedVectorReplayBuffer(capacity, NUM_ENVS, alpha=0.5, beta=0.4, **atari) if prioritized
               else VectorReplayBuffer(capacity, NUM_ENVS, **atari))

        def sample(batch: int, buf=buf, prioritized=prioritized) -> None:
            _, idx = buf.sample(batch)
            if prioritized:
                buf.update_weight(idx, np.random.random(batch))

        measured = _fill_and_measure(lambda k, buf=buf: buf.add(steps[k]), sample, lambda buf=buf: len(buf),
                                     capacity, prioritized, seconds)
        nbytes = capacity * (FRAME + 8 + 4 + 3) + (capacity * 8 * 2 if prioritized else 0)
        rows += [_row("tianshou", op, b, r, capacity, nbytes, prioritized) for op, b, r in measured]
        del buf, sample
        gc.collect()  # free this buffer before the next one fills
    return rows


def _fill_and_measure(add_step, sample, size, capacity: int, prioritized: bool,
                      seconds: float) -> list[tuple[str, int | None, float]]:
    """Fill a peer's buffer to capacity with the 8 cached vector steps, then time add (uniform
    buffers only: adds do not depend on the sampler) and sample(+update) at batch 32 and 256."""
    i = [0]

    def add() -> int:
        add_step(i[0] % 8)
        i[0] += 1
        return NUM_ENVS

    while size() < capacity:
        add()
    measured: list[tuple[str, int | None, float]] = [] if prioritized else [("add", None, _rate(add, seconds))]
    for batch in (32, 256):
        def step(batch: int = batch) -> int:
            sample(batch)
            return batch

        measured.append(("sample+update" if prioritized else "sample", batch, _rate(step, seconds)))
    return measured


def _row(impl: str, op: str, batch, rate: float, capacity: int, nbytes: int, prioritized: bool) -> dict:
    return {"bench": "replay", "impl": impl, "op": op, "prioritized": prioritized, "batch_size": batch,
            "capacity": capacity, "num_envs": NUM_ENVS, "frame_stack": STACK, "n_step": 1, "rate": round(rate, 1),
            "unit": "transitions/s" if op == "add" else "samples/s", "bytes_per_transition": round(nbytes / capacity, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _unavailable(peer: str, capacity: int, why: str) -> dict:
    return {"bench": "replay", "impl": peer, "capacity": capacity, "unavailable": why}


def run_peer(peer: str, capacity: int, seconds: float, modes: tuple[bool, ...] = (False, True)) -> list[dict]:
    """Measure one peer in this process (called in a subprocess by bench_peers); `modes` lists
    which buffers to run (False: uniform, True: prioritized)."""
    need, have = capacity * PEER_BYTES[peer], _mem_available()
    if need > 0.85 * have:
        return [_unavailable(peer, capacity, f"its storage needs {need / 1e9:.1f} GB of frames "
                                             f"({PEER_BYTES[peer] // FRAME} frames per transition) "
                                             f"> 85% of the {have / 1e9:.1f} GB available")]
    runner = {"sb3": _sb3, "cpprb": _cpprb, "torchrl": _torchrl, "tianshou": _tianshou}[peer]
    try:
        return runner(capacity, seconds, modes)
    except ImportError as exc:
        return [_unavailable(peer, capacity, f"import failed: {exc}")]


def bench_peers(capacity: int = 200_000, seconds: float = 3.0, peers: tuple[str, ...] = PEERS,
                threads: int = 1) -> list[dict]:
    """Each peer and sampler (uniform, prioritized) in its own subprocess, so each row's peak RSS
    is that buffer's alone, with `threads` intra-op threads (as the rlsuite rows)."""
    rows = []
    for peer in peers:
        for mode in ("uniform", "prioritized"):
            if peer == "sb3" and mode == "prioritized":
                continue
            cmd = [sys.executable, "-m", "rlsuite.bench.replay_peers", peer, str(capacity), str(seconds), mode]
            env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
            rows += lines or [_unavailable(peer, capacity, f"{mode}: crashed: {out.stderr.strip()[-300:]}")]
    return rows


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    if len(sys.argv) >= 4:
        which = sys.argv[4] if len(sys.argv) > 4 else "both"
        modes = {"uniform": (False,), "prioritized": (True,), "both": (False, True)}[which]
        for row in run_peer(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), modes):
            print(json.dumps(row), flush=True)
    else:
        for row in bench_peers(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000):
            print(json.dumps(row), flush=True)
