"""What fine-tuning (rlsuite.loops.finetune) and knowledge retention (rlsuite.retention) ask of a
DQN agent: start from a pre-trained agent, keep a frozen teacher, and read the Q-network as a
policy softmax(Q / temperature) for distillation (the teacher's sharpened per state with
finetune.temperature_rule=adaptive). (EM, the protected replay, acts in the update.)"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rlsuite.retention.losses import distillation_logits


class DQNFineTuning:
    """DQN's fine-tuning methods (DQN inherits them; it sets `online`, `teacher`, `temperature`)."""

    def adopt(self, state: dict[str, Any]) -> None:
        """Start from a pre-trained agent's `state_dict`: its online network, as online and target."""
        self.load_exported(state["online"])

    def set_teacher(self, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Keep a frozen copy of the Q-network as the teacher (weights = `weights`, or the current ones)."""
        self.teacher = copy.deepcopy(self.online).requires_grad_(False)
        if weights is not None:
            self.teacher.load_state_dict(weights)

    def policy_logits(self, obs: Any, teacher: bool = False) -> torch.Tensor:
        """(B, A) logits Q/temperature of the student (or the teacher): the Q-network read as a policy
        for distillation (Rusu et al. 2016). The teacher's follow finetune.temperature_rule
        (rlsuite.retention.losses.distillation_logits: 'adaptive' sharpens them per state)."""
        if teacher:
            return distillation_logits(self.teacher(obs), self.temperature, self.teacher_rule())
        return distillation_logits(self.online(obs), self.temperature)

    def teacher_rule(self) -> str:
        """finetune.temperature_rule of the run: the loop hands the whole RunConfig to `begin`
        (StorageContext.cfg) before the fine-tuning extension is built; 'fixed' without one."""
        run = getattr(getattr(self, "ctx", None), "cfg", None)
        return getattr(getattr(run, "finetune", None), "temperature_rule", "fixed")

    def teacher_logits_on(self, batch: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            return self.policy_logits(batch["obs"], teacher=True)

    def actor_parameters(self) -> list[nn.Parameter]:
        """The whole Q-network: it is the policy."""
        return list(self.online.parameters())
