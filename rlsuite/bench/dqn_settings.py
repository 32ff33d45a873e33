"""What both sides of `rlsuite bench dqn` are built from: the tasks, the shared DQN settings
(`Algo`), one measurement's settings, rlsuite's config for them, and the modules imported before
the clock. rlsuite.bench.dqn runs the measurements; rlsuite.bench.dqn_peers is SB3's side."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """One benchmark task: what both sides train on. Everything else comes from `Algo`."""

    env: str
    """rlsuite env id; its family picks SB3's env (see dqn_peers.sb3_env)."""
    preset: str
    """rlsuite agent preset the config starts from (its env preset gives the env settings)."""
    network: str
    """'mlp', 'minatar' or 'nature': rlsuite encoder.kind and SB3's network (dqn_peers.SB3_NETWORKS)."""
    steps: int
    """Default env steps per measurement."""
    backend: str = "gymnasium"
    """rlsuite env backend: in-process, as SB3's DummyVecEnv."""
    learning_starts: int = 1_000
    """Env steps before the first update (capped at a tenth of the run, see `settings`)."""


TASKS = {
    "cartpole": Task("CartPole-v1", "dqn-classic", "mlp", steps=20_000),
    "minatar-breakout": Task("minatar:breakout", "dqn-minatar", "minatar", steps=20_000),
    # atari-cleanrl env settings = SB3's AtariWrapper: no sticky actions, 30 no-ops, skip 4, life
    # loss ends an episode, FIRE on reset, clipped rewards, 84x84 grey, 4 frames stacked.
    "pong": Task("pong", "dqn-cleanrl", "nature", steps=10_000),
}


@dataclass(frozen=True)
class Algo:
    """Algorithm settings both sides get (SB3's DQN defaults where it has one)."""

    lr: float = 1e-4
    adam_eps: float = 1e-8  # torch's Adam default, which SB3 uses
    gamma: float = 0.99
    batch_size: int = 32
    buffer_size: int = 100_000
    train_freq: int = 4
    gradient_steps: int = 1  # per train_freq env steps
    target_update: int = 1_000
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.1  # of the run, as SB3's exploration_fraction
    max_grad_norm: float = 10.0  # SB3's default clip
    loss: str = "huber"  # SB3: F.smooth_l1_loss
    double: bool = False  # SB3's DQN is vanilla
    hidden: tuple[int, ...] = (64, 64)  # SB3's MlpPolicy net_arch
    threads: int = 2
    seed: int = 0


def settings(task: str, steps: int, algo: Algo = Algo()) -> dict[str, Any]:
    """The one description of a measurement that both sides' configs are built from."""
    t = TASKS[task]
    return {**dataclasses.asdict(algo), "task": task, "env": t.env, "preset": t.preset, "network": t.network,
            "backend": t.backend, "steps": steps, "num_envs": 1, "device": "cpu",
            "learning_starts": max(algo.batch_size, min(t.learning_starts, steps // 10)),
            "eps_decay_steps": max(1, round(algo.eps_fraction * steps)),
            "rlsuite_eval_episodes": 1, "rlsuite_log_every": "default", "rlsuite_diagnostics_every": "default"}


def rlsuite_config(s: dict[str, Any], extra: tuple[str, ...] | list[str] = ()) -> Any:
    """rlsuite's RunConfig for settings `s`: the task's preset with every shared setting overridden
    (then `extra`: a mode's keys, see bench.modes)."""
    from rlsuite import config
    hidden = ",".join(str(h) for h in s["hidden"])
    overrides = [
        "agent.loss=" + s["loss"], f"agent.double={s['double']}", "agent.dueling=false", "agent.n_step=1",
        f"agent.lr={s['lr']}", "agent.lr_schedule=constant", f"agent.adam_eps={s['adam_eps']}",
        f"agent.gamma={s['gamma']}", f"agent.batch_size={s['batch_size']}",
        f"agent.learning_starts={s['learning_starts']}", f"agent.train_freq={s['train_freq']}",
        f"agent.gradient_steps={s['gradient_steps']}", "agent.epsilon_decay_start=0",  # SB3 decays from step 0
        f"agent.target_update_period={s['target_update']}", f"agent.epsilon_start={s['eps_start']}",
        f"agent.epsilon_end={s['eps_end']}", f"agent.epsilon_decay_steps={s['eps_decay_steps']}",
        f"agent.max_grad_norm={s['max_grad_norm']}", "agent.gmp.sparsity=0", "agent.nap.norm=none",
        "agent.nap.project=false", f"agent.encoder.kind={s['network']}", "agent.encoder.width=1",
        "agent.encoder.scale_dense=false", f"agent.encoder.hidden={hidden}", "agent.encoder.dense=512",
        "agent.encoder.padding=valid", "agent.encoder.init=torch",  # SB3's NatureCNN; its layers' default init
        f"replay.capacity={s['buffer_size']}", "replay.prioritized=false", "replay.on_device=false",
        f"env.backend={s['backend']}",
        f"train.total_steps={s['steps']}", f"train.num_envs={s['num_envs']}", f"train.seed={s['seed']}",
        f"train.device={s['device']}", f"train.torch_threads={s['threads']}", "train.progress=false",
        "train.eval_every=0", f"train.eval_episodes={s['rlsuite_eval_episodes']}", "train.eval_num_envs=1",
        "train.checkpoint_every=0", "train.save_replay=false",
    ]
    return config.build_run_config(s["preset"], s["env"], overrides + list(extra))


def warm_imports(s: dict[str, Any]) -> None:
    """Import, before the clock, the modules either side would import lazily inside it (the env
    family's module, TensorBoard): module import is process start-up, not training. Same set both sides."""
    import importlib

    from rlsuite.envs import resolve_env_id

    family, _ = resolve_env_id(s["env"])
    extra = {"classic": ["rlsuite.envs.classic"], "minatar": ["rlsuite.envs.minatar", "minatar"],
             "atari": ["rlsuite.envs.atari", "ale_py", "cv2"]}.get(family, [])
    for name in ["rlsuite.loops.train", "rlsuite.envs.gym_backend", "torch.utils.tensorboard", "tqdm", *extra]:
        importlib.import_module(name)
