"""DQN's Q-network (QNetwork): the configured encoder (with NaP's norms when set), then a linear
Q head or a dueling head (Wang et al. 2016)."""
from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from rlsuite.agents.common import example_batch
from rlsuite.agents.dqn.config import DQNConfig
from rlsuite.nn.encoders import init_layer, make_encoder
from rlsuite.nn.nap import insert_norms


class QNetwork(nn.Module):
    """Encoder followed by a linear Q head, or a dueling head."""

    def __init__(self, cfg: DQNConfig, observation_space: spaces.Space, num_actions: int) -> None:
        super().__init__()
        self.encoder = make_encoder(cfg.encoder, observation_space)
        # NaP's norms go in before the heads exist: the encoder ends in the last ReLU.
        self.norms = insert_norms(self.encoder, example_batch(observation_space), cfg.nap.norm)
        features = self.encoder.output_dim
        self.dueling = cfg.dueling
        if cfg.dueling:
            self.value = nn.Linear(features, 1)
            self.advantage = nn.Linear(features, num_actions)
        else:
            self.head = nn.Linear(features, num_actions)
        for head in self.output_layers()[: 2 if cfg.dueling else 1]:
            init_layer(head, cfg.encoder.init)  # Dopamine's heads are Xavier-uniform too; CleanRL's, PyTorch's

    def output_layers(self) -> list[nn.Module]:
        """The layers that set the Q-value scale: the head(s) and the norm feeding them.
        NaP leaves these unprojected unless nap.project_head is set."""
        heads = [self.value, self.advantage] if self.dueling else [self.head]
        return heads + self.norms[-1:]

    def forward(self, obs: Any) -> torch.Tensor:
        features = self.encoder(obs)
        if not self.dueling:
            return self.head(features)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)
