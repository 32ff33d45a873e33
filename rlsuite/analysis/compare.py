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

This module is the single-task report and the dispatch between the three; what they share is in
rlsuite.analysis.runs (reading and grouping runs), scalars (TensorBoard tags), training_score
(`--score train`) and figures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rlsuite.analysis.compare_finetune import finetune_report, is_finetune_comparison
from rlsuite.analysis.continual import continual_report
from rlsuite.analysis.figures import label_env_steps, save_png
from rlsuite.analysis.runs import Run, check_group_by, find_runs, group_runs, human_game
from rlsuite.analysis.scalars import check_tags, scalars_table
from rlsuite.analysis.training_score import use_training_score
from rlsuite.errors import UserError
from rlsuite.run.evaluate import human_normalized

SCORES = ("eval", "train")


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
    if is_finetune_comparison(runs):  # fine-tuning runs (far.jsonl): rlsuite/analysis/compare_finetune.py
        if score != "eval" or sequences:
            raise UserError("fine-tuning runs (with far.jsonl) are compared on their evaluations and FAR "
                            "metrics; --score train and task sequences (--reference) do not apply")
        return finetune_report(runs, out, group_by, tags)
    if sequences:  # task sequences: rlsuite/analysis/continual.py
        if score != "eval":
            raise UserError("--score train is for single-task runs; task-sequence metrics use switch evaluations")
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
