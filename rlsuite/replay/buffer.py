"""The replay buffer: storage (:mod:`.storage`), samplers (uniform here, prioritized in
:mod:`.sumtree`) and the tensor operators (:mod:`.ops`) behind one small class.

Frames are stored once per env stream and frame stacks, n-step returns and next observations
are rebuilt at sample time (see :mod:`rlsuite.replay.storage` for the layout). Sampling uses its
own ``torch.Generator`` so it is deterministic given ``seed`` and resumes exactly.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlsuite.config.fields import ranged
from rlsuite.errors import UserError
from rlsuite.run.preflight import check_replay_slots
from rlsuite.replay import kernels, ops, persist
from rlsuite.replay.resident import DeviceStorage
from rlsuite.replay.storage import StreamStorage
from rlsuite.replay.sumtree import PrioritySampler

Obs = Tensor | dict[str, Tensor]
_FLAG_BYTES = 5  # first, terminated, truncated, final, valid (one bool each)
_BOX_KEY = "obs"  # storage key of a non-Dict observation


@dataclass
class ReplayConfig:
    capacity: int = ranged(1_000_000, ge=1)
    """Transitions kept in total across all env streams (Dopamine: 1M); each episode's final obs takes a slot."""
    prioritized: bool = False
    """Proportional prioritized replay (Schaul et al. 2016) instead of uniform sampling."""
    alpha: float = ranged(0.5, ge=0)
    """PER priority exponent: P(i) proportional to (|TD error| + priority_eps)^alpha (Dopamine: 0.5)."""
    beta_start: float = ranged(0.4, ge=0, le=1)
    """PER importance-sampling exponent at the start of training (Schaul et al. 2016: 0.4)."""
    beta_end: float = ranged(1.0, ge=0, le=1)
    """PER importance-sampling exponent at the end; the caller anneals beta and passes it to sample()."""
    priority_eps: float = ranged(1e-6, gt=0)
    """Added to |TD error| before the exponent, so no transition gets zero probability."""
    on_device: bool = False
    """Keep frames, fields and priority trees on the learner's device (GPU), so batches never cross the bus."""


@dataclass
class Batch:
    """A sampled batch. Its tensors may live in buffers reused by the next ``sample()`` call:
    a Batch is valid until then (clone what you keep)."""

    obs: Obs
    """(B, *obs_shape) stacked observations (dict of tensors for Dict spaces)."""
    action: Tensor
    """int64 (B,)."""
    reward: Tensor
    """float32 (B,): n-step discounted return, cut at the episode end."""
    discount: Tensor
    """float32 (B,): 0 if the episode terminated within the n steps, else gamma^k (k rewards summed)."""
    next_obs: Obs
    """(B, *obs_shape) observation to bootstrap from (the true final observation at an episode end)."""
    weights: Tensor
    """float32 (B,): importance-sampling weights (ones for uniform replay)."""
    indices: Tensor
    """int64 (B,): global slot ids, for update_priorities()."""


def _frame_specs(space: spaces.Space, frame_stack: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-key (frame shape, dtype) of what one slot stores."""
    subspaces = dict(space.spaces) if isinstance(space, spaces.Dict) else {_BOX_KEY: space}
    specs = {}
    for key, sub in subspaces.items():
        if not isinstance(sub, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            raise UserError(f"replay buffer cannot store observation space {sub} (key '{key}'); "
                            "use Box, Discrete, MultiDiscrete, MultiBinary or a Dict of them")
        shape = tuple(sub.shape)
        if frame_stack > 1:
            if not shape or shape[0] != frame_stack:
                raise UserError(f"frame_stack={frame_stack} but observation '{key}' has shape {shape}; "
                                "the stack must be the leading axis")
            shape = shape[1:]
        specs[str(key)] = (shape, torch.from_numpy(np.empty(0, dtype=sub.dtype)).dtype)
    return specs


def _numpy(x) -> np.ndarray:
    """Arrays from the env layer (numpy, or torch tensors on any device) as numpy, no copy if possible."""
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _tree_bytes(num_slots: int) -> int:
    """Sum-tree plus min-tree, float64."""
    return 2 * ops.tree_size(num_slots) * 8


class ReplayBuffer:
    """Uniform or prioritized n-step replay with frame stacks rebuilt at sample time.

    ``add`` takes one vector step (leading ``num_envs`` axis); ``sample`` returns a
    :class:`Batch`. Sampleable transitions never cross an episode boundary, never use a frame
    overwritten by the ring and never need a slot not written yet (rule in
    :meth:`StreamStorage._sampleable`).
    """

    def __init__(
        self,
        cfg: ReplayConfig,
        observation_space: spaces.Space,
        num_envs: int,
        *,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        seed: int = 0,
        device: str | torch.device = "cpu",
        storage_device: str | torch.device | None = None,
    ) -> None:
        if num_envs < 1 or frame_stack < 1 or n_step < 1:
            raise UserError(f"replay needs num_envs, frame_stack and n_step >= 1 "
                            f"(got {num_envs}, {frame_stack}, {n_step})")
        if cfg.prioritized and not cfg.priority_eps > 0:
            # A zero priority would give a zero minimum and infinite importance weights.
            raise UserError(f"replay.priority_eps must be > 0 for prioritized replay (got {cfg.priority_eps})")
        check_replay_slots(cfg.capacity, num_envs, frame_stack, n_step)
        slots = cfg.capacity // num_envs
        self.cfg, self.num_envs, self.slots = cfg, num_envs, slots
        self.frame_stack, self.n_step, self.gamma = frame_stack, n_step, gamma
        self.observation_space = observation_space
        self.device = torch.device(device)
        self._is_dict = isinstance(observation_space, spaces.Dict)
        self._specs = _frame_specs(observation_space, frame_stack)
        # storage_device: keep frames, fields and trees there (e.g. the learner's GPU); the host
        # then holds only the per-slot bookkeeping (see rlsuite.replay.resident).
        self._resident: DeviceStorage | None = None
        self._storage = StreamStorage({} if storage_device is not None else self._specs, num_envs, slots,
                                      frame_stack, n_step)
        self._priority = (PrioritySampler(num_envs * slots, cfg.alpha, cfg.priority_eps)
                          if cfg.prioritized and storage_device is None else None)
        if storage_device is not None:
            self.device = torch.device(storage_device)
            self._resident = DeviceStorage(self._storage, self._specs, self.device, cfg.prioritized, cfg.alpha,
                                           cfg.priority_eps)
        self._gen = torch.Generator(device=self.device if self._resident is not None else "cpu").manual_seed(seed)
        self._out: dict[int, tuple[list[Tensor], dict[str, Obs]]] = {}  # preallocated batch tensors per batch size
        # With 1-step returns the bootstrap slot is always t + 1, so obs and next obs can be two
        # views of one (stack + 1)-frame window: 5 frames copied per Atari sample instead of 8.
        # Only for real stacks: a stack-less obs as a strided view would surprise `.view()` users.
        self._window = n_step == 1 and frame_stack > 1
        self._copy_done: torch.cuda.Event | None = None
        self._valid_flat = self._storage.valid.view(-1)
        st = self._storage  # the fused sample operators' state list (see ops.sample_uniform)
        self._state = [st.first, st.action, st.reward, st.terminated, st.truncated, st.valid, *st._t_state[::2]]
        self._frame_list = st._frame_list
        if self._priority is not None:
            self._state += [self._priority.sum_tree, self._priority.min_tree]
        if self._resident is not None:
            self._state, self._frame_list = self._resident.state, list(self._resident.frames.values())

    # ------------------------------------------------------------------ adding

    def add(self, obs, action, reward, terminated, truncated, final_obs=None) -> None:
        """Store one vector step. ``obs`` is what the action was taken in (stacked, as the
        agent saw it); ``final_obs`` rows are read only where ``terminated | truncated``: the
        true last observation of episodes that ended on this step (same-step autoreset)."""
        term = self._column(terminated, np.bool_)
        trunc = self._column(truncated, np.bool_)
        if final_obs is None and (term | trunc).any():
            raise ValueError("an episode ended on this step but final_obs is None; "
                             "pass the true final observation")
        frames = self._newest_frames(obs)
        final = None if final_obs is None else self._newest_frames(final_obs)
        if self._resident is not None:
            self._resident.write(frames, final, self._column(action, np.int64), self._column(reward, np.float32),
                                 term, trunc)
            return
        self._storage.write(frames, self._column(action, np.int64), self._column(reward, np.float32),
                            term, trunc, final, self._priority)

    def _column(self, x, dtype: type) -> np.ndarray:
        a = np.ascontiguousarray(_numpy(x), dtype=dtype).reshape(-1)  # the kernel reads it raw
        if a.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} values (one per env), got shape {np.shape(x)}")
        return a

    def _newest_frames(self, obs) -> dict[str, np.ndarray]:
        """Per storage key, the (num_envs, *frame_shape) frames a slot keeps."""
        parts = obs if self._is_dict else {_BOX_KEY: obs}
        out = {}
        for key, (shape, _) in self._specs.items():
            x = _numpy(parts[key])
            if self.frame_stack > 1:
                x = x[:, -1]  # the older frames of the stack are already stored
            if x.shape != (self.num_envs, *shape):
                raise ValueError(f"observation '{key}' has frames of shape {x.shape}, "
                                 f"expected {(self.num_envs, *shape)}")
            out[key] = x
        return out

    # ------------------------------------------------------------------ sampling

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """Sample ``batch_size`` transitions (with replacement). ``beta`` is the PER
        importance-sampling exponent (ignored by uniform replay). The returned tensors may be
        reused by the next call: a Batch is valid until the next ``sample()``."""
        if len(self) == 0:
            raise RuntimeError("cannot sample from a replay buffer with no complete transition; "
                               "add more steps first")
        if self._copy_done is not None:
            self._copy_done.synchronize()  # the previous batch's async copy still reads our buffers
        out, fields = self._out_buffers(batch_size)
        if self.cfg.prioritized:
            kernels.sample_per(self._frame_list, self._state, out, self._gen, beta, self.frame_stack, self.n_step,
                               self.gamma, self._window)
        else:
            kernels.sample_uniform(self._frame_list, self._state, out, self._gen, self.frame_stack, self.n_step,
                                   self.gamma, self._window)
        batch = Batch(**fields)
        return batch if self.device.type == "cpu" or self._resident is not None else self._to_device(batch)

    def sample_states(self, batch_size: int, seed: int) -> Obs:
        """``batch_size`` stacked observations drawn uniformly (even from a prioritized buffer)
        from a generator seeded with ``seed`` instead of the buffer's own stream, so drawing them
        (diagnostics) never moves the training batches. A copy: valid after the next ``sample()``."""
        generator = torch.Generator(device=self._gen.device).manual_seed(seed)
        if len(self) == 0:
            raise RuntimeError("cannot sample from a replay buffer with no complete transition")
        if self._copy_done is not None:
            self._copy_done.synchronize()
        out, fields = self._out_buffers(batch_size)
        uniform_state = self._state[: len(self._state) - 2] if self.cfg.prioritized else self._state  # no trees
        kernels.sample_uniform(self._frame_list, uniform_state, out, generator, self.frame_stack, self.n_step,
                               self.gamma, self._window)
        obs = fields["obs"]
        return {k: v.clone() for k, v in obs.items()} if isinstance(obs, dict) else obs.clone()

    def sample_sequences(self, batch_size: int, k: int, rng: np.random.Generator):
        """``batch_size`` windows of ``k`` steps with returns-to-go, timesteps and a padding mask, for
        sequence models (a rlsuite.data.sequences.SequenceBatch; rules in rlsuite.replay.sequences)."""
        from rlsuite.replay.sequences import replay_sequences

        return replay_sequences(self, batch_size, k, rng)

    def _out_buffers(self, batch_size: int) -> tuple[list[Tensor], dict[str, Obs]]:
        """The fused sample operators' ``out`` list for this batch size (see ops.sample_uniform)
        and the Batch fields as views of it, made once and reused: fresh multi-MB tensors per
        batch cost page faults every time. With a window, obs and next obs are views of one
        (B, stack + n) tensor per key."""
        if batch_size not in self._out:
            pin = self.device.type == "cuda" and self._resident is None
            where = self.device if self._resident is not None else "cpu"

            def empty(*shape, dtype=torch.float32):
                return torch.empty(shape, dtype=dtype, pin_memory=pin, device=where)

            width = self.frame_stack + self.n_step if self._window else self.frame_stack
            obs = [empty(batch_size, width, *shape, dtype=dtype) for shape, dtype in self._specs.values()]
            nxt = [] if self._window else [empty(batch_size, self.frame_stack, *shape, dtype=dtype)
                                           for shape, dtype in self._specs.values()]
            weights = empty(batch_size) if self.cfg.prioritized else torch.ones(batch_size, pin_memory=pin, device=where)
            out = [empty(batch_size, dtype=torch.int64), empty(batch_size), empty(batch_size),
                   empty(batch_size, dtype=torch.int64), weights, *obs, *nxt]
            fields = dict(
                obs=self._view_obs(obs, batch_size, 0),
                action=out[0], reward=out[1], discount=out[2],
                next_obs=self._view_obs(obs if self._window else nxt, batch_size, self.n_step if self._window else 0),
                weights=weights, indices=out[3],
            )
            self._out[batch_size] = (out, fields)
        return self._out[batch_size]

    def _view_obs(self, parts: list[Tensor], batch_size: int, start: int) -> Obs:
        """Per key, columns start .. start + stack of the gathered frames (the whole tensor
        unless it is a window), without the stack axis when frame_stack == 1."""
        result = {}
        for part, (key, (shape, _)) in zip(parts, self._specs.items()):
            stacked = part[:, start : start + self.frame_stack] if self._window else part
            result[key] = stacked if self.frame_stack > 1 else stacked.view(batch_size, *shape)
        return result if self._is_dict else result[_BOX_KEY]

    def _to_device(self, batch: Batch) -> Batch:
        def move(x: Obs) -> Obs:
            if isinstance(x, dict):
                return {k: v.to(self.device, non_blocking=True) for k, v in x.items()}
            return x.to(self.device, non_blocking=True)

        moved = Batch(**{name: move(value) for name, value in vars(batch).items()})
        if self.device.type == "cuda":
            self._copy_done = torch.cuda.Event()
            self._copy_done.record()
        return moved

    def update_priorities(self, indices: Tensor, priorities: Tensor) -> None:
        """Set the priorities of sampled transitions from their |TD error|: stored as
        ``(p + eps)^alpha``. Slots that stopped being sampleable since are skipped."""
        if self._resident is not None:
            if self.cfg.prioritized:
                self._resident.update_priorities(torch.as_tensor(indices).reshape(-1),
                                                 torch.as_tensor(priorities).reshape(-1))
            return
        if self._priority is None:
            return
        idx, p = indices, priorities
        if not (isinstance(idx, Tensor) and idx.device.type == "cpu" and idx.dtype == torch.int64 and idx.dim() == 1):
            idx = torch.as_tensor(idx).to("cpu", torch.int64).reshape(-1)
        if not (isinstance(p, Tensor) and p.device.type == "cpu" and p.dim() == 1 and p.is_floating_point()):
            p = torch.as_tensor(p).to("cpu", torch.float64).reshape(-1)  # the kernel takes any float dtype
        self._priority.update(idx, p, self._valid_flat)

    # ------------------------------------------------------------------ sizes

    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
        return self._storage.num_valid

    @property
    def prioritized(self) -> bool:
        """Whether samples carry importance weights and learners should update priorities."""
        return self.cfg.prioritized

    @property
    def num_added(self) -> int:
        """Transitions added since creation (num_envs per add)."""
        return self._storage.num_added

    def memory_bytes(self) -> int:
        """Bytes held by the storage and the priority trees (host and device)."""
        total = sum(t.numel() * t.element_size() for t in self._storage.fields().values())
        if self._resident is not None:
            total += self._resident.nbytes()
        if self._priority is not None:
            total += (self._priority.sum_tree.numel() + self._priority.min_tree.numel()) * 8
        return total

    @staticmethod
    def projected_bytes(capacity: int, observation_space: spaces.Space, frame_stack: int) -> int:
        """Upper bound of memory_bytes() for ``capacity`` (prioritized trees included)."""
        specs = _frame_specs(observation_space, frame_stack).values()
        frame = sum(math.prod(s) * torch.empty(0, dtype=d).element_size() for s, d in specs)
        return capacity * (frame + 8 + 4 + _FLAG_BYTES) + _tree_bytes(capacity)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Small state (cursors, counters, max priority, sampling RNG); JSON-serialisable.
        Meaningful only together with the matching storage (see save/load)."""
        return {
            "storage": self._storage.state_dict(),
            "rng": bytes(self._gen.get_state().numpy()).hex(),
            "rng_device": self._gen.device.type,
            "max_priority": self._priorities().max_priority if self.cfg.prioritized else None,
        }

    def _priorities(self) -> PrioritySampler | DeviceStorage:
        """Whichever holds the trees and the running max priority."""
        return self._resident if self._resident is not None else self._priority

    def load_state_dict(self, state: dict) -> None:
        if len(state["storage"]["cursor"]) != self.num_envs:
            raise UserError(f"replay state is for {len(state['storage']['cursor'])} envs, "
                            f"this buffer has {self.num_envs}")
        self._storage.load_state_dict(state["storage"])
        saved_on = state.get("rng_device", "cpu")
        if saved_on == self._gen.device.type:
            self._gen.set_state(torch.frombuffer(bytearray.fromhex(state["rng"]), dtype=torch.uint8).clone())
        else:  # CPU and CUDA generators keep different states: the transitions load, the draws differ
            warnings.warn(f"replay sampling RNG was saved on {saved_on} and this buffer samples on "
                          f"{self._gen.device.type}; reseeding it, so the resume is not bit-exact", stacklevel=2)
            self._gen.manual_seed(int(self._gen.initial_seed()))
        if self.cfg.prioritized and state.get("max_priority") is not None:
            self._priorities().max_priority = float(state["max_priority"])

    def _persisted(self) -> dict[str, Tensor]:
        if self._resident is not None:
            return self._resident.persisted()
        fields = self._storage.fields()
        if self._priority is not None:
            fields["priority"] = self._priority.leaves().view(self.num_envs, self.slots)
        return fields

    def _layout(self) -> dict:
        specs = {k: [list(s), str(d)] for k, (s, d) in self._specs.items()}
        return {"num_envs": self.num_envs, "slots": self.slots, "frame_stack": self.frame_stack,
                "n_step": self.n_step, "prioritized": self.cfg.prioritized, "frames": specs}

    def save(self, directory: str | os.PathLike) -> None:
        """Write storage (chunked .npy files) and state to ``directory`` atomically."""
        meta = {"layout": self._layout(), "state": self.state_dict()}
        persist.save_fields(directory, self._persisted(), meta)

    def load(self, directory: str | os.PathLike) -> None:
        """Restore a buffer written by :meth:`save`; raises UserError if its shape differs."""
        meta = persist.read_meta(directory)
        mine, theirs = self._layout(), meta.get("layout", {})
        diff = [f"{k}={theirs.get(k)} (expected {v})" for k, v in mine.items() if theirs.get(k) != v]
        if diff:
            raise UserError(f"replay {directory} has a different shape: {', '.join(diff)}")
        persist.load_fields(directory, meta, self._persisted())
        self.load_state_dict(meta["state"])
        if self._resident is not None:
            self._resident.reload()
        elif self._priority is not None:
            self._priority.load_leaves(self._priority.leaves().clone())
