"""Behaviour cloning: the plain supervised baseline of every offline table, an offline agent.

A policy network (the observation encoder of rlsuite.nn.encoders, then one linear layer to the
action logits) is trained by Adam on the cross-entropy of the datasets' actions, one state at a
time: no return conditioning, no history. It is the baseline the Decision Transformer papers report
beside the DT (Chen et al. 2021, "BC"; Lee et al. 2022), and it answers the question a DT table
cannot answer alone: when the DT fails on a game, does plain imitation of the same data fail too
(the data do not pin down a policy) or only the DT (the model or its conditioning)?

It plugs into the offline loop (rlsuite.loops.offline) as the DT does: the loop draws windows of
`context` = 1 step from the datasets (rlsuite.data.sequences, mixed by offline.weights) and calls
`update(batch)`; evaluation plays each dataset's game through rlsuite.run.evaluate with `act`. Targets
(`--target`, agent.eval_target) do not apply: the policy is not conditioned on a return.

Defaults follow the BC check of the December 2026 review (the MinAtar encoder plus a linear head,
Adam 3e-4, batch 256): a small, well-understood learner, not a tuned one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlsuite.run import seeding
from rlsuite.agents.common import gradient_step, policy_actions, zeros_batch
from rlsuite.config import validate
from rlsuite.errors import UserError
from rlsuite.config.fields import choice, ranged
from rlsuite.nn.encoders import EncoderConfig, make_encoder
from rlsuite.nn.optim import OPTIMIZERS, CMConfig, make_optimizer, optimizer_report
from rlsuite.run.speed import SpeedPlan


@dataclass
class BCConfig:
    """Behaviour-cloning hyperparameters (module docstring for the source)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation encoder: Nature CNN (Atari), MinAtar net, MLP (vectors) (see the encoder.* keys)."""
    batch_size: int = ranged(256, ge=1)
    """States per update, over all data-parallel ranks (each rank takes batch_size / world_size)."""
    lr: float = ranged(3e-4, gt=0)
    """Adam learning rate (constant)."""
    weight_decay: float = ranged(0.0, ge=0)
    """AdamW weight decay of every weight (0 = plain Adam, the review's BC)."""
    optimizer: str = choice("adam", *OPTIMIZERS)
    """'adam': torch AdamW, or 'adam_cm': Adam with critical momenta (Malviya et al. 2024), the same rate, betas, epsilon and decay plus a buffer of past momenta (see the cm.* keys)."""
    cm: CMConfig = field(default_factory=CMConfig)
    """Adam with critical momenta's buffer, used when optimizer is 'adam_cm' (see the cm.* keys)."""
    max_grad_norm: float = ranged(0.0, ge=0)
    """Clip the global gradient norm (0 = no clipping)."""
    eval_sample: bool = False
    """Sample evaluation actions from the policy instead of taking the most likely one."""
    eval_epsilon: float = ranged(0.0, ge=0, le=1)
    """Evaluation epsilon: a uniformly random action with this probability."""


class BC:
    """A behaviour-cloning agent driven by rlsuite.loops.offline (updates) and rlsuite.run.evaluate (act)."""

    name = "bc"
    offline = True  # rlsuite.loops.train runs this agent with the offline loop
    return_conditioned = False  # evaluation gives it no target return
    context = 1  # steps per training window: single states
    EXPORT_KEY = "model"

    def __init__(self, cfg: BCConfig, observation_space: spaces.Space, action_space: spaces.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise UserError(f"behaviour cloning here needs a discrete action space, got {type(action_space).__name__}")
        validate(cfg, "agent.")
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.observation_space, self.num_actions = observation_space, int(action_space.n)
        with torch.random.fork_rng(devices=[]):  # init draws from the run's network stream only
            torch.manual_seed(seeding.int_seed(seed, "network"))
            encoder = make_encoder(cfg.encoder, observation_space)
            self.model = nn.Sequential(encoder, nn.Linear(encoder.output_dim, self.num_actions))
        self.model.to(self.device)
        self.net: nn.Module = self.model  # what training calls: the model, or its DDP wrapper
        self.accelerate(SpeedPlan(device_type=self.device.type))  # fp32 eager until the run's plan arrives
        self.optimizer = make_optimizer(cfg.optimizer, cfg.cm, seed, self.model.parameters(), torch.optim.AdamW,
                                        lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = seeding.generator(seed, "exploration")  # evaluation sampling when no rng is passed
        self.num_updates, self.world_size = 0, 1

    def plan(self, total_updates: int) -> None:
        """Nothing depends on the run length (constant learning rate)."""

    def speed_probe(self) -> tuple[nn.Module, tuple[Any, ...]]:
        """The policy network and a zero batch of batch_size states that rlsuite.run.speed times."""
        return self.model, (zeros_batch(self.observation_space, self.cfg.batch_size, self.device),)

    def accelerate(self, plan: SpeedPlan) -> None:
        """Run the policy network under `plan` (rlsuite.run.speed) in updates and when acting."""
        self.speed = plan
        plan.prepare(self.model)
        self.train_fwd, self.act_fwd = plan.wrap(self.net), plan.wrap(self.model)

    def distribute(self, wrapper: nn.Module, world_size: int) -> None:
        """Train through a DistributedDataParallel wrapper of `self.model` (rlsuite.loops.offline)."""
        self.net, self.world_size = wrapper, world_size
        self.train_fwd = self.speed.wrap(wrapper)

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """Cross-entropy of the dataset's actions over this rank's real steps of a SequenceBatch
        (B, K), divided by the global batch's real steps (so DDP's average over ranks is the mean)."""
        mask = batch.mask
        logits = self.train_fwd(batch.obs[mask])
        norm = self.world_size / max(1, batch.valid_steps)
        return {"action_ce": F.cross_entropy(logits, batch.actions[mask], reduction="sum") * norm}

    def update(self, batch: Any) -> dict[str, float]:
        """One Adam step on a SequenceBatch; returns the logged metrics (losses/*)."""
        batch = batch.to(self.device)
        self.net.train()
        loss = self.losses(batch)["action_ce"]
        grad_norm = gradient_step(loss, self.optimizer, self.model.parameters(), self.cfg.max_grad_norm,
                                  self.num_updates)
        self.num_updates += 1
        return {"losses/action_ce": float(loss.detach()) / self.world_size, "losses/grad_norm": float(grad_norm),
                "charts/learning_rate": self.cfg.lr, **optimizer_report(self.optimizer)}

    def status(self, update: int) -> str:
        return ""

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def adopt_parent(self, model_state: dict[str, torch.Tensor]) -> None:
        """Start from a behaviour-cloning parent's weights (rlsuite finetune)."""
        self.model.load_state_dict(model_state)

    # ------------------------------------------------------------------ evaluation

    def eval_reset(self, num_envs: int) -> None:
        """No history to keep: each action depends on the current observation only."""

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions (num_envs,) int64 for the observations (num_envs, *obs_shape): the most likely
        (or, with eval_sample, a sampled) action, uniformly random with probability `epsilon`."""
        rng = self.rng if rng is None else rng
        self.model.eval()
        with torch.no_grad():
            logits = self.act_fwd(torch.as_tensor(np.asarray(obs), device=self.device)).cpu()
        return policy_actions(logits, self.cfg.eval_sample, epsilon, rng)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "num_updates": self.num_updates, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        self.rng.bit_generator.state = state["rng"]
