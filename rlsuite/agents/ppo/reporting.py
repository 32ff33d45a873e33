"""What a run prints, logs and checks about a PPO agent besides its losses: the warnings about the
run as planned, the pre-flight check of the minibatch split, the storage description, the logged
scalars and status text, and the plasticity and sparsity diagnostics."""
from __future__ import annotations

from typing import Any

import torch

from rlsuite.agents.ppo.config import check_split
from rlsuite.agents.ppo.observations import map_obs
from rlsuite.nn.diagnostics import plasticity_report
from rlsuite.nn.optim import optimizer_report
from rlsuite.run import seeding


class PPOReporting:
    """PPO's reports (PPO inherits them; they read its config, network, counters and rollout, and
    call its `rollouts_due`)."""

    def plan_warnings(self, total_env_steps: int, fresh_storage_every: int = 0) -> list[str]:
        """What this run, as planned, will not do (one line each)."""
        c, out = self.cfg, []
        if self.num_envs is None:
            return out
        horizon = min(total_env_steps, fresh_storage_every or total_env_steps)
        if self.rollouts_due(horizon, self.num_envs) == 0:
            need = c.num_steps + (c.rnd.obs_norm_init_steps if c.rnd.enabled else 0)
            out.append(f"no update will run: {horizon:,} env steps over {self.num_envs} envs do not complete a "
                       f"rollout ({need:,} vector steps incl. RND's normaliser init)")
        if self.pruner is not None and not out:
            reached = self.pruner.planned_final_sparsity()
            if reached < c.gmp.sparsity - 1e-3:
                out.append(f"pruning will stop at sparsity {reached:.3f}, not gmp.sparsity={c.gmp.sparsity} "
                           f"(window = updates {self.pruner.start_update:,}-{self.pruner.end_update:,} of "
                           f"{self.total_updates:,}, masks every gmp.update_freq={c.gmp.update_freq:,})")
        return out

    def parameter_count(self) -> int:
        """Parameters of the actor-critic (RND's networks not included)."""
        return sum(p.numel() for p in self.online.parameters())

    def storage_description(self) -> str:
        c = self.cfg
        return f"rollout {c.num_steps} x {self.num_envs} steps" + (" + RND" if c.rnd.enabled else "")

    @staticmethod
    def check_storage(run: Any, num_envs: int, frame_stack: int) -> None:
        """Refuse minibatch splits that do not divide the rollout (before any env is built)."""
        check_split(run.agent, num_envs)

    def scalars(self, env_step: int) -> dict[str, float]:
        # Adam+CM's buffer (accepted / rejected momenta) rides with the losses, every train.log_every steps.
        return {"charts/rollouts": float(self.rollouts_done), **optimizer_report(self.optimizer)}

    def status(self, env_step: int) -> str:
        if self.init_steps_left > 0:
            return f"rnd init {self.init_steps_left}"
        kl = self.last_metrics.get("losses/approx_kl")
        return "" if kl is None else f"kl {float(kl):.3f}"

    def diagnostics(self, env_step: int) -> dict[str, float]:
        """plasticity/ on up to train.diagnostics_batch observations of the rollout buffer (drawn on
        the run's diagnostics stream), the last update's per-layer probe, and sparsity/."""
        out: dict[str, float] = {}
        r = self.rollout
        filled = (r.num_steps if r.complete else r.pos) * r.num_envs if r is not None else 0
        if filled:
            rng = seeding.generator(self.seed, "diagnostics", env_step)  # a stream of its own: training is untouched
            rows = torch.from_numpy(rng.choice(filled, min(filled, self.diagnostics_batch), replace=False))
            obs = map_obs(lambda v: v.flatten(0, 1)[rows.to(self.device)], r.obs)
            out.update(plasticity_report(self.online, self.online.actor_trunk.encoder, obs))
        out.update(self.probe.last)
        self.probe.arm()
        out["charts/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return {**out, **(self.pruner.report() if self.pruner is not None else {})}

    def record_extras(self) -> dict[str, float]:
        return {"sparsity": self.pruner.report()["sparsity/overall"]} if self.pruner is not None else {}
