"""PPO's building blocks, kept out of ppo.py so the agent reads top to bottom: the actor-critic
network (shared or separate trunks, optional LSTM core), GAE, the two losses, the rollout storage
and small observation helpers. Every function here is pure or owns only its tensors."""
from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsuite.errors import UserError
from rlsuite.nn.encoders import make_encoder
from rlsuite.nn.nap import insert_norms
from rlsuite.nn.schedules import lr_factor
from rlsuite.run.speed import fp32_region

# ----------------------------------------------------------------------------- observations


def map_obs(fn: Callable[[Any], Any], obs: Any) -> Any:
    """Apply `fn` to an observation batch, or to every array of a dict batch (NetHack)."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def to_tensor(obs: Any, device: torch.device) -> Any:
    """numpy / torch observations (or a dict of them) -> tensors on `device`."""
    return map_obs(lambda v: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v).to(device), obs)


def example_batch(space: gym.Space) -> Any:
    """A batch of one zero observation of `space` (for shape-finding dry runs)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: example_batch(s) for k, s in space.spaces.items()}
    return torch.zeros((1, *space.shape), dtype=torch.from_numpy(np.zeros(0, space.dtype)).dtype)


def alloc_obs(space: gym.Space, lead: tuple[int, ...], device: torch.device) -> Any:
    """Zeros of shape lead + one observation, in the space's dtype (uint8 frames stay bytes)."""
    return map_obs(lambda e: torch.zeros((*lead, *e.shape[1:]), dtype=e.dtype, device=device), example_batch(space))


def batch_size(obs: Any) -> int:
    return len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)


# ----------------------------------------------------------------------------- network


def orthogonal_(layer: nn.Linear, gain: float) -> nn.Linear:
    """CleanRL's layer_init: orthogonal weights with `gain`, zero bias."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Trunk(nn.Module):
    """Encoder (with NaP's norms when configured), then an optional single-layer LSTM.

    The LSTM state (h, c) of each env is zeroed before an observation that starts an episode
    (`starts`), so a sequence replayed from its stored initial state with the same `starts`
    computes what the rollout computed step by step.
    """

    def __init__(self, cfg: Any, space: gym.Space) -> None:
        super().__init__()
        self.encoder = make_encoder(cfg.encoder, space)
        self.norms = insert_norms(self.encoder, example_batch(space), cfg.nap.norm)
        self.lstm = None
        self.output_dim = self.encoder.output_dim
        if cfg.core == "lstm":
            self.lstm = nn.LSTM(self.encoder.output_dim, cfg.lstm_hidden)
            for name, param in self.lstm.named_parameters():  # CleanRL ppo_atari_lstm.py
                nn.init.zeros_(param) if "bias" in name else nn.init.orthogonal_(param, 1.0)
            self.output_dim = cfg.lstm_hidden

    def forward(self, obs: Any, state: torch.Tensor | None, starts: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """obs: T*B rows, time-major; state: (2, B, H) = (h, c); starts: (T, B) floats."""
        x = self.encoder(obs)
        if self.lstm is None:
            return x, None
        steps, envs = starts.shape
        x = x.float().view(steps, envs, -1)  # the core runs in fp32 even under bf16 autocast (rlsuite.run.speed)
        h, c = state[0:1], state[1:2]
        outs = []
        # One fused nn.LSTM call per stretch of steps in which no env starts an episode (a Python
        # loop over single steps costs ~10x more); the state is zeroed only where one starts.
        cuts = [0] + [t for t in torch.nonzero(starts[1:].any(dim=1)).flatten().add(1).tolist()] + [steps]
        with fp32_region(x):
            for a, b in zip(cuts[:-1], cuts[1:]):
                keep = (1.0 - starts[a]).view(1, envs, 1)
                out, (h, c) = self.lstm(x[a:b], (h * keep, c * keep))
                outs.append(out)
        return torch.cat(outs).flatten(0, 1), torch.cat([h, c])


class ActorCritic(nn.Module):
    """Policy logits, extrinsic value and (with RND) intrinsic value from one or two trunks.

    Recurrent state: a tensor (trunks, 2, envs, hidden) (None without an LSTM); `forward` takes
    T*B time-major rows with `starts` (T, B) and returns the state after the last step.
    """

    def __init__(self, cfg: Any, space: gym.Space, num_actions: int) -> None:
        super().__init__()
        self.actor_trunk = Trunk(cfg, space)
        self.critic_trunk = None if cfg.shared_trunk else Trunk(cfg, space)
        critic_dim = (self.critic_trunk or self.actor_trunk).output_dim
        self.policy = orthogonal_(nn.Linear(self.actor_trunk.output_dim, num_actions), 0.01)
        self.value = orthogonal_(nn.Linear(critic_dim, 1), 1.0)
        self.value_int = orthogonal_(nn.Linear(critic_dim, 1), 1.0) if cfg.rnd.enabled else None
        self.hidden = cfg.lstm_hidden if cfg.core == "lstm" else 0

    def trunks(self) -> list[Trunk]:
        return [self.actor_trunk] + ([self.critic_trunk] if self.critic_trunk is not None else [])

    def output_layers(self) -> list[nn.Module]:
        """Heads and the last norm of each trunk: NaP leaves them free unless nap.project_head."""
        heads = [m for m in (self.policy, self.value, self.value_int) if m is not None]
        return heads + [n for trunk in self.trunks() for n in trunk.norms[-1:]]

    def initial_state(self, num_envs: int, device: torch.device) -> torch.Tensor | None:
        if not self.hidden:
            return None
        return torch.zeros(len(self.trunks()), 2, num_envs, self.hidden, device=device)

    def forward(self, obs: Any, state: torch.Tensor | None = None, starts: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """-> logits (T*B, A), value (T*B,), intrinsic value (T*B,) or None, next state."""
        features, actor_state = self.actor_trunk(obs, None if state is None else state[0], starts)
        new_states = [actor_state]
        critic_features = features
        if self.critic_trunk is not None:
            critic_features, critic_state = self.critic_trunk(obs, None if state is None else state[1], starts)
            new_states.append(critic_state)
        value_int = self.value_int(critic_features).squeeze(1) if self.value_int is not None else None
        next_state = torch.stack(new_states) if state is not None else None
        return self.policy(features), self.value(critic_features).squeeze(1), value_int, next_state


# ----------------------------------------------------------------------------- GAE and losses


def gae(rewards: torch.Tensor, values: torch.Tensor, ends: torch.Tensor, next_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) over a rollout (steps, envs).

    `ends[t]`: the episode ended at step t, so nothing after it is bootstrapped (a truncated
    episode's bootstrap gamma V(final obs) is already in its reward). `next_value`: V of the
    observation after the last step. Returns (advantages, returns = advantages + values).
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - ends[t].to(rewards.dtype)
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_surrogate(advantages: torch.Tensor, ratio: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's policy loss: mean of max(-A r, -A clip(r, 1 - eps, 1 + eps))."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()


def value_loss(new: torch.Tensor, old: torch.Tensor, returns: torch.Tensor, clip: float, clipped: bool) -> torch.Tensor:
    """0.5 mean (V - R)^2, or with value clipping 0.5 mean max((V - R)^2, (V_old + clip(V - V_old) - R)^2)."""
    unclipped = (new - returns).pow(2)
    if not clipped:
        return 0.5 * unclipped.mean()
    moved = old + (new - old).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (moved - returns).pow(2)).mean()


def ppo_objective(c: Any, logits: torch.Tensor, new_value: torch.Tensor, new_value_int: torch.Tensor | None,
                  mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """PPO's loss on one minibatch from the network's outputs on it, and CleanRL's metrics:
    policy_loss - ent_coef entropy + vf_coef value_loss (the intrinsic value's loss added to the
    extrinsic one with RND), approx_kl both ways (old: mean(-log r); mean((r - 1) - log r)) and
    the clipped fraction."""
    log_probs = torch.log_softmax(logits, dim=1)
    logratio = log_probs.gather(1, mb["actions"].view(-1, 1)).squeeze(1) - mb["logprobs"]
    ratio = logratio.exp()
    entropy = -(log_probs.exp() * log_probs).sum(1).mean()
    adv = mb["advantages"]
    if c.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = clipped_surrogate(adv, ratio, c.clip_coef)
    v_loss = value_loss(new_value, mb["values"], mb["returns"], c.clip_coef, c.clip_vloss)
    if new_value_int is not None:
        v_loss = v_loss + value_loss(new_value_int, mb["values_int"], mb["returns_int"], c.clip_coef, c.clip_vloss)
    with torch.no_grad():
        metrics = {"losses/policy_loss": pg_loss.detach(), "losses/value_loss": v_loss.detach(),
                   "losses/entropy": entropy.detach(), "losses/old_approx_kl": (-logratio).mean(),
                   "losses/approx_kl": ((ratio - 1) - logratio).mean(),
                   "clipfrac": ((ratio - 1.0).abs() > c.clip_coef).float().mean().item()}
    return pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss, metrics


def learning_rate(c: Any, rollouts_done: int, total_rollouts: int, warmup_rollouts: int) -> float:
    """Adam's lr for the updates of rollout `rollouts_done` (0-based): c.lr annealed linearly to 0
    (c.anneal_lr; CleanRL's 1 - (iteration - 1) / N) over the rollouts after the first
    `warmup_rollouts`, which keep c.lr (a critic warm-up: the anneal starts with the actor)."""
    left = total_rollouts - warmup_rollouts
    if not c.anneal_lr or left <= 0 or rollouts_done < warmup_rollouts:
        return c.lr
    return c.lr * lr_factor((rollouts_done - warmup_rollouts) / left, "linear", 0.0)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target) (nan when the target is constant)."""
    var = float(target.var(unbiased=False))
    return math.nan if var == 0 else 1.0 - float((target - predicted).var(unbiased=False)) / var


# ----------------------------------------------------------------------------- rollout


class Rollout:
    """num_steps x num_envs of what PPO learns from, on the agent's device.

    Step t holds the observation acted on, whether it started an episode (`starts`, for the LSTM),
    the action, its log-probability and values at acting time, the reward (plus gamma V(final obs)
    where the step truncated), and whether the episode ended there (`ends`). With an LSTM,
    `initial_state` is the recurrent state before step 0 (before its start-reset).
    """

    FIELDS = ("actions", "logprobs", "values", "values_int", "rewards", "starts", "ends")

    def __init__(self, space: gym.Space, num_steps: int, num_envs: int, device: torch.device,
                 rnd_shape: tuple[int, ...] | None = None) -> None:
        lead = (num_steps, num_envs)
        self.num_steps, self.num_envs, self.pos = num_steps, num_envs, 0
        self.complete = False  # every row holds data (a rollout has been completed in this storage)
        self.obs = alloc_obs(space, lead, device)
        self.actions = torch.zeros(lead, dtype=torch.long, device=device)
        self.logprobs, self.values, self.values_int, self.rewards, self.starts, self.ends = (
            torch.zeros(lead, device=device) for _ in range(6))
        # RND: the part of each step's next observation its networks read (the last frame).
        self.rnd_frames = None if rnd_shape is None else torch.zeros((*lead, *rnd_shape), device=device)
        self.initial_state: torch.Tensor | None = None

    @property
    def full(self) -> bool:
        return self.pos == self.num_steps

    def state_dict(self) -> dict[str, Any]:
        """The filled part only (a checkpoint mid-rollout stays small)."""
        p = self.pos
        out = {k: getattr(self, k)[:p].clone() for k in self.FIELDS}
        out.update(pos=p, obs=map_obs(lambda v: v[:p].clone(), self.obs), initial_state=self.initial_state,
                   rnd_frames=None if self.rnd_frames is None else self.rnd_frames[:p].clone())
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        p = self.pos = state["pos"]
        self.complete = False  # rows past pos were not saved
        for k in self.FIELDS:
            getattr(self, k)[:p] = state[k]
        if isinstance(self.obs, dict):
            for k, v in self.obs.items():
                v[:p] = state["obs"][k]
        else:
            self.obs[:p] = state["obs"]
        if self.rnd_frames is not None and state["rnd_frames"] is not None:
            self.rnd_frames[:p] = state["rnd_frames"]
        self.initial_state = state["initial_state"]


# ----------------------------------------------------------------------------- agent helpers


def sample_actions(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One action per row from softmax(logits), by inverse CDF on `rng` (one uniform per row)."""
    probs = torch.softmax(logits.double(), dim=1).cpu().numpy()
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def check_split(c: Any, num_envs: int) -> None:
    """Refuse minibatches that do not split the rollout evenly (LSTM: whole env sequences)."""
    if c.core == "lstm" and num_envs % c.num_minibatches:
        raise UserError(f"agent.core=lstm splits envs into minibatches: num_envs={num_envs} is not a "
                        f"multiple of agent.num_minibatches={c.num_minibatches}")
    if (c.num_steps * num_envs) % c.num_minibatches:
        raise UserError(f"the rollout of {c.num_steps} x {num_envs} steps does not split into "
                        f"agent.num_minibatches={c.num_minibatches} equal minibatches")


def check_minibatch(run: Any) -> None:
    """The cross-field rule `config.validate` runs on a PPO config (PPOConfig.check_run): with
    agent.norm_adv each minibatch needs at least 2 samples, since the std of one advantage is nan
    and the first update would stop with 'loss became nan'."""
    a, envs = run.agent, run.train.num_envs
    size = envs * a.num_steps / a.num_minibatches
    if a.norm_adv and size < 2:
        raise UserError(f"bad value for agent.num_minibatches: {a.num_minibatches} (train.num_envs x agent.num_steps / "
                        f"agent.num_minibatches = {envs} x {a.num_steps} / {a.num_minibatches} = {size:g} sample(s) "
                        "per minibatch, and agent.norm_adv needs at least 2: lower agent.num_minibatches, raise "
                        "agent.num_steps or train.num_envs, or set agent.norm_adv=false)")


def copy_obs_row(dst: Any, pos: int, src: Any) -> None:
    """dst[pos] = src, for array or dict observations."""
    if isinstance(dst, dict):
        for k, v in dst.items():
            v[pos] = src[k]
    else:
        dst[pos] = src


def clone(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.clone()


def frame_stack_of(space: gym.Space) -> int:
    """Atari stacks are uint8 (k, 84, 84) with k > 1 frames; MinAtar's (C, 10, 10) planes are not frames."""
    shape = getattr(space, "shape", None) or ()
    return int(shape[0]) if len(shape) == 3 and min(shape[1:]) >= 36 else 1
