"""DQN (Mnih et al., 2015) with the options researchers toggle most.

Defaults are Dopamine's JAX DQN as used by the GMP paper (Obando-Ceron et al., ICML 2024, Table 2):
Adam (lr 6.25e-5, eps 1.5e-4), batch 32, 20k steps before learning, one update every 4 env
steps, target copy every 8k env steps, 1-step vanilla targets, MSE loss, epsilon 1 until
learning starts, then linearly to 0.01 over 250k steps (Dopamine's `linearly_decaying_epsilon`
with its warm-up). Options: double targets (van Hasselt et al. 2016), n-step returns, prioritized
replay (Schaul et al. 2016), a dueling head (Wang et al. 2016), Huber loss, gradient clipping.

The agent owns its networks, optimizer and exploration RNG. The training loop (rlsuite.loops.online)
calls `act` every vector step and `train_step` after storing the transitions; `train_step`
decides how many gradient updates are owed at the configured replay ratio, so vector envs of any
width keep the same updates-per-env-step as Dopamine.

One job per file beside this one (the package's __init__ lists them): the config, the Q-network,
the TD loss, the epsilon schedule; DQN inherits its reporting and fine-tuning methods.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlsuite.run import seeding
from rlsuite.agents.base import StorageContext, Transition
from rlsuite.agents.common import (SMALL_BATCH, SMALL_NETWORK_PARAMS, after_optimizer_step, batch_size_of,
                                    single_thread_if, to_tensor, zeros_batch)
from rlsuite.agents.dqn.config import DQNConfig
from rlsuite.agents.dqn.exploration import linear_epsilon
from rlsuite.agents.dqn.finetune import DQNFineTuning
from rlsuite.agents.dqn.loss import td_loss, td_targets
from rlsuite.agents.dqn.network import QNetwork
from rlsuite.agents.dqn.reporting import DQNReporting
from rlsuite.config import validate
from rlsuite.errors import TrainingDiverged, UserError, brief_space
from rlsuite.nn.diagnostics import UpdateProbe
from rlsuite.nn.nap import NormProjector
from rlsuite.nn.optim import make_optimizer
from rlsuite.nn.pruning import MagnitudePruner
from rlsuite.nn.schedules import lr_factor
from rlsuite.run.profiling import PhaseTimer
from rlsuite.replay import ReplayBuffer
from rlsuite.retention.terms import retention_loss
from rlsuite.run.speed import SpeedPlan


class DQN(DQNReporting, DQNFineTuning):
    """A DQN agent: `act`, `train_step` / `update`, `state_dict` / `load_state_dict`."""

    name = "dqn"
    EXPORT_KEY = "online"  # the state_dict entry `rlsuite export` packs: the acting network

    def __init__(self, cfg: DQNConfig, observation_space: spaces.Space, action_space: spaces.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        """`seed` is the run's seed: the network init and the exploration stream are its
        `network` and `exploration` streams (rlsuite.run.seeding), never the global RNGs."""
        if not isinstance(action_space, spaces.Discrete):
            raise UserError(f"DQN needs a discrete action space, got {brief_space(action_space)}")
        validate(cfg, "agent.")  # the declared field ranges, also for configs built without build_run_config
        self.cfg = cfg
        self.device = torch.device(device)
        self.observation_space = observation_space
        self.num_actions = int(action_space.n)
        with torch.random.fork_rng(devices=[]):  # the init draws from its own stream, leaving the global one
            torch.manual_seed(seeding.int_seed(seed, "network"))
            self.online = QNetwork(cfg, observation_space, self.num_actions).to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.accelerate(SpeedPlan(device_type=self.device.type))  # fp32 eager until the run's plan arrives
        # One fused kernel per step instead of a Python loop over parameters: the update of a
        # small Q-network is dominated by per-op overhead on CPU.
        self.optimizer = make_optimizer(cfg.optimizer, cfg.cm, seed, self.online.parameters(), torch.optim.Adam,
                                        lr=cfg.lr, eps=cfg.adam_eps, fused=True)
        # Updates of a small network are per-op overhead, not arithmetic: a second thread gains
        # nothing when the machine is quiet and stalls every op when it is not (see SMALL_BATCH).
        small_network = sum(p.numel() for p in self.online.parameters()) < SMALL_NETWORK_PARAMS
        self._update_single_threaded = small_network and self.device.type == "cpu"
        self.rng = seeding.generator(seed, "exploration")
        self.num_updates = 0
        self.target_syncs = 0
        self.post_step_hooks: list[Any] = []  # weight-space constraints (GMP masks, NaP) run after each step
        self.pruner: MagnitudePruner | None = None
        # NaP's radii are the norms at initialisation, so they are recorded now, before any step.
        self.projector = self._make_projector()
        self.total_updates = 0  # set by plan(); the learning-rate schedule runs over it
        self.probe = UpdateProbe(self.online)
        self.buffer: ReplayBuffer | None = None  # built per phase by begin()
        self.ctx: StorageContext | None = None
        self.current_epsilon = cfg.epsilon_start
        self.last_async_metrics: dict[str, torch.Tensor] | None = None  # of learn_while_stepping, for observe
        self._replay_state: dict | None = None
        # Fine-tuning (rlsuite.loops.finetune): the frozen pre-trained Q-network read as a policy
        # softmax(Q/temperature), retention terms (rlsuite.retention), the protected replay (EM).
        self.teacher: QNetwork | None = None
        self.temperature = 1.0
        self.retention: list[Any] = []
        self.memory: Any = None
        self.timer = PhaseTimer()  # the loop sets its own with train.profile: add, sample, update are charged to it

    def speed_probe(self) -> tuple[nn.Module, tuple[Any, ...]]:
        """The network and a training-size batch that rlsuite.run.speed times for train.precision=auto."""
        return self.online, (zeros_batch(self.observation_space, self.cfg.batch_size, self.device),)

    def accelerate(self, plan: SpeedPlan) -> None:
        """Run the online and target networks under `plan` (rlsuite.run.speed): their forward passes in
        updates and acting. The teacher, diagnostics and exports keep calling the fp32 modules."""
        self.speed = plan
        plan.prepare(self.online), plan.prepare(self.target)
        self.online_fwd, self.target_fwd = plan.wrap(self.online), plan.wrap(self.target)

    def _make_projector(self) -> NormProjector | None:
        nap = self.cfg.nap
        if not nap.project:
            return None
        if nap.norm == "none":
            warnings.warn("nap.project without nap.norm: the projection changes the network's "
                          "function at every step (weight projection only, not NaP)", stacklevel=3)
        exclude = [] if nap.project_head else self.online.output_layers()
        return NormProjector(self.online, exclude, nap.project_every)

    def plan(self, total_env_steps: int) -> None:
        """Attach the weight-space constraints whose schedules depend on the run length.
        GMP counts gradient updates, so its window is set from the updates this run will make."""
        self.total_updates = max(1, self.updates_due(total_env_steps))
        lr_factor(0.0, self.cfg.lr_schedule, self.cfg.lr_final)  # an unknown schedule fails before training
        if self.cfg.gmp.sparsity > 0 and self.pruner is None:
            self.pruner = MagnitudePruner(self.cfg.gmp, self.online, self.total_updates, self.optimizer)
            self.post_step_hooks.append(self.pruner)
        # After the pruner: masking then projecting leaves pruned weights at zero *and* the norm at its radius.
        if self.projector is not None and self.projector not in self.post_step_hooks:
            self.post_step_hooks.append(self.projector)

    # ------------------------------------------------------------------ the loop's protocol (rlsuite.agents.base)

    def begin(self, ctx: StorageContext) -> None:
        """A fresh replay buffer for a phase, seeded from the run's `replay` stream of that phase."""
        self.ctx, self.buffer = ctx, None  # free the old storage before allocating the new one
        run = ctx.cfg
        self.buffer = ReplayBuffer(run.replay, ctx.observation_space, ctx.num_envs, frame_stack=ctx.frame_stack,
                                   n_step=self.cfg.n_step, gamma=self.cfg.gamma,
                                   seed=seeding.int_seed(run.train.seed, "replay", ctx.phase), device=self.device,
                                   storage_device=self.device if run.replay.on_device else None)

    def step(self, obs: Any, env_step: int, exploration_step: int) -> np.ndarray:
        """Epsilon-greedy training actions, epsilon from the schedule at `exploration_step`."""
        self.current_epsilon = self.epsilon(exploration_step)
        return self.act(obs, self.current_epsilon)

    def observe(self, t: Transition, env_step: int) -> dict[str, torch.Tensor] | None:
        """Store the vector step in the replay buffer, then do the updates owed at the replay ratio."""
        with self.timer.phase("add"):
            self.buffer.add(t.obs, t.actions, t.reward, t.terminated, t.truncated, t.final_obs)
        metrics = self.train_step(env_step, self.buffer, beta=self.beta(env_step))
        ahead, self.last_async_metrics = self.last_async_metrics, None
        return metrics if metrics is not None else ahead

    def learn_while_stepping(self, env_step: int) -> None:
        """env.async_step: the updates owed by `env_step` (the step being taken), from the replay
        as it is, while the envs step; `observe` then finds none owed. Before learning_starts
        transitions are stored it does nothing, so no update is dropped."""
        if self.buffer.num_added >= self.cfg.learning_starts:
            self.last_async_metrics = self.train_step(env_step, self.buffer, beta=self.beta(env_step))

    def beta(self, env_step: int) -> float:
        """PER's importance-sampling exponent, annealed linearly over the run (Schaul et al. 2016)."""
        replay, total = self.ctx.cfg.replay, self.ctx.cfg.train.total_steps
        progress = min(1.0, env_step / max(1, total))
        return replay.beta_start + progress * (replay.beta_end - replay.beta_start)

    def save_storage(self, directory: Path) -> bool:
        """With train.save_replay: the replay buffer's contents, for exact resume."""
        if not self.ctx.cfg.train.save_replay:
            return False
        self.buffer.save(directory)
        return True

    def load_storage(self, directory: Path) -> bool:
        """The replay saved with the checkpoint just loaded; False (an empty buffer) when there is none."""
        state, self._replay_state = self._replay_state, None
        if state is None or not Path(directory).is_dir():
            return False
        self.buffer.load(directory)
        self.buffer.load_state_dict(state)
        return True

    # ------------------------------------------------------------------ acting

    def epsilon(self, env_step: int) -> float:
        c = self.cfg
        return linear_epsilon(env_step, c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps, c.epsilon_decay_start)

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Epsilon-greedy actions (int64, (num_envs,)) for a batch of observations (one per env).
        Draws from `rng` when given (evaluation passes its own stream, so evaluating never moves
        the training exploration stream), else from the agent's exploration stream."""
        rng = self.rng if rng is None else rng
        batch = batch_size_of(obs)
        actions = rng.integers(self.num_actions, size=batch)
        greedy = rng.random(batch) >= epsilon
        if greedy.any():  # skip the forward pass entirely while acting at random
            with torch.inference_mode(), single_thread_if(batch <= SMALL_BATCH and self.device.type == "cpu"):
                q = self.online_fwd(to_tensor(obs, self.device))
            actions[greedy] = q.argmax(dim=1).cpu().numpy()[greedy]
        return actions

    # ------------------------------------------------------------------ learning

    def updates_due(self, env_step: int) -> int:
        """Gradient updates due in total by this env step: `gradient_steps` for every multiple of
        train_freq past learning_starts (SB3: train when num_timesteps > learning_starts at a
        multiple of train_freq; Dopamine: every update_period steps once the replay holds
        min_replay_history)."""
        c = self.cfg
        return c.gradient_steps * max(0, env_step // c.train_freq - c.learning_starts // c.train_freq)

    def updates_owed(self, env_step: int) -> int:
        """Gradient updates due by this env step and not yet done."""
        return self.updates_due(env_step) - self.num_updates

    def train_step(self, env_step: int, buffer: Any, beta: float = 1.0) -> dict[str, torch.Tensor] | None:
        """Do the updates owed by `env_step`, then sync the target net if its period passed.
        Returns the metrics of the last update, or None when no update ran."""
        metrics = None
        owed = max(0, self.updates_owed(env_step))
        if buffer.num_added < self.cfg.learning_starts:
            # A run resumed without its replay buffer refills it before learning again,
            # instead of over-fitting a handful of transitions; the skipped updates are dropped.
            self.num_updates += owed
            owed = 0
        with single_thread_if(owed > 0 and self._update_single_threaded):
            for _ in range(owed):
                with self.timer.phase("sample"):
                    if self.memory is not None:  # EM: part of every batch from the protected transitions
                        batch = self.memory.mix(buffer, self.cfg.batch_size, beta)
                    else:
                        batch = buffer.sample(self.cfg.batch_size, beta=beta)
                with self.timer.phase("update"):
                    metrics = self.update(batch, buffer)
        if env_step // self.cfg.target_update_period > self.target_syncs:
            self.target_syncs = env_step // self.cfg.target_update_period
            with self.timer.phase("update", count=False):  # part of the updates' time, not a call of its own
                self.sync_target()
        return metrics

    def update(self, batch: Any, buffer: Any = None) -> dict[str, torch.Tensor]:
        """One gradient step on a replay batch; updates priorities when the buffer has them.
        Metrics are returned as 0-d tensors so the hot loop pays for `.item()` only when logging."""
        prioritized = buffer is not None and getattr(buffer, "prioritized", False)
        obs = to_tensor(batch.obs, self.device)
        next_obs = to_tensor(batch.next_obs, self.device)
        with torch.no_grad():
            target = td_targets(batch.reward, batch.discount, next_obs, self.target_fwd, self.online_fwd,
                                self.cfg.double)
        q_all = self.online_fwd(obs)
        q_taken = q_all.gather(1, batch.action.view(-1, 1)).squeeze(1)
        loss = td_loss(q_taken, target, batch.weights if prioritized else None, self.cfg.loss)
        extra_metrics = {}
        if self.retention:  # BC / KS as policy distillation of the teacher's Q-values (rlsuite.retention)
            extra, extra_metrics = retention_loss(self.retention, self, {"obs": obs, "logits": q_all / self.temperature})
            loss = loss + extra
        if self.memory is not None:  # EM: how the protected rows of the batch fit (rows with index -1)
            protected = batch.indices < 0
            extra_metrics["retention/em_coef"] = self.memory.cfg.fraction
            if bool(protected.any()):
                extra_metrics["retention/em_loss"] = td_loss(q_taken[protected].detach(), target[protected], None,
                                                             self.cfg.loss)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"TD loss became {loss.item()} at update {self.num_updates}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.online.parameters(), self.cfg.max_grad_norm, foreach=True)
        self._set_learning_rate()
        self.optimizer.step()
        after_optimizer_step(self)
        if prioritized:
            buffer.update_priorities(batch.indices, (q_taken - target).detach().abs())
        return {"losses/td": loss.detach(), "losses/q_values": q_taken.detach().mean(), **extra_metrics}

    def _set_learning_rate(self) -> None:
        if self.cfg.lr_schedule == "constant":
            return
        progress = self.num_updates / max(1, self.total_updates)
        lr = self.cfg.lr * lr_factor(progress, self.cfg.lr_schedule, self.cfg.lr_final)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def reset_optimizer(self) -> None:
        """Forget Adam's moments and step counts (an option at task switches)."""
        self.optimizer.state.clear()

    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    # ------------------------------------------------------------------ state

    def acting_network(self) -> nn.Module:
        """The network that chooses actions (what export packs and eval reports sparsity of)."""
        return self.online

    def load_exported(self, weights: dict[str, torch.Tensor]) -> None:
        """Load an export's weights (rlsuite.trained.export) as both the online and the target network."""
        self.online.load_state_dict(weights)
        self.target.load_state_dict(weights)

    def _saves_replay(self) -> bool:
        return getattr(self, "buffer", None) is not None and self.ctx.cfg.train.save_replay

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
            "target_syncs": self.target_syncs,
            "rng": self.rng.bit_generator.state,
            "constraints": [hook.state_dict() for hook in self.post_step_hooks],
            "replay": self.buffer.state_dict() if self._saves_replay() else None,
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "retention": [term.state_dict() for term in self.retention],
            "memory": None if self.memory is None else self.memory.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._replay_state = state.get("replay")  # applied by load_storage, with the buffer's contents
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = state["num_updates"]
        self.target_syncs = state["target_syncs"]
        self.rng.bit_generator.state = state["rng"]
        for hook, hook_state in zip(self.post_step_hooks, state.get("constraints", [])):
            hook.load_state_dict(hook_state)
        if state.get("teacher") is not None:
            self.set_teacher(state["teacher"])
        for term, term_state in zip(self.retention, state.get("retention", [])):
            term.load_state_dict(term_state)
        if self.memory is not None and state.get("memory") is not None:
            self.memory.load_state_dict(state["memory"])
