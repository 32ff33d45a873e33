"""Time-major ring storage: one stream of slots per environment.

Every slot holds one observation *frame* (the newest frame of a stack, or the whole
observation when there is no frame stacking), the action taken in it, the reward received, and
flags. The next observation of slot ``t`` is slot ``t + 1``; when an episode ends at ``t`` the
true final observation goes into one extra slot ``t + 1`` flagged ``final`` (never the start of
a transition) and the next episode starts at ``t + 2``. So every frame is stored exactly once.

Slots are addressed two ways: the *absolute* time ``T`` of a stream (monotone, never wraps)
and the *physical* slot ``T % L``. The storage keeps ``valid``, a per-slot flag saying whether a
transition may start there (the sampleability rule is in :meth:`StreamStorage._sampleable`),
and maintains it incrementally: each write can only change the flag of the few slots next to the
write cursor and at the ring's oldest edge.

The numpy code here is the reference of the native ``torch.ops.rlsuite.stream_add`` kernel,
which does a whole :meth:`StreamStorage.write` (and the priority follow-up) in one call when
``rlsuite._C`` is loaded.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from rlsuite import native
class Priorities(Protocol):
    """What a write needs of a prioritized sampler (see rlsuite.replay.sumtree)."""

    sum_tree: Tensor
    min_tree: Tensor
    max_priority: float

    def set_sampleable(self, idx: Tensor, sampleable: Tensor) -> None: ...


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype

FLAG_FIELDS = ("first", "terminated", "truncated", "final", "valid")


class StreamStorage:
    """Preallocated (num_envs, slots) ring of frames, actions, rewards and flags.

    Arrays are numpy (the per-step bookkeeping is dozens of tiny operations, several times
    cheaper in numpy than as torch ops); the torch attributes (``frames``, ``action``, ...) are
    zero-copy views of the same memory, used by the sampling operators.
    """

    def __init__(
        self,
        frame_specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
        num_envs: int,
        slots: int,
        frame_stack: int,
        n_step: int,
    ) -> None:
        self.num_envs, self.slots = num_envs, slots
        self.frame_stack, self.n_step = frame_stack, n_step
        shape = (num_envs, slots)
        # np.zeros maps fresh zero pages lazily: memory is only touched as the ring fills.
        self.np = {f"frames.{k}": np.zeros(shape + s, dtype=_numpy_dtype(d)) for k, (s, d) in frame_specs.items()}
        self.np.update(action=np.zeros(shape, np.int64), reward=np.zeros(shape, np.float32))
        self.np.update({name: np.zeros(shape, np.bool_) for name in FLAG_FIELDS})
        views = {name: torch.from_numpy(a) for name, a in self.np.items()}
        self.frames = {k: views[f"frames.{k}"] for k in frame_specs}
        self.action, self.reward = views["action"], views["reward"]
        self.first, self.terminated, self.truncated = views["first"], views["terminated"], views["truncated"]
        self.final, self.valid = views["final"], views["valid"]
        self.cursor = np.zeros(num_envs, np.int64)  # absolute time of the next write per stream
        self.new_episode = np.ones(num_envs, np.bool_)
        self._num_valid = np.zeros(1, np.int64)  # an array so the native kernel can update it
        self.num_added = 0
        # Torch views of the state the native kernel mutates (state is only ever set in place).
        self._t_state = [torch.from_numpy(a) for a in (self.cursor, self.new_episode, self._num_valid)]
        self._frame_list = list(self.frames.values())
        self._env = np.arange(num_envs)
        self._row = self._env[:, None] * slots
        # Slots whose flag a write can change: the newest n+2 (an episode end or the n-th next
        # observation completes their window) and the oldest stack+1 (their stack frames are
        # being overwritten). The buffer checks slots > frame_stack + n_step + 2 so the two
        # sets never alias the same physical slot.
        self._recent = np.arange(n_step + 2)
        self._edge = np.arange(frame_stack + 1)
        self._window = np.arange(n_step)

    @property
    def num_valid(self) -> int:
        """Slots where a transition may start now."""
        return int(self._num_valid[0])

    @num_valid.setter
    def num_valid(self, value: int) -> None:
        self._num_valid[0] = value

    # ------------------------------------------------------------------ writing

    def write(
        self,
        frames: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_frames: dict[str, np.ndarray] | None,
        priorities: Priorities | None = None,
    ) -> None:
        """Append one vector step; a prioritized sampler follows the slots whose
        sampleability changed (new ones get its max priority)."""
        if native.enabled():
            self._write_native(frames, action, reward, terminated, truncated, final_frames, priorities)
            return
        changed, sampleable = self._write_reference(frames, action, reward, terminated, truncated, final_frames)
        if priorities is not None:
            priorities.set_sampleable(changed, sampleable)

    def _write_native(self, frames, action, reward, terminated, truncated, final_frames, priorities) -> None:
        if final_frames is None and (terminated | truncated).any():
            raise ValueError("an episode ended on this step but final_obs is None")
        obs = [torch.from_numpy(f) for f in frames.values()]
        final = [] if final_frames is None else [torch.from_numpy(final_frames[k]) for k in frames]
        trees = (None, None, 0.0) if priorities is None else (
            priorities.sum_tree, priorities.min_tree, priorities.max_priority)
        torch.ops.rlsuite.stream_add(
            self._frame_list, obs, final, self.action, self.reward, self.first, self.terminated, self.truncated,
            self.final, self.valid, *self._t_state, torch.from_numpy(action), torch.from_numpy(reward),
            torch.from_numpy(terminated), torch.from_numpy(truncated), self.frame_stack, self.n_step, *trees)
        self.num_added += self.num_envs

    def _write_reference(
        self,
        frames: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_frames: dict[str, np.ndarray] | None,
    ) -> tuple[Tensor, Tensor]:
        """Reference write; returns (global slot ids, new flag) of slots whose
        sampleability changed."""
        a, env, slot = self.np, self._env, self.cursor % self.slots
        ended = terminated | truncated
        for key, frame in frames.items():
            a[f"frames.{key}"][env, slot] = frame
        a["action"][env, slot] = action
        a["reward"][env, slot] = reward
        a["first"][env, slot] = self.new_episode
        a["terminated"][env, slot] = terminated
        a["truncated"][env, slot] = truncated
        a["final"][env, slot] = False
        if ended.any():
            assert final_frames is not None
            self._write_final(ended, final_frames)
        self.cursor += 1 + ended
        self.new_episode[:] = ended
        self.num_added += self.num_envs
        return self._refresh_validity()

    def _write_final(self, ended: np.ndarray, final_frames: dict[str, np.ndarray]) -> None:
        """Write the true last observation of ended episodes into the slot after their step."""
        a, env = self.np, self._env[ended]
        slot = (self.cursor[ended] + 1) % self.slots
        for key, frame in final_frames.items():
            a[f"frames.{key}"][env, slot] = frame[ended]
        for name in ("action", "reward", "first", "terminated", "truncated"):
            a[name][env, slot] = 0
        a["final"][env, slot] = True

    # ------------------------------------------------------------------ validity

    def _refresh_validity(self) -> tuple[Tensor, Tensor]:
        cursor = self.cursor[:, None]
        t_abs = np.concatenate([cursor - 1 - self._recent, cursor - self.slots + self._edge], axis=1)
        live = (t_abs >= 0) & (t_abs >= cursor - self.slots)
        gidx = self._row + t_abs % self.slots
        flat = self.np["valid"].reshape(-1)
        old = flat[gidx]
        new = np.where(live, self._sampleable(t_abs, gidx, cursor), old)
        flat[gidx] = new
        changed = new != old
        self.num_valid += int(new.sum()) - int(old.sum())
        return torch.from_numpy(gidx[changed]), torch.from_numpy(new[changed])

    def _sampleable(self, t_abs: np.ndarray, gidx: np.ndarray, cursor: np.ndarray) -> np.ndarray:
        """The sampleability rule, for live absolute times ``t_abs`` (E, K).

        A transition may start at T iff
        1. T is not a "final" slot;
        2. its window is written: the observation n steps later exists (T + n < cursor), or
           the episode ends within the n steps (its final slot is written with the end);
        3. the stack frames T-stack+1 .. T are still in the ring (conservative: frames from a
           previous episode would be zeroed anyway, so up to stack-1 transitions per stream are
           dropped early at the oldest edge; the bootstrap slot's stack lies inside
           [T-stack+1, bootstrap], so it is covered too).
        """
        a = self.np
        not_final = ~a["final"].reshape(-1)[gidx]
        window = t_abs[..., None] + self._window
        rows = self._row[..., None] + window % self.slots
        ended = (a["terminated"].reshape(-1)[rows] | a["truncated"].reshape(-1)[rows]) & (window < cursor[..., None])
        complete = (t_abs + self.n_step < cursor) | ended.any(-1)
        stack_live = np.maximum(t_abs - (self.frame_stack - 1), 0) >= cursor - self.slots
        return not_final & complete & stack_live

    # ------------------------------------------------------------------ persistence views

    def fields(self) -> dict[str, Tensor]:
        """Every stored array by name, as torch views (for chunked save/load and sizes)."""
        out = {f"frames.{k}": v for k, v in self.frames.items()}
        out.update(action=self.action, reward=self.reward)
        out.update({name: getattr(self, name) for name in FLAG_FIELDS})
        return out

    def state_dict(self) -> dict:
        return {
            "cursor": self.cursor.tolist(),
            "new_episode": self.new_episode.tolist(),
            "num_valid": self.num_valid,
            "num_added": self.num_added,
        }

    def load_state_dict(self, state: dict) -> None:
        self.cursor[:] = np.array(state["cursor"], np.int64)  # in place: the kernel holds views
        self.new_episode[:] = np.array(state["new_episode"], np.bool_)
        self.num_valid = int(state["num_valid"])
        self.num_added = int(state["num_added"])

    def bytes_per_slot(self) -> int:
        return sum(t[0, 0].numel() * t.element_size() for t in self.fields().values())
