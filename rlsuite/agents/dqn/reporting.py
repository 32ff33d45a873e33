"""What a run prints, logs and checks about a DQN agent besides its losses: the warnings about the
run as planned, the replay's size (projected bytes, the pre-flight refusal, the description), the
logged scalars and status text, and the plasticity and sparsity diagnostics."""
from __future__ import annotations

from typing import Any

from gymnasium import spaces

from rlsuite.agents.common import to_tensor
from rlsuite.nn.diagnostics import plasticity_report
from rlsuite.nn.optim import optimizer_report
from rlsuite.replay import ReplayBuffer
from rlsuite.run import seeding
from rlsuite.run.preflight import check_replay_slots


class DQNReporting:
    """DQN's reports (DQN inherits them; they read its config, networks, counters and replay, and
    call its `epsilon` and `updates_due`)."""

    def plan_warnings(self, total_env_steps: int, fresh_replay_every: int = 0) -> list[str]:
        """What this run, as planned, will not do (one line each; train prints them at the start):
        no gradient update, no mask update, pruning that stops short of gmp.sparsity, an epsilon
        schedule that does not finish. `fresh_replay_every`: env steps between replay resets (task
        sequences with train.reset_replay), each of which pauses updates for learning_starts steps."""
        c, out = self.cfg, []
        horizon = min(total_env_steps, fresh_replay_every or total_env_steps)
        if self.updates_due(horizon) == 0 or horizon <= c.learning_starts:
            where = f"each task's {horizon:,} steps" if fresh_replay_every else f"{total_env_steps:,} steps"
            out.append(f"no gradient update will run: {where} do not pass agent.learning_starts={c.learning_starts:,} "
                       "(the result will be an untrained network)")
        if self.pruner is not None and not out:  # (with no update at all, nothing else needs saying)
            reached = self.pruner.planned_final_sparsity()
            if reached == 0.0:
                out.append(f"no mask update will run: pruning window = updates {self.pruner.start_update:,}-"
                           f"{self.pruner.end_update:,} of {self.total_updates:,}, masks every gmp.update_freq="
                           f"{c.gmp.update_freq:,}; the network stays dense (lower gmp.update_freq or train longer)")
            elif reached < c.gmp.sparsity - 1e-3:
                out.append(f"pruning will stop at sparsity {reached:.3f}, not gmp.sparsity={c.gmp.sparsity}: the last "
                           f"mask update before the window ends is short of it (lower gmp.update_freq or train longer)")
        decay_end = c.epsilon_decay_start + c.epsilon_decay_steps
        if decay_end > horizon and c.epsilon_start != c.epsilon_end:
            end_eps = self.epsilon(horizon)
            out.append(f"epsilon will still be {end_eps:.3f} at the end (it reaches epsilon_end={c.epsilon_end} "
                       f"at step {decay_end:,})")
        return out

    def parameter_count(self) -> int:
        """Parameters of the online Q-network (encoder + head), as printed at the start of a run."""
        return sum(p.numel() for p in self.online.parameters())

    def storage_description(self) -> str:
        gb = self.storage_bytes(self.ctx.cfg, self.ctx.observation_space, self.ctx.frame_stack) / 1e9
        return f"replay {self.ctx.cfg.replay.capacity:,} transitions ≈ {gb:.2f} GB"

    @staticmethod
    def storage_bytes(run: Any, observation_space: spaces.Space, frame_stack: int, transitions: int | None = None) -> int:
        """Memory of the replay buffer holding `transitions` (default: its capacity)."""
        return ReplayBuffer.projected_bytes(transitions or run.replay.capacity, observation_space, frame_stack)

    @staticmethod
    def check_storage(run: Any, num_envs: int, frame_stack: int) -> None:
        """Refuse a replay capacity that leaves an env too few slots (before any env is built)."""
        check_replay_slots(run.replay.capacity, num_envs, frame_stack, run.agent.n_step)

    def scalars(self, env_step: int) -> dict[str, float]:
        # Adam+CM's buffer (accepted / rejected momenta) rides with the losses, every train.log_every steps.
        return {"charts/epsilon": self.current_epsilon, **optimizer_report(self.optimizer)}

    def status(self, env_step: int) -> str:
        return f"eps {self.current_epsilon:.3f}"

    def diagnostics(self, env_step: int = 0) -> dict[str, float]:
        """plasticity/ (dormant units, srank, norms) on `train.diagnostics_batch` states drawn from
        the replay on the run's diagnostics stream (srank on a 32-state training batch could never
        exceed 32; a stream of its own leaves training untouched), and sparsity/ when pruning."""
        states = None
        if getattr(self, "buffer", None) is not None and len(self.buffer) > 0:
            run = self.ctx.cfg
            states = self.buffer.sample_states(run.train.diagnostics_batch,
                                               seeding.int_seed(run.train.seed, "diagnostics", env_step))
        return self.diagnostics_on(states)

    def diagnostics_on(self, states: Any = None) -> dict[str, float]:
        """plasticity/ scalars on `states` (none without states), learning rate, and sparsity/."""
        out = {} if states is None else plasticity_report(self.online, self.online.encoder,
                                                          to_tensor(states, self.device))
        out.update(self.probe.last)
        self.probe.arm()  # the next update measures per-layer grad norm and effective learning rate
        out["charts/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return {**out, **(self.pruner.report() if self.pruner is not None else {})}

    def record_extras(self) -> dict[str, float]:
        """Values each evaluation record keeps besides the returns: the achieved sparsity of a pruned
        network (compare flags arms that never reached gmp.sparsity)."""
        return {"sparsity": self.pruner.report()["sparsity/overall"]} if self.pruner is not None else {}
