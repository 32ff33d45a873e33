"""PPO (Schulman et al., 2017) with GAE, an optional LSTM core and an optional RND bonus.

Defaults are CleanRL's ppo_atari_envpool.py where it has the setting: rollouts of 128 steps per
env, 4 epochs x 4 minibatches, Adam (lr 2.5e-4 annealed linearly to 0, eps 1e-5), clip 0.1 for
the ratio and the value, normalised advantages, entropy 0.01, value 0.5, gradient clip 0.5,
gamma 0.99, lambda 0.95. The loop (rlsuite.loops.online) drives it through rlsuite.agents.base: `step`
acts (sampling from the policy on the run's `exploration` stream), `observe` stores the vector
step and, when the rollout is full, bootstraps, computes GAE and runs the epochs of clipped
surrogate updates.

Episode ends. `terminated`: no bootstrap. `truncated` (a time limit, not a real end): the reward
of that step gets gamma V(final obs) added, V evaluated at acting time on `Transition.final_obs`
(as SB3 does); then the episode counts as ended for GAE. Either way GAE is cut there.

LSTM core (`core = "lstm"`; the LRU core, `core = "lru"`, rlsuite.nn.lru, is carried, stored and
replayed the same way with its state (Re x, Im x)).
Every env's (h, c) is carried across rollouts and zeroed before the
first observation of an episode. The state before a rollout's first step is stored with it, and
minibatches are groups of whole env sequences replayed from that state with the same resets, so
the update's forward pass is the rollout's forward pass (tested to 1e-6).

RND (`rnd.enabled`, Burda et al. 2019; rlsuite.nn.rnd). Initialisation of the observation
normaliser inside the protocol: the first `rnd.obs_norm_init_steps` vector steps take uniformly
random actions, and their next observations only update the normaliser (nothing is stored, no
update runs; GMP and the lr schedule count only the rollouts after it). Afterwards the intrinsic
rewards of a rollout are the predictor's errors on each step's next observation (the true last
one where an episode ended), with the normaliser from before the rollout, which is then updated
with them; they are divided by the running std of the non-episodic discounted intrinsic returns.
A second value head learns the intrinsic returns (gamma_int, GAE ignoring episode ends), the
policy uses ext_coef A_ext + int_coef A_int, and the predictor trains on a random
rnd.update_proportion of every minibatch, in the same loss and optimizer step.

Departures from CleanRL: the torso is an rlsuite encoder (encoder.init 'orthogonal' = CleanRL's
layer_init, gain sqrt 2, zero bias, used by ppo-classic and ppo-atari; encoder.activation 'relu' by
default, 'tanh' as CleanRL's classic-control MLPs and ppo-classic); the heads are orthogonal as CleanRL's
(policy 0.01, value 1); actions are sampled on the run's `exploration` stream, never torch's global RNG.

One job per file beside this one (the package's __init__ lists them): the config, the
actor-critic, the objective, the rollout storage; PPO inherits its checkpoint, reporting and
fine-tuning methods.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlsuite.run import seeding
from rlsuite.agents.base import StorageContext, Transition
from rlsuite.agents.common import after_optimizer_step, batch_size_of, evaluation_logits, zeros_batch
from rlsuite.agents.ppo.checkpoint import PPOCheckpoint
from rlsuite.agents.ppo.config import PPOConfig, check_split
from rlsuite.agents.ppo.finetune import PPOFineTuning
from rlsuite.agents.ppo.network import ActorCritic, sample_actions
from rlsuite.agents.ppo.objective import explained_variance, gae, learning_rate, ppo_objective
from rlsuite.agents.ppo.observations import copy_obs_row, frame_stack_of, map_obs, to_tensor
from rlsuite.agents.ppo.reporting import PPOReporting
from rlsuite.agents.ppo.rollout import Rollout
from rlsuite.config import validate
from rlsuite.errors import TrainingDiverged, UserError, brief_space
from rlsuite.nn.diagnostics import UpdateProbe
from rlsuite.nn.nap import NormProjector
from rlsuite.nn.optim import make_optimizer
from rlsuite.nn.pruning import MagnitudePruner
from rlsuite.nn.rnd import RNDNetworks
from rlsuite.retention.terms import actor_trains, retention_loss
from rlsuite.run.speed import SpeedPlan


class PPO(PPOCheckpoint, PPOReporting, PPOFineTuning):
    """A PPO agent driven by rlsuite.loops.online through the OnlineAgent protocol (rlsuite.agents.base)."""

    name = "ppo"
    EXPORT_KEY = "online"  # the state_dict entry `rlsuite export` packs: the actor-critic

    def __init__(self, cfg: PPOConfig, observation_space: spaces.Space, action_space: spaces.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise UserError(f"PPO needs a discrete action space, got {brief_space(action_space)}")
        validate(cfg, "agent.")
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.observation_space, self.num_actions = observation_space, int(action_space.n)
        self.rnd: RNDNetworks | None = None
        with torch.random.fork_rng(devices=[]):  # init draws from the run's network stream only
            torch.manual_seed(seeding.int_seed(seed, "network"))
            self.online = ActorCritic(cfg, observation_space, self.num_actions).to(self.device)
            if cfg.rnd.enabled:
                self.rnd = RNDNetworks(observation_space, frame_stack_of(observation_space), cfg.rnd.gamma_int, self.device)
        self.accelerate(SpeedPlan(device_type=self.device.type))  # fp32 eager until the run's plan arrives
        # parameter groups: one, or with an LRU core a second for its recurrent part at half the lr (network.py)
        trained = self.online.parameter_groups(list(self.rnd.predictor.parameters()) if self.rnd else [], cfg.lr)
        self.optimizer = make_optimizer(cfg.optimizer, cfg.cm, seed, trained, torch.optim.Adam, lr=cfg.lr, eps=cfg.adam_eps)
        self.rng = seeding.generator(seed, "exploration")  # training actions
        self.batch_rng = seeding.generator(seed, "replay")  # minibatch shuffles, RND's predictor mask
        self.rollouts_done = self.num_updates = self.warmup_rollouts = 0  # warm-up: rollouts with the actor frozen
        self.init_steps_left = cfg.rnd.obs_norm_init_steps if cfg.rnd.enabled else 0
        self.total_env_steps = self.num_envs = None  # set by plan() and begin()
        self.total_updates = self.total_rollouts = 0
        self.post_step_hooks: list[Any] = []  # weight-space constraints (GMP masks, NaP) run after each step
        self.pruner: MagnitudePruner | None = None
        self.projector = self._make_projector()  # NaP's radii are the norms at init
        self.probe = UpdateProbe(self.online)
        self.rollout: Rollout | None = None
        # LSTM states (trunks, 2, envs, hidden) of the training and evaluation envs; which training envs
        # start an episode at the next step; what step() computed until observe() stores it.
        self.state = self.eval_state = self.next_start = self._pending = self._restored = None
        self.last_metrics: dict[str, Any] = {}
        self.diagnostics_batch = 1024
        # Fine-tuning (rlsuite.loops.finetune): the frozen pre-trained policy, its recurrent state while
        # acting, and the knowledge-retention terms added to the loss (rlsuite.retention).
        self.teacher: ActorCritic | None = None
        self.teacher_state = self.teacher_initial = None
        self.retention: list[Any] = []

    def speed_probe(self) -> tuple[nn.Module, tuple[Any, ...]]:
        """The network and one minibatch (from the first phase's rollout shape) that rlsuite.run.speed
        times for train.precision=auto; recurrent: whole env sequences from a zero state."""
        c, envs = self.cfg, self.num_envs or 1
        if self.online.hidden:
            rows = max(1, envs // c.num_minibatches)
            starts = torch.zeros(c.num_steps, rows, device=self.device)
            return self.online, (zeros_batch(self.observation_space, c.num_steps * rows, self.device),
                                 self.online.initial_state(rows, self.device), starts)
        rows = max(1, envs * c.num_steps // c.num_minibatches)
        return self.online, (zeros_batch(self.observation_space, rows, self.device), None, None)

    @property
    def bf16_caution(self) -> str | None:
        """Why bf16 may cost this agent learning (rlsuite.run.speed: auto then keeps fp32, an explicit
        bf16 gets a warning), or None. Measured (docs/speed.md): an LSTM reading low-dimensional
        observations through bf16 features learned far less on velocity-masked CartPole. The LRU core
        was not measured under bf16 (its recurrence runs in fp32 anyway); it is treated as the LSTM."""
        if self.online.hidden and isinstance(self.observation_space, spaces.Box) and len(self.observation_space.shape) == 1:
            measured = "" if self.cfg.core == "lstm" else f" (an {self.cfg.core.upper()} core is kept in fp32 alike, unmeasured)"
            return ("bf16 cost learning of an LSTM on low-dimensional observations (velocity-masked CartPole: "
                    f"best 120/36/272 against fp32's 315/274/267; docs/speed.md){measured}")
        return None

    def accelerate(self, plan: SpeedPlan) -> None:
        """Run the actor-critic under `plan` (rlsuite.run.speed) when acting and updating; RND's
        networks, the teacher and diagnostics keep calling their fp32 modules."""
        self.speed = plan
        plan.prepare(self.online)
        self.online_fwd = plan.wrap(self.online)

    def _make_projector(self) -> NormProjector | None:
        nap, exclude = self.cfg.nap, [] if self.cfg.nap.project_head else self.online.output_layers()
        return NormProjector(self.online, exclude, nap.project_every) if nap.project else None

    # ------------------------------------------------------------------ planning

    def rollouts_due(self, env_steps: int, num_envs: int, first_phase: bool = True) -> int:
        """Rollouts (rounds of updates) that `env_steps` summed over `num_envs` envs complete."""
        per_env = env_steps // num_envs - (self.cfg.rnd.obs_norm_init_steps if self.cfg.rnd.enabled and first_phase else 0)
        return max(0, per_env) // self.cfg.num_steps

    def plan(self, total_env_steps: int) -> None:
        """Remember the run length; the lr annealing and GMP's window (in gradient updates =
        rollouts x epochs x minibatches) are attached in `begin`, which knows num_envs."""
        self.total_env_steps = total_env_steps
        self._attach_hooks()

    def _attach_hooks(self) -> None:
        if self.total_env_steps is None or self.num_envs is None:
            return
        c = self.cfg
        self.total_rollouts = self.rollouts_due(self.total_env_steps, self.num_envs)
        self.total_updates = max(1, self.total_rollouts * c.update_epochs * c.num_minibatches)
        if c.gmp.sparsity > 0 and self.pruner is None:
            self.pruner = MagnitudePruner(c.gmp, self.online, self.total_updates, self.optimizer)
            self.post_step_hooks.append(self.pruner)
        if self.projector is not None and self.projector not in self.post_step_hooks:
            self.post_step_hooks.append(self.projector)  # after the pruner, as in DQN

    def begin(self, ctx: StorageContext) -> None:
        """Fresh rollout storage and recurrent state for a phase (a partial rollout is dropped)."""
        c = self.cfg
        check_split(c, ctx.num_envs)
        self.num_envs = ctx.num_envs
        rnd_shape = self.rnd.input_shape if self.rnd is not None else None
        self.rollout = Rollout(ctx.observation_space, c.num_steps, ctx.num_envs, self.device, rnd_shape)
        self.state = self.online.initial_state(ctx.num_envs, self.device)
        if self.teacher is not None:
            self.teacher_state = self.teacher.initial_state(ctx.num_envs, self.device)
        self.next_start = torch.ones(ctx.num_envs, device=self.device)
        self._pending = None
        train_cfg = getattr(ctx.cfg, "train", None)
        self.diagnostics_batch = getattr(train_cfg, "diagnostics_batch", self.diagnostics_batch)
        self._attach_hooks()
        self.restore_storage()  # a checkpoint loaded before this phase was (re)entered

    # ------------------------------------------------------------------ acting

    def step(self, obs: Any, env_step: int, exploration_step: int) -> np.ndarray:
        """Actions sampled from the policy (uniform while RND's normaliser initialises)."""
        self._restored = None  # from now on a begin() starts fresh storage
        if self.init_steps_left > 0:
            return self.rng.integers(self.num_actions, size=batch_size_of(obs))
        if self.rollout.pos == 0 and self.state is not None:
            self.rollout.initial_state = self.state.clone()
        obs_t = to_tensor(obs, self.device)
        with torch.no_grad():
            logits, value, value_int, new_state = self.online_fwd(obs_t, self.state, self.next_start.view(1, -1))
            if self.teacher is not None and self.online.hidden:  # the teacher's own state, for KS on sequences
                if self.rollout.pos == 0:
                    self.teacher_initial = self.teacher_state.clone()
                self.teacher_state = self.teacher(obs_t, self.teacher_state, self.next_start.view(1, -1))[3]
        actions = sample_actions(logits, self.rng)
        taken = torch.from_numpy(actions).to(self.device)
        logprob = torch.log_softmax(logits, dim=1).gather(1, taken.view(-1, 1)).squeeze(1)
        self._pending = (taken, logprob, value, value_int, new_state)
        return actions

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Evaluation actions: the most likely (or, with eval_sample, a sampled) action, uniform with
        probability epsilon; a recurrent policy carries its own evaluation state (`eval_reset`)."""
        rng = self.rng if rng is None else rng
        n = batch_size_of(obs)
        if self.online.hidden and (self.eval_state is None or self.eval_state.shape[2] != n):
            self.eval_reset(n)
        with torch.no_grad():
            logits, _, _, new_state = self.online_fwd(to_tensor(obs, self.device), self.eval_state,
                                                  torch.zeros(1, n, device=self.device))
        self.eval_state = new_state
        logits = evaluation_logits(logits, self.cfg.eval_temperature)  # agent.eval_temperature: evaluation only
        actions = sample_actions(logits, rng) if self.cfg.eval_sample else logits.argmax(1).cpu().numpy()
        explore = rng.random(n) < epsilon
        actions[explore] = rng.integers(self.num_actions, size=int(explore.sum()))
        return actions

    def eval_reset(self, num_envs: int) -> None:
        self.eval_state = self.online.initial_state(num_envs, self.device)

    def eval_episode_starts(self, done_mask: np.ndarray) -> None:
        """Zero the evaluation state of envs whose episode just ended (their next obs starts one)."""
        if self.eval_state is not None and np.any(done_mask):
            self.eval_state[:, :, torch.from_numpy(np.asarray(done_mask, bool)).to(self.device)] = 0.0

    # ------------------------------------------------------------------ storing

    def observe(self, t: Transition, env_step: int) -> dict[str, Any] | None:
        ended = np.logical_or(t.terminated, t.truncated)
        if self.rnd is not None:  # what each env saw next: the true last observation where an episode ended
            frames = self.rnd.select(to_tensor(np.where(_rows(ended, t.next_obs), t.final_obs, t.next_obs)
                                               if ended.any() and t.final_obs is not None else t.next_obs, self.device))
        if self.init_steps_left > 0:  # RND: these steps only initialise the observation normaliser
            self.init_steps_left -= 1
            self.rnd.obs_stats.update(frames)
            self.next_start = torch.from_numpy(ended).float().to(self.device)
            return None
        if self._pending is None:
            raise RuntimeError("PPO.observe without a preceding step()")
        taken, logprob, value, value_int, new_state = self._pending
        self._pending = None
        r, p = self.rollout, self.rollout.pos
        copy_obs_row(r.obs, p, to_tensor(t.obs, self.device))
        reward = torch.as_tensor(np.asarray(t.reward), dtype=torch.float32, device=self.device).clone()
        bootstrap = np.logical_and(t.truncated, np.logical_not(t.terminated))
        if bootstrap.any() and t.final_obs is not None:
            rows = np.flatnonzero(bootstrap)
            final = map_obs(lambda v: v[rows], to_tensor(t.final_obs, self.device))
            state = None if new_state is None else new_state[:, :, torch.from_numpy(rows).to(self.device)]
            with torch.no_grad():  # the state after acting, no reset: this is the same episode
                _, v_final, _, _ = self.online_fwd(final, state, torch.zeros(1, len(rows), device=self.device))
            reward[torch.from_numpy(rows).to(self.device)] += self.cfg.gamma * v_final
        r.actions[p], r.logprobs[p], r.values[p], r.rewards[p] = taken, logprob, value, reward
        if value_int is not None:
            r.values_int[p] = value_int
            r.rnd_frames[p] = frames
        r.starts[p] = self.next_start
        self.next_start = torch.from_numpy(ended).float().to(self.device)
        r.ends[p] = self.next_start
        self.state = new_state
        r.pos += 1
        return self._learn(t.next_obs) if r.full else None

    # ------------------------------------------------------------------ learning

    def _learn(self, next_obs: Any) -> dict[str, Any]:
        """Bootstrap the full rollout, compute advantages and returns, run the updates."""
        c, r = self.cfg, self.rollout
        with torch.no_grad():
            _, next_value, next_value_int, _ = self.online_fwd(to_tensor(next_obs, self.device), self.state,
                                                           self.next_start.view(1, -1))
            advantages, returns = gae(r.rewards, r.values, r.ends, next_value, c.gamma, c.gae_lambda)
            returns_int, extra = None, {}
            if self.rnd is not None:
                intrinsic = self.rnd.intrinsic_rewards(r.rnd_frames)
                adv_int, returns_int = gae(intrinsic, r.values_int, torch.zeros_like(r.ends), next_value_int,
                                           c.rnd.gamma_int, c.gae_lambda)
                advantages = c.rnd.ext_coef * advantages + c.rnd.int_coef * adv_int
                extra["rnd/intrinsic_reward"] = float(intrinsic.mean())
        metrics = self._update(advantages, returns, returns_int)
        metrics.update(extra)
        metrics["losses/explained_variance"] = explained_variance(r.values.flatten(), returns.flatten())
        r.pos, r.complete = 0, True
        self.rollouts_done += 1
        self.last_metrics = metrics
        return metrics

    def _update(self, advantages: torch.Tensor, returns: torch.Tensor, returns_int: torch.Tensor | None) -> dict[str, Any]:
        c, r = self.cfg, self.rollout
        self.warmup_rollouts = self.warmup_rollouts if actor_trains(self) else self.rollouts_done + 1
        lr = learning_rate(c, self.rollouts_done, self.total_rollouts, self.warmup_rollouts)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        recurrent = self.online.hidden > 0
        data = {"actions": r.actions, "logprobs": r.logprobs, "values": r.values, "values_int": r.values_int,
                "advantages": advantages, "returns": returns,
                "returns_int": returns_int if returns_int is not None else returns, "obs": r.obs}
        if self.rnd is not None:
            data["frames"] = r.rnd_frames
        units = r.num_envs if recurrent else r.num_envs * r.num_steps  # what minibatches split
        clipfracs, stats = [], {}
        for _epoch in range(c.update_epochs):
            order = torch.from_numpy(self.batch_rng.permutation(units)).to(self.device)
            for chunk in order.chunk(c.num_minibatches):
                if recurrent:  # whole env sequences, replayed from the rollout's initial state
                    mb = {k: map_obs(lambda v: v[:, chunk].flatten(0, 1), v) for k, v in data.items()}
                    state, starts = r.initial_state[:, :, chunk], r.starts[:, chunk]
                    mb["teacher_state"] = None if self.teacher_initial is None else self.teacher_initial[:, :, chunk]
                else:
                    mb = {k: map_obs(lambda v: v.flatten(0, 1)[chunk], v) for k, v in data.items()}
                    state, starts = None, None
                mb["starts"] = starts
                stats = self._minibatch_step(mb, state, starts)
                clipfracs.append(stats.pop("clipfrac"))
            if c.target_kl > 0 and stats["losses/approx_kl"] > c.target_kl:
                break
        return {"charts/learning_rate": lr, **stats, "losses/clipfrac": float(np.mean(clipfracs))}

    def _minibatch_step(self, mb: dict[str, Any], state: torch.Tensor | None, starts: torch.Tensor | None) -> dict[str, Any]:
        """One gradient step on one minibatch; returns its losses (CleanRL's tags)."""
        c = self.cfg
        logits, value, value_int, _ = self.online_fwd(mb["obs"], state, starts)
        loss, out = ppo_objective(c, logits, value, value_int, mb)
        if self.retention:  # knowledge retention on the actor (rlsuite.retention), after the RL loss
            extra, metrics = retention_loss(self.retention, self, {**mb, "logits": logits})
            loss = loss + extra
            out.update(metrics)
        if self.rnd is not None:  # the predictor learns on a random part of the minibatch
            mask = torch.from_numpy(self.batch_rng.random(len(mb["actions"])) < c.rnd.update_proportion)
            pred_loss = self.rnd.predictor_loss(mb["frames"], mask.to(self.device, torch.float32))
            loss = loss + pred_loss
            out["rnd/predictor_loss"] = pred_loss.detach()
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"PPO loss became {loss.item()} at update {self.num_updates}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm > 0:
            nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], c.max_grad_norm)
        self.optimizer.step()
        after_optimizer_step(self)
        return out

    def reset_optimizer(self) -> None:
        """Forget Adam's moments and step counts (an option at task switches)."""
        self.optimizer.state.clear()


def _rows(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`mask` (envs,) shaped to broadcast over observation rows like `like`."""
    return mask.reshape((-1,) + (1,) * (np.ndim(like) - 1))
