"""`rlsuite sweep | runs | compare`: many runs at once."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError


SWEEP_EPILOG = """\
examples:
  rlsuite sweep dqn-minatar --env minatar:breakout --grid agent.gmp.sparsity=0,0.95 \\
      --grid agent.encoder.width=1,3 --seeds 1,2,3 --steps 500000 --out runs/gmp-breakout
  # the same grid as Ray tasks on a running cluster, 2 CPUs + 1 GPU per run, 2 retries per run:
  rlsuite sweep ... --launcher ray --ray-address auto --cpus-per-run 2 --gpus-per-run 1 --retries 2
  # on a local Ray instance of 4 runs at a time:
  rlsuite sweep ... --launcher ray --jobs 4
  # one SLURM job per run (returns after submitting), then the state of each run:
  rlsuite sweep ... --launcher slurm --slurm-partition gpu --slurm-time 720 --slurm-mem 16 --gpus-per-run 1
  rlsuite sweep --status --out runs/gmp-breakout
"""


def add_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a grid of overrides x seeds: local processes, Ray tasks or SLURM jobs",
                       description="Every arm x seed is a normal run directory <out>/<arm>/s<seed>, whichever "
                                   "launcher runs it. Re-running a sweep skips finished runs and resumes "
                                   "interrupted ones.",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", nargs="?", help="agent or preset name")
    p.add_argument("--env", help="env preset or id (required unless --status)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="one axis of the grid (repeatable)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override shared by every run")
    p.add_argument("--steps", type=int, help="train.total_steps for every run")
    p.add_argument("--jobs", type=int, help="parallel runs on this machine (local, or the local Ray instance; "
                                            "default: torch's thread count)")
    p.add_argument("--out", required=True, help="sweep directory (on a filesystem every worker sees, for ray/slurm)")
    p.add_argument("--launcher", choices=("local", "ray", "slurm"), default="local",
                   help="local (default): --jobs processes here. ray: one Ray task per run, e.g. --launcher ray "
                        "--ray-address auto. slurm: one submitit job per run, e.g. --launcher slurm "
                        "--slurm-partition gpu; returns after submitting (see --status)")
    p.add_argument("--retries", type=int, default=0, metavar="N",
                   help="ray/slurm: run a failed run again up to N times, from its last checkpoint when it has "
                        "one (default 0), e.g. --retries 2")
    p.add_argument("--cpus-per-run", type=int, metavar="N",
                   help="ray/slurm: CPUs each run asks for (default 1), e.g. --cpus-per-run 4")
    p.add_argument("--gpus-per-run", type=float, metavar="N",
                   help="ray/slurm: GPUs each run asks for (default 0; a fraction shares a GPU, ray only), "
                        "e.g. --gpus-per-run 1")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="ray: the cluster to join, e.g. --ray-address auto or ray://head:10001 "
                        "(default: start a local instance of --jobs runs)")
    p.add_argument("--slurm-time", type=int, metavar="MIN",
                   help="slurm: time limit per job in minutes (default 1440), e.g. --slurm-time 720")
    p.add_argument("--slurm-partition", metavar="NAME", help="slurm: partition, e.g. --slurm-partition gpu")
    p.add_argument("--slurm-mem", type=float, metavar="GB", help="slurm: memory per job in GB, e.g. --slurm-mem 16")
    p.add_argument("--slurm-executor", choices=("slurm", "local"), help=argparse.SUPPRESS)  # tests: submitit's local
    p.add_argument("--status", action="store_true",
                   help="print each run's state (done / partial / new) and its SLURM job state, e.g. "
                        "rlsuite sweep --status --out runs/gmp-breakout")
    p.set_defaults(func=cmd_sweep)


def check_launcher_options(args: argparse.Namespace) -> None:
    """One-line UserErrors for options that do not fit the launcher, before anything is written."""
    only = {"ray": ["ray_address"], "slurm": ["slurm_time", "slurm_partition", "slurm_mem", "slurm_executor"],
            "ray or slurm": ["cpus_per_run", "gpus_per_run"]}
    for launchers, names in only.items():
        for name in names:
            if getattr(args, name) is not None and args.launcher not in launchers.split(" or "):
                raise UserError(f"--{name.replace('_', '-')} applies to --launcher {launchers}, "
                                f"not --launcher {args.launcher}")
    if args.retries < 0:
        raise UserError(f"--retries must be 0 or more, got {args.retries}")
    if args.retries and args.launcher == "local":
        raise UserError("--retries applies to --launcher ray or slurm; re-run a local sweep to resume its failed runs")
    if args.cpus_per_run is not None and args.cpus_per_run <= 0:
        raise UserError(f"--cpus-per-run must be at least 1, got {args.cpus_per_run}")
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise UserError(f"--gpus-per-run must be 0 or more, got {args.gpus_per_run:g}")
    if args.launcher == "slurm" and args.gpus_per_run is not None and not float(args.gpus_per_run).is_integer():
        raise UserError(f"--gpus-per-run {args.gpus_per_run:g}: a SLURM job asks for whole GPUs")
    if args.slurm_time is not None and args.slurm_time < 1:
        raise UserError(f"--slurm-time must be at least 1 (minutes), got {args.slurm_time}")
    if args.slurm_mem is not None and args.slurm_mem <= 0:
        raise UserError(f"--slurm-mem must be more than 0 (GB), got {args.slurm_mem:g}")
    if args.jobs is not None and (args.launcher == "slurm" or args.ray_address):
        raise UserError("--jobs sets how many runs share this machine; with "
                        + ("--launcher slurm" if args.launcher == "slurm" else "--ray-address")
                        + " the cluster's free resources decide")


def cmd_sweep(args: argparse.Namespace) -> int:
    from rlsuite import config
    from rlsuite.launch.sweep import absolute_paths, default_jobs, outcome, parse_grid, plan_jobs, run_sweep

    if args.status:
        return sweep_status(args)
    if not args.agent or not args.env:
        raise UserError("rlsuite sweep needs an AGENT and --env (or --status --out DIR to see a sweep's state)")
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
    check_launcher_options(args)
    for combo in parse_grid(args.grid):  # fail fast on a bad key or value, before any process starts
        config.build_run_config(args.agent, args.env, args.overrides + combo)
    if args.launcher == "local":
        states = [state for _, state in run_sweep(args.agent, args.env, args.grid, seeds, Path(args.out),
                                                  args.overrides, args.steps, args.jobs or default_jobs())]
    else:
        from rlsuite.launch import launchers
        launchers.need(args.launcher)  # the missing-dependency error, before anything is written
        # Absolute: a Ray worker or a SLURM job may start in another directory than this one (the
        # run directories, and any path in the arms' overrides; arm names keep the paths as given).
        plan = plan_jobs(args.grid, seeds, Path(args.out).resolve())
        for job in plan:
            job.overrides = absolute_paths(job.overrides)
        args.overrides = absolute_paths(args.overrides)
        cpus, gpus = args.cpus_per_run or 1, args.gpus_per_run or 0
        if args.launcher == "slurm":
            return submit(args, plan, cpus, int(gpus))
        results = launchers.run_ray(plan, args.agent, args.env, args.overrides, args.steps,
                                    jobs=args.jobs or default_jobs(), address=args.ray_address, cpus=cpus,
                                    gpus=gpus, retries=args.retries)
        states = [outcome(job, code, args.steps) for job, code in results]
    count = {state: states.count(state) for state in ("done", "failed", "interrupted", "in use")}
    print(f"sweep finished: {count['done']} ok, {count['failed']} failed"
          + (f", {count['interrupted']} interrupted (re-run the same command to resume them)"
             if count["interrupted"] else "")
          + (f", {count['in use']} skipped (in use)" if count["in use"] else "")
          + f"; compare with: rlsuite compare {args.out}")
    return 1 if count["failed"] or count["interrupted"] else 0


def submit(args: argparse.Namespace, plan: list, cpus: int, gpus: int) -> int:
    import shutil

    from rlsuite.launch import launchers
    cluster = args.slurm_executor or "slurm"
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm submits with sbatch, which is not on PATH here; "
                        "run the sweep on the cluster's login node")
    out = Path(args.out).resolve()
    print(f"sweep: {len(plan)} runs as SLURM jobs ({cluster}) -> {args.out}")
    submitted = launchers.submit_slurm(plan, args.agent, args.env, args.overrides, args.steps, out,
                                       time_min=args.slurm_time or 1440, partition=args.slurm_partition,
                                       mem_gb=args.slurm_mem, cpus=cpus, gpus=gpus, retries=args.retries,
                                       cluster=cluster)
    print(f"sweep: submitted {len(submitted)} job(s): {' '.join(r['job_id'] for r in submitted) or '-'}; "
          f"recorded in {Path(args.out) / launchers.JOBS_FILE}; follow with: rlsuite sweep --status --out {args.out}")
    return 0


def sweep_status(args: argparse.Namespace) -> int:
    from rlsuite.run.evaluate import format_table
    from rlsuite.launch.launchers import status_rows

    given = [name for name in ("agent", "env", "ray_address", "slurm_time", "slurm_partition", "slurm_mem")
             if getattr(args, name)] + (["grid"] if args.grid else [])
    if given:
        raise UserError(f"--status takes only --out DIR (it reads the sweep there), not {', '.join(given)}")
    rows = status_rows(Path(args.out))
    if not rows:
        print(f"no runs in {args.out} yet")
        return 0
    print(format_table(rows, f"sweep {args.out}"))
    return 0


def add_runs(sub: Any) -> None:
    p = sub.add_parser("runs", help="list runs: agent, env, steps done / planned, last eval, state",
                       description="Every run directory below DIR with its agent, env, steps done (latest "
                                   "checkpoint) / planned, the mean of its last evaluation, and its state: "
                                   "running (a live process holds its lock), finished, or interrupted.")
    p.add_argument("dir", nargs="?", default="runs", help="folder to search (default runs/)")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from rlsuite.run.evaluate import format_table
    from rlsuite.run.rundir import find_runs, run_summary

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
                       epilog="examples:\n  rlsuite compare runs/seq-nap runs/seq-plain --reference runs/fresh-nap runs/fresh-plain\n"
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
                        "normalize task-sequence runs: p = return / mean fresh final return. When they hold "
                        "a fresh network of every group (the same config keys that tell the groups apart, "
                        "e.g. agent.nap.norm), each group is normalized by its own; otherwise by all of "
                        "them, pooled (the report says which)")
    p.add_argument("--tags", help="comma-separated TensorBoard tags whose final values to tabulate per group, "
                                  "e.g. plasticity/param_norm,plasticity/dormant_fraction,plasticity/srank")
    p.add_argument("--out", help="output folder (default: <first path>/compare)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from rlsuite.analysis.compare import compare

    if args.iteration_steps is not None and args.score != "train":
        raise UserError("--iteration-steps sets the iteration of --score train; it does nothing with --score eval")
    out = Path(args.out) if args.out else Path(args.runs[0]) / "compare"
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    table, curves = compare(args.runs, out, args.group_by, args.reference, tags, args.score, args.iteration_steps)
    print(table)
    print(f"\nwritten: {out / 'compare.md'}, {curves}")
    return 0
