"""`rlsuite compare RUNS...`: group runs, report final performance with CIs, plot learning curves.

Runs are grouped by their resolved config with the seed removed (so a sweep's arms become the
groups), or by the keys given with `--group-by`. A run's task is its canonical env, "family:game"
(`resolve_env_id`: 'pong' and 'ALE/Pong-v5' are both 'atari:Pong', 'MinAtar/Breakout-v1' is
'minatar:breakout'). Its score on the task is one of (`--score`):

- `eval` (default): the mean return of its last separate evaluation (`eval.jsonl`, played at
  `agent.eval_epsilon`, 0.001 in the Dopamine presets).
- `train`: Dopamine's training return, the score GMP-style papers plot: the mean raw return of all
  training games (epsilon-greedy at the training epsilon, 0.01) that ended within the last complete
  iteration, read from TensorBoard's `charts/episodic_return`. An iteration is `--iteration-steps`
  env steps, else `train.eval_every` (250k in the dqn presets = one Dopamine iteration), else the
  whole run. The learning curves then show the per-iteration training return.

When every task is an Atari game the scores are human-normalized first; otherwise they stay raw
and the table header says why.

Per group: IQM, mean and median over runs x tasks with stratified-bootstrap 95% CIs from rliable
(Agarwal et al. 2021, the field's standard). Curves: the per-step mean over runs with a 95%
percentile-bootstrap band. Task-sequence runs (config `train.tasks`) get continual-learning metrics
instead, relative to `--reference` fresh single-task runs: see rlsuite/analysis/continual.py. Fine-tuning
runs (any run with a far.jsonl) get knowledge-retention metrics per method: see rlsuite/analysis/compare_finetune.py.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite.config import read_toml
from rlsuite.envs.config import ATARI, resolve_env_id
from rlsuite.errors import UserError
from rlsuite.run.evaluate import atari_game_name, human_normalized

SCORES = ("eval", "train")
TRAIN_RETURN_TAG = "charts/episodic_return"  # one point per finished training game (rlsuite/run/monitor.py)


@dataclass
class Run:
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


def _close(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def check_group_by(runs: list[Run], group_by: list[str] | None) -> None:
    """Refuse a --group-by key no run's config has (it would group every run as 'None')."""
    known = sorted(set().union(*[set(r.config) for r in runs]))
    for key in group_by or []:
        if key not in known:
            raise UserError(f"--group-by {key!r}: no run's config has this key{_close(key, known)} "
                            "(keys are section.name as in config.toml, e.g. agent.lr)")


def check_tags(runs: list[Run], tags: list[str]) -> None:
    """Refuse a --tags tag no run has logged, naming the logged tags closest to it."""
    logged = sorted(set().union(*[set(_events(r).Tags()["scalars"]) for r in runs]))
    for tag in tags:
        if tag not in logged:
            hint = _close(tag, logged) or (f"; logged tags include {', '.join(logged[:8])}" if logged
                                           else "; these runs logged no TensorBoard scalars")
            raise UserError(f"--tags {tag!r}: no run logged this TensorBoard tag{hint}")


# ----------------------------------------------------------------------------- the training score


def _events(run: Run) -> Any:
    """Every scalar the run logged to TensorBoard (size_guidance 0: keep all points, not a sample)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.path), size_guidance={"scalars": 0})
    events.Reload()
    return events


def training_returns(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(env step at which each training game ended, its raw return), from TensorBoard."""
    events = _events(run)
    if TRAIN_RETURN_TAG not in events.Tags()["scalars"]:
        raise UserError(f"{run.path} has no training returns (TensorBoard tag {TRAIN_RETURN_TAG}); "
                        f"--score train needs them, --score eval does not")
    points = events.Scalars(TRAIN_RETURN_TAG)
    return np.array([p.step for p in points], dtype=np.int64), np.array([p.value for p in points])


def iteration_steps(run: Run, override: int | None, reached: int) -> int:
    """Env steps per iteration: the override, else train.eval_every (the dqn presets set it to one
    Dopamine iteration, 250k steps), else the whole run as one iteration."""
    return int(override or run.config.get("train.eval_every") or reached)


def training_curve(run: Run, length: int | None = None) -> tuple[list[tuple[int, float]], int]:
    """Dopamine's training-return curve: per complete iteration k (env steps (kL, (k+1)L]), the mean
    raw return of the training games that ended in it (NaN when none did), at step (k+1)L; and L.
    An iteration is complete when the run trained through its last step; a trailing partial one
    is left out, as Dopamine reports whole iterations only."""
    steps, values = training_returns(run)
    reached = max([int(steps.max(initial=0))] + [int(e["step"]) for e in run.evals])
    size = iteration_steps(run, length, reached)
    complete = reached // size
    if complete == 0:
        raise UserError(f"{run.path} trained {reached:,} steps, less than one iteration of {size:,}; "
                        f"pass a smaller --iteration-steps")
    index = (steps - 1) // size  # a game ending at step (k+1)L still belongs to iteration k
    keep = (index >= 0) & (index < complete)
    sums = np.bincount(index[keep], weights=values[keep], minlength=complete)
    counts = np.bincount(index[keep], minlength=complete)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return [((k + 1) * size, float(means[k])) for k in range(complete)], size


def use_training_score(runs: list[Run], length: int | None = None) -> list[int]:
    """Score every run by its training-return curve (sets `Run.curve`); returns the iteration lengths used."""
    sizes = []
    for run in runs:
        run.curve, size = training_curve(run, length)
        if not np.isfinite(run.score):
            raise UserError(f"{run.path}: no training game ended in its last iteration (env steps "
                            f"{run.curve[-1][0] - size:,}-{run.curve[-1][0]:,}); pass a longer --iteration-steps")
        sizes.append(size)
    return sorted(set(sizes))


def score_description(runs: list[Run], score: str, sizes: list[int]) -> str:
    """What the table's numbers are, for its header."""
    if score == "train":
        return ("final training return, mean of games ending in the last iteration of "
                + " / ".join(f"{n:,}" for n in sizes) + " steps")
    # the epsilon the evaluation recorded, else the config's (records from older versions lack it)
    eps = {r.evals[-1].get("epsilon", r.config.get("agent.eval_epsilon")) for r in runs}
    known = sorted(float(e) for e in eps if e is not None)
    return "final eval return (ε=" + (" / ".join(f"{e:g}" for e in known) or "unknown") + ")"


# ----------------------------------------------------------------------------- aggregation


def score_matrix(runs: list[Run], tasks: list[str], normalize: bool) -> np.ndarray:
    """(runs per task, tasks) final scores; tasks with more runs are cut to the fewest."""
    per_task = [[r.score for r in runs if r.task == t] for t in tasks]
    n = min(len(s) for s in per_task)
    if n == 0:
        raise UserError("a group has no run on one of the tasks; compare runs on the same tasks")
    matrix = np.array([s[:n] for s in per_task], dtype=np.float64).T
    if normalize:
        matrix = np.stack([human_normalized(human_game(t), matrix[:, j]) for j, t in enumerate(tasks)], axis=1)
    return matrix


def raw_tasks(groups: dict[str, list[Run]]) -> list[str]:
    """The tasks without a human score (anything but the table's Atari games)."""
    return sorted({r.task for runs in groups.values() for r in runs if human_game(r.task) is None})


def aggregate(groups: dict[str, list[Run]], reps: int = 2000, seed: int = 0) -> tuple[list[dict], bool]:
    from rlsuite.errors import require

    require("rliable.library", hint="pip install -e . (from the rlsuite checkout: rliable is one of its dependencies)")
    from rliable import library as rly
    from rliable import metrics

    tasks = sorted({r.task for runs in groups.values() for r in runs})
    normalize = not raw_tasks(groups)  # scores on one scale only: all human-normalized or all raw
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


def markdown_table(rows: list[dict], score: str, raw: list[str]) -> str:
    """The table; `score` describes the numbers, `raw` lists the tasks that kept them from being
    human-normalized (empty = normalized)."""
    if raw:
        unit = f"{score}, raw, not human-normalized: no Atari human score for {', '.join(raw)}"
    else:
        unit = f"human-normalized {score}"
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


def learning_curves(groups: dict[str, list[Run]], out: Path, reps: int = 1000,
                    ylabel: str = "eval return") -> Path:
    """Each group's `Run.curve` (eval returns, or per-iteration training returns) at the steps all its runs share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in groups.items():
        points = [dict(r.curve) for r in runs]
        steps = sorted(set.intersection(*[set(p) for p in points]))
        if not steps:
            continue
        curves = np.array([[p[s] for s in steps] for p in points])
        boot = curves[rng.integers(len(runs), size=(reps, len(runs)))].mean(axis=1)
        ax.plot(steps, curves.mean(axis=0), label=f"{label} (n={len(runs)})")
        ax.fill_between(steps, *np.percentile(boot, [2.5, 97.5], axis=0), alpha=0.2)
    label_env_steps(ax)
    ax.set_ylabel(f"{ylabel} (mean over runs, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, out / "curves.png")


def save_png(fig: Any, path: Path) -> Path:
    """Lay out, write (120 dpi) and close a matplotlib figure; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def final_scalars(run: Run, tags: list[str]) -> dict[str, float]:
    """The last logged value of each TensorBoard tag in a run directory (tags it lacks are left out)."""
    events = _events(run)
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


def sparsity_shortfalls(groups: dict[str, list[Run]], tolerance: float = 0.01) -> list[str]:
    """One line per group whose runs did not reach their configured gmp.sparsity (the achieved
    sparsity each evaluation record keeps): such an arm is a dense network under a sparse name."""
    lines = []
    for label, runs in groups.items():
        short = [(r, r.evals[-1].get("sparsity")) for r in runs if float(r.config.get("agent.gmp.sparsity") or 0) > 0]
        short = [(r, got) for r, got in short if got is None or got < float(r.config["agent.gmp.sparsity"]) - tolerance]
        if short:
            reached = ", ".join("not recorded" if got is None else f"{got:.3f}" for _, got in short)
            lines.append(f"warning: group {label}: {len(short)} of {len(runs)} runs did not reach their configured "
                         f"sparsity {short[0][0].config['agent.gmp.sparsity']} (reached: {reached})")
    return lines


def compare(paths: list[str], out: Path, group_by: list[str] | None = None,
            reference: list[str] | None = None, tags: list[str] | None = None,
            score: str = "eval", iteration: int | None = None) -> tuple[str, Path]:
    """`score`: 'eval' or 'train' (see the module docstring); `iteration`: env steps per training iteration."""
    if score not in SCORES:
        raise UserError(f"unknown score '{score}'; choose one of: {', '.join(SCORES)}")
    if iteration is not None and iteration <= 0:
        raise UserError(f"--iteration-steps must be a positive number of env steps, got {iteration}")
    runs = find_runs(paths)
    check_group_by(runs, group_by)
    sequences = bool(reference) or any(r.config.get("train.tasks") for r in runs)
    if tags and sequences:
        raise UserError("--tags tabulates single-task runs; task-sequence runs report continual metrics only")
    if tags:
        check_tags(runs, tags)
    from rlsuite.analysis.compare_finetune import finetune_report, is_finetune_comparison

    if is_finetune_comparison(runs):  # fine-tuning runs (far.jsonl): rlsuite/analysis/compare_finetune.py
        if score != "eval" or sequences:
            raise UserError("fine-tuning runs (with far.jsonl) are compared on their evaluations and FAR "
                            "metrics; --score train and task sequences (--reference) do not apply")
        return finetune_report(runs, out, group_by, tags)
    if sequences:  # task sequences: rlsuite/analysis/continual.py
        if score != "eval":
            raise UserError("--score train is for single-task runs; task-sequence metrics use switch evaluations")
        from rlsuite.analysis.continual import continual_report

        return continual_report(runs, find_runs(reference) if reference else [], out, group_by)
    sizes = use_training_score(runs, iteration) if score == "train" else []
    groups = group_runs(runs, group_by)
    rows, _ = aggregate(groups)
    table = markdown_table(rows, score_description(runs, score, sizes), raw_tasks(groups))
    if tags:
        table += "\n\n" + scalars_table(groups, tags)
    warnings = sparsity_shortfalls(groups)
    if warnings:
        table += "\n\n" + "\n".join(warnings)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table + "\n")
    ylabel = "training return per iteration" if score == "train" else "eval return"
    return table, learning_curves(groups, out, ylabel=ylabel)
