"""Finished runs as `rlsuite compare` reads them: a run directory's config (flattened, today's
defaults filled in), its evaluations and its canonical task, found one by one or below a folder,
and grouped by the config keys that tell the groups apart."""
from __future__ import annotations

import difflib
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsuite.config import read_toml
from rlsuite.envs.config import ATARI, resolve_env_id
from rlsuite.errors import UserError
from rlsuite.run.evaluate import atari_game_name


@dataclass
class Run:
    """One run directory as the reports read it: its flattened config, task and evaluations."""

    path: Path
    config: dict[str, Any]
    task: str  # canonical "family:game", see `canonical_task`
    evals: list[dict[str, Any]]
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(env step, score) of the score being compared: the eval returns unless `use_training_score`."""

    @property
    def final(self) -> float:
        """The last evaluation's mean return (what continual metrics and `--score eval` use)."""
        return float(self.evals[-1]["mean"])

    @property
    def score(self) -> float:
        return float(self.curve[-1][1])


@functools.lru_cache(maxsize=None)  # called per eval record; an unknown id costs a close-match search
def canonical_task(env_id: Any) -> str:
    """The task 'family:game' of an env id in any spelling, so runs on one game are one task however
    the id was typed; an id this version cannot resolve (an env it no longer knows) is kept as typed."""
    try:
        family, game = resolve_env_id(str(env_id))
    except UserError:
        return str(env_id)
    return f"{family}:{game}"


def human_game(task: str) -> str | None:
    """The human-score table's game for a canonical task; None unless it is an Atari game in the table."""
    family, _, game = task.partition(":")
    return atari_game_name(game) if family == ATARI else None


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_run(path: Path) -> Run:
    if not (path / "config.toml").is_file():
        raise UserError(f"{path} is not a run directory (no config.toml)")
    evals = [json.loads(line) for line in (path / "eval.jsonl").read_text().splitlines()
             if line.strip()] if (path / "eval.jsonl").is_file() else []
    evals = [e for e in evals if e.get("source") != "rlsuite eval"]  # training evaluations only
    if not evals:
        raise UserError(f"{path} has no evaluation yet (eval.jsonl is empty)")
    config = {**_defaults(str(read_toml(path / "config.toml").get("algo"))), **_flatten(read_toml(path / "config.toml"))}
    if not config.get("finetune.parent"):  # the [finetune] section is inert outside fine-tuning runs
        config = {k: v for k, v in config.items() if not k.startswith("finetune.")}
    if not config.get("offline.datasets"):  # likewise [offline] outside offline (dt) runs
        config = {k: v for k, v in config.items() if not k.startswith("offline.")}
    curve = [(int(e["step"]), float(e["mean"])) for e in evals]
    return Run(path, config, canonical_task(config.get("env.id")), evals, curve)


@functools.lru_cache(maxsize=None)
def _defaults(algo: str) -> dict[str, Any]:
    """Today's defaults for a config, flattened: a run written before a key existed ran with the
    behaviour that key's default keeps, so it still groups with runs that state the default."""
    from rlsuite.config import empty_run_config, to_dict

    try:
        return _flatten(to_dict(empty_run_config(algo)))
    except UserError:  # an agent this version does not know: compare it on what it states
        return {}


def find_runs(paths: list[str]) -> list[Run]:
    """Run directories given directly, or found below the given folders (e.g. a sweep)."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if (p / "config.toml").is_file():
            dirs.append(p)
        elif p.is_dir():
            dirs.extend(sorted(c.parent for c in p.rglob("config.toml")))
        else:
            raise UserError(f"no such run directory: {p}")
    if not dirs:
        raise UserError(f"no runs found in {', '.join(paths)}")
    if len(dirs) > 1:  # a sweep still running: compare the finished runs, say what was left out
        waiting = [d for d in dirs if not _finished(d)]
        if waiting and len(waiting) < len(dirs):
            print(f"note: {len(waiting)} run(s) have not finished and are left out "
                  f"(e.g. {waiting[0]})", file=sys.stderr)
            dirs = [d for d in dirs if d not in waiting]
    return [load_run(d) for d in dirs]


def _finished(path: Path) -> bool:
    """Has the run evaluated at its last step? (Its final score is that evaluation.)"""
    jsonl = path / "eval.jsonl"
    if not jsonl.is_file():
        return False
    steps = [json.loads(line).get("step", 0) for line in jsonl.read_text().splitlines() if line.strip()]
    total = read_toml(path / "config.toml").get("train", {}).get("total_steps", 0)
    return bool(steps) and max(steps) >= total


# Keys that never define a group: the seed, and bookkeeping that does not change what is learned.
IGNORED = {"train.seed", "presets", "env.id", "train.progress", "train.torch_threads", "train.device",
           "train.checkpoint_every", "train.keep_checkpoints", "train.save_replay", "train.log_every",
           "train.eval_num_envs"}


def group_keys(runs: list[Run], group_by: list[str] | None = None) -> list[str]:
    """The config keys that tell the groups apart: `group_by`, or every key whose value differs
    between runs. Only keys every run has count, so runs from older versions with fewer keys still
    group sensibly."""
    shared = set.intersection(*[set(r.config) for r in runs]) - IGNORED
    return group_by or sorted(k for k in shared if len({str(r.config[k]) for r in runs}) > 1)


def group_runs(runs: list[Run], group_by: list[str] | None = None) -> dict[str, list[Run]]:
    """Label each run by the config keys that tell the groups apart (`group_keys`)."""
    keys = group_keys(runs, group_by)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = ",".join(f"{k.split('.')[-1]}={run.config.get(k)}" for k in keys) or "all"
        groups.setdefault(label, []).append(run)
    return groups


def did_you_mean(name: str, known: list[str]) -> str:
    """'; did you mean a, b?' naming the entries of `known` closest to `name`, or ''."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_group_by(runs: list[Run], group_by: list[str] | None) -> None:
    """Refuse a --group-by key no run's config has (it would group every run as 'None')."""
    known = sorted(set().union(*[set(r.config) for r in runs]))
    for key in group_by or []:
        if key not in known:
            raise UserError(f"--group-by {key!r}: no run's config has this key{did_you_mean(key, known)} "
                            "(keys are section.name as in config.toml, e.g. agent.lr)")
