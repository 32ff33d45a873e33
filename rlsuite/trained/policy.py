"""Load a trained agent from a run directory or checkpoint file, ready to act on an env."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlsuite import config

from rlsuite.loops import tasks

from rlsuite.run import checkpoint, speed
from rlsuite.agents import agent_classes
from rlsuite.envs import make as make_env
from rlsuite.errors import UserError


@dataclass
class LoadedPolicy:
    cfg: config.RunConfig
    agent: Any
    env: Any
    step: int
    path: Path
    run_dir: Path | None


def load_policy(target: str | Path, env_id: str | None = None, overrides: list[str] | None = None,
                num_envs: int = 4, seed: int = 12345, device: str = "cpu") -> LoadedPolicy:
    """Rebuild the agent a checkpoint was trained as, on evaluation envs (`evaluation=True`).

    The env interface is the run's own: a task-sequence run (train.tasks) is evaluated with the
    sequence's full action set and padded observation channels (rlsuite.loops.tasks.env_config), on the
    task it was training at the checkpoint's step unless `env_id` names another game. Raises
    UserError for an env whose spaces the network cannot take.
    """
    path = checkpoint.find(target)
    data = checkpoint.load(path)
    cfg = config.empty_run_config(str(data.get("algo", "")))
    config.apply_file(cfg, {k: v for k, v in data["config"].items() if k in config.SECTIONS}, str(path))
    for assignment in overrides or []:
        config.apply_override(cfg, assignment)
    config.validate(cfg)  # the same range checks as train, before any env is built
    if cfg.train.tasks:
        step = int(data["step"])
        task = env_id or tasks.task_of(cfg, tasks.phase_of(cfg, max(0, step - 1)))
        cfg.env = tasks.env_config(cfg, task)
    elif env_id is not None:
        cfg.env.id = env_id
    env = make_env(cfg.env, num_envs, seed, evaluation=True)
    signature = checkpoint.space_signature(env.single_observation_space, env.single_action_space)
    try:
        checkpoint.check_compatible(data, cfg.algo, signature, path, cfg.env.id)
    except UserError:
        env.close()
        raise
    agent_cls, _ = agent_classes(cfg.algo)
    agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, device, seed=seed)
    packed = data["agent"].get("packed", data["agent"].get("online_packed"))  # (the latter: older exports)
    if packed is not None:  # a `rlsuite export --sparse` file: the acting network's weights only
        from rlsuite.trained.export import unpack

        agent.load_exported(unpack(packed))
    else:
        agent.load_state_dict(data["agent"])
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    if hasattr(agent, "accelerate"):  # act in the run's recorded precision (rlsuite.run.speed)
        agent.accelerate(speed.evaluation_plan(run_dir, agent.device))
    return LoadedPolicy(cfg, agent, env, int(data["step"]), path, run_dir)
