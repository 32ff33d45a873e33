"""`rlsuite sweep | runs | compare`: many runs at once."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError


def add_sweep(sub: Any) -> None:
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


def add_runs(sub: Any) -> None:
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


def add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="final performance per group (IQM, CIs) and learning curves",
                       description=textwrap.fill(  # filled here: the raw formatter keeps the epilog's lines
                                   "Groups runs by config (seed removed) or --group-by keys; each run's final "
                                   "score on its task (the canonical env: 'pong' and 'ALE/Pong-v5' are one task), "
                                   "human-normalized when every task is an Atari game, aggregated with rliable: IQM, "
                                   "mean, median with 95% stratified-bootstrap CIs. Writes compare.md and curves.png. "
                                   "Task-sequence runs (train.tasks) get continual metrics instead: average "
                                   "performance, forgetting, forward transfer, revisit/fresh; writes compare.md and "
                                   "continual.png. Fine-tuning runs (rlsuite finetune, with far.jsonl) are grouped by "
                                   "retention method (plus 'scratch' for ordinary runs) and get final return, FAR(0), "
                                   "min / final FAR, FAR AUC, forgetting and far_kl; writes compare.md and "
                                   "finetune.png.", 100),
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
