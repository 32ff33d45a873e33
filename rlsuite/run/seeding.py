"""Every random stream of a run, derived from one `np.random.SeedSequence(seed)`.

A run's seed names a root `SeedSequence`; each stream is a child with its own spawn key
``(stream id, *index)``: the training envs of phase k, the eval envs of evaluation j, the agent's
exploration, replay sampling, network initialisation. Children of a SeedSequence are
statistically independent of each other and of every other root's children, so

- runs with seeds 1, 2, 3 share no env seed, no eval seed and no sampler stream (rliable's
  bootstrap assumes independent runs; `seed + i` schemes made runs 1 and 2 share N-1 env seeds);
- evaluation draws from its own streams, so changing evaluation settings never changes a
  training trajectory.

Integer seeds handed to envs (ALE, envpool, NLE, MinAtar take ints) are 31-bit, drawn from the
child sequence with `generate_state`, so they fit every library's seed type.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch

STREAMS = ("train_env", "eval_env", "exploration", "eval_exploration", "replay", "network", "diagnostics", "global",
           "retention", "far_eval_env", "far_eval_exploration", "optimizer")
"""The named streams of a run; a name's spawn-key id is its crc32, so adding a stream moves no other."""

_MASK31 = 0x7FFF_FFFF


def _key(name: str) -> int:
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; known: {', '.join(STREAMS)}")
    return zlib.crc32(name.encode())


def stream(seed: int, name: str, *index: int) -> np.random.SeedSequence:
    """The SeedSequence of stream `name` (one of STREAMS) at `index` (e.g. phase, env) of run `seed`."""
    return np.random.SeedSequence(int(seed), spawn_key=(_key(name), *map(int, index)))


def int_seed(seed: int, name: str, *index: int) -> int:
    """A 31-bit integer seed for one stream (for torch generators and libraries that take ints)."""
    return int(stream(seed, name, *index).generate_state(1, np.uint32)[0]) & _MASK31


def generator(seed: int, name: str, *index: int) -> np.random.Generator:
    """A numpy Generator on one stream."""
    return np.random.default_rng(stream(seed, name, *index))


def torch_generator(seed: int, name: str, *index: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch Generator on one stream."""
    return torch.Generator(device=device).manual_seed(int_seed(seed, name, *index))


def env_seeds(seed: int, name: str, *index: int, n: int) -> list[int]:
    """One 31-bit seed per env of a vector: env i of stream `name` at `index` gets child i."""
    return [int_seed(seed, name, *index, i) for i in range(n)]


def vector_seeds(seed: int | Sequence[int], n: int) -> list[int]:
    """Per-env seeds for `VecEnv.reset(seed=...)` / `envs.make(..., seed)`: a sequence is taken
    as given (one per env); an int is the root of a SeedSequence whose first n children seed the
    envs (never `seed + i`, which would make neighbouring seeds share envs)."""
    if isinstance(seed, (int, np.integer)):
        return [int(s) & _MASK31 for s in
                (np.random.SeedSequence(int(seed), spawn_key=(i,)).generate_state(1, np.uint32)[0] for i in range(n))]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"expected {n} env seeds, got {len(seeds)}")
    return seeds
