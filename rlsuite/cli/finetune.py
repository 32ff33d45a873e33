"""`rlsuite finetune`: start a fine-tuning run from a pre-trained checkpoint, with knowledge retention."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError

EPILOG = """\
The run records its parent checkpoint and keeps the pre-trained policy (the teacher) in its own
checkpoints, so it resumes exactly with `rlsuite train --resume RUN` and never needs the parent
again. Without PRESET the parent's own agent settings are used. --env names the fine-tuning task (with
its family's env preset); without it the task is the parent's env, settings and all, from its
normal start (env.start=close).
Every finetune.* key (rlsuite train --help) can be set with --set, e.g. --set finetune.ks.floor=0.33.

examples:
  rlsuite train ppo-closefar --env closefar:chain --set env.start=far --run-dir runs/chain-pre
  rlsuite finetune --from runs/chain-pre --env closefar:chain --retention bc --run-dir runs/chain-ft-bc
  rlsuite finetune --from runs/chain-pre --retention ks --set finetune.ks.coef=0.75 --set finetune.ks.floor=0.33
  rlsuite finetune --from runs/nethack-pre ppo-finetune-nethack --retention ks --freeze encoder --critic-warmup 100000
  rlsuite finetune --from runs/dqn-chain-pre dqn-closefar --retention em --set finetune.em.fraction=0.1
  rlsuite compare runs/chain-ft-*                                 # FAR metrics per method

offline agents (dt, DT-Mem): --dataset names the new data; --lora trains only low-rank adapters
  rlsuite finetune --from runs/dtmem-s1 --dataset data/minatar/freeway-expert --lora memory
  rlsuite finetune --from runs/dtmem-s1 --dataset data/new --lora all --set agent.lora.rank=8
  rlsuite export runs/ft-lora-memory-... --merge-lora                # adapters folded into the weights
"""


def add(sub: Any) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pre-trained agent, with knowledge retention (EWC, BC, KS, EM)",
                       description="Fine-tune a pre-trained agent on a task, adding knowledge-retention terms to "
                                   "the RL loss (Wołczyk et al., ICML 2024), and measure its FAR skill as it goes.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("preset", nargs="?", help="agent preset for the fine-tuning run (default: the parent's agent settings)")
    p.add_argument("--from", dest="parent", required=True, metavar="RUN_OR_CKPT",
                   help="the pre-trained run directory (its latest checkpoint) or checkpoint / export file")
    p.add_argument("--env", help="env preset or id of the fine-tuning task (default: the parent's env id)")
    p.add_argument("--retention", metavar="METHODS",
                   help="none, or a comma list of ewc, bc, ks (ppo) and em, bc, ks (dqn), e.g. bc,ks "
                        "(default: the preset's finetune.retention; none without a preset)")
    p.add_argument("--freeze", metavar="PARTS",
                   help="comma list of encoder, core, policy, value to keep frozen (default: the preset's; none)")
    p.add_argument("--critic-warmup", type=int, metavar="STEPS", help="env steps in which only the value head trains")
    p.add_argument("--dataset", metavar="DIR[,DIR...]",
                   help="offline agents (dt): the dataset(s) to fine-tune on (offline.datasets)")
    p.add_argument("--lora", choices=("memory", "all", "none"),
                   help="offline agents (dt): train only low-rank adapters on the working memory or on every "
                        "linear layer (agent.lora.target; default none = full fine-tuning)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set finetune.bc.coef=1")
    p.add_argument("--steps", type=int, help="env steps of fine-tuning (train.total_steps)")
    p.add_argument("--seed", type=int, help="the run's seed (train.seed)")
    p.add_argument("--num-envs", type=int, help="training envs (train.num_envs)")
    p.add_argument("--run-dir", help="output directory (default runs/ft-<methods>-<env>-s<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    p.set_defaults(func=cmd_finetune)


def finetune_overrides(args: argparse.Namespace, parent: Path) -> list[str]:
    """The finetune.* keys the flags stand for, then the shortcut flags, then --set (which wins)."""
    out = [f"finetune.parent={parent}"]
    if args.retention is not None:
        methods = [m.strip() for m in args.retention.split(",") if m.strip() and m.strip() != "none"]
        out.append(f"finetune.retention={','.join(methods)}")
    if args.freeze is not None:
        out.append(f"finetune.freeze={args.freeze}")
    if args.critic_warmup is not None:
        out.append(f"finetune.critic_warmup={args.critic_warmup}")
    if getattr(args, "dataset", None):
        out.append(f"offline.datasets={args.dataset}")
    if getattr(args, "lora", None):
        out.append(f"agent.lora.target={args.lora}")
    for flag, key in (("steps", "train.total_steps"), ("seed", "train.seed"), ("num_envs", "train.num_envs")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    if args.no_progress:
        out.append("train.progress=false")
    return out + list(args.overrides)


def build_config(args: argparse.Namespace) -> tuple[Any, Path]:
    """The fine-tuning run's config: PRESET (or the parent's saved agent, replay and train settings),
    the task's env, the finetune keys; validated, nothing written."""
    from rlsuite import config
    from rlsuite.loops.finetune import load_parent

    path, data = load_parent(args.parent)
    saved = data.get("config", {})
    from rlsuite.agents import agent_classes
    from rlsuite.loops.offline import is_offline

    offline = is_offline(str(data.get("algo", "")))
    if offline and not args.dataset:
        raise UserError(f"{path} is an offline ({data.get('algo')}) agent: name the data to fine-tune on with --dataset")
    if args.lora and offline and not hasattr(agent_classes(str(data.get("algo")))[1](), "lora"):
        raise UserError(f"--lora adapts transformer layers (dt); {path} holds a {data.get('algo')} agent: "
                        "fine-tune all of it (leave --lora out)")
    if not offline and (args.dataset or args.lora):
        raise UserError("--dataset and --lora apply to offline agents (dt); this parent is "
                        f"{data.get('algo')}")
    env = args.env or saved.get("env", {}).get("id")
    if args.preset:
        cfg = config.build_run_config(args.preset, env, [])
    else:
        cfg = config.empty_run_config(str(data.get("algo", "")))
        config.apply_file(cfg, {k: saved[k] for k in ("agent", "replay", "train") if k in saved}, str(path))
        if offline and hasattr(cfg.agent, "lora"):  # only the adapters are new; the games come from the new data
            cfg.agent.lora.target = "none"
        if args.env:  # the named task with its family's env preset
            config.apply_env(cfg, env, config.DEFAULT_ENV_PRESET)
        else:  # the parent's own env settings, from the task's normal start
            config.apply_file(cfg, {"env": saved.get("env", {})}, str(path))
            cfg.env.start = "close"
        cfg.presets = [f"finetune of {path}"]
    for assignment in finetune_overrides(args, path):
        config.apply_override(cfg, assignment)
    config.validate(cfg)
    if cfg.algo != data.get("algo"):
        raise UserError(f"{path} holds a {data.get('algo')} agent, the preset {args.preset} is {cfg.algo}")
    f = cfg.finetune
    if offline and (f.retention or f.freeze or f.critic_warmup):
        given = [name for name, value in (("--retention", f.retention), ("--freeze", f.freeze),
                                          ("--critic-warmup", f.critic_warmup)) if value]
        raise UserError(f"{', '.join(given)} (finetune.retention, freeze, critic_warmup) apply to online agents "
                        f"(dqn, ppo); {path} is an offline {data.get('algo')} agent: fine-tune it on --dataset, "
                        "all of it or its adapters (--lora)")
    if not offline:
        from rlsuite.loops.finetune import check_config

        check_config(cfg)
    return cfg, path


def check_inputs(cfg: Any, args: argparse.Namespace) -> None:
    """The data the run will read, against its env, before the run directory is made: an offline
    parent's datasets (rlsuite.loops.offline_checks), an online parent's finetune.data."""
    from rlsuite.cli.train import check_start

    check_start(cfg, args.env if args.dataset else None)
    if cfg.finetune.data and not args.dataset:  # an online parent (an offline one needs --dataset)
        from rlsuite.loops.finetune import far_env_config
        from rlsuite.loops.offline_checks import check_dataset_env

        check_dataset_env(cfg.finetune.data, far_env_config(cfg), "finetune.data")


def default_run_dir(cfg: Any) -> Path:
    methods = "-".join(cfg.finetune.retention) or "vanilla"
    if cfg.offline.datasets:
        methods = f"lora-{cfg.agent.lora.target}" if cfg.agent.lora.target != "none" else "full"
    env_name = cfg.env.id.replace("/", "-").replace(":", "-")
    return Path("runs") / f"ft-{methods}-{env_name}-s{cfg.train.seed}"


def cmd_finetune(args: argparse.Namespace) -> int:
    from rlsuite.run import rundir
    from rlsuite.cli.train import holds_run
    from rlsuite.loops.train import train

    cfg, _ = build_config(args)
    check_inputs(cfg, args)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    with rundir.removed_on_failure(run_dir), rundir.locked(run_dir):
        if holds_run(run_dir, config_counts=True):
            raise UserError(f"{run_dir} already holds a run; continue it with rlsuite train --resume {run_dir} "
                            "or start another with --run-dir DIR")
        train(cfg, run_dir)
    return 0
