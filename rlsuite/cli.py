"""`rlsuite train | eval | list | runs | bench` — the command line.

Every user mistake ends in one line on stderr and exit code 2; a diverged run exits 1.
The configuration keys and their help come from the config dataclasses' field docstrings.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, NoReturn

from rlsuite.errors import TrainingDiverged, UserError

EXAMPLES = """\
examples:
  rlsuite train dqn-classic --env CartPole-v1 --steps 60000      # a few minutes on a laptop CPU
  rlsuite train dqn --env pong --set replay.capacity=200000       # Dopamine DQN on Pong
  rlsuite train dqn-cleanrl --env breakout --set agent.double=true
  rlsuite train --resume runs/dqn-pong-s1                         # continue an interrupted run
  rlsuite train dqn-minatar --tasks minatar:breakout,minatar:asterix --steps-per-task 100000 --cycles 2
  rlsuite train dqn-minatar --env minatar:breakout --set nap.norm=layer --set nap.project=true   # NaP
  rlsuite train --config runs/dqn-pong-s1/config.toml --set train.seed=2
  rlsuite eval runs/dqn-pong-s1 --episodes 30
  rlsuite list envs
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class Interrupted(BaseException):
    """Ctrl-C, raised by `main`'s SIGINT handler. Not a KeyboardInterrupt: one of those passing through
    C code that runs Python (a module import) makes the interpreter kill itself with SIGINT at exit,
    even after `main` handled it, instead of exiting 130."""


def _interrupt_handler(pid: int) -> Any:
    def handler(signum: int, frame: Any) -> NoReturn:
        if os.getpid() != pid:  # a forked worker (AsyncVectorEnv) inherits this handler: behave as Python does
            raise KeyboardInterrupt
        raise Interrupted()
    return handler


def main(argv: list[str] | None = None) -> int:
    previous = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous = signal.signal(signal.SIGINT, _interrupt_handler(os.getpid()))
    try:
        return _main(argv)
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C (train handles its own SIGINT: it checkpoints, exits 0)
        import warnings

        # what was interrupted is torn down on exit (e.g. env workers closed mid-step): no warnings about it
        warnings.filterwarnings("ignore")
        print("rlsuite: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"rlsuite: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"rlsuite: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `rlsuite bench ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path the user gave that cannot be read or written: one line, not a traceback
        print(f"rlsuite: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2


OS_HINTS = {errno.ENOTDIR: "a part of the path is a file, not a directory",
            errno.EISDIR: "give a file, not a directory",
            errno.EACCES: "choose a path you can write",
            errno.EPERM: "choose a path you can write",
            errno.EROFS: "choose a path you can write",
            errno.ENOSPC: "disk full; free some space",
            errno.EDQUOT: "free some space"}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation, naming the path (or both paths of a rename)."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    hint = OS_HINTS.get(exc.errno)
    return (f"{where}: " if where else "") + reason + (f" ({hint})" if hint else "")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rlsuite", description="Continual and reinforcement learning research suite.",
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(metavar="command", parser_class=Parser)
    _add_train(sub)
    _add_eval(sub)
    _add_list(sub)
    _add_export(sub)
    _add_sweep(sub)
    _add_runs(sub)
    _add_compare(sub)
    _add_bench(sub)
    return parser


# ----------------------------------------------------------------------------- train


def _add_train(sub: Any) -> None:
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
    from rlsuite import config, rundir
    from rlsuite.train import train

    overrides = train_overrides(args)
    if args.resume:
        return resume_run(args, overrides)
    if args.tasks and not args.env and not args.config:
        args.env = args.tasks.split(",")[0].strip()  # the env preset of the sequence's family
    cfg = config.build_run_config(args.agent, args.env, overrides, args.config)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    # A default directory is never renamed behind the user's back: one that holds a run is refused
    # before anything in it is touched (not even the lock file).
    if not args.run_dir and holds_run(run_dir, config_counts=True):
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        "or start another with --run-dir DIR")
    with rundir.locked(run_dir):  # checked under the lock: two starts on one directory cannot both pass
        if holds_run(run_dir, config_counts=not args.run_dir):
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                            "or start another with --run-dir DIR")
        train(cfg, run_dir)
    return 0


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
    return overrides


def resume_run(args: argparse.Namespace, overrides: list[str]) -> int:
    """`train --resume RUN`: the saved config plus the few overrides a resume allows
    (rlsuite.rundir.RESUMABLE); arguments a resume would ignore are refused, not dropped."""
    from rlsuite import config, rundir
    from rlsuite.train import train

    ignored = [name for name, value in (("an agent", args.agent), ("--env", args.env), ("--config", args.config),
                                        ("--run-dir", args.run_dir)) if value]
    run_dir = Path(args.resume)
    if ignored:
        raise UserError(f"--resume continues {run_dir} with its saved config, so {', '.join(ignored)} cannot be "
                        "given with it (change resumable keys with --set, or start a new run with --config)")
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.toml)")
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


# ----------------------------------------------------------------------------- eval


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a run or checkpoint (raw game score, whole games)",
                       description="Evaluate a checkpoint on separate envs with epsilon-greedy acting. Reports "
                                   "mean, median, IQM with a 95% bootstrap CI, min/max, human-normalized score "
                                   "for Atari, NetHack score/depth/xp, Montezuma rooms. Appends to <run>/eval.jsonl.")
    p.add_argument("target", help="run directory (its latest checkpoint) or checkpoint file")
    p.add_argument("--env", help="evaluate on another env id (must have the same observation and action spaces)")
    p.add_argument("--episodes", type=int, default=10, help="whole games to play (default 10)")
    p.add_argument("--epsilon", type=float, help="exploration epsilon (default: the agent's eval_epsilon)")
    p.add_argument("--num-envs", type=int, default=4, help="parallel eval envs (default 4)")
    p.add_argument("--seed", type=int, default=12345, help="eval env seed (default 12345)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an env key for evaluation, e.g. --set env.sticky_action_prob=0")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rlsuite.evaluate import append_jsonl, evaluate, format_table
    from rlsuite.monitor import log_record
    from rlsuite.policy import load_policy

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:  # also refuses nan
        raise UserError(f"--epsilon is a probability: it must be between 0 and 1, got {args.epsilon}")
    if args.num_envs < 1:
        raise UserError(f"--num-envs must be at least 1, got {args.num_envs}")
    policy = load_policy(args.target, env_id=args.env, overrides=args.overrides, num_envs=args.num_envs)
    epsilon = policy.cfg.agent.eval_epsilon if args.epsilon is None else args.epsilon
    result = evaluate(policy.agent, policy.env, args.episodes, epsilon, seed=args.seed)
    summary = result.summary()
    if hasattr(policy.agent, "online"):  # pruned checkpoints report how sparse they are
        from rlsuite.nn.pruning import model_sparsity

        sparsity = model_sparsity(policy.agent.online)
        if sparsity["sparsity"] > 0.01:
            summary.update(sparsity)
    rows = [{"metric": k, "value": f"{v:.3f}" if isinstance(v, float) else str(v)}
            for k, v in summary.items() if v is not None]
    print(format_table(rows, f"{policy.cfg.algo} on {policy.env.game}, step {policy.step:,}, epsilon {epsilon}"))
    if policy.run_dir is not None:
        append_jsonl(policy.run_dir / "eval.jsonl",
                     log_record(policy.step, {**summary, "source": "rlsuite eval", "checkpoint": str(policy.path)}))
    return 0


# ----------------------------------------------------------------------------- export


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="export a trained agent (--sparse: surviving weights only)",
                       description="Write the online network of a run's latest checkpoint (or a checkpoint file). "
                                   "With --sparse, pruned kernels keep only their nonzero weights. The export is "
                                   "a checkpoint that `rlsuite eval` accepts.")
    p.add_argument("target", help="run directory or checkpoint file")
    p.add_argument("--sparse", action="store_true", help="store kernels as (indices, values) of nonzero weights")
    p.add_argument("-o", "--out", help="output file (default <run>/export/sparse.pt)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from rlsuite.evaluate import format_table
    from rlsuite.export import export_sparse

    if not args.sparse:
        raise UserError("only sparse export exists so far: add --sparse")
    base = Path(args.target) if Path(args.target).is_dir() else Path(args.target).parent
    out = Path(args.out) if args.out else base / "export" / "sparse.pt"
    if out.is_dir():
        raise UserError(f"-o {out} is a directory; give the export's file name, e.g. -o {out / 'sparse.pt'}")
    report = export_sparse(args.target, out)
    rows = [{"what": "parameters", "value": f"{report['parameters']:,}"},
            {"what": "nonzero", "value": f"{report['nonzero']:,}"},
            {"what": "dense size", "value": f"{report['dense_bytes'] / 1e6:.3f} MB"},
            {"what": "sparse size", "value": f"{report['sparse_bytes'] / 1e6:.3f} MB"},
            {"what": "file size", "value": f"{report['file_bytes'] / 1e6:.3f} MB"},
            {"what": "saved", "value": f"{100 * report['saved']:.1f}%"}]
    print(format_table(rows, f"sparse export of {report['source']} -> {report['export']}"))
    return 0


# ----------------------------------------------------------------------------- sweep and compare


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a grid of overrides x seeds in parallel processes",
                       description="Every arm x seed is a normal run directory <out>/<arm>/s<seed>. Re-running a "
                                   "sweep skips finished runs and resumes interrupted ones.",
                       epilog="example: rlsuite sweep dqn-minatar --env minatar:breakout --grid agent.gmp.sparsity=0,0.95 "
                              "--grid agent.encoder.width=1,3 --seeds 1,2,3 --steps 500000 --out runs/gmp-breakout")
    p.add_argument("agent", help="agent or preset name")
    p.add_argument("--env", required=True, help="env preset or id")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="one axis of the grid (repeatable)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override shared by every run")
    p.add_argument("--steps", type=int, help="train.total_steps for every run")
    p.add_argument("--jobs", type=int, help="parallel runs (default: torch's thread count)")
    p.add_argument("--out", required=True, help="sweep directory")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from rlsuite import config
    from rlsuite.sweep import default_jobs, parse_grid, run_sweep

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if len(set(seeds)) < len(seeds):
        raise UserError(f"--seeds {args.seeds!r} names a seed twice (each seed is one run per arm)")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be at least 1 (parallel runs), got {args.jobs}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    for combo in parse_grid(args.grid):  # fail fast on a bad key or value, before any process starts
        config.build_run_config(args.agent, args.env, args.overrides + combo)
    results = run_sweep(args.agent, args.env, args.grid, seeds, Path(args.out), args.overrides, args.steps,
                        args.jobs or default_jobs())
    failed = [job for job, code in results if code not in (0, None)]
    busy = [job for job, code in results if code is None]
    print(f"sweep finished: {len(results) - len(failed) - len(busy)} ok, {len(failed)} failed"
          + (f", {len(busy)} skipped (in use)" if busy else "") + f"; compare with: rlsuite compare {args.out}")
    return 1 if failed else 0


def _add_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list runs: agent, env, steps done / planned, last eval, state",
                       description="Every run directory below DIR with its agent, env, steps done (latest "
                                   "checkpoint) / planned, the mean of its last evaluation, and its state: "
                                   "running (a live process holds its lock), finished, or interrupted.")
    p.add_argument("dir", nargs="?", default="runs", help="folder to search (default runs/)")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from rlsuite.evaluate import format_table
    from rlsuite.rundir import find_runs, run_summary

    found = find_runs(Path(args.dir))
    if not found:
        print(f"no runs below {args.dir}")
        return 0
    print(format_table([run_summary(run_dir) for run_dir in found], f"runs below {args.dir}"))
    return 0


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="final performance per group (IQM, CIs) and learning curves",
                       description=textwrap.fill(  # filled here: the raw formatter keeps the epilog's lines
                                   "Groups runs by config (seed removed) or --group-by keys; each run's final "
                                   "score on its task (the canonical env: 'pong' and 'ALE/Pong-v5' are one task), "
                                   "human-normalized when every task is an Atari game, aggregated with rliable: IQM, "
                                   "mean, median with 95% stratified-bootstrap CIs. Writes compare.md and curves.png. "
                                   "Task-sequence runs (train.tasks) get continual metrics instead: average "
                                   "performance, forgetting, forward transfer, revisit/fresh; writes compare.md and "
                                   "continual.png.", 100),
                       epilog="examples:\n  rlsuite compare runs/seq-nap runs/seq-plain --reference runs/fresh\n"
                              "  rlsuite compare runs/gmp-atari --score train      # as the GMP paper's curves",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories, or folders containing them (a sweep)")
    p.add_argument("--score", choices=("eval", "train"), default="eval",
                   help="eval (default): mean return of the last separate evaluation, at agent.eval_epsilon "
                        "(0.001 in the Dopamine presets). train: Dopamine's training return, as the GMP paper "
                        "plots: mean raw return of all training games (training epsilon, 0.01) that ended in the "
                        "last complete iteration, from TensorBoard's charts/episodic_return; curves then show the "
                        "per-iteration training return")
    p.add_argument("--iteration-steps", type=int, metavar="N",
                   help="--score train: env steps per iteration (default: train.eval_every, 250k in the dqn "
                        "presets = one Dopamine iteration; the whole run when that is 0)")
    p.add_argument("--group-by", action="append", metavar="KEY", help="config key(s) that define groups")
    p.add_argument("--reference", nargs="+", metavar="RUN",
                   help="fresh single-task runs (one network per task, steps_per_task steps, any seeds) that "
                        "normalize task-sequence runs: p = return / mean fresh final return")
    p.add_argument("--tags", help="comma-separated TensorBoard tags whose final values to tabulate per group, "
                                  "e.g. plasticity/param_norm,plasticity/dormant_fraction,plasticity/srank")
    p.add_argument("--out", help="output folder (default: <first path>/compare)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from rlsuite.compare import compare

    if args.iteration_steps is not None and args.score != "train":
        raise UserError("--iteration-steps sets the iteration of --score train; it does nothing with --score eval")
    out = Path(args.out) if args.out else Path(args.runs[0]) / "compare"
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    table, curves = compare(args.runs, out, args.group_by, args.reference, tags, args.score, args.iteration_steps)
    print(table)
    print(f"\nwritten: {out / 'compare.md'}, {curves}")
    return 0


# ----------------------------------------------------------------------------- list


def _add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="list agents, presets and environments")
    p.add_argument("what", nargs="?", default="all", choices=["all", "agents", "envs"])
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from rlsuite.agents import AGENTS
    from rlsuite.config import preset_names

    if args.what in ("all", "agents"):
        from rlsuite.native import backend_description

        print("agents:        " + ", ".join(AGENTS))
        print("replay ops:    " + backend_description())
        print("agent presets: " + ", ".join(preset_names("agents")))
    if args.what in ("all", "envs"):
        from rlsuite.envs import known_env_ids

        print("env presets:   " + ", ".join(preset_names("envs")))
        ids = known_env_ids()
        print(f"env ids ({len(ids)}):")
        print(textwrap.fill(", ".join(ids), width=100, initial_indent="  ", subsequent_indent="  "))
    return 0


# ----------------------------------------------------------------------------- bench


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure speed against peers installed side by side, or run the "
                       "plasticity benchmark (JSON lines)")
    p.add_argument("what", choices=["dqn", "replay", "envs", "plasticity"])
    p.add_argument("--seconds", type=float, default=20.0, help="replay, envs: time per measurement (default 20; dqn times whole runs of --steps)")
    p.add_argument("--quick", action="store_true", help="short measurements (a smoke test, not a result)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="replay: cuda holds the whole buffer in GPU memory (replay.on_device) and skips the "
                        "CPU peers (default cpu)")
    p.add_argument("--capacity", type=int, default=None,
                   help="replay: buffer capacity in transitions (default 200000; 20000 with --quick)")
    p.add_argument("--out", default="runs/bench-plasticity",
                   help="plasticity: folder for its figures, table and records (default runs/bench-plasticity)")
    p.add_argument("--steps", type=int, default=None,
                   help="dqn: env steps per timed train()/learn() call (default per task, 10k-20k; 2000 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="dqn: fresh processes per side and allocator, interleaved (default 3; 1 with --quick)")
    p.add_argument("--tasks", default=None,
                   help="dqn: comma-separated tasks (default all: cartpole, minatar-breakout, pong)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    seconds = 1.0 if args.quick else args.seconds
    if args.what != "replay" and (args.device != "cpu" or args.capacity is not None):
        raise UserError(f"bench {args.what} runs on the CPU with fixed sizes; --device and --capacity "
                        "apply to `rlsuite bench replay` only")
    if args.what == "replay":
        from rlsuite.bench.replay import bench_replay
        from rlsuite.bench.replay_peers import bench_peers

        import torch

        capacity = args.capacity or (20_000 if args.quick else 200_000)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("bench replay --device cuda needs a GPU and a CUDA build of torch; "
                            "this torch sees none")
        results = bench_replay(capacity=capacity, seconds=seconds, device=args.device)
        if not args.quick and args.device == "cpu":  # peers installed side by side, each in its own subprocess
            results += bench_peers(capacity=capacity, seconds=seconds)
    elif args.what == "plasticity":  # fixed step counts, so --seconds does not apply
        from rlsuite.bench.plasticity import bench_plasticity

        results = bench_plasticity(out=args.out, quick=args.quick)
    elif args.what == "envs":
        from rlsuite.bench.envs import bench_envs

        results = bench_envs(seconds=seconds)
    else:
        from rlsuite.bench.dqn import bench_dqn

        results = bench_dqn(steps=args.steps, repeats=args.repeats, tasks=args.tasks, quick=args.quick)
    for record in results:
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
