"""`rlsuite train`: start, relaunch (--config) or resume (--resume) a run."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError
from rlsuite.cli.common import EXAMPLES


def add(sub: Any) -> None:
    p = sub.add_parser("train", help="train an agent (or resume / relaunch a run)",
                       description="Train an agent. Configuration = agent preset + env preset + --set overrides; "
                                   "the resolved config is written to <run>/config.toml.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=config_help())
    p.add_argument("agent", nargs="?", help="agent or preset name (agents/<name>.toml), e.g. dqn, dqn-cleanrl")
    p.add_argument("--env", help="env preset (envs/<name>.toml) or env id: pong, montezuma, NetHackScore-v0, "
                                 "minatar:breakout, CartPole-v1")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set agent.lr=1e-4 (repeatable; bare keys if unique)")
    p.add_argument("--steps", type=int, help="shortcut for --set train.total_steps=N")
    p.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    p.add_argument("--num-envs", type=int, help="shortcut for --set train.num_envs=N")
    p.add_argument("--tasks", help="task sequence (continual RL), e.g. minatar:breakout,minatar:asterix; "
                                   "shortcut for --set train.tasks=...")
    p.add_argument("--steps-per-task", type=int, help="env steps per task of the sequence (train.steps_per_task)")
    p.add_argument("--cycles", type=int, help="times the sequence is played (train.cycles, default 1)")
    p.add_argument("--dataset", metavar="DIR[,DIR...]",
                   help="offline agents (dt, bc): the dataset(s) to learn from, one game each (rlsuite collect makes "
                        "them); shortcut for --set offline.datasets=...")
    p.add_argument("--run-dir", help="output directory (default runs/<preset>-<env>-s<seed>)")
    p.add_argument("--config", help="relaunch from a resolved config.toml")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.add_argument("--save-replay", action="store_true", help="save the replay buffer with checkpoints (exact resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    p.set_defaults(func=cmd_train)


def config_help() -> str:
    """Every config key with its default and docstring, per section (the DQN agent)."""
    from rlsuite.config import SECTIONS, describe, empty_run_config, preset_names

    cfg = empty_run_config("dqn")
    lines = ["configuration keys (--set section.key=value; defaults shown are before presets):"]
    for section in SECTIONS:
        lines.append(f"\n  [{section}]")
        for key, value, doc in describe(getattr(cfg, section), section + "."):
            lines.append(f"    {key} = {value}")
            lines.extend(textwrap.wrap(doc, width=92, initial_indent="        ", subsequent_indent="        "))
    lines.append(f"\nagent presets: {', '.join(preset_names('agents'))}")
    lines.append(f"env presets:   {', '.join(preset_names('envs'))}")
    return "\n".join(lines) + "\n\n" + EXAMPLES


def cmd_train(args: argparse.Namespace) -> int:
    from rlsuite import config
    from rlsuite.run import rundir
    from rlsuite.loops.train import train

    overrides = train_overrides(args)
    if args.resume:
        return resume_run(args, overrides)
    if args.tasks and not args.env and not args.config:
        args.env = args.tasks.split(",")[0].strip()  # the env preset of the sequence's family
    env_flag = args.env if args.dataset else None  # an offline run's env comes from its datasets
    if args.dataset and not args.env and not args.config:
        args.env = dataset_env(args.dataset.split(",")[0].strip())  # the env family of the data
    from rlsuite.run.lifecycle import distributed

    rank, _ = distributed()
    cfg = every_rank(lambda: config.build_run_config(args.agent, args.env, overrides, args.config))
    every_rank(lambda: check_start(cfg, env_flag))
    if rank > 0:  # torchrun: rank 0 checks and locks the run directory; the others follow it
        train(cfg, Path(args.run_dir) if args.run_dir else default_run_dir(cfg))
        return 0
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    # A default directory is never renamed behind the user's back: one that holds a run is refused
    # before anything in it is touched (not even the lock file).
    if not args.run_dir and holds_run(run_dir, config_counts=True):
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        "or start another with --run-dir DIR")
    with rundir.removed_on_failure(run_dir), rundir.locked(run_dir):  # checked under the lock: two starts
        if holds_run(run_dir, config_counts=not args.run_dir):     # on one directory cannot both pass
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                            "or start another with --run-dir DIR")
        train(cfg, run_dir)
    return 0


def every_rank(check: Any) -> Any:
    """Run `check()`; under torchrun a UserError it raises is raised alike on every rank, so only
    rank 0 prints it (rlsuite.cli.main) and every rank exits 2."""
    try:
        return check()
    except UserError as exc:
        exc.every_rank = True  # type: ignore[attr-defined]
        raise


def check_start(cfg: Any, env_flag: str | None = None) -> None:
    """What can be checked before a run directory is made: under torchrun, the agent and its
    global batch; for an offline agent, its datasets against the config (rlsuite.loops.offline_checks),
    printing their warnings once (rank 0)."""
    from rlsuite.loops.offline import is_offline
    from rlsuite.run.lifecycle import distributed
    from rlsuite.loops.offline_checks import check_offline_run, check_world

    rank, world = distributed()
    check_world(cfg.algo, getattr(cfg.agent, "batch_size", None), world)
    if not is_offline(cfg.algo):
        return
    for line in check_offline_run(cfg, env_flag, world):
        if rank == 0:
            print(f"rlsuite: warning: {line}", file=sys.stderr)


def dataset_env(path: str) -> str:
    """The env id a dataset was collected on (its manifest), so `--env` can be left out."""
    from rlsuite.data import Dataset

    manifest = Dataset(path).manifest
    env = manifest.get("env_id") or manifest.get("game")
    if not env:
        raise UserError(f"the manifest of {path} names no env; give --env")
    return str(env)


def holds_run(run_dir: Path, config_counts: bool = False) -> bool:
    """A checkpoint (or, with ``config_counts``, a resolved config) says a run was started here."""
    ckpts = run_dir / "checkpoints"
    if ckpts.is_dir() and any(ckpts.iterdir()):
        return True
    return config_counts and (run_dir / "config.toml").is_file()


def train_overrides(args: argparse.Namespace) -> list[str]:
    """--set overrides plus the shortcut flags (--steps, --seed, ...) as overrides."""
    overrides = list(args.overrides)
    for flag, key in (("steps", "train.total_steps"), ("seed", "train.seed"), ("num_envs", "train.num_envs"),
                      ("tasks", "train.tasks"), ("steps_per_task", "train.steps_per_task"), ("cycles", "train.cycles")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.save_replay:
        overrides.append("train.save_replay=true")
    if args.no_progress:
        overrides.append("train.progress=false")
    if getattr(args, "dataset", None):
        overrides.append(f"offline.datasets={args.dataset}")
    return overrides


def resume_run(args: argparse.Namespace, overrides: list[str]) -> int:
    """`train --resume RUN`: the saved config plus the few overrides a resume allows
    (rlsuite.run.rundir.RESUMABLE); arguments a resume would ignore are refused, not dropped."""
    from rlsuite import config
    from rlsuite.run import rundir
    from rlsuite.loops.train import train

    ignored = [name for name, value in (("an agent", args.agent), ("--env", args.env), ("--config", args.config),
                                        ("--run-dir", args.run_dir), ("--dataset", args.dataset)) if value]
    run_dir = Path(args.resume)
    if ignored:
        raise UserError(f"--resume continues {run_dir} with its saved config, so {', '.join(ignored)} cannot be "
                        "given with it (change resumable keys with --set, or start a new run with --config)")
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.toml)")
    from rlsuite.run.lifecycle import distributed

    if distributed()[0] > 0:  # torchrun: rank 0 holds the lock
        cfg = every_rank(lambda: config.build_run_config(config_file=run_dir / "config.toml", overrides=overrides))
        every_rank(lambda: check_start(cfg))
        train(cfg, run_dir, resume=True)
        return 0
    if distributed()[1] > 1:
        every_rank(lambda: check_start(config.build_run_config(config_file=run_dir / "config.toml",
                                                               overrides=overrides)))
    with rundir.locked(run_dir):
        cfg = config.build_run_config(config_file=run_dir / "config.toml", overrides=overrides)
        train(cfg, run_dir, resume=True)
    return 0


def default_run_dir(cfg: Any) -> Path:
    """runs/<preset>-<env>-s<seed>: named by the agent preset (not the algorithm), so two presets on
    one env never share a directory; the env id is kept as given (`--env pong` -> `-pong-`)."""
    preset = cfg.algo
    if cfg.presets and cfg.presets[0].startswith("agents/"):
        preset = Path(cfg.presets[0]).stem  # --config relaunches keep their preset's name
    env_name = cfg.env.id.replace("/", "-").replace(":", "-")
    if cfg.train.tasks:
        env_name = "seq-" + "-".join(t.split(":")[-1] for t in cfg.train.tasks) + f"-x{cfg.train.cycles}"
    return Path("runs") / f"{preset}-{env_name}-s{cfg.train.seed}"
