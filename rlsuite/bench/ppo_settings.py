"""What both sides of `rlsuite bench ppo` are built from: the tasks, the shared PPO settings
(`Algo`, CleanRL's as the presets state them), one measurement's settings (whole rollouts),
rlsuite's config for them, and the modules imported before the clock. rlsuite.bench.ppo runs the
measurements; rlsuite.bench.ppo_peers is SB3's side."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """One benchmark task: what both sides train on. Everything else comes from `Algo`."""

    env: str
    """rlsuite env id; its family picks SB3's env (see ppo_peers.sb3_env)."""
    preset: str
    """rlsuite agent preset the config starts from (its env preset gives the env settings)."""
    network: str
    """'mlp', 'minatar' or 'nature': rlsuite encoder.kind and SB3's network (ppo_peers.SB3_NETWORKS)."""
    num_envs: int
    steps: int
    """Default env steps per measurement (summed over the envs)."""
    clip_coef: float
    """The preset's clip range (ppo.py: 0.2; the Atari script and ppo-minatar: 0.1)."""
    shared_trunk: bool
    """One trunk for both heads (CNNs) or separate actor and critic networks (ppo.py's MLPs)."""
    backend: str = "gymnasium"
    """rlsuite env backend: 'gymnasium' is in-process, as SB3's DummyVecEnv; Pong: envpool."""
    quick_steps: int = 2_048


TASKS = {
    "cartpole": Task("CartPole-v1", "ppo-classic", "mlp", 4, steps=20_480, clip_coef=0.2, shared_trunk=False),
    "pong": Task("pong", "ppo-atari", "nature", 8, steps=10_240, clip_coef=0.1, shared_trunk=True,
                 backend="envpool"),
    # not in the default set; experiments/ppo_parity.py uses its settings
    "minatar-breakout": Task("minatar:breakout", "ppo-minatar", "minatar", 8, steps=20_480, clip_coef=0.1,
                             shared_trunk=True),
}
DEFAULT_TASKS = ("cartpole", "pong")


@dataclass(frozen=True)
class Algo:
    """PPO settings both sides get (CleanRL's, as the presets state them; see the module docstring)."""

    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    clip_vloss: bool = False  # see the module docstring: SB3 cannot express CleanRL's form
    ent_coef: float = 0.01
    vf_coef: float = 0.5  # of 0.5 * mean squared error, as CleanRL
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"  # MLP only (ppo.py's Tanh); the CNNs use ReLU on both sides
    init: str = "orthogonal"
    threads: int = 2
    seed: int = 0


def rollout_size(task: str, algo: Algo = Algo()) -> int:
    return TASKS[task].num_envs * algo.num_steps


def settings(task: str, steps: int, algo: Algo = Algo(), *, eval_episodes: int = 1) -> dict[str, Any]:
    """The one description of a measurement that both sides' configs are built from. `steps` is
    rounded up to whole rollouts."""
    t = TASKS[task]
    per = rollout_size(task, algo)
    steps = max(1, math.ceil(steps / per)) * per
    return {**dataclasses.asdict(algo), "task": task, "env": t.env, "preset": t.preset, "network": t.network,
            "backend": t.backend, "num_envs": t.num_envs, "clip_coef": t.clip_coef, "shared_trunk": t.shared_trunk,
            "steps": steps, "rollouts": steps // per, "batch_size": per // algo.num_minibatches, "device": "cpu",
            "rlsuite_eval_episodes": eval_episodes, "rlsuite_log_every": "default",
            "rlsuite_diagnostics_every": "default"}


def rlsuite_config(s: dict[str, Any], extra: tuple[str, ...] | list[str] = ()) -> Any:
    """rlsuite's RunConfig for settings `s`: the task's preset with every shared setting overridden
    (then `extra`: a mode's keys, see bench.modes)."""
    from rlsuite import config
    hidden = ",".join(str(h) for h in s["hidden"])
    overrides = [
        f"agent.num_steps={s['num_steps']}", f"agent.num_minibatches={s['num_minibatches']}",
        f"agent.update_epochs={s['update_epochs']}", f"agent.lr={s['lr']}", f"agent.anneal_lr={s['anneal_lr']}",
        f"agent.adam_eps={s['adam_eps']}", f"agent.gamma={s['gamma']}", f"agent.gae_lambda={s['gae_lambda']}",
        f"agent.clip_coef={s['clip_coef']}", f"agent.clip_vloss={s['clip_vloss']}", f"agent.norm_adv={s['norm_adv']}",
        f"agent.ent_coef={s['ent_coef']}", f"agent.vf_coef={s['vf_coef']}", f"agent.max_grad_norm={s['max_grad_norm']}",
        "agent.target_kl=0", f"agent.shared_trunk={s['shared_trunk']}", "agent.core=none", "agent.eval_sample=false",
        "agent.rnd.enabled=false", "agent.gmp.sparsity=0", "agent.nap.norm=none", "agent.nap.project=false",
        f"agent.encoder.kind={s['network']}", "agent.encoder.width=1", "agent.encoder.scale_dense=false",
        f"agent.encoder.hidden={hidden}", "agent.encoder.dense=512", "agent.encoder.padding=valid",
        f"agent.encoder.init={s['init']}",
        f"env.backend={s['backend']}",
        f"train.total_steps={s['steps']}", f"train.num_envs={s['num_envs']}", f"train.seed={s['seed']}",
        f"train.device={s['device']}", f"train.torch_threads={s['threads']}", "train.progress=false",
        "train.eval_every=0", f"train.eval_episodes={s['rlsuite_eval_episodes']}", "train.eval_num_envs=1",
        "train.checkpoint_every=0",
    ]
    if s["network"] == "mlp":
        overrides.append(f"agent.encoder.activation={s['activation']}")
    return config.build_run_config(s["preset"], s["env"], overrides + list(extra))


def warm_imports(s: dict[str, Any]) -> None:
    """Import, before the clock, the modules either side would import lazily inside it (the env
    family's modules, TensorBoard): module import is process start-up, not training. Same set both sides."""
    import importlib

    from rlsuite.envs import resolve_env_id

    family, _ = resolve_env_id(s["env"])
    extra = {"classic": ["rlsuite.envs.classic"], "minatar": ["rlsuite.envs.minatar", "minatar"],
             "atari": ["rlsuite.envs.atari", "ale_py", "cv2"] + (["envpool"] if s["backend"] == "envpool" else [])
             }.get(family, [])
    for name in ["rlsuite.loops.train", "rlsuite.envs.gym_backend", "torch.utils.tensorboard", "tqdm", *extra]:
        importlib.import_module(name)


def algo_from_json(text: str) -> Algo:
    """The `Algo` a worker gets as JSON (tuples arrive as lists); empty text: the defaults."""
    fields = json.loads(text) if text else {}
    return Algo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
