"""What a checkpoint or an export holds of a PPO agent, and loading it back: weights, optimizer,
counters, RNG streams, hook states, the rollout in progress, the LSTM states and RND's networks and
normalisers, so that a run resumes mid-rollout exactly. The rollout is small: nothing is saved
beside the checkpoint."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlsuite.agents.ppo.network import clone


class PPOCheckpoint:
    """PPO's state methods (PPO inherits them). A loaded rollout and LSTM states wait in
    `_restored` until the storage exists; `begin` (agent.py) calls `restore_storage`, and `step`
    drops what is still waiting."""

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer, counters, RNG streams, hook states, the partial rollout, the LSTM
        states and RND's normalisers: enough to resume mid-rollout exactly (between observe and step)."""
        return {
            "online": self.online.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "batch_rng": self.batch_rng.bit_generator.state,
            "counters": {"rollouts_done": self.rollouts_done, "num_updates": self.num_updates,
                         "init_steps_left": self.init_steps_left, "warmup_rollouts": self.warmup_rollouts},
            "constraints": [hook.state_dict() for hook in self.post_step_hooks],
            "rollout": None if self.rollout is None else self.rollout.state_dict(),
            "lstm": {"state": clone(self.state), "next_start": clone(self.next_start)},
            "rnd": None if self.rnd is None else self.rnd.state_dict(),  # networks and normalisers
            "last_metrics": dict(self.last_metrics),
            "teacher": None if self.teacher is None else {
                "weights": self.teacher.state_dict(), "state": clone(self.teacher_state),
                "initial": clone(self.teacher_initial)},
            "retention": [term.state_dict() for term in self.retention],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`; storage and hook states only where `begin` / `plan` built them
        (a policy loaded for evaluation needs the weights alone)."""
        self.online.load_state_dict(state["online"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.batch_rng.bit_generator.state = state["batch_rng"]
        counters = state["counters"]
        self.rollouts_done, self.num_updates, self.init_steps_left, self.warmup_rollouts = (
            counters["rollouts_done"], counters["num_updates"], counters["init_steps_left"],
            counters.get("warmup_rollouts", 0))
        for hook, hook_state in zip(self.post_step_hooks, state.get("constraints", [])):
            hook.load_state_dict(hook_state)
        self._restored = {"rollout": state["rollout"], **state["lstm"]}  # until the next step()
        self.restore_storage()
        if self.rnd is not None and state["rnd"] is not None:
            self.rnd.load_state_dict(state["rnd"])
        self.last_metrics = dict(state.get("last_metrics", {}))
        if state.get("teacher") is not None:
            self.set_teacher(state["teacher"]["weights"])
            self.teacher_state, self.teacher_initial = clone(state["teacher"]["state"]), clone(state["teacher"]["initial"])
        for term, term_state in zip(self.retention, state.get("retention", [])):
            term.load_state_dict(term_state)

    def restore_storage(self) -> None:
        """Put a loaded rollout and LSTM states into the storage, whether `begin` ran before the
        load or runs after it (a task-sequence resume re-enters its phase)."""
        saved, r = self._restored, self.rollout
        if saved is None or r is None or saved["rollout"] is None or saved["next_start"].shape[0] != r.num_envs:
            return
        r.load_state_dict(saved["rollout"])
        self.state, self.next_start, self._pending = clone(saved["state"]), clone(saved["next_start"]), None

    def acting_network(self) -> nn.Module:
        """The network that chooses actions (what export packs and eval reports sparsity of)."""
        return self.online

    def load_exported(self, weights: dict[str, torch.Tensor]) -> None:
        self.online.load_state_dict(weights)

    def save_storage(self, directory: Any) -> bool:
        return False  # the rollout is small: it travels in state_dict

    def load_storage(self, directory: Any) -> bool:
        """Nothing bulky to read: the rollout in progress came back with load_state_dict, so the
        resume is exact (True)."""
        return True
