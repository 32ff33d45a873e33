"""PPO's actor-critic network: one trunk, or one each for actor and critic (the encoder with NaP's
norms when set, then the optional LSTM core), the policy and value heads (and RND's intrinsic
value head), its recurrent state, and sampling actions from its policy's logits."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsuite.agents.ppo.observations import example_batch
from rlsuite.nn.encoders import make_encoder
from rlsuite.nn.lru import LRUBlock
from rlsuite.nn.nap import insert_norms
from rlsuite.run.speed import fp32_region


LRU_LR_SCALE = 0.5
"""The learning-rate factor of the LRU's recurrent parameters (minimal-LRU's lr_factor)."""


def orthogonal_(layer: nn.Linear, gain: float) -> nn.Linear:
    """CleanRL's layer_init: orthogonal weights with `gain`, zero bias."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Trunk(nn.Module):
    """Encoder (with NaP's norms when configured), then an optional recurrent core: a single-layer
    LSTM, or an LRU block (rlsuite.nn.lru: its O(1) step while acting, the parallel scan when replaying).

    The LSTM state (h, c) (LRU: (Re x, Im x)) of each env is zeroed before an observation that starts an episode
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
        self.lru = None
        if cfg.core == "lru":  # residual block: output_dim stays the encoder's
            self.lru = LRUBlock(self.encoder.output_dim, cfg.lru_state, cfg.lru_r_min, cfg.lru_r_max, cfg.lru_max_phase)

    def forward(self, obs: Any, state: torch.Tensor | None, starts: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """obs: T*B rows, time-major; state: (2, B, H) = (h, c) (LRU: (2, B, N) = (Re x, Im x));
        starts: (T, B) floats."""
        x = self.encoder(obs)
        if self.lstm is None and self.lru is None:
            return x, None
        steps, envs = starts.shape
        x = x.float().view(steps, envs, -1)  # the core runs in fp32 even under bf16 autocast (rlsuite.run.speed)
        if self.lru is not None:
            with fp32_region(x):
                out, new_state = self.lru(x, state, starts)
            return out.flatten(0, 1), new_state
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

    Recurrent state: a tensor (trunks, 2, envs, hidden) (None without a core; LSTM: (h, c), hidden =
    lstm_hidden; LRU: (Re x, Im x), hidden = lru_state); `forward` takes
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
        self.hidden = {"lstm": cfg.lstm_hidden, "lru": cfg.lru_state}.get(cfg.core, 0)

    def trunks(self) -> list[Trunk]:
        return [self.actor_trunk] + ([self.critic_trunk] if self.critic_trunk is not None else [])

    def output_layers(self) -> list[nn.Module]:
        """Heads and the last norm of each trunk: NaP leaves them free unless nap.project_head."""
        heads = [m for m in (self.policy, self.value, self.value_int) if m is not None]
        return heads + [n for trunk in self.trunks() for n in trunk.norms[-1:]]

    def parameter_groups(self, extra: list[nn.Parameter] = (), lr: float = 1.0) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: everything (then `extra`, e.g. RND's predictor) in one;
        with an LRU core its nu, theta, gamma and B in a second at lr x `LRU_LR_SCALE` (key
        `lr_scale`, which the lr schedule keeps), as minimal-LRU trains them."""
        slow = [p for trunk in self.trunks() if trunk.lru is not None for p in trunk.lru.lru.recurrent_parameters()]
        ids = {id(p) for p in slow}
        groups = [{"params": [p for p in self.parameters() if id(p) not in ids] + list(extra)}]
        if slow:
            groups.append({"params": slow, "lr": lr * LRU_LR_SCALE, "lr_scale": LRU_LR_SCALE})
        return groups

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


def sample_actions(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One action per row from softmax(logits), by inverse CDF on `rng` (one uniform per row)."""
    probs = torch.softmax(logits.double(), dim=1).cpu().numpy()
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def clone(x: torch.Tensor | None) -> torch.Tensor | None:
    """A copy of a recurrent state (or the episode-start flags); None without one."""
    return None if x is None else x.clone()
