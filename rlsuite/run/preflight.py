"""Checks that a run can fit on this machine, made before any env or buffer is built.

`--num-envs 100000` on Pong used to print nothing for minutes and then run out of memory; on
CartPole it failed after 40 s of building envs, on a replay capacity it could have checked first.
`check(cfg)` refuses such runs in one line (UserError) from the config alone, plus one probe env
for the observation space:

- the replay buffer gives every env at least the slots a transition needs;
- host memory: the replay buffer (ReplayBuffer.projected_bytes of the transitions the run will
  store: capacity, or fewer for a shorter run) plus the envs (per-env
  figures below, measured) against MemAvailable; GPU memory for a device-resident replay;
- process limits: the gymnasium-async backend runs one process per env (RLIMIT_NPROC,
  RLIMIT_NOFILE).

Per-env memory (resident bytes added in the training process by one more env, measured with the
sync gymnasium backend, rlsuite 0.1, Linux x86-64; rounded up): CartPole and MinAtar about
10 kB, Atari (ale-py or envpool, frame stack included) 1.2 MB, NetHack (NLE) 3.3 MB. An async
worker process adds a Python interpreter with the game's modules, budgeted at 60 MB.
"""
from __future__ import annotations

import resource
from typing import Any

from rlsuite.envs.config import ATARI, CLASSIC, CLOSEFAR, MINATAR, NETHACK, resolve_env_id
from rlsuite.errors import UserError

PER_ENV_BYTES = {CLASSIC: 50_000, MINATAR: 50_000, ATARI: 1_500_000, NETHACK: 4_000_000, CLOSEFAR: 200_000}
ASYNC_WORKER_BYTES = 60_000_000
FDS_PER_WORKER = 4  # two pipe ends each way, kept open by the parent


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (/proc/meminfo MemAvailable);
    None where that is not known (not Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def env_bytes(family: str, num_envs: int, use_async: bool) -> int:
    """Memory `num_envs` envs of a family will take (a budget from the measured figures above)."""
    return num_envs * (PER_ENV_BYTES[family] + (ASYNC_WORKER_BYTES if use_async else 0))


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_replay_slots(capacity: int, num_envs: int, frame_stack: int, n_step: int) -> None:
    """The replay buffer splits its capacity per env; each needs frame_stack + n_step + 3 slots."""
    need = frame_stack + n_step + 3
    if capacity // num_envs < need:
        raise UserError(f"replay capacity {capacity:,} is too small for {num_envs:,} envs; give each env "
                        f"at least frame_stack + n_step + 3 = {need} slots (replay.capacity >= {need * num_envs:,})")


def check_memory(cfg: Any, replay_bytes: int, family: str) -> None:
    """Refuse a run whose agent storage (`replay_bytes`) and envs need more memory than the machine
    has available."""
    t, use_async = cfg.train, cfg.env.backend == "gymnasium-async"
    envs = env_bytes(family, t.num_envs + t.eval_num_envs, use_async)
    host_replay = 0 if cfg.replay.on_device else replay_bytes
    free = available_memory()
    if free is not None and host_replay + envs > free:
        raise UserError(f"this run needs about {_gb(host_replay + envs)} of memory (replay {_gb(host_replay)}, "
                        f"{t.num_envs + t.eval_num_envs:,} envs {_gb(envs)}) but {_gb(free)} is available; "
                        "lower replay.capacity or --num-envs")
    if cfg.replay.on_device:
        import torch

        if torch.cuda.is_available():
            free_gpu, _ = torch.cuda.mem_get_info()
            if replay_bytes > free_gpu:
                raise UserError(f"replay.on_device needs about {_gb(replay_bytes)} of GPU memory but "
                                f"{_gb(free_gpu)} is free; lower replay.capacity")


def check_processes(cfg: Any) -> None:
    """The async backend starts one worker process per env: stay inside the process and open-file limits."""
    if cfg.env.backend != "gymnasium-async":
        return
    workers = cfg.train.num_envs + cfg.train.eval_num_envs
    nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if nproc != resource.RLIM_INFINITY and workers >= nproc:
        raise UserError(f"{workers:,} env worker processes (gymnasium-async) exceed this user's process limit "
                        f"({nproc:,}, ulimit -u); lower --num-envs or use env.backend=gymnasium")
    nofile, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile != resource.RLIM_INFINITY and workers * FDS_PER_WORKER + 64 > nofile:
        raise UserError(f"{workers:,} env worker processes need about {workers * FDS_PER_WORKER + 64:,} open files, "
                        f"more than the limit ({nofile:,}, ulimit -n); lower --num-envs or raise the limit")


def check(cfg: Any) -> None:
    """Every check above for a training run (UserError on the first that fails). Builds one env of
    the run's (first) task to learn its observation space, and closes it."""
    from rlsuite.loops import tasks
    from rlsuite.agents import agent_classes
    from rlsuite.envs import make as make_env

    t = cfg.train
    check_processes(cfg)
    env_cfg = tasks.env_config(cfg, t.tasks[0]) if t.tasks else cfg.env
    family = resolve_env_id(env_cfg.id)[0]
    probe = make_env(env_cfg, 1, 0)
    try:
        space, frame_stack = probe.single_observation_space, probe.frame_stack
    finally:
        probe.close()
    # The agent's storage (DQN: the replay buffer; none for agents without storage_bytes).
    agent_cls, _ = agent_classes(cfg.algo)
    storage = 0
    if hasattr(agent_cls, "check_storage"):
        agent_cls.check_storage(cfg, t.num_envs, frame_stack)
    if hasattr(agent_cls, "storage_bytes"):
        # The storage's pages are touched as transitions arrive: a run shorter than the capacity uses less.
        storage = agent_cls.storage_bytes(cfg, space, frame_stack, min(cfg.replay.capacity, t.total_steps + t.num_envs))
    check_memory(cfg, storage, family)


def waiting_line(cfg: Any) -> str | None:
    """A line to print before a build that takes noticeable time (NLE processes, many envs), so the
    user knows what is being waited for; None when building is quick."""
    family = resolve_env_id(cfg.train.tasks[0] if cfg.train.tasks else cfg.env.id)[0]
    n = cfg.train.num_envs + cfg.train.eval_num_envs
    if family == NETHACK or cfg.env.backend == "gymnasium-async" or n >= 64:
        how = "processes" if cfg.env.backend == "gymnasium-async" else "envs"
        return f"starting {n:,} {family} {how} ({cfg.train.num_envs:,} training, {cfg.train.eval_num_envs:,} evaluation)..."
    return None
