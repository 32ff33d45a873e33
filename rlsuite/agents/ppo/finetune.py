"""What fine-tuning (rlsuite.loops.finetune) and knowledge retention (rlsuite.retention) ask of a
PPO agent: start from a pre-trained agent, keep a frozen teacher pi* (with its own recurrent
state), and give the student's and the teacher's logits and the actor's parameters."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rlsuite.agents.common import batch_size_of
from rlsuite.agents.ppo.network import clone


class PPOFineTuning:
    """PPO's fine-tuning methods (PPO inherits them; it sets `online`, `rnd`, `state`, `teacher` and
    the teacher's recurrent states)."""

    def adopt(self, state: dict[str, Any]) -> None:
        """Start from a pre-trained agent's `state_dict`: its actor-critic and, with RND, its target,
        predictor and normalisers, so the observation normaliser is not initialised again (the
        running intrinsic returns restart: these are new envs)."""
        self.online.load_state_dict(state["online"])
        if self.rnd is not None and state.get("rnd") is not None:
            self.rnd.load_state_dict(state["rnd"])
            self.rnd.int_return, self.init_steps_left = None, 0

    def set_teacher(self, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Keep a frozen copy of the actor-critic as the teacher pi* (its weights = `weights`, or the
        current ones); it never trains and travels in `state_dict`."""
        self.teacher = copy.deepcopy(self.online).requires_grad_(False)
        if weights is not None:
            self.teacher.load_state_dict(weights)
        self.teacher_state = clone(self.state)  # it starts where the student is (zero at a run's start)

    def policy_logits(self, obs: Any, teacher: bool = False) -> torch.Tensor:
        """(B, A) logits of the student (or the teacher) on single states; a recurrent network starts
        each from a zero state."""
        net, n = (self.teacher if teacher else self.online), batch_size_of(obs)
        state = net.initial_state(n, self.device)
        return net(obs, state, None if state is None else torch.ones(1, n, device=self.device))[0]

    def teacher_logits_on(self, batch: dict[str, Any]) -> torch.Tensor:
        """The teacher's logits on a minibatch's states (sequences replayed from the teacher's own
        recurrent state at the rollout's start)."""
        with torch.no_grad():
            return self.teacher(batch["obs"], batch.get("teacher_state"), batch.get("starts"))[0]

    def actor_parameters(self) -> list[nn.Parameter]:
        """Everything but the value heads (and a separate critic trunk): what retention acts on."""
        return [p for name, p in self.online.named_parameters()
                if not name.startswith(("value.", "value_int.", "critic_trunk."))]
