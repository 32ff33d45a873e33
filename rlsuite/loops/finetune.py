"""Fine-tuning a pre-trained agent with knowledge retention (Wołczyk et al., ICML 2024), as an
extension of the online loop (rlsuite.loops.online): the loop calls `start`, `after_step` and `finish`,
and this module does the rest.

A fine-tuning run is an ordinary run whose `[finetune]` section names its parent checkpoint. When it
starts, the parent's weights become the agent's, and a frozen copy of them, the teacher pi*, is
kept inside the agent (so it is in every checkpoint: the run is self-contained and resumes
exactly). The retention terms of `finetune.retention` (rlsuite.retention) are attached to the
agent's loss. Their data (BC's buffer of states, EWC's Fisher states, EM's transitions) is the
teacher's experience from FAR starts: a dataset given with `finetune.data`, or collected by the
run into <run>/teacher_data.

FAR skill is measured on the task's env with the `finetune.far` overrides (close-far tasks:
env.start=far; Montezuma: env.start_states=DIR), at step 0 (that is the teacher's own FAR score),
every `finetune.far_eval_every` env steps and at the end: far/return, far/success (where the env
reports success) and far/kl = KL(pi* || pi) on the teacher's FAR states, to TensorBoard and
<run>/far.jsonl (eval.jsonl stays the normal-start evaluation).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite import config
from rlsuite.errors import UserError
from rlsuite.retention.config import PARTS
from rlsuite.retention.losses import diagonal_fisher, kl_teacher_student
from rlsuite.retention.terms import EWC, BehaviourCloning, Kickstarting
from rlsuite.run import checkpoint, seeding
from rlsuite.run.lifecycle import crossed



def extensions_for(cfg: Any, agent: Any, fresh: bool) -> list[Any]:
    """The loop extensions of a run: [FineTuning] when `finetune.parent` is set, else []."""
    return [FineTuning(cfg, agent, fresh)] if cfg.finetune.parent else []


def check_config(cfg: Any) -> None:
    """The rules between the finetune keys and the agent, checked before anything is written."""
    f = cfg.finetune
    methods = set(f.retention)
    if "em" in methods and cfg.algo != "dqn":
        raise UserError("finetune.retention: em (episodic memory) needs a replay buffer: use it with dqn")
    if "ewc" in methods and cfg.algo == "dqn":
        raise UserError("finetune.retention: ewc is implemented for ppo (the paper's actor-critic runs)")
    if "em" in methods and cfg.replay.prioritized:
        raise UserError("finetune.retention: em mixes uniform samples of its protected transitions; "
                        "use it with --set replay.prioritized=false")
    if f.critic_warmup and cfg.algo != "ppo":
        raise UserError("finetune.critic_warmup trains the critic alone: it needs an actor-critic (ppo)")
    from rlsuite.envs import resolve_env_id

    family, _ = resolve_env_id(cfg.env.id)
    if family != "closefar" and any(o.replace(" ", "").startswith("env.start=") for o in far_overrides(cfg)):
        raise UserError(f"finetune.far: env.start applies to close-far tasks only; say what FAR starts are for "
                        f"{cfg.env.id}, e.g. --set finetune.far=env.start_states=states/NAME (or finetune.far= for none)")


def env_steps_per_update(cfg: Any) -> float:
    """The env steps (summed over envs) one gradient update stands for, for KS's decay per transitions:
    PPO num_steps x num_envs / (update_epochs x num_minibatches) (each rollout step is used once per
    epoch); DQN train_freq / gradient_steps."""
    a = cfg.agent
    if cfg.algo == "ppo":
        return a.num_steps * cfg.train.num_envs / (a.update_epochs * a.num_minibatches)
    return a.train_freq / a.gradient_steps


def far_overrides(cfg: Any) -> tuple[str, ...]:
    """`finetune.far` with 'auto' resolved: env.start=far on close-far tasks, none elsewhere."""
    from rlsuite.envs import resolve_env_id

    if tuple(cfg.finetune.far) != ("auto",):
        return tuple(cfg.finetune.far)
    return ("env.start=far",) if resolve_env_id(cfg.env.id)[0] == "closefar" else ()


def far_env_config(cfg: Any) -> Any:
    """The env config of FAR starts: the run's env with the `finetune.far` overrides applied."""
    far = copy.deepcopy(cfg)
    for assignment in far_overrides(cfg):
        config.apply_override(far, assignment)
    config.validate(far.env, "env.")
    return far.env


def load_parent(path_or_run: str | Path) -> tuple[Path, dict[str, Any]]:
    """The parent checkpoint (a run directory's latest, or a file) and its loaded contents."""
    path = checkpoint.find(path_or_run)
    return path, checkpoint.load(path)


def parent_weights(data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The acting network's weights of a training checkpoint or of an `rlsuite export` file."""
    agent = data["agent"]
    packed = agent.get("packed", agent.get("online_packed"))
    if packed is not None:
        from rlsuite.trained.export import unpack

        return unpack(packed)
    return agent["online"]


def part_of(name: str) -> str:
    """Which `finetune.freeze` part a parameter belongs to, by its name in the agent's network.

    'encoder' and 'core' are the actor's (or the shared) trunk; a separate critic's own trunk
    (PPO agent.shared_trunk=false: `critic_trunk.*`) belongs to 'value' with the value heads, so
    `--freeze encoder` leaves the critic's network free and the critic warm-up trains all of it."""
    if name.startswith("critic_trunk."):
        return "value"
    if ".lstm." in name or ".lru." in name:  # PPO's recurrent core: an LSTM or an LRU block
        return "core"
    if "encoder." in name:
        return "encoder"
    if name.startswith(("value.", "value_int.")):
        return "value"
    return "policy"


def set_frozen(network: torch.nn.Module, parts: set[str]) -> int:
    """requires_grad = False for the parameters of `parts`, True for the rest; returns the number
    of trainable parameters (Adam skips parameters that get no gradient)."""
    trainable = 0
    for name, param in network.named_parameters():
        param.requires_grad_(part_of(name) not in parts)
        trainable += param.numel() if param.requires_grad else 0
    return trainable


class FineTuning:
    """The loop extension of a fine-tuning run (see the module docstring)."""

    def __init__(self, cfg: Any, agent: Any, fresh: bool) -> None:
        check_config(cfg)
        cfg.finetune.far = far_overrides(cfg)  # 'auto' resolved before config.toml is written
        self.cfg, self.agent, self.f = cfg, agent, cfg.finetune
        rng = seeding.generator(cfg.train.seed, "retention", 0)
        makers = {"ks": lambda: Kickstarting(self.f.ks, env_steps_per_update(cfg)), "bc": lambda: BehaviourCloning(self.f.bc, rng),
                  "ewc": lambda: EWC(self.f.ewc)}
        agent.retention = [makers[m]() for m in self.f.retention if m in makers]
        if hasattr(agent, "temperature"):
            agent.temperature = self.f.temperature
        if "em" in self.f.retention:
            from rlsuite.retention.memory import EpisodicMemory

            agent.memory = EpisodicMemory(self.f.em, cfg.agent, seeding.generator(cfg.train.seed, "retention", 1))
        agent.set_teacher()  # the teacher's weights: the parent's (below) or the checkpoint's (on resume)
        self.parent_step: int | None = None
        if fresh:  # before anything is written: a parent that does not fit is refused here
            path, data = load_parent(self.f.parent)
            if data.get("algo") != cfg.algo:
                raise UserError(f"{path} holds a {data.get('algo')} agent; fine-tune it with a {data.get('algo')} preset")
            try:
                weights = parent_weights(data)
                if "online" in data["agent"]:  # a training checkpoint: weights and, e.g., RND's normalisers
                    agent.adopt(data["agent"])
                else:  # an `rlsuite export` file: the acting network's weights alone
                    agent.load_exported(weights)
                agent.set_teacher(weights)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0][:160]
                raise UserError(f"the weights of {path} do not fit this config's network ({first})") from None
            self.parent_step = int(data.get("step", 0))
        self.far_env = self.far_states = None
        self._warm = False
        self._apply_freeze(0)

    # ------------------------------------------------------------------ the loop's calls

    def start(self, s: Any, say: Any) -> None:
        """A fresh run: the teacher's data (collected if need be) and the terms filled from it."""
        say(f"fine-tuning from {self.f.parent} (step {self.parent_step:,})  |  retention: "
            f"{', '.join(self.f.retention) or 'none'}" + (f"  |  frozen: {', '.join(self.f.freeze)}" if self.f.freeze else "")
            + (f"  |  critic warm-up {self.f.critic_warmup:,} steps" if self.f.critic_warmup else ""))
        data = self._teacher_data(s, say)
        self._fill_terms(data)

    def begin(self, s: Any, monitor: Any) -> None:
        """Every start and resume: the FAR env, the FAR states for far/kl, and at step 0 the teacher's FAR score."""
        self._apply_freeze(s.step)
        if self.far_states is None:
            self.far_states = self._states(self._open_data(s.run_dir), 1_000, 2)
        if s.step == 0:
            self.far_evaluation(s, monitor)

    def after_step(self, s: Any, monitor: Any) -> None:
        """Every vector step: the end of the critic warm-up, and FAR evaluations when one is due."""
        n = s.env.num_envs
        if self._warm and s.step >= self.f.critic_warmup:
            self._apply_freeze(s.step)
            monitor.write(f"critic warm-up done @ {s.step:,}: the actor trains from now on")
        if crossed(s.step, n, self.f.far_eval_every) and s.step < s.cfg.train.total_steps:
            summary = self.far_evaluation(s, monitor)
            monitor.write(f"far @ {s.step:,}: return {summary['mean']:.2f}"
                          + (f"  success {summary['success_mean']:.2f}" if "success_mean" in summary else ""))

    def finish(self, s: Any, monitor: Any) -> dict[str, Any]:
        """The final FAR evaluation; its headline numbers for the summary table."""
        summary = self.far_evaluation(s, monitor)
        out = {"far_return": summary["mean"], "far_kl": summary["far_kl"]}
        if "success_mean" in summary:
            out["far_success"] = summary["success_mean"]
        if self.far_env is not None:
            self.far_env.close()
        return out

    # ------------------------------------------------------------------ FAR skill

    def far_evaluation(self, s: Any, monitor: Any) -> dict[str, Any]:
        """Whole episodes from FAR starts (env seeds and exploration on the run's far_eval streams at
        this step), recorded in <run>/far.jsonl and as far/* scalars."""
        from rlsuite.envs import make as make_env
        from rlsuite.run.evaluate import append_jsonl, evaluate
        from rlsuite.run.monitor import log_record

        t = s.cfg.train
        if self.far_env is None:
            self.far_env = make_env(far_env_config(s.cfg), t.eval_num_envs, 0, evaluation=True)
        seeds = seeding.env_seeds(t.seed, "far_eval_env", s.step, n=t.eval_num_envs)
        rng = seeding.generator(t.seed, "far_eval_exploration", s.step)
        result = evaluate(s.agent, self.far_env, self.f.far_eval_episodes, getattr(s.cfg.agent, "eval_epsilon", 0.0),
                          seed=seeds, rng=rng)
        summary = {**result.summary(), **result.per_episode(), "far_kl": self.far_kl()}
        append_jsonl(s.run_dir / "far.jsonl", {**log_record(s.step, summary), "far": list(far_overrides(s.cfg))})
        scalars = {"far/return": summary["mean"], "far/kl": summary["far_kl"]}
        if "success_mean" in summary:
            scalars["far/success"] = summary["success_mean"]
        monitor.scalars(s.step, scalars)
        return summary

    def far_kl(self) -> float:
        """KL(pi* || pi) averaged over the teacher's FAR states (nan without them)."""
        if self.far_states is None:
            return float("nan")
        with torch.no_grad():
            teacher = self.agent.policy_logits(self.far_states, teacher=True)
            return float(kl_teacher_student(teacher, self.agent.policy_logits(self.far_states)))

    # ------------------------------------------------------------------ freezing

    def _apply_freeze(self, step: int) -> None:
        """The configured frozen parts; during the critic warm-up everything but the critic (part_of: value)."""
        self._warm = step < self.f.critic_warmup
        frozen = set(PARTS) - {"value"} if self._warm else set(self.f.freeze)
        trainable = set_frozen(self.agent.online, frozen)
        if trainable == 0:
            raise UserError(f"finetune.freeze={','.join(self.f.freeze)} leaves no parameter to train")

    # ------------------------------------------------------------------ the teacher's data

    def _open_data(self, run_dir: Path) -> Any:
        from rlsuite.data import Dataset

        path = Path(self.f.data) if self.f.data else run_dir / "teacher_data"
        return Dataset(path) if (path / "manifest.json").is_file() else None

    def _teacher_data(self, s: Any, say: Any) -> Any:
        """The dataset the terms and far/kl use: `finetune.data`, or collected now with the teacher
        (= the agent at step 0) from FAR starts, on the run's retention stream."""
        from rlsuite.data import collect
        from rlsuite.envs import make as make_env

        existing = self._open_data(s.run_dir)
        if existing is not None or self.f.data:
            if existing is None:
                raise UserError(f"finetune.data: {self.f.data} is not a dataset (no manifest.json)")
            return existing
        t = s.cfg.train
        env = make_env(far_env_config(s.cfg), t.eval_num_envs, seeding.env_seeds(t.seed, "retention", 2, n=t.eval_num_envs))
        sample = getattr(self.agent.cfg, "eval_sample", None)
        if sample is not None:  # an actor-critic's experience is its sampled actions, not only its argmax
            self.agent.cfg.eval_sample = True
        try:
            far = far_overrides(s.cfg)
            where = f"FAR starts ({', '.join(far)})" if far else "the task's own starts (no FAR starts: finetune.far)"
            say(f"collecting the teacher's data: {self.f.data_steps:,} steps from {where}")
            return collect(self.agent, env, s.run_dir / "teacher_data", steps=self.f.data_steps,
                           epsilon=self.f.data_epsilon, rng=seeding.generator(t.seed, "retention", 3),
                           manifest={"source": "rlsuite finetune (teacher)", "checkpoint": str(self.f.parent),
                                     "env": config.to_dict(far_env_config(s.cfg))})
        finally:
            env.close()
            if sample is not None:
                self.agent.cfg.eval_sample = sample

    def _states(self, data: Any, count: int, stream: int) -> Any:
        """Up to `count` states of the dataset (a random subset on the retention stream), as tensors."""
        if data is None or len(data) == 0:
            return None
        rng = seeding.generator(self.cfg.train.seed, "retention", 4, stream)
        rows = np.sort(rng.choice(len(data), size=min(count, len(data)), replace=False))
        obs = data.observations(rows)
        device = self.agent.device
        if isinstance(obs, dict):
            return {k: torch.as_tensor(np.asarray(v), device=device) for k, v in obs.items()}
        return torch.as_tensor(np.asarray(obs), device=device)

    def _fill_terms(self, data: Any) -> None:
        for term in self.agent.retention:
            if isinstance(term, BehaviourCloning):
                term.fill(self._states(data, self.f.bc.buffer_states, 0))
            elif isinstance(term, EWC):
                set_frozen(self.agent.online, set())  # gradients of every actor weight, frozen or not
                params = self.agent.actor_parameters()
                states = self._states(data, self.f.ewc.fisher_states, 1)
                fisher = diagonal_fisher(lambda x: self.agent.policy_logits(x, teacher=False), params, states,
                                         seeding.generator(self.cfg.train.seed, "retention", 5),
                                         self.f.ewc.fisher_actions, self.f.ewc.clip_below)
                term.fill([p.detach() for p in params], fisher)
                self._apply_freeze(0)
        if getattr(self.agent, "memory", None) is not None:
            self.agent.memory.fill(data, self.agent.device)
