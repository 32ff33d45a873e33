"""Transformer windows from a replay buffer: `ReplayBuffer.sample_sequences(batch, K, rng)`.

The same windows as rlsuite.data.sequences draws from datasets (a rlsuite.data.sequences.SequenceBatch:
K steps from a start, cut at the end of its episode, returns-to-go, timesteps, rewards, padding
mask), gathered by the same native `sequence_gather` kernel straight from the buffer's time-major
stream storage, so an online agent's own replay can train a sequence model without exporting it.

Per call, each stream's retained slots are put in time order to compute, for every step, its
return-to-go (the undiscounted sum of the stored rewards to its episode's end) and its timestep.
Two things follow from what a ring keeps: the episode still being played ends, for a window, at its
newest stored step (its return-to-go counts the rewards so far), and an episode whose beginning was
overwritten counts timesteps from its oldest retained step. That is O(capacity) work per call: a
tool for analysis and offline training on a replay, not for a per-update hot loop.

Starts are uniform over every stored step (never a final-observation slot). Frame-stacked storage
(Atari) keeps one frame per slot, so its windows hold single frames; that is refused here until a
sequence model wants stacks (export the replay with `rlsuite dataset export` instead).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlsuite.data.sequences import SequenceBatch
from rlsuite.errors import UserError
from rlsuite.replay import kernels


def _stream_tables(st: Any, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(slots, is_step, return-to-go, timestep, episode-end) of stream `e`'s retained slots in time order."""
    a, slots_n = st.np, st.slots
    cursor = int(st.cursor[e])
    slots = np.arange(max(0, cursor - slots_n), cursor) % slots_n
    is_step = ~a["final"][e, slots]
    reward = np.where(is_step, a["reward"][e, slots], 0.0).astype(np.float64)
    end = (a["terminated"][e, slots] | a["truncated"][e, slots]) & is_step
    steps = np.flatnonzero(is_step)
    if len(steps):
        end[steps[-1]] = True  # the episode being played ends, for a window, at its newest step
    seg = np.cumsum(end) - end  # episode number of every slot (ends before it)
    last = np.flatnonzero(end)
    prefix = np.cumsum(reward)
    rtg = np.where(is_step, prefix[last[np.minimum(seg, len(last) - 1)]] - prefix + reward, 0.0) if len(last) else reward
    pos = np.arange(len(slots))
    first = a["first"][e, slots] & is_step
    base = np.maximum.accumulate(np.where(first, pos, -1))
    timestep = pos - np.where(base >= 0, base, 0)
    return slots, is_step, rtg, timestep, end


def replay_sequences(buffer: Any, batch: int, k: int, rng: np.random.Generator) -> SequenceBatch:
    """`batch` windows of `k` steps from `buffer` (a rlsuite.replay.ReplayBuffer); module docstring."""
    if buffer._resident is not None or buffer._is_dict or buffer.frame_stack > 1:
        raise UserError("sample_sequences needs a host-resident replay of array observations without frame "
                        "stacking (export a stacked replay with `rlsuite dataset export` and sample the dataset)")
    st = buffer._storage
    shape = (st.num_envs, st.slots)
    rtg, timestep = np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    ended = np.zeros(shape, np.bool_)
    starts_env, starts_slot = [], []
    for e in range(st.num_envs):
        slots, is_step, r, t, end = _stream_tables(st, e)
        rtg[e, slots], timestep[e, slots], ended[e, slots] = r, t, end
        starts_env.append(np.full(int(is_step.sum()), e))
        starts_slot.append(slots[is_step])
    env_all, slot_all = np.concatenate(starts_env), np.concatenate(starts_slot)
    if len(slot_all) == 0:
        raise RuntimeError("cannot sample sequences from an empty replay buffer")
    pick = rng.integers(0, len(slot_all), size=batch)
    t_idx, env_idx = torch.from_numpy(slot_all[pick]), torch.from_numpy(env_all[pick])
    frames = next(iter(st.frames.values()))
    obs, actions, returns, steps, mask = kernels.sequence_gather(
        frames, st.action, torch.from_numpy(rtg), torch.from_numpy(timestep), torch.from_numpy(ended), st.final,
        t_idx, env_idx, k)
    rows = env_idx[:, None] * st.slots + (t_idx[:, None] + torch.arange(k)) % st.slots
    rewards = torch.where(mask, st.reward.reshape(-1)[rows], torch.zeros(()))
    return SequenceBatch(obs, actions, returns, rewards, steps, mask, torch.zeros(batch, dtype=torch.int64),
                         int(mask.sum()))
