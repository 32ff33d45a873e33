"""`rlsuite compare RUNS...`: group runs, report final performance with CIs, plot learning curves.

Runs are grouped by their resolved config with the seed removed (so a sweep's arms become the
groups), or by the keys given with `--group-by`. A run's score on its task is the mean return of
its last evaluation (`eval.jsonl`); when every task is an Atari game it is human-normalized first.
Per group: IQM, mean and median over runs x tasks with stratified-bootstrap 95% CIs from rliable
(Agarwal et al. 2021, the field's standard). Curves: the per-step mean over runs with a 95%
percentile-bootstrap band. Task-sequence runs (config `train.tasks`) get continual-learning metrics
instead, relative to `--reference` fresh single-task runs: see rlsuite/continual.py.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite.config import read_toml
from rlsuite.errors import UserError
from rlsuite.evaluate import human_normalized


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    task: str
    evals: list[dict[str, Any]]

    @property
    def final(self) -> float:
        return float(self.evals[-1]["mean"])


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
    config = _flatten(read_toml(path / "config.toml"))
    return Run(path, {**_defaults(str(config.get("algo"))), **config}, str(config.get("env.id")), evals)


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


def group_runs(runs: list[Run], group_by: list[str] | None = None) -> dict[str, list[Run]]:
    """Label each run by the config keys that tell the groups apart (or by `group_by`). Only keys
    every run has count, so runs from older versions with fewer keys still group sensibly."""
    shared = set.intersection(*[set(r.config) for r in runs]) - IGNORED
    keys = group_by or sorted(k for k in shared if len({str(r.config[k]) for r in runs}) > 1)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = ",".join(f"{k.split('.')[-1]}={run.config.get(k)}" for k in keys) or "all"
        groups.setdefault(label, []).append(run)
    return groups


def score_matrix(runs: list[Run], tasks: list[str], normalize: bool) -> np.ndarray:
    """(runs per task, tasks) final scores; tasks with more runs are cut to the fewest."""
    per_task = [[r.final for r in runs if r.task == t] for t in tasks]
    n = min(len(s) for s in per_task)
    if n == 0:
        raise UserError("a group has no run on one of the tasks; compare runs on the same tasks")
    matrix = np.array([s[:n] for s in per_task], dtype=np.float64).T
    if normalize:
        matrix = np.stack([human_normalized(t, matrix[:, j]) for j, t in enumerate(tasks)], axis=1)
    return matrix


def aggregate(groups: dict[str, list[Run]], reps: int = 2000, seed: int = 0) -> tuple[list[dict], bool]:
    from rliable import library as rly
    from rliable import metrics

    tasks = sorted({r.task for runs in groups.values() for r in runs})
    normalize = all(human_normalized(t, 0.0) is not None for t in tasks)
    scores = {g: score_matrix(runs, tasks, normalize) for g, runs in groups.items()}
    funcs = {"iqm": metrics.aggregate_iqm, "mean": metrics.aggregate_mean, "median": metrics.aggregate_median}
    np.random.seed(seed)  # rliable draws its bootstrap from numpy's global RNG
    point, interval = rly.get_interval_estimates(scores, lambda x: np.array([f(x) for f in funcs.values()]), reps=reps)
    rows = []
    for g in groups:
        row = {"group": g, "runs": scores[g].shape[0], "tasks": len(tasks)}
        for i, name in enumerate(funcs):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = point[g][i], interval[g][0][i], interval[g][1][i]
        rows.append(row)
    return rows, normalize


def markdown_table(rows: list[dict], normalized: bool) -> str:
    unit = "human-normalized score" if normalized else "final eval return"
    lines = [f"Final performance ({unit}; 95% stratified-bootstrap CIs, rliable)", "",
             "| group | runs | tasks | IQM | mean | median |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[m]:.3g} [{r[m + '_lo']:.3g}, {r[m + '_hi']:.3g}]" for m in ("iqm", "mean", "median")]
        lines.append(f"| {r['group']} | {r['runs']} | {r['tasks']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def label_env_steps(ax: Any) -> None:
    """Write an env-step x axis as 50k / 1.5M: full numbers run into each other on a narrow subplot."""
    from matplotlib.ticker import FuncFormatter

    def short(x: float, _pos: int) -> str:
        return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(short))
    ax.set_xlabel("env steps")


def learning_curves(groups: dict[str, list[Run]], out: Path, reps: int = 1000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in groups.items():
        steps = sorted(set.intersection(*[{e["step"] for e in r.evals} for r in runs]))
        if not steps:
            continue
        curves = np.array([[next(e["mean"] for e in r.evals if e["step"] == s) for s in steps] for r in runs])
        boot = curves[rng.integers(len(runs), size=(reps, len(runs)))].mean(axis=1)
        ax.plot(steps, curves.mean(axis=0), label=f"{label} (n={len(runs)})")
        ax.fill_between(steps, *np.percentile(boot, [2.5, 97.5], axis=0), alpha=0.2)
    label_env_steps(ax)
    ax.set_ylabel("eval return (mean over runs, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def final_scalars(run: Run, tags: list[str]) -> dict[str, float]:
    """The last logged value of each TensorBoard tag in a run directory (tags it lacks are left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.path), size_guidance={"scalars": 0})
    events.Reload()
    logged = set(events.Tags()["scalars"])
    return {tag: float(events.Scalars(tag)[-1].value) for tag in tags if tag in logged}


def scalars_table(groups: dict[str, list[Run]], tags: list[str], reps: int = 2000) -> str:
    """Per group, the mean over runs of each tag's final value with a 95% percentile-bootstrap CI:
    how the mechanistic signatures (parameter norm, dormant units, srank, sparsity) end up."""
    rng = np.random.default_rng(0)
    lines = ["Final logged values (mean over runs [95% bootstrap CI])", "",
             "| group | " + " | ".join(tags) + " |", "|---|" + "---|" * len(tags)]
    for label, runs in groups.items():
        finals = [final_scalars(r, tags) for r in runs]
        cells = []
        for tag in tags:
            values = np.array([f[tag] for f in finals if tag in f])
            if values.size == 0:
                cells.append("n/a")
                continue
            boot = values[rng.integers(values.size, size=(reps, values.size))].mean(axis=1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            cells.append(f"{values.mean():.3g} [{lo:.3g}, {hi:.3g}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(paths: list[str], out: Path, group_by: list[str] | None = None,
            reference: list[str] | None = None, tags: list[str] | None = None) -> tuple[str, Path]:
    runs = find_runs(paths)
    if reference or any(r.config.get("train.tasks") for r in runs):  # task sequences: rlsuite/continual.py
        from rlsuite.continual import continual_report

        return continual_report(runs, find_runs(reference) if reference else [], out, group_by)
    groups = group_runs(runs, group_by)
    rows, normalized = aggregate(groups)
    table = markdown_table(rows, normalized)
    if tags:
        table += "\n\n" + scalars_table(groups, tags)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table + "\n")
    return table, learning_curves(groups, out)
