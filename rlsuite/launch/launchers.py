"""Where the runs of `rlsuite sweep` execute: this machine, a Ray cluster, or SLURM.

Every launcher runs the same `python -m rlsuite.cli train ...` command line as the local one
(`rlsuite.launch.sweep.command`) and writes the same run directory `<out>/<arm>/s<seed>`, so
`rlsuite runs / eval / compare` work on the result whatever ran it. The run directory must be
on a filesystem that the driver and every worker see.

- local (rlsuite.launch.sweep.run_sweep): `--jobs` processes on this machine.
- ray (`run_ray`): one Ray task per run, asking for `--cpus-per-run` CPUs and `--gpus-per-run`
  GPUs, on the cluster at `--ray-address` or on a local instance of `--jobs` runs' worth of
  CPUs. The task takes the run directory's lock on the worker's machine (the driver may be
  elsewhere) and hands it to its `rlsuite train` child, as the local launcher does. A run that
  another process holds is reported as skipped; a finished one as done. A failed run (non-zero
  exit, or its worker died) is reported and retried up to `--retries` times; each retry looks
  at the run directory again, so it resumes from the last checkpoint when there is one.
  Per-run CPUs or GPUs that no machine has (this one for a local instance, the cluster's biggest
  live node otherwise) are refused in one line before any task is submitted (`check_resources`).
  Ctrl-C cancels every outstanding task: a running one sends SIGTERM to its `rlsuite train`,
  which writes a checkpoint, so re-running the sweep resumes it (finished runs are skipped).
- slurm (`submit_slurm`): one submitit job per run (`--slurm-time`, `--slurm-partition`,
  `--slurm-mem`, `--cpus-per-run`, `--gpus-per-run`). The job takes the lock on its node,
  runs `rlsuite train` and retries in place up to `--retries` times. The sweep returns after
  submitting; `<out>/slurm_jobs.json` records arm, seed, job id, run_dir and submission time,
  and `rlsuite sweep --status --out DIR` (`status_rows`) shows each run's state with its SLURM
  state. Runs that are done, in use, or whose recorded job is still queued or running are not
  submitted again.

Ray and submitit are optional (extras `rlsuite[ray]`, `rlsuite[slurm]`) and imported only here,
only when their launcher is chosen.
"""
from __future__ import annotations

import importlib
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlsuite.run import rundir
from rlsuite.errors import UserError
from rlsuite.launch.sweep import Job, command, job_state

JOBS_FILE = "slurm_jobs.json"
# SLURM states of a job that will still run (or runs): its run is not submitted again.
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def need(launcher: str) -> Any:
    """The module a launcher needs, or the one-line UserError saying how to install it."""
    module, name = {"ray": ("ray", "Ray"), "slurm": ("submitit", "submitit")}[launcher]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"--launcher {launcher} needs {name}: pip install 'rlsuite[{launcher}]'") from None


@dataclass
class Outcome:
    """How one attempt at a run ended: `code` 0 (ran to the end, or was already done), the
    exit code of a failed `rlsuite train`, or None when another process holds the run."""

    code: int | None
    note: str


def log_path(job: Job) -> Path:
    return job.run_dir.parent / f"s{job.seed}.log"  # beside the run, as the local launcher writes it


def run_here(job: Job, agent: str, env: str, base: list[str], steps: int | None, attempt: int = 1,
             stop: str | None = None) -> Outcome:
    """Run one job to its end on this machine: what a Ray task or a SLURM job executes.

    The lock is taken here, on the machine that runs the job, and inherited by `rlsuite train`;
    the state (done / partial / new) is read under it, so a retry resumes from a checkpoint.
    Once the file `stop` exists (the driver was interrupted) `rlsuite train` is stopped as by Ctrl-C.
    """
    try:
        lock = rundir.acquire(job.run_dir)
    except rundir.RunInUse as exc:
        return Outcome(None, f"in use by {rundir.describe_holder(exc.holder)}")
    try:
        state = job_state(job, steps)
        if state == "done":
            return Outcome(0, "already done")
        if stop and os.path.exists(stop):
            return Outcome(0, "not started: the sweep was interrupted")
        argv = command(job, agent, env, base, steps, state)
        with open(log_path(job), "a") as log:
            # One header per attempt: the log shows where, when, how often and what was run.
            log.write(f"=== rlsuite sweep: attempt {attempt} ({'resume' if state == 'partial' else 'new'}) "
                      f"on {socket.gethostname()} pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{shlex.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(argv, stdout=log,
                                    stderr=subprocess.STDOUT, pass_fds=(lock.fd,),
                                    env={**os.environ, rundir.ENV_FD: str(lock.fd)})
            rundir.hand_over(lock)  # the child holds it now, until it exits
            lock = None
            code = _wait(proc, stop)
    finally:
        if lock is not None:
            rundir.release(lock)
    if code != 0:
        return Outcome(code, f"exit {code}")
    return Outcome(0, "done" if job_state(job, steps) == "done" else "stopped early (re-run the sweep to resume)")


def _wait(proc: subprocess.Popen, stop: str | None) -> int:
    """Wait for `rlsuite train`. When the driver asks to stop (the file `stop` appears: Ray's
    non-forced cancel cannot interrupt a task blocked in a wait), or this process is interrupted
    (a SLURM signal), stop it with SIGTERM (it checkpoints, as on Ctrl-C) rather than leave it
    running. SIGTERM, not SIGINT: a Ray worker's child inherits a signal mask that blocks SIGINT."""
    try:
        while True:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if stop and os.path.exists(stop):
                    proc.send_signal(signal.SIGTERM)
                    return proc.wait(timeout=120)
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except BaseException:
            proc.kill()
        raise


def run_with_retries(job: Job, agent: str, env: str, base: list[str], steps: int | None, retries: int) -> Outcome:
    """run_here, tried again up to `retries` times after a failure: a SLURM job's body."""
    for attempt in range(1, retries + 2):
        outcome = run_here(job, agent, env, base, steps, attempt)
        if outcome.code in (0, None):
            break
    return outcome


# ----------------------------------------------------------------------------- ray


def run_ray(plan: list[Job], agent: str, env: str, base: list[str], steps: int | None, *, jobs: int,
            address: str | None, cpus: int, gpus: float, retries: int, say: Callable[[str], None] = print
            ) -> list[tuple[Job, int | None]]:
    """Run every job as a Ray task; returns (job, exit code) per job, None for a run in use."""
    ray = need("ray")
    started_here = not ray.is_initialized()  # a caller (a test, a notebook) may have connected already
    if started_here and not address:  # a local instance: checked before Ray starts
        check_resources(cpus, gpus, local_resources(), "this machine")
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a local instance sized so `jobs` runs fit at once
                ray.init(num_cpus=jobs * cpus, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    if address or not started_here:
        try:
            check_resources(cpus, gpus, node_resources(ray), "the Ray cluster" + (f" at {address}" if address else ""))
        except UserError:
            if started_here:
                ray.shutdown()
            raise
    # max_retries=0: retries are ours, so each one is reported and re-reads the run's state.
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_here)
    where = f"Ray at {address}" if address else "a local Ray instance"
    say(f"sweep: {len(plan)} runs on {where}, {cpus} CPU{'s' * (cpus != 1)}"
        + (f" + {gpus:g} GPU" if gpus else "") + f" each -> {plan[0].run_dir.parent.parent if plan else '-'}")
    # The stop file: on the shared filesystem, so tasks on every machine see it.
    stop = plan[0].run_dir.parent.parent / f".sweep-stop-{os.getpid()}-{int(time.time())}" if plan else None
    pending = {task.remote(job, agent, env, base, steps, 1, str(stop)): (job, 1) for job in plan}
    finished: list[tuple[Job, int | None]] = []
    started = time.time()
    interrupted = _catch_sigint()
    try:
        while pending:
            if interrupted:
                raise KeyboardInterrupt
            # A timeout, so the loop sees Ctrl-C (flagged by our handler: an exception raised
            # inside Ray's C++ wait comes back as a SystemError).
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            if not ready:
                continue
            ref = ready[0]
            job, attempt = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (OOM kill, lost node): a failure
                outcome = Outcome(-1, f"task failed: {str(exc).strip().splitlines()[0]}")
            if outcome.code not in (0, None) and attempt <= retries:
                say(f"  FAILED {job.arm} s{job.seed} ({outcome.note}, see {log_path(job)}); "
                    f"retry {attempt}/{retries}")
                pending[task.remote(job, agent, env, base, steps, attempt + 1, str(stop))] = (job, attempt + 1)
                continue
            finished.append((job, outcome.code))
            say(f"  {describe(job, outcome)}  [{len(finished)}/{len(plan)}, {time.time() - started:.0f}s]")
    except BaseException:  # Ctrl-C, or a crash of this driver: stop the runs cleanly either way
        if pending:
            _cancel(ray, list(pending), stop, say)
        raise
    finally:
        interrupted.restore()
        if stop is not None and stop.exists():
            stop.unlink()
        if started_here:
            ray.shutdown()
    return finished


def local_resources() -> dict[str, float]:
    """The CPUs this process may use and the GPUs it sees (CUDA_VISIBLE_DEVICES applies)."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"CPU": float(cpus), "GPU": float(torch.cuda.device_count())}


def node_resources(ray: Any) -> dict[str, float]:
    """The CPUs and GPUs of the cluster's biggest live node (a task runs on one node; each resource
    on its own, so a cluster of CPU nodes and GPU nodes passes a request that only both would meet)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        return {k: float(v) for k, v in ray.cluster_resources().items()}
    return {name: float(max(n.get(name, 0) for n in nodes)) for name in ("CPU", "GPU")}


def check_resources(cpus: float, gpus: float, have: dict[str, float], where: str) -> None:
    """Refuse per-run resources no machine of `where` has (Ray would queue the tasks forever)."""
    for name, want, flag in (("CPU", cpus, "--cpus-per-run"), ("GPU", gpus, "--gpus-per-run")):
        got = have.get(name, 0.0)
        if want > got:
            fix = (f"lower {flag} to at most {got:g}" if got else
                   f"use {flag} 0 here, or --ray-address a cluster with GPUs")
            raise UserError(f"{flag} {want:g}: {where} has {got:g} {name}{'s' * (got != 1)}"
                            f"{' on its biggest machine' if 'cluster' in where else ''}, so no run could start; {fix}")


class _catch_sigint(list):
    """While the driver waits on Ray, Ctrl-C only appends to this list (true once pressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda signum, frame: self.append(signum))

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def describe(job: Job, outcome: Outcome) -> str:
    """'skip arm s1 (done)', 'done arm s1', 'FAILED arm s1 (exit 2, see <log>)', as local reports them."""
    if outcome.code is None or outcome.note == "already done":
        return f"skip {job.arm} s{job.seed} ({'done' if outcome.code == 0 else outcome.note})"
    if outcome.code:
        return f"FAILED {job.arm} s{job.seed} ({outcome.note}, see {log_path(job)})"
    return f"done {job.arm} s{job.seed}" + ("" if outcome.note == "done" else f" ({outcome.note})")


def _cancel(ray: Any, refs: list, stop: Path, say: Callable[[str], None]) -> None:
    """Cancel queued tasks, ask running ones to stop their runs (which checkpoint), and wait for
    them before Ray goes away; a task still running after 90 s is killed."""
    say(f"sweep: stopping, cancelling {len(refs)} Ray task(s) (running ones checkpoint first, up to 90 s); "
        "re-run the sweep to resume them")
    stop.touch()
    for ref in refs:
        ray.cancel(ref)  # not force: drops a queued task; a running one sees the stop file
    ready, left = ray.wait(refs, num_returns=len(refs), timeout=90)
    for ref in left:
        ray.cancel(ref, force=True)


# ----------------------------------------------------------------------------- slurm


def make_executor(folder: Path, cluster: str) -> Any:
    """submitit's executor: 'slurm' (sbatch), or 'local' (subprocesses here: for tests)."""
    submitit = need("slurm")
    return submitit.AutoExecutor(folder=str(folder), cluster=cluster)


def submit_slurm(plan: list[Job], agent: str, env: str, base: list[str], steps: int | None, out: Path, *,
                 time_min: int, partition: str | None, mem_gb: float | None, cpus: int, gpus: int,
                 retries: int, cluster: str = "slurm", say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Submit one job per run that still needs running; record them in <out>/slurm_jobs.json.
    Returns the records of the jobs submitted now."""
    executor = make_executor(out / ".slurm", cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "cpus_per_task": cpus, "gpus_per_node": gpus,
                              "name": f"rlsuite-{out.name}"}
    if mem_gb is not None:
        params["mem_gb"] = mem_gb
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    records = read_jobs(out)
    active = {r["run_dir"]: r for r in records["jobs"] if job_state_of(out, r, records["executor"]) in ACTIVE}
    submitted = []
    for job in plan:
        held = rundir.holder(job.run_dir)
        if held is not None:
            say(f"  skip {job.arm} s{job.seed} (in use by {rundir.describe_holder(held)})")
        elif job_state(job, steps) == "done":
            say(f"  skip {job.arm} s{job.seed} (done)")
        elif str(job.run_dir) in active:
            say(f"  skip {job.arm} s{job.seed} (already queued as job {active[str(job.run_dir)]['job_id']})")
        else:
            sub = executor.submit(run_with_retries, job, agent, env, base, steps, retries)
            submitted.append({"arm": job.arm, "seed": job.seed, "job_id": str(sub.job_id),
                              "run_dir": str(job.run_dir), "submitted": time.strftime("%Y-%m-%d %H:%M:%S")})
            say(f"  submitted {job.arm} s{job.seed}: job {sub.job_id}")
    # The newest job per run wins; earlier entries of other runs stay, so --status sees them all.
    kept = [r for r in records["jobs"] if r["run_dir"] not in {s["run_dir"] for s in submitted}]
    records.update(jobs=kept + submitted, executor=cluster, agent=agent, env=env, steps=steps)
    tmp = out / (JOBS_FILE + ".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(out / JOBS_FILE)  # atomic: a concurrent --status never reads half a file
    return submitted


def read_jobs(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / JOBS_FILE).read_text())
    except FileNotFoundError:
        return {"executor": "slurm", "jobs": []}
    except ValueError as exc:
        raise UserError(f"{out / JOBS_FILE} is damaged ({exc}); delete it to start the record over") from None


def job_state_of(out: Path, record: dict[str, Any], cluster: str) -> str:
    """The SLURM (or local) state submitit reports for a recorded job, e.g. RUNNING, COMPLETED."""
    submitit = need("slurm")
    folder = out / ".slurm"
    if cluster == "local":  # tests: the job id is the pid of submitit's controller process
        from submitit.local.local import LocalJob

        state = LocalJob(folder, record["job_id"]).state
        return "RUNNING" if state != "FINISHED" and _alive(int(record["job_id"])) else state
    try:
        return submitit.SlurmJob(folder, record["job_id"]).state
    except Exception as exc:  # sacct missing or failing: show why instead of failing the table
        return f"unknown ({type(exc).__name__})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_rows(out: Path) -> list[dict[str, Any]]:
    """One row per run of the sweep in `out`: its state from the run directory (done / partial /
    new, or running when a process holds it) and, for submitted runs, the SLURM job and state."""
    out = out.resolve()  # recorded run_dirs are absolute: the jobs may run in another directory
    records = read_jobs(out) if (out / JOBS_FILE).is_file() else None
    steps = records.get("steps") if records else None
    runs: dict[str, dict[str, Any] | None] = {str(p.resolve()): None for p in rundir.find_runs(out)}
    for record in (records or {}).get("jobs", []):
        runs[str(Path(record["run_dir"]).resolve())] = record
    rows = []
    for run_dir, record in sorted(runs.items()):
        path = Path(run_dir)
        job = Job(path.parent.name, int(path.name[1:]) if path.name[1:].isdigit() else 0, [], path)
        held = rundir.holder(path)
        row = {"run": os.path.relpath(path, out), "state": job_state(job, steps)}
        if held is not None:
            row["state"] += f", running (pid {held.get('pid', '?')} on {held.get('host', '?')})"
        if records is not None:
            row["slurm job"] = record["job_id"] if record else "-"
            row["slurm state"] = job_state_of(out, record, records["executor"]) if record else "-"
            row["submitted"] = record["submitted"] if record else "-"
        rows.append(row)
    return rows
