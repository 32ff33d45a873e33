"""One process per run directory, and what a resume may change.

The lock is `fcntl.flock` on `<run>/.lock`: the kernel releases it on any exit (kill -9
included), so a lock file left by a dead process is simply taken over. The file holds the
holder's pid, host and start time for the messages. A normal release deletes it; to make that
safe, a process that locked a file which was meanwhile unlinked retries on the new one.

`rlsuite sweep` takes a run's lock itself and hands the open lock file to the `rlsuite train`
child it starts (RLSUITE_RUN_LOCK_FD), so no other process can slip in between.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rlsuite.errors import UserError

LOCK = ".lock"
ENV_FD = "RLSUITE_RUN_LOCK_FD"  # an inherited, already locked lock file (from `rlsuite sweep`)

# Keys a resume may change: none of them touches the network, the spaces or the data stream.
RESUMABLE = ("train.total_steps", "train.eval_every", "train.eval_episodes", "train.checkpoint_every",
             "train.keep_checkpoints", "train.log_every", "train.progress", "train.status_every", "train.diagnostics_every",
             "train.device", "train.torch_threads", "train.save_replay", "train.compile", "train.cudagraphs")


class RunInUse(UserError):
    """Another live process holds the run directory's lock."""

    def __init__(self, run_dir: Path, holder: dict[str, Any] | None) -> None:
        super().__init__(f"{run_dir} is in use by {describe_holder(holder)}; "
                         "wait for it to finish or stop that process")
        self.holder = holder


@dataclass
class RunLock:
    """A held lock: the open, flocked lock file, and what a dead previous holder left in it."""

    path: Path
    fd: int
    stale: dict[str, Any] | None = None
    depth: int = field(default=1, repr=False)


_HELD: dict[Path, RunLock] = {}  # locks this process holds, so train() inside the CLI's lock is a no-op


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (starting up)"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def read_holder(path: Path) -> dict[str, Any] | None:
    """The pid/host/since written in a lock file, or None (missing, empty or being written)."""
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _write_holder(fd: int) -> None:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since})
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _adopt_inherited(path: Path) -> int | None:
    """The lock file descriptor a parent (`rlsuite sweep`) locked for us, if it is this run's."""
    text = os.environ.pop(ENV_FD, None)  # popped: our own children must not adopt it too
    if not text or not text.isdigit():
        return None
    fd = int(text)
    if _same_file(fd, path) and _try_flock(fd):  # same open file description: flock succeeds
        os.set_inheritable(fd, False)
        return fd
    with contextlib.suppress(OSError):
        os.close(fd)
    return None


def acquire(run_dir: Path, wait: float = 1.0) -> RunLock:
    """Lock `run_dir` (created if missing) for this process.

    Waits up to `wait` seconds (a `rlsuite runs` probe holds it for microseconds), then raises
    RunInUse naming the holder. A lock file whose process died is taken over; `stale` says whose.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = _adopt_inherited(path)
    adopted = fd is not None
    deadline = time.monotonic() + wait
    while fd is None:
        candidate = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if _try_flock(candidate):
            if _same_file(candidate, path):
                fd = candidate
                break
            os.close(candidate)  # the holder released and deleted it between our open and flock
            continue
        os.close(candidate)
        if time.monotonic() >= deadline:
            raise RunInUse(run_dir, read_holder(path))
        time.sleep(0.05)
    stale = None if adopted else read_holder(path)  # an adopted file names our live parent
    _write_holder(fd)
    return RunLock(path, fd, stale)


def release(lock: RunLock) -> None:
    """Delete the lock file, then unlock (a waiter that locked the deleted file retries)."""
    with contextlib.suppress(FileNotFoundError):
        if _same_file(lock.fd, lock.path):
            os.unlink(lock.path)
    fcntl.flock(lock.fd, fcntl.LOCK_UN)
    os.close(lock.fd)


def hand_over(lock: RunLock) -> None:
    """Close our copy of a lock already passed to a child process; the child keeps it held."""
    os.close(lock.fd)


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[RunLock]:
    """Hold `run_dir`'s lock for the block; re-entrant within one process."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        _HELD[key].depth += 1
        try:
            yield _HELD[key]
        finally:
            _HELD[key].depth -= 1
        return
    lock = _HELD[key] = acquire(Path(run_dir))
    try:
        yield lock
    finally:
        del _HELD[key]
        release(lock)


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds `run_dir` now (a live process), or None. Creates nothing."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return read_holder(path) or {}
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- resume


def flat(cfg: Any) -> dict[str, Any]:
    """A RunConfig as {'section.key': value} (nested tables dotted)."""
    from rlsuite.config import SECTIONS, to_dict

    out: dict[str, Any] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                out[prefix + key] = value

    data = to_dict(cfg)
    walk("", {"algo": data["algo"], **{s: data[s] for s in SECTIONS}})
    return out


def resume_changes(run_dir: Path, cfg: Any) -> dict[str, tuple[Any, Any]]:
    """{key: (saved, new)} of what resuming `run_dir` with `cfg` changes.

    Raises UserError (before anything is written) when a key outside RESUMABLE differs, or
    train.total_steps would shrink: the checkpoint belongs to the saved network and schedule.
    """
    from rlsuite import config
    from rlsuite.loops import tasks
    saved = config.build_run_config(config_file=run_dir / "config.toml")
    tasks.validate(saved)
    old, new = flat(saved), flat(cfg)
    changes = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    refused = [k for k in changes if k not in RESUMABLE]
    if refused:
        what = ", ".join(f"{k} ({_show(changes[k][0])} -> {_show(changes[k][1])})" for k in refused)
        raise UserError(f"cannot resume {run_dir} with {what}: a resume may change only "
                        f"{', '.join(RESUMABLE)}; start a new run instead: rlsuite train --config "
                        f"{run_dir / 'config.toml'} --set ... --run-dir NEW_DIR")
    steps = changes.get("train.total_steps")
    if steps and steps[1] < steps[0]:
        raise UserError(f"cannot resume {run_dir} with train.total_steps {steps[0]:,} -> {steps[1]:,}: "
                        "a resume can only extend a run (--steps must be at least the planned steps)")
    return changes


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def record_resume(run_dir: Path, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Append one line to <run>/resume.log: when, from which step, what changed."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    what = ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in changes.items()) or "no changes"
    with open(run_dir / "resume.log", "a") as fh:
        fh.write(f"{when} resumed at step {step}: {what}\n")


RECORD_LOGS = ("eval.jsonl", "far.jsonl")
"""The run's JSON-lines logs of evaluations, one record per line with its env step."""


def forget_after(run_dir: Path, step: int) -> list[str]:
    """On resume from the checkpoint at `step`: drop the records with a larger step (logged by the
    stopped process after its last checkpoint; the resumed run logs those steps again) and lines cut
    by a crash mid-write, from each of RECORD_LOGS. Each file is replaced atomically, and only when
    something is dropped. Returns the names of the files rewritten."""
    from rlsuite.run import checkpoint
    rewritten = []
    for name in RECORD_LOGS:
        path = Path(run_dir) / name
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            continue
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line)
        if len(kept) < len(lines):
            text = "".join(line + "\n" for line in kept).encode()
            checkpoint.atomic_write_bytes(path, lambda fh, text=text: fh.write(text))
            rewritten.append(name)
    return rewritten


def final_eval_recorded(run_dir: Path, total_steps: int) -> bool:
    """Did training itself (not `rlsuite eval`) record an evaluation at or after total_steps?"""
    try:
        lines = (run_dir / "eval.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return False
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a crash mid-write
            continue
        if record.get("step", -1) >= total_steps and record.get("source") != "rlsuite eval":
            return True
    return False


def checkpoint_step(run_dir: Path) -> int:
    """The env step of the run's latest checkpoint (UserError when there is none or it is damaged)."""
    from rlsuite.run import checkpoint
    return int(checkpoint.load(checkpoint.find(run_dir))["step"])


def is_finished(run_dir: Path, step: int, total_steps: int) -> bool:
    return step >= total_steps and final_eval_recorded(run_dir, total_steps)


# ----------------------------------------------------------------------------- listing


def find_runs(root: Path) -> list[Path]:
    """Run directories (those holding a config.toml) at or below `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no such directory: {root}")
    return sorted(p.parent for p in root.rglob("config.toml"))


def latest_step(run_dir: Path) -> int:
    """Steps done, from the latest checkpoint's name (ckpt_<step>.pt): no checkpoint is loaded."""
    from rlsuite.run import checkpoint
    try:
        name = checkpoint.find(run_dir).stem
    except UserError:
        return 0
    digits = name.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else 0


def last_eval_mean(run_dir: Path) -> float | None:
    """The mean return of the last evaluation in eval.jsonl (training's or `rlsuite eval`'s)."""
    try:
        lines = (run_dir / "eval.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            mean = json.loads(line).get("mean")
        except ValueError:  # a line cut by a crash mid-write
            continue
        if isinstance(mean, (int, float)):
            return float(mean)
    return None


def planned_steps(run_dir: Path) -> int:
    """The run's length as its config.toml plans it (a task sequence: tasks x steps_per_task x cycles)."""
    from rlsuite.config import read_toml

    train = read_toml(run_dir / "config.toml").get("train", {})
    tasks = train.get("tasks") or []
    return len(tasks) * train.get("steps_per_task", 0) * train.get("cycles", 1) if tasks \
        else train.get("total_steps", 0)


def is_record(run_dir: Path, total_steps: int | None = None) -> bool:
    """A finished run whose checkpoints were removed (what experiments/records.py keeps of a study
    across machines): no checkpoint, but training recorded its final evaluation. Such a run counts as
    finished everywhere (`train --resume`, `sweep`, `runs`); it can no longer be extended."""
    from rlsuite.run import checkpoint
    try:
        checkpoint.find(run_dir)
        return False
    except UserError:
        pass
    total = planned_steps(run_dir) if total_steps is None else total_steps
    return (run_dir / "config.toml").is_file() and final_eval_recorded(run_dir, total)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """One row of `rlsuite runs`: agent, env, steps done / planned, last eval mean, state."""
    from rlsuite.config import read_toml

    data = read_toml(run_dir / "config.toml")
    tasks = data.get("train", {}).get("tasks") or []
    planned = planned_steps(run_dir)
    step = latest_step(run_dir)
    held = holder(run_dir)
    if held is not None:
        state = f"running (pid {held.get('pid', '?')} on {held.get('host', '?')})"
    elif is_record(run_dir, planned):
        step, state = planned, "finished (checkpoints removed)"
    else:
        state = "finished" if is_finished(run_dir, step, planned) else "interrupted"
    mean = last_eval_mean(run_dir)
    return {"run": str(run_dir), "agent": data.get("algo", "?"),
            "env": ",".join(tasks) if tasks else data.get("env", {}).get("id", "?"),
            "steps": f"{step:,} / {planned:,}", "eval mean": "-" if mean is None else f"{mean:.2f}", "state": state}


@contextlib.contextmanager
def removed_on_failure(run_dir: Path) -> Iterator[None]:
    """A refused or failed start leaves nothing behind: when the block raises, `run_dir` and the
    parents this start created are removed if they are empty (a run that wrote something keeps it)."""
    created = []
    for path in (Path(run_dir), *Path(run_dir).parents):
        if path.exists():
            break
        created.append(path)
    try:
        yield
    except BaseException:
        for path in created:  # nearest first; stop at the first that is not empty
            try:
                path.rmdir()
            except OSError:
                break
        raise
