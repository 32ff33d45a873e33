"""Transformer training windows from datasets: `SequenceSampler.sample_sequences(batch, K)`.

Each dataset (rlsuite.data.format) becomes one time-major stream in memory, (1, N, *obs), with per
step: action, return-to-go (the undiscounted sum of the episode's stored rewards from this step on,
computed once here), timestep (the step's index in its episode) and an episode-end flag. Windows
come from the native `sequence_gather` kernel (rlsuite.replay.kernels; its pure-torch reference is
rlsuite.replay.ops.sequence_gather, and tests compare the two): K steps from a start step, cut at
the end of the start's episode (mask False and zeros from the step after its last), so a window
never crosses an episode boundary.

A start is uniform over every stored step of a dataset, and a window that reaches its episode's
end is padded after it, as the gym Decision Transformer pads short windows (it pads on the left;
here padding is on the right, which a causal model never reads). The DT Atari loader instead shifts
such a window back to end at the episode's end and never pads. With several datasets each window
first picks its dataset with the configured proportions (`weights`; default equal: one game as
likely as another, whatever its size).

Burn-in (DT-Mem, `burn_in` > 0): each window also gets a stretch of the steps just before it in
its own episode (`SequenceBatch.burn_in`), of a length drawn uniformly from 0 to min(burn_in, the
steps its episode has before the start), with the same generator, after the starts. A model with
a working memory writes it before the window (rlsuite.agents.dt.burn_in). Without a burn-in
nothing extra is drawn, so a plain DT's stream of batches is unchanged.

Data-parallel training draws the same global batch on every rank from the one `generator` and
each rank keeps its slice (`rank`, `world_size`): ranks see disjoint windows, and the run's
sequence of global batches does not depend on the number of ranks (so a run resumes under another
world size, and a 2-process run equals a 1-process run with the same global batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rlsuite.data.dataset import Dataset
from rlsuite.errors import UserError
from rlsuite.replay import kernels


@dataclass
class SequenceBatch:
    """K-step windows; B rows. Steps past the end of the start's episode are zeros with mask False."""

    obs: torch.Tensor
    """(B, K, *obs_shape) in the datasets' observation dtype."""
    actions: torch.Tensor
    """(B, K) int64."""
    returns_to_go: torch.Tensor
    """(B, K) float32: undiscounted sum of the stored rewards from this step to the episode's end."""
    rewards: torch.Tensor
    """(B, K) float32: the stored reward of each step."""
    timesteps: torch.Tensor
    """(B, K) int64: index of the step within its episode (0 at the episode's first stored step)."""
    mask: torch.Tensor
    """(B, K) bool: True for real steps of the window."""
    game: torch.Tensor
    """(B,) int64: index of the dataset each window came from."""
    valid_steps: int
    """Real steps in the whole global batch (all ranks): the normaliser of a per-step mean loss
    that must not depend on how the batch is split over ranks."""
    burn_in: "SequenceBatch | None" = None
    """The steps before each window in its episode (B, W: the longest stretch of the batch), real
    steps first (mask True), then zeros; None without a burn-in or when every stretch is empty."""

    def to(self, device: torch.device | str) -> "SequenceBatch":
        move = (lambda t: t.to(device, non_blocking=True))
        return SequenceBatch(move(self.obs), move(self.actions), move(self.returns_to_go), move(self.rewards),
                             move(self.timesteps), move(self.mask), move(self.game), self.valid_steps,
                             None if self.burn_in is None else self.burn_in.to(device))


class _Stream:
    """One dataset as one in-memory stream (the kernel's (E=1, L=N) storage)."""

    def __init__(self, ds: Dataset) -> None:
        n = len(ds)
        if n == 0:
            raise UserError(f"dataset {ds.path} holds no steps")
        if ds.keys is not None:
            raise UserError(f"dataset {ds.path} has dict observations ({', '.join(ds.keys)}); sequence models "
                            "take array observations")
        table = ds.episode_table
        starts, lengths = np.asarray(table["start"], np.int64), np.asarray(table["length"], np.int64)
        rewards = np.asarray(ds.rewards, np.float32)
        episode = np.asarray(ds.episode_index, np.int64)
        first = starts[episode]
        last = first + lengths[episode] - 1
        # Returns-to-go: suffix sums within each episode, in float64 then stored float32.
        csum = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
        rtg = csum[last + 1] - csum[np.arange(n)]
        self.length = n
        self.last = torch.from_numpy(last)
        self.frames = torch.from_numpy(np.ascontiguousarray(ds.observations(np.arange(n)))).unsqueeze(0)
        self.action = torch.from_numpy(np.asarray(ds.actions, np.int64).copy()).unsqueeze(0)
        self.rtg = torch.from_numpy(rtg.astype(np.float32)).unsqueeze(0)
        self.reward = torch.from_numpy(rewards.copy()).unsqueeze(0)
        self.timestep = torch.from_numpy(np.arange(n, dtype=np.int64) - first).unsqueeze(0)
        self.ended = torch.from_numpy(np.arange(n) == last).unsqueeze(0)
        self.final = torch.zeros_like(self.ended)  # every slot is a step (replay streams also hold final frames)


class SequenceSampler:
    """Windows of K steps from one or more datasets (module docstring). The datasets must share an
    observation shape and dtype and an action space (multi-game data is made so: MinAtar padded to
    one channel count and the full action set; Atari mapped to the full 18 actions)."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float] | None = None) -> None:
        if not datasets:
            raise UserError("no datasets given")
        shapes = {(d.observation_space.shape, np.dtype(d.observation_space.dtype).name, str(d.action_space))
                  for d in datasets}
        if len(shapes) > 1:
            listing = "; ".join(f"{d.path}: obs {d.observation_space.shape} {d.observation_space.dtype}, "
                                f"actions {d.action_space}" for d in datasets)
            raise UserError(f"the datasets differ in observation or action space ({listing}); multi-game data must "
                            "share them (MinAtar: --set env.pad_channels=N --set env.full_action_space=true when "
                            "collecting)")
        if weights is None or len(weights) == 0:
            weights = [1.0] * len(datasets)
        if len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0:
            raise UserError(f"dataset weights {list(weights)} must be one non-negative number per dataset "
                            f"({len(datasets)}), not all zero")
        self.datasets = list(datasets)
        self.weights = np.asarray(weights, np.float64) / float(sum(weights))
        self.streams = [_Stream(d) for d in datasets]
        self.observation_space, self.action_space = datasets[0].observation_space, datasets[0].action_space

    def __len__(self) -> int:
        return sum(s.length for s in self.streams)

    def draw(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(game, start) of `batch` windows: the dataset by `weights`, the start uniform over its steps."""
        game = rng.choice(len(self.streams), size=batch, p=self.weights)
        lengths = np.array([s.length for s in self.streams], np.int64)
        start = (rng.random(batch) * lengths[game]).astype(np.int64)
        return game, np.minimum(start, lengths[game] - 1)

    def sample_sequences(self, batch: int, k: int, rng: np.random.Generator, rank: int = 0,
                         world_size: int = 1, burn_in: int = 0) -> SequenceBatch:
        """`batch` windows of `k` steps (the global batch; this rank gets rows
        [rank * batch / world_size, (rank + 1) * batch / world_size)). `batch` must be a multiple of
        `world_size`. Every rank must call it with the same `rng` state. `burn_in` > 0: each window
        also gets up to that many steps before it (module docstring)."""
        if k < 1 or batch < 1 or batch % world_size or burn_in < 0:
            raise ValueError(f"need k >= 1, burn_in >= 0 and a batch ({batch}) that is a multiple of "
                             f"world_size ({world_size})")
        game, start = self.draw(batch, rng)
        lengths = None
        if burn_in > 0:  # drawn for the global batch, so every rank draws alike
            available = self.steps_before(game, start, burn_in)
            lengths = (rng.random(batch) * (available + 1)).astype(np.int64)
        valid = 0
        for g, s in enumerate(self.streams):
            sel = game == g
            valid += int(np.minimum(s.last[start[sel]].numpy() - start[sel] + 1, k).sum())
        lo, hi = rank * batch // world_size, (rank + 1) * batch // world_size
        out = self.gather(game[lo:hi], start[lo:hi], k, valid)
        if lengths is not None:
            out.burn_in = self.gather_preceding(game[lo:hi], start[lo:hi], lengths[lo:hi])
        return out

    def steps_before(self, game: np.ndarray, start: np.ndarray, cap: int) -> np.ndarray:
        """How many steps of its own episode precede step `start[i]` of dataset `game[i]` (its
        timestep: steps since the episode's first stored step), at most `cap`."""
        before = np.empty(len(game), np.int64)
        for g in np.unique(game):
            rows = np.flatnonzero(game == g)
            before[rows] = self.streams[int(g)].timestep[0, torch.from_numpy(start[rows])].numpy()
        return np.minimum(before, cap)

    def gather_preceding(self, game: np.ndarray, start: np.ndarray, lengths: np.ndarray) -> SequenceBatch | None:
        """The `lengths[i]` steps just before step `start[i]` of dataset `game[i]` (steps
        start - lengths .. start - 1, in order), as a batch of width max(lengths) with the real
        steps first and zeros after; None when every length is 0. ValueError when a stretch would
        reach before its episode's first step."""
        if (lengths > self.steps_before(game, start, int(lengths.max(initial=0)))).any():
            raise ValueError("a burn-in stretch would cross into an earlier episode")
        width = int(lengths.max(initial=0))
        if width == 0:
            return None
        out = self.gather(game, start - lengths, width)
        keep = torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]  # not the window itself
        for name in ("obs", "actions", "returns_to_go", "rewards", "timesteps"):
            value = getattr(out, name)
            shape = keep.shape + (1,) * (value.dim() - 2)
            setattr(out, name, torch.where(keep.view(shape), value, torch.zeros((), dtype=value.dtype)))
        out.mask &= keep
        out.valid_steps = int(out.mask.sum())
        return out

    def gather(self, game: np.ndarray, start: np.ndarray, k: int, valid_steps: int | None = None) -> SequenceBatch:
        """The windows starting at step `start[i]` of dataset `game[i]`."""
        b = len(game)
        first = self.streams[0]
        obs = first.frames.new_zeros((b, k, *first.frames.shape[2:]))
        actions = torch.zeros((b, k), dtype=torch.int64)
        rtg, rewards = torch.zeros((b, k)), torch.zeros((b, k))
        steps, mask = torch.zeros((b, k), dtype=torch.int64), torch.zeros((b, k), dtype=torch.bool)
        for g in np.unique(game):
            s, rows = self.streams[int(g)], torch.from_numpy(np.flatnonzero(game == g))
            t = torch.from_numpy(start[rows.numpy()])
            env = torch.zeros_like(t)
            o, a, r, ts, m = kernels.sequence_gather(s.frames, s.action, s.rtg, s.timestep, s.ended, s.final, t, env, k)
            obs[rows], actions[rows], rtg[rows], steps[rows], mask[rows] = o, a, r, ts, m
            idx = (t[:, None] + torch.arange(k)).clamp(max=s.length - 1)
            rewards[rows] = torch.where(m, s.reward[0, idx], torch.zeros(()))
        valid = int(mask.sum()) if valid_steps is None else valid_steps
        return SequenceBatch(obs, actions, rtg, rewards, steps, mask, torch.from_numpy(game.astype(np.int64)), valid)

    def best_return(self, game: int) -> float:
        """The highest return of a complete episode of dataset `game` (nan when it has none)."""
        stats = self.datasets[game].stats()
        value = stats.get("return_max")
        return float(value) if value is not None else float("nan")
