"""Decision Transformer (Chen et al. 2021), and the Multi-Game DT's binned returns and expert
return sampling (Lee et al. 2022) as options: an offline agent.

The offline loop (rlsuite.loops.offline) draws K-step windows from datasets
(rlsuite.data.sequences.SequenceSampler) and calls `update(batch)`; each update is one AdamW step
on the cross-entropy of the dataset's actions (and, with returns 'bins', of the return bins), a
mean over the real (unpadded) steps of the global batch. Evaluation plays real envs through
rlsuite.run.evaluate: `act` keeps each env's last K steps (observations, actions, returns-to-go,
timesteps) and conditions on a target return:

- a number, or `data-best` (the best complete-episode return of the game's dataset): R_0 = target,
  then R_{t+1} = R_t - r_t with the env's reward, or its sign on clipped data (`eval_reward`), as the
  data's returns-to-go were made. DT Atari lowers it by the raw ALE reward, so Atari numbers here
  are not under DT Atari's conditioning protocol;
- `expert` (returns 'bins' only; MGDT's colab, `optimal_action`): at every step R_t is the highest of
  `expert_samples` (128) draws from softmax(return_temperature (logits + kappa (R - R_min) /
  (R_max - R_min))) (expert.py: expert_returns), then the action is predicted with
  that R_t. The colab also samples the action from its top 50% of logits; here `eval_sample` decides.

DT-Mem: a training window starts from a memory that wrote a random stretch of its episode's earlier
steps (`memory.burn_in`; burn_in.py: burn_in_memory), as evaluation carries the whole prefix's.

Defaults (Chen et al. 2021's Atari setting where it fits a CPU budget): AdamW with betas (0.9, 0.95),
weight decay 0.1 on linear and conv weights only (minGPT), gradient clip 1.0, linear warm-up.
Departures: lr 3e-4 with a warm-up of 1,000 updates (DT Atari: 6e-4 with warm-up and cosine decay
counted in tokens; DT-Mem: 1e-4, warm-up 10,000) because our runs are 10^3-10^4 updates; actions are
greedy at evaluation by default (DT Atari samples; `eval_sample`).

GMP and NaP attach as on the other agents: a pruner and a projector run after every optimizer step
(NaP's norms are the transformer's own pre-LN LayerNorms plus any `nap.norm` inserted in the
observation encoder; the projection covers every layer but the heads).

Structured FFNs (agent.model.ffn; rlsuite.nn.structured): with self-guided training each update first
sets its alpha from the update count (rlsuite.nn.self_guided), logged as charts/sgt_alpha while guided.

The hyperparameters are DTConfig (config.py).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlsuite.run import seeding
from rlsuite.agents.common import gradient_step, policy_actions, zeros_batch
from rlsuite.agents.dt.burn_in import burn_in_memory
from rlsuite.agents.dt.config import DTConfig, check_structured_ffn
from rlsuite.agents.dt.expert import expert_returns
from rlsuite.config import validate
from rlsuite.errors import UserError
from rlsuite.nn.encoders import make_encoder
from rlsuite.nn.lora import add_lora, base_state
from rlsuite.nn.nap import NormProjector, insert_norms
from rlsuite.nn.optim import make_optimizer, optimizer_report
from rlsuite.nn.pruning import MagnitudePruner
from rlsuite.nn.self_guided import guide_alpha, guided_layers
from rlsuite.nn.structured import ffn_report
from rlsuite.nn.transformer import DecisionTransformer
from rlsuite.run.speed import SpeedPlan


class DT:
    """A Decision Transformer agent driven by rlsuite.loops.offline (updates) and rlsuite.run.evaluate (act)."""

    name = "dt"
    offline = True  # rlsuite.loops.train runs this agent with the offline loop
    EXPORT_KEY = "model"

    def __init__(self, cfg: DTConfig, observation_space: spaces.Space, action_space: spaces.Space,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise UserError(f"the Decision Transformer needs a discrete action space, got {action_space}")
        validate(cfg, "agent.")
        if cfg.eval_target == "expert" and cfg.model.returns != "bins":
            raise UserError("agent.eval_target=expert samples returns from the return head: it needs "
                            "agent.model.returns=bins")
        if cfg.model.embed_dim % cfg.model.n_head:
            raise UserError(f"agent.model.embed_dim ({cfg.model.embed_dim}) must be a multiple of "
                            f"agent.model.n_head ({cfg.model.n_head})")
        check_structured_ffn(cfg)
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.observation_space, self.num_actions = observation_space, int(action_space.n)
        with torch.random.fork_rng(devices=[]):  # init draws from the run's network stream only
            torch.manual_seed(seeding.int_seed(seed, "network"))
            encoder = make_encoder(cfg.encoder, observation_space)
            self.model = DecisionTransformer(cfg.model, encoder, self.num_actions, cfg.memory)
            if cfg.nap.norm != "none":
                example = torch.as_tensor(observation_space.sample()[None])
                insert_norms(self.model.encoder, example, cfg.nap.norm)
        self.guided = guided_layers(self.model)  # self-guided structured FFN layers (agent.model.sgt_ratio)
        self.guided_updates = 0  # updates of the guided phase: floor(sgt_ratio x the run's updates), set by plan()
        self.lora_layers: list[str] = []
        if cfg.lora.target != "none":
            if cfg.gmp.sparsity > 0 or cfg.nap.project:
                raise UserError("lora.target with GMP or NaP: their hooks would rewrite the frozen weights")
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seeding.int_seed(seed, "network", 1))
                    self.lora_layers = add_lora(self.model, cfg.lora)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        self.model.to(self.device)
        self.net: nn.Module = self.model  # what training calls: the model, or its DDP wrapper
        self.accelerate(SpeedPlan(device_type=self.device.type))  # fp32 eager until the run's plan arrives
        self.optimizer = make_optimizer(cfg.optimizer, cfg.cm, seed, self._param_groups(), torch.optim.AdamW,
                                        lr=cfg.lr, betas=tuple(cfg.betas))
        self.rng = seeding.generator(seed, "exploration")  # evaluation sampling when no rng is passed
        self.num_updates, self.total_updates = 0, 1
        self.world_size = 1
        self.post_step_hooks: list[Any] = []
        self.pruner: MagnitudePruner | None = None
        exclude = [] if cfg.nap.project_head else self.model.output_layers()
        self.projector = NormProjector(self.model, exclude, cfg.nap.project_every) if cfg.nap.project else None
        self.clip_eval_rewards = cfg.eval_reward == "clip"
        self.target: float | str = cfg.eval_target if cfg.eval_target in ("data-best", "expert") else float(cfg.eval_target)
        carried = any(m.cfg.variant == "causal" for m in self.model.memory_modules())
        self.context = cfg.model.context  # steps per training window (rlsuite.loops.offline samples them)
        self.burn_in_steps = cfg.memory.burn_in if carried else 0  # what rlsuite.loops.offline asks the sampler for
        self._ctx: dict[str, Any] | None = None

    def _param_groups(self) -> list[dict[str, Any]]:
        """AdamW's groups: decayed linear and conv weights, the rest undecayed, and with
        lora.lr_scale != 1 the adapters in a group of their own at that multiple of the rate."""
        decay, no_decay, adapters = [], [], []
        separate = self.cfg.lora.target != "none" and self.cfg.lora.lr_scale != 1.0
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:  # frozen under LoRA: the optimizer never sees it
                    continue
                is_weight = name == "weight" and isinstance(module, (nn.Linear, nn.Conv2d))
                is_weight = is_weight or name in getattr(module, "decayed_weights", ())  # structured FFN factors, guides
                if separate and name.startswith("lora_"):
                    adapters.append(p)
                else:
                    (decay if is_weight else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if adapters:
            groups.append({"params": adapters, "weight_decay": 0.0, "lr_scale": self.cfg.lora.lr_scale})
        return groups

    # ------------------------------------------------------------------ planning

    def plan(self, total_updates: int) -> None:
        """The run's length in updates: the lr schedule and GMP's window count in them."""
        self.total_updates = max(1, int(total_updates))
        self.guided_updates = int(self.cfg.model.sgt_ratio * self.total_updates) if self.guided else 0
        if self.cfg.gmp.sparsity > 0 and self.pruner is None:
            self.pruner = MagnitudePruner(self.cfg.gmp, self.model, self.total_updates, self.optimizer)
            self.post_step_hooks.append(self.pruner)
        if self.projector is not None and self.projector not in self.post_step_hooks:
            self.post_step_hooks.append(self.projector)

    def distribute(self, wrapper: nn.Module, world_size: int) -> None:
        """Train through a DistributedDataParallel wrapper of `self.model` (rlsuite.loops.offline)."""
        self.net, self.world_size = wrapper, world_size
        self.train_fwd = self.speed.wrap(wrapper)

    def speed_probe(self) -> tuple[nn.Module, tuple[Any, ...]]:
        """The model and a zero batch of training windows (B, K) that rlsuite.run.speed times."""
        b, k, d = self.cfg.batch_size, self.cfg.model.context, self.device
        obs = zeros_batch(self.observation_space, b * k, d)
        obs = obs.view(b, k, *obs.shape[1:])
        zeros = torch.zeros(b, k, dtype=torch.long, device=d)
        return self.model, (obs, zeros, torch.zeros(b, k, device=d), zeros, torch.ones(b, k, dtype=torch.bool, device=d))

    def accelerate(self, plan: SpeedPlan) -> None:
        """Run the model under `plan` (rlsuite.run.speed) in updates and when acting; the burn-in
        writes of DT-Mem's memory (no gradient) stay fp32 eager."""
        self.speed = plan
        plan.prepare(self.model)
        self.train_fwd, self.act_fwd = plan.wrap(self.net), plan.wrap(self.model)

    def lr_at(self, update: int) -> float:
        """Learning rate of update `update` (0-based): linear warm-up, then constant or cosine."""
        c = self.cfg
        if update < c.warmup_updates:
            return c.lr * (update + 1) / c.warmup_updates
        if c.lr_schedule == "cosine":
            span = max(1, self.total_updates - c.warmup_updates)
            progress = min(1.0, (update - c.warmup_updates) / span)
            return c.lr * (c.lr_final + (1 - c.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))
        return c.lr

    # ------------------------------------------------------------------ training

    def losses(self, batch: Any, net: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropies of a SequenceBatch (on this device): sums over this rank's real steps,
        divided by the global batch's real steps (so data-parallel gradients, which DDP averages
        over ranks, are multiplied back by world_size). With a burn-in stretch (DT-Mem) the windows
        start from the memory written from it, without gradient."""
        memory = burn_in_memory(self.model, batch.burn_in)
        out = (net or self.train_fwd)(batch.obs, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask,
                                      memory=memory)
        mask = batch.mask
        norm = self.world_size / max(1, batch.valid_steps)
        action_ce = F.cross_entropy(out["action"][mask], batch.actions[mask], reduction="sum") * norm
        losses = {"action_ce": action_ce}
        if "return" in out:
            bins = self.model.return_bins(batch.returns_to_go)
            losses["return_ce"] = F.cross_entropy(out["return"][mask], bins[mask], reduction="sum") * norm
        return losses

    def update(self, batch: Any) -> dict[str, float]:
        """One AdamW step on a SequenceBatch; returns the logged metrics (losses/*)."""
        batch = batch.to(self.device)
        self.net.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.num_updates) * group.get("lr_scale", 1.0)
        guiding = self.num_updates < self.guided_updates
        if self.guided:  # self-guided training: this update's alpha (evaluation keeps the last one)
            alpha = guide_alpha(self.num_updates, self.guided_updates, self.cfg.model.sgt_schedule)
            for layer in self.guided:
                layer.set_alpha(alpha)
        losses = self.losses(batch)
        loss = losses["action_ce"] + self.cfg.return_loss_coef * losses.get("return_ce", 0.0)
        grad_norm = gradient_step(loss, self.optimizer, self.model.parameters(), self.cfg.max_grad_norm,
                                  self.num_updates)
        self.num_updates += 1
        for hook in self.post_step_hooks:
            hook(self)
        scale = 1.0 / self.world_size  # this rank's share of the global mean
        metrics = {f"losses/{k}": float(v.detach()) * scale for k, v in losses.items()}
        metrics.update({"losses/grad_norm": float(grad_norm), "charts/learning_rate": self.lr_at(self.num_updates - 1)})
        if self.pruner is not None:
            metrics.update(self.pruner.report())
        metrics.update(optimizer_report(self.optimizer))  # Adam+CM's buffer: accepted / rejected momenta
        if guiding:
            metrics["charts/sgt_alpha"] = alpha
        return metrics

    def status(self, update: int) -> str:
        return ""

    def has_unused_parameters(self) -> bool:
        """Whether a training forward leaves trainable parameters unused (DDP must then search for
        them): the released memory variant draws its initial memory at random, never from `initial`."""
        released = any(m.cfg.variant == "released" and m.initial.requires_grad for m in self.model.memory_modules())
        return released or bool(self.guided)  # self-guided layers: the guide is unused once alpha is 0

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def model_notes(self) -> list[str]:
        """The run's start report: a structured FFN's parameters and FLOPs per token against dense."""
        return [] if self.cfg.model.ffn == "dense" else [ffn_report(self.model, self.guided_updates)]

    def adopt_parent(self, model_state: dict[str, torch.Tensor]) -> None:
        """Start from a pre-trained model's weights (rlsuite finetune); adapters keep their init
        (B = 0, so the function is the parent's). RuntimeError when the shapes or names differ."""
        state = base_state(model_state, self.lora_layers)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "lora_" not in k]
        if missing or unexpected:
            raise RuntimeError(f"parent weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        for layer in self.guided:  # guidance restarts from the parent's structured product
            layer.reset_guide()

    # ------------------------------------------------------------------ evaluation

    def set_eval_game(self, target: float | str, clip_rewards: bool) -> None:
        """The return to condition on (a number, or 'expert') and the reward rule for the game about
        to be evaluated (rlsuite.loops.offline resolves 'data-best' per game)."""
        if target == "data-best":
            raise ValueError("resolve 'data-best' to a number before evaluation")
        self.target, self.clip_eval_rewards = target, clip_rewards

    def eval_reset(self, num_envs: int) -> None:
        k, shape = self.cfg.model.context, self.observation_space.shape
        dtype = torch.float32 if np.dtype(self.observation_space.dtype).kind == "f" else torch.uint8
        self._ctx = {"obs": torch.zeros((num_envs, k, *shape), dtype=dtype),
                     "actions": torch.full((num_envs, k), self.num_actions, dtype=torch.int64),
                     "rtg": torch.zeros((num_envs, k)), "steps": torch.zeros((num_envs, k), dtype=torch.int64),
                     "length": np.zeros(num_envs, np.int64), "t": np.zeros(num_envs, np.int64),
                     "next_rtg": np.full(num_envs, np.nan), "reward": np.zeros(num_envs),
                     "memory": self._initial_memory(num_envs)}
        if self.model.placement == "block":  # what each held step's block memories would be written from
            ctx = self._ctx
            ctx["acts"] = torch.zeros((num_envs, k, self.cfg.model.n_layer, 3, self.cfg.model.embed_dim))

    def _initial_memory(self, num_envs: int) -> torch.Tensor | None:
        """The working memory each env carries through its episode (None without one, and for the
        released variant, which draws a fresh random memory at every forward as its code does)."""
        mems = self.model.memory_modules()
        if not mems or mems[0].cfg.variant == "released":
            return None
        with torch.no_grad():
            return self.model.initial_memory(num_envs).clone()

    def _write_oldest(self, i: int) -> None:
        """Env i's oldest held step leaves the window: write it into the memory it carries, so the
        memory stays the memory of the whole prefix before the window (per-block memories: from the
        activations the step had as the newest step of its window)."""
        ctx = self._ctx
        if ctx["memory"] is None:
            return
        d = self.device
        with torch.no_grad():
            if self.model.placement == "block":
                for layer, block in enumerate(self.model.blocks):
                    ctx["memory"][i:i + 1, layer] = block.memory.write(ctx["memory"][i:i + 1, layer],
                                                                       ctx["acts"][i:i + 1, 0, layer].to(d))
                return
            tokens = self.model.tokens(ctx["obs"][i:i + 1, :1].to(d), ctx["actions"][i:i + 1, :1].to(d),
                                       ctx["rtg"][i:i + 1, :1].to(d), ctx["steps"][i:i + 1, :1].to(d))
            ctx["memory"][i:i + 1] = self.model.memory.write(ctx["memory"][i:i + 1], tokens)

    def eval_rewards(self, rewards: np.ndarray) -> None:
        """The rewards the last actions earned (rlsuite.run.evaluate calls it after every env step)."""
        r = np.asarray(rewards, np.float64)
        self._ctx["reward"] = np.sign(r) if self.clip_eval_rewards else r

    def eval_episode_starts(self, done: np.ndarray) -> None:
        """Envs whose game ended start their next step with an empty history and the target again."""
        ctx = self._ctx
        for i in np.flatnonzero(done):
            ctx["length"][i], ctx["t"][i], ctx["next_rtg"][i] = 0, 0, np.nan
            if ctx["memory"] is not None:
                ctx["memory"][i] = self._initial_memory(1)[0]

    def _push(self, obs: np.ndarray) -> np.ndarray:
        """Append this step's observation to every env's history (sliding once K steps are held);
        returns the index of the current step in each env's window."""
        ctx, k = self._ctx, self.cfg.model.context
        n = len(ctx["length"])
        pos = np.empty(n, np.int64)
        obs_t = torch.as_tensor(np.asarray(obs))
        for i in range(n):
            if ctx["length"][i] > 0:  # a continuing game: lower the return-to-go by the last reward
                ctx["next_rtg"][i] = ctx["rtg"][i, ctx["length"][i] - 1].item() - ctx["reward"][i]
            if ctx["length"][i] == k:
                self._write_oldest(i)
                for key in ("obs", "actions", "rtg", "steps", "acts")[:5 if "acts" in ctx else 4]:
                    ctx[key][i, :-1] = ctx[key][i, 1:].clone()
                ctx["length"][i] -= 1
            j = pos[i] = ctx["length"][i]
            ctx["obs"][i, j] = obs_t[i]
            ctx["actions"][i, j] = self.num_actions  # not yet chosen (read by nothing before it)
            ctx["steps"][i, j] = int(ctx["t"][i])
            start = self.target if ctx["length"][i] == 0 and isinstance(self.target, float) else 0.0
            ctx["rtg"][i, j] = start if ctx["length"][i] == 0 else float(ctx["next_rtg"][i])
            ctx["length"][i] += 1
            ctx["t"][i] += 1
        return pos

    def _forward(self, width: int) -> dict[str, torch.Tensor]:
        ctx, d = self._ctx, self.device
        self.model.eval()
        return self.act_fwd(ctx["obs"][:, :width].to(d), ctx["actions"][:, :width].to(d),
                            ctx["rtg"][:, :width].to(d), ctx["steps"][:, :width].to(d),
                            memory=ctx["memory"])

    def _sample_expert_returns(self, pos: np.ndarray, rng: np.random.Generator) -> None:
        """MGDT: each env's R_t is the best of expert_samples draws (expert.py: expert_returns) from `rng`."""
        logits = self._forward(int(pos.max()) + 1)["return"][np.arange(len(pos)), pos].float().cpu()
        c = self.cfg
        best = expert_returns(logits, self.model.bin_values(), c.expert_kappa, c.return_temperature,
                              c.expert_samples, rng)
        self._ctx["rtg"][np.arange(len(pos)), pos] = torch.as_tensor(best, dtype=torch.float32)

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Evaluation actions for the envs' current observations (history kept since eval_reset)."""
        rng = self.rng if rng is None else rng
        if self._ctx is None or len(self._ctx["length"]) != len(obs):
            self.eval_reset(len(obs))
        pos = self._push(obs)
        with torch.no_grad():
            if self.target == "expert":
                self._sample_expert_returns(pos, rng)
            out = self._forward(int(pos.max()) + 1)
            logits = out["action"][np.arange(len(pos)), pos].float().cpu()
            if "memory_inputs" in out:
                rows = np.arange(len(pos))
                self._ctx["acts"][rows, pos] = out["memory_inputs"][rows, :, pos].cpu()
        actions = policy_actions(logits, self.cfg.eval_sample, epsilon, rng, self.cfg.eval_temperature)
        self._ctx["actions"][np.arange(len(pos)), pos] = torch.as_tensor(actions)
        return actions

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "num_updates": self.num_updates, "rng": self.rng.bit_generator.state,
                "constraints": [hook.state_dict() for hook in self.post_step_hooks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:  # an export (rlsuite export --merge-lora) carries the model only
            self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        self.rng.bit_generator.state = state["rng"]
        for hook, hook_state in zip(self.post_step_hooks, state.get("constraints", [])):
            hook.load_state_dict(hook_state)
