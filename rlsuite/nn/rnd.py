"""Random Network Distillation (Burda et al., ICLR 2019): the pieces PPO's RND option uses.

- `RunningMeanStd`: mean and (population) variance of a stream of batches, merged with Chan et
  al.'s parallel formula, starting from mean 0, variance 1 and a count of 1e-4 (as OpenAI's
  baselines and the RND code), so the first batch dominates at once.
- `DiscountedReturn`: the per-env discounted sum of intrinsic rewards, never reset at episode ends
  (RND's intrinsic return is non-episodic); its running std divides the intrinsic rewards.
- `RNDNetworks`: a fixed, randomly initialised target net and a trained predictor. On images,
  both are the Nature CNN with LeakyReLU on the *last frame* of the observation (84x84), target ->
  512 features, predictor -> 512 -> ReLU -> 512 -> ReLU -> 512 (the settings of
  jcwleo/random-network-distillation-pytorch, model.py: orthogonal init, gain sqrt(2), zero
  biases). Observations the Nature CNN cannot take (vectors, MinAtar's 10x10 boards) get an MLP of
  the same shape (256 units). Inputs are normalised by the observation `RunningMeanStd` and clipped
  to [-5, 5]. The intrinsic reward is the prediction error, sum((target - predictor)^2) / 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from rlsuite.errors import UserError, brief_space
from rlsuite.config.fields import ranged


@dataclass
class RNDConfig:
    """Random Network Distillation exploration bonus (off unless enabled)."""

    enabled: bool = False
    """Add RND's intrinsic reward, with its own (non-episodic) value head, to PPO."""
    gamma_int: float = ranged(0.99, ge=0, le=1)
    """Discount of the intrinsic returns (Burda et al.: 0.99; the extrinsic one is agent.gamma)."""
    ext_coef: float = ranged(2.0, ge=0)
    """Weight of the extrinsic advantage in the policy's advantage (Burda et al.: 2)."""
    int_coef: float = ranged(1.0, ge=0)
    """Weight of the intrinsic advantage (Burda et al.: 1)."""
    update_proportion: float = ranged(0.25, gt=0, le=1)
    """Fraction of each minibatch the predictor is trained on, drawn at random (Burda et al.: 0.25)."""
    obs_norm_init_steps: int = ranged(6400, ge=0)
    """Vector steps of uniformly random actions at the start of a run that only initialise the observation normaliser (no rollout is stored, no update runs). jcwleo's code: 50 rollouts x 128 steps."""


class RunningMeanStd:
    """Running mean / population variance over the leading axis of batches (Chan et al. 1979)."""

    def __init__(self, shape: tuple[int, ...] = (), device: torch.device | str = "cpu", count: float = 1e-4) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = count

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.to(self.mean.device, torch.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        delta, total = batch_mean - self.mean, self.count + n
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var = state["mean"].to(self.mean.device), state["var"].to(self.var.device)
        self.count = state["count"]


class DiscountedReturn:
    """Per-env running sum R <- gamma R + r, never reset (RND's reward forward filter)."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device | str = "cpu") -> None:
        self.gamma = gamma
        self.value = torch.zeros(num_envs, dtype=torch.float64, device=device)

    def update(self, rewards: torch.Tensor) -> torch.Tensor:
        self.value = self.value * self.gamma + rewards.to(self.value)
        return self.value.clone()


def normalise_intrinsic(rewards: torch.Tensor, filt: DiscountedReturn, stats: RunningMeanStd) -> torch.Tensor:
    """Divide a rollout's intrinsic rewards (steps, envs) by the running std of the discounted
    intrinsic returns, after feeding this rollout's returns (time-major) to the statistics."""
    returns = torch.stack([filt.update(r) for r in rewards])
    stats.update(returns.flatten())
    return (rewards / stats.std.to(rewards)).float()


def _orthogonal(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, math.sqrt(2))
            nn.init.zeros_(m.bias)
    return net


def _nature_convs() -> list[nn.Module]:
    return [nn.Conv2d(1, 32, 8, stride=4), nn.LeakyReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.LeakyReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.LeakyReLU(), nn.Flatten()]


class RNDNetworks(nn.Module):
    """Target (frozen) and predictor nets, the normaliser of their input and that of the intrinsic
    returns (in `state_dict`, via get_extra_state)."""

    def __init__(self, space: gym.Space, frame_stack: int, gamma_int: float = 0.99,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if not isinstance(space, gym.spaces.Box):
            raise UserError(f"rnd.enabled needs array observations (images or vectors), got {brief_space(space)}")
        shape = tuple(int(s) for s in space.shape)
        # The last frame of an Atari stack (frames on the first axis); other spaces whole.
        self.last_frame = frame_stack > 1 and len(shape) == 3
        self.input_shape = (1, *shape[1:]) if self.last_frame else shape
        image = len(self.input_shape) == 3 and self.input_shape[0] == 1 and min(self.input_shape[1:]) >= 36
        if image:
            flat = nn.Sequential(*_nature_convs())(torch.zeros(1, *self.input_shape)).shape[1]
            self.target = nn.Sequential(*_nature_convs(), nn.Linear(flat, 512))
            self.predictor = nn.Sequential(*_nature_convs(), nn.Linear(flat, 512), nn.ReLU(),
                                           nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
        else:
            flat = math.prod(self.input_shape)
            self.target = nn.Sequential(nn.Flatten(), nn.Linear(flat, 256), nn.LeakyReLU(), nn.Linear(256, 256),
                                        nn.LeakyReLU(), nn.Linear(256, 256))
            self.predictor = nn.Sequential(nn.Flatten(), nn.Linear(flat, 256), nn.LeakyReLU(), nn.Linear(256, 256),
                                           nn.LeakyReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
        _orthogonal(self.target).requires_grad_(False)
        _orthogonal(self.predictor)
        self.to(device)
        self.obs_stats = RunningMeanStd(self.input_shape, device)
        self.return_stats = RunningMeanStd((), device)  # of the discounted intrinsic returns
        self.int_return: DiscountedReturn | None = None  # sized by the first rollout
        self.gamma_int = gamma_int

    def get_extra_state(self) -> dict[str, Any]:
        """The normalisers travel in `state_dict` with the weights."""
        return {"obs_stats": self.obs_stats.state_dict(), "return_stats": self.return_stats.state_dict(),
                "int_return": None if self.int_return is None else self.int_return.value.clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.obs_stats.load_state_dict(state["obs_stats"])
        self.return_stats.load_state_dict(state["return_stats"])
        if state["int_return"] is not None:
            self.int_return = DiscountedReturn(len(state["int_return"]), self.gamma_int, self.obs_stats.mean.device)
            self.int_return.value = state["int_return"].clone()

    @torch.no_grad()
    def intrinsic_rewards(self, frames: torch.Tensor) -> torch.Tensor:
        """A rollout's normalised intrinsic rewards (steps, envs) from each step's next-observation
        frames (steps, envs, ...): prediction errors with the normaliser from before the rollout,
        which then takes in these frames (as the RND code), divided by the running std of the
        discounted intrinsic returns."""
        steps, envs = frames.shape[:2]
        flat = frames.flatten(0, 1)
        raw = self.errors(flat).view(steps, envs)
        self.obs_stats.update(flat)
        if self.int_return is None or len(self.int_return.value) != envs:
            self.int_return = DiscountedReturn(envs, self.gamma_int, raw.device)
        return normalise_intrinsic(raw, self.int_return, self.return_stats)

    def select(self, obs: torch.Tensor) -> torch.Tensor:
        """The part of a batch of observations RND looks at (the last frame), as float."""
        return (obs[:, -1:] if self.last_frame else obs).float()

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        mean, std = self.obs_stats.mean.float(), self.obs_stats.std.float()
        return ((frames - mean) / (std + 1e-8)).clamp(-5.0, 5.0)

    def errors(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-row squared prediction error / 2 (the intrinsic reward, with grad to the predictor)."""
        x = self.normalise(frames)
        return (self.target(x) - self.predictor(x)).pow(2).sum(1) / 2

    def predictor_loss(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean-over-features MSE on the rows of `mask` (RND trains on a random part of each minibatch)."""
        x = self.normalise(frames)
        per_row = (self.target(x) - self.predictor(x)).pow(2).mean(1)
        return (per_row * mask).sum() / mask.sum().clamp_min(1.0)
