"""One small object per knowledge-retention method: `loss(agent, batch)`, its coefficient
`coef()` (and schedule, `after_update()`), and `state_dict()` so checkpoints carry everything the
term needs (the BC buffer, EWC's Fisher and anchors, KS's schedule position).

An agent with retention terms calls `retention_loss(terms, agent, batch)` once per gradient step
and adds the result to its RL loss. What a term asks of the agent:

- `agent.policy_logits(obs, teacher=False)`: (B, A) logits of the student (or the frozen teacher)
  on single states (a recurrent agent starts each from a zero state);
- `batch["obs"]` and `batch["logits"]`: the online batch's states and the student's logits on them,
  already computed by the RL loss (PPO: with the rollout's recurrent state); `agent.teacher_logits_on(batch)`:
  the teacher's logits on the same states (with the teacher's own recurrent state);
- `agent.actor_parameters()`: the parameters retention acts on (everything but the value head).

While no actor parameter trains (a critic warm-up, rlsuite.loops.finetune) `retention_loss` adds nothing
and advances no schedule: KS's decay starts when the actor starts training.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlsuite.retention.config import BCConfig, EWCConfig, KSConfig
from rlsuite.retention.losses import behaviour_cloning_loss, ewc_penalty, kickstarting_loss


def actor_trains(agent: Any) -> bool:
    """Whether any of `agent.actor_parameters()` has requires_grad (False during a critic warm-up)."""
    return any(p.requires_grad for p in agent.actor_parameters())


def retention_loss(terms: list[Any], agent: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """sum_k coef_k * loss_k over `terms`, and their TensorBoard scalars retention/<name>_loss and
    retention/<name>_coef; then advances every term's schedule by one update. While the actor is
    frozen (`actor_trains` is False) the loss would move nothing: it is a zero scalar, only the
    coefficients are logged, and no schedule advances."""
    if not actor_trains(agent):
        return batch["logits"].new_zeros(()), {f"retention/{term.name}_coef": term.coef() for term in terms}
    total, metrics = None, {}
    for term in terms:
        coef = term.coef()
        value = term.loss(agent, batch)
        total = coef * value if total is None else total + coef * value
        metrics[f"retention/{term.name}_loss"] = value.detach()
        metrics[f"retention/{term.name}_coef"] = coef
        term.after_update()
    return total, metrics


class Kickstarting:
    """KS: KL(pi* || pi) on the online batch. After k gradient updates of the actor the coefficient is
    max(floor, coef * decay^k) (decay_per 'update'), or max(floor, coef * decay^(k * env_steps_per_update
    / decay_transitions)) (decay_per 'transitions'; `env_steps_per_update` from the caller, see
    rlsuite.loops.finetune.env_steps_per_update)."""

    name = "ks"

    def __init__(self, cfg: KSConfig, env_steps_per_update: float = 1.0) -> None:
        self.cfg, self.updates = cfg, 0
        self.env_steps_per_update = float(env_steps_per_update)

    def decay_steps(self) -> float:
        """The exponent of `decay`: updates, or the env steps they stand for / decay_transitions."""
        if self.cfg.decay_per == "transitions":
            return self.updates * self.env_steps_per_update / self.cfg.decay_transitions
        return float(self.updates)

    def coef(self) -> float:
        return max(self.cfg.floor, self.cfg.coef * self.cfg.decay ** self.decay_steps())

    def loss(self, agent: Any, batch: dict[str, Any]) -> torch.Tensor:
        return kickstarting_loss(agent.teacher_logits_on(batch), batch["logits"])

    def after_update(self) -> None:
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])


class BehaviourCloning:
    """BC: KL(pi* || pi) on `bc.minibatch` states drawn (on the run's `retention` stream) from a
    fixed buffer of states the pre-trained policy visited on its own task."""

    name = "bc"

    def __init__(self, cfg: BCConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.states: Any = None  # (N, ...) tensor or dict of tensors, set by `fill` or a checkpoint

    def fill(self, states: Any) -> None:
        self.states = states

    def __len__(self) -> int:
        if self.states is None:
            return 0
        return len(next(iter(self.states.values()))) if isinstance(self.states, dict) else len(self.states)

    def coef(self) -> float:
        return self.cfg.coef

    def loss(self, agent: Any, batch: dict[str, Any]) -> torch.Tensor:
        rows = torch.from_numpy(self.rng.integers(len(self), size=self.cfg.minibatch))
        obs = _take(self.states, rows)
        with torch.no_grad():
            teacher = agent.policy_logits(obs, teacher=True)
        return behaviour_cloning_loss(teacher, agent.policy_logits(obs))

    def after_update(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"states": self.states, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.states = state["states"]
        self.rng.bit_generator.state = state["rng"]


class EWC:
    """EWC: sum_i F_i (theta*_i - theta_i)^2 over the actor's parameters, theta* = the pre-trained
    weights, F = the diagonal Fisher on the teacher's data (rlsuite.retention.losses.diagonal_fisher)."""

    name = "ewc"

    def __init__(self, cfg: EWCConfig) -> None:
        self.cfg = cfg
        self.anchors: list[torch.Tensor] | None = None
        self.fisher: list[torch.Tensor] | None = None

    def fill(self, anchors: list[torch.Tensor], fisher: list[torch.Tensor]) -> None:
        self.anchors = [a.detach().clone() for a in anchors]
        self.fisher = [f.detach().clone() for f in fisher]

    def coef(self) -> float:
        return self.cfg.coef

    def loss(self, agent: Any, batch: dict[str, Any]) -> torch.Tensor:
        return ewc_penalty(agent.actor_parameters(), self.anchors, self.fisher)

    def after_update(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"anchors": self.anchors, "fisher": self.fisher}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors, self.fisher = state["anchors"], state["fisher"]


def _take(states: Any, rows: torch.Tensor) -> Any:
    if isinstance(states, dict):
        return {k: v[rows.to(v.device)] for k, v in states.items()}
    return states[rows.to(states.device)]
