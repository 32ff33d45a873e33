"""Atomic checkpoints and exact resume.

A checkpoint is one `torch.save` file in `runs/<run>/checkpoints/ckpt_<step>.pt` holding the
agent state (weights, target, optimizer, counters, exploration RNG, constraint hooks), the loop
state (step, episode statistics, python/numpy/torch RNG streams, env state where the backend can
save it) and a header (format version, agent name, observation and action space) that is
checked before anything is loaded. Files are written to a temporary name, fsynced and renamed,
and the `latest` pointer is replaced the same way, so a crash or Ctrl-C at any moment leaves
the previous checkpoint intact.

Checkpoints are pickles: load only checkpoints you made (or trust).
"""
from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite.errors import UserError, brief_space

FORMAT = "rlsuite-checkpoint-1"
LATEST = "latest"


def space_signature(observation_space: Any, action_space: Any) -> dict[str, str]:
    """What a checkpoint must match to be loaded into an agent/env pair."""
    return {"observation_space": repr(observation_space), "action_space": repr(action_space)}


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call `write(file)` on a temp file next to `path`, fsync, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if str(tmp) in (exc.filename, exc.filename2):  # name the file the user asked for, not our temp file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (a directory fsync makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write `payload` (plus the format header) as checkpoint `step`; keep the last `keep`."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{step:012d}.pt"
    previous = folder / LATEST
    previous = folder / previous.read_text().strip() if previous.is_file() else None
    try:
        atomic_write_bytes(path, lambda fh: torch.save({"format": FORMAT, **payload}, fh))
        atomic_write_bytes(folder / LATEST, lambda fh: fh.write(path.name.encode()))
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        if not disk_full(exc):
            raise
        kept = f"the last good checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
        raise UserError(f"disk full (no space left on device) while writing checkpoint {path}; {kept}; "
                        f"free some space, then continue with: rlsuite train --resume {run_dir}") from None
    for old in sorted(folder.glob("ckpt_*.pt"))[:-max(1, keep)]:
        old.unlink()
    return path


def disk_full(exc: BaseException | None) -> bool:
    """Is `exc`, or an exception it was raised from, an OSError 'no space left on device'?"""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def find(path_or_run: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory."""
    path = Path(path_or_run)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"no such run or checkpoint: {path}")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    pointer = folder / LATEST
    if pointer.is_file():
        candidate = folder / pointer.read_text().strip()
        if candidate.is_file():
            return candidate
    found = sorted(folder.glob("ckpt_*.pt"))
    if not found:
        raise UserError(f"no checkpoint in {folder} (has the run written one yet?)")
    return found[-1]


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint, turning every kind of damage into a one-line UserError."""
    if not path.is_file():
        raise UserError(f"no such checkpoint file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - damaged bytes can raise anything while unpickling
        # (UnpicklingError, EOFError, BadZipFile, MemoryError from a garbage length, KeyError, ...)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"checkpoint {path} is corrupt or truncated ({reason}); "
                        f"use an earlier one from {path.parent}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not an rlsuite checkpoint (expected format {FORMAT})")
    return data


def check_compatible(data: dict[str, Any], algo: str, signature: dict[str, str], path: Path,
                     env_id: str | None = None) -> None:
    """Refuse a checkpoint of another agent or of other observation/action spaces (UserError naming
    the envs the checkpoint was trained on; `env_id`: the env being tried, for the message)."""
    if data.get("algo") != algo:
        raise UserError(f"checkpoint {path} is from agent '{data.get('algo')}', not '{algo}'")
    for key, expected in signature.items():
        found = data.get("signature", {}).get(key)
        if found != expected:
            what = key.replace("_", " ")
            this = f"{env_id} has" if env_id else "this env has"
            envs = trained_on(data)
            raise UserError(f"checkpoint {path} was trained on {envs} with {what} {brief_space(found)}, but {this} "
                            f"{brief_space(expected)}; evaluate it on " + ("one of those envs" if "," in envs else "that env"))


def trained_on(data: dict[str, Any]) -> str:
    """The env(s) a checkpoint's run trained on, as the user would type them: the env id, or every
    task of a task sequence."""
    train_cfg, env_cfg = data.get("config", {}).get("train", {}), data.get("config", {}).get("env", {})
    if train_cfg.get("tasks"):
        return ", ".join(dict.fromkeys(train_cfg["tasks"]))
    return str(env_cfg.get("id", "its training env"))
