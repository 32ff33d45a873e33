"""`rlsuite compare` of fine-tuning runs: knowledge-retention metrics per method (Wołczyk et al., ICML 2024).

Used when any compared run has a `far.jsonl` (written by `rlsuite finetune`, see rlsuite/loops/finetune.py).
Runs are grouped by method: `finetune.retention` joined with '+' ('bc', 'bc+ks'), 'vanilla' when
it is empty, and 'scratch' for runs without a `finetune.parent` (ordinary `rlsuite train` runs). When
the runs of one method differ in other config keys (not the seed, the parent checkpoint, the
teacher data or the evaluation schedules), those keys are added to the label, as
`rlsuite compare` does; so do their tasks when the runs are on more than one. `--group-by KEY`
groups by those keys instead.

Per run:

- final return: the mean return of the last normal-start evaluation (the last `eval.jsonl` record).
- FAR: the score from FAR starts (`far.jsonl`): the success rate `success_mean` when every record
  has it (the close-far tasks), else the mean return `mean`; the table title says which.
  FAR(0) is the first record's, at step 0 (the teacher's own FAR score, before any update).
- min FAR: the lowest FAR over all records, step 0 included; final FAR: the last record's. The
  minimum of many noisy evaluations sits below the true level even for a policy that never changes
  (a policy with true success 0.8, 20 games x 21 evaluations: FAR(0) - min FAR averages 0.18), so
  min FAR is a biased measure of the worst level; read it with the noise floor below.
- FAR AUC: the area under the FAR curve by the trapezoid rule over env steps, divided by the step
  span (last step - first step), so it is the run's average FAR level (FAR(0) when only one record).
- forgetting = FAR(0) - final FAR, the start-minus-end form of Continual World's forgetting (Wołczyk
  et al. 2021; the fine-tuning paper defines no scalar). It is unbiased for a policy that does not
  change (its expectation is 0) and negative when the FAR skill improved. Releases before 2026-12
  reported FAR(0) - min FAR under this name, which is biased upward by evaluation noise (see min FAR).
- forgetting SE: the evaluation-noise floor of one run's forgetting, the standard error of the
  difference of two independent evaluations, sqrt(v0/n0 + vf/nf) over n0 and nf games. For success
  rates v = p(1 - p), the binomial variance of one game; for returns v is the sample variance
  (ddof 1) of the record's `episode_returns` (or its `std` rescaled to ddof 1 in records without
  them). A forgetting within about 2 SE of 0 is not distinguishable from noise; a group mean over k
  runs has an evaluation-noise SE of about SE / sqrt(k) (the CI over runs includes this noise).
- final far_kl: KL(pi* || pi) on the teacher's FAR states, from the last FAR record.

Scratch runs (and fine-tuning runs without a FAR record yet) have no FAR metrics: '-'. Each cell
is the mean over a group's runs (seeds) with a 95% stratified-bootstrap CI from rliable (the same
call as `rlsuite compare`'s table). The figure (<out>/finetune.png) has two panels against env
steps: normal-start eval return and FAR, one line per group (mean over its runs at the steps they
all share) with a 95% percentile-bootstrap band over runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite.analysis.figures import label_env_steps, save_png
from rlsuite.analysis.runs import IGNORED, Run, group_runs
from rlsuite.analysis.scalars import scalars_table

# keys that say how FAR was measured or where the teacher came from, not what is learned
SAME_METHOD = IGNORED | {"finetune.parent", "finetune.data", "finetune.far_eval_every", "train.eval_every",
                        "finetune.retention"}
COLUMNS = {"final_return": "final return", "far0": "FAR(0)", "far_min": "min FAR", "far_final": "final FAR",
           "far_auc": "FAR AUC", "forgetting": "forgetting", "forgetting_se": "forgetting SE",
           "far_kl": "final far_kl"}
FAR_COLUMNS = [c for c in COLUMNS if c != "final_return"]


def is_finetune_comparison(runs: list[Run]) -> bool:
    return any((r.path / "far.jsonl").is_file() for r in runs)


def far_records(run: Run) -> list[dict[str, Any]]:
    """The run's FAR evaluations by step (of two records at one step, e.g. after a resume, the later)."""
    path = run.path / "far.jsonl"
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def far_metric(runs: list[Run]) -> str:
    """'success_mean' when every FAR record of every run has it, else 'mean' (the return)."""
    records = [rec for r in runs for rec in far_records(r)]
    return "success_mean" if records and all("success_mean" in rec for rec in records) else "mean"


def method(run: Run) -> str:
    if not run.config.get("finetune.parent"):
        return "scratch"
    return "+".join(run.config.get("finetune.retention") or []) or "vanilla"


def score_variance(record: dict[str, Any], metric: str) -> tuple[float, int]:
    """(v, n) of one FAR record: the variance v of a single game's score and the number of games n.
    success_mean: the binomial p(1 - p); mean: the sample variance (ddof 1) of `episode_returns`,
    or `std` (ddof 0, see rlsuite.run.evaluate.summarize) rescaled by n / (n - 1); nan for n < 2."""
    if metric == "success_mean":
        p = float(record["success_mean"])
        n = len(record["episode_success"]) if "episode_success" in record else int(record["episodes"])
        return p * (1.0 - p), n
    if "episode_returns" in record:
        x = np.asarray(record["episode_returns"], dtype=np.float64)
        return (float(x.var(ddof=1)) if x.size > 1 else float("nan")), int(x.size)
    n = int(record["episodes"])
    return (float(record["std"]) ** 2 * n / (n - 1) if n > 1 else float("nan")), n


def forgetting_se(first: dict[str, Any], last: dict[str, Any], metric: str) -> float:
    """sqrt(v0/n0 + vf/nf): the standard error of FAR(last) - FAR(first) from evaluation noise alone
    (the two evaluations are independent games), in the FAR metric's units."""
    (v0, n0), (vf, nf) = score_variance(first, metric), score_variance(last, metric)
    return float(np.sqrt(v0 / max(n0, 1) + vf / max(nf, 1)))


def far_metrics(records: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """The module docstring's FAR numbers of one run from its FAR records (sorted by step)."""
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    far = np.array([r[metric] for r in records], dtype=np.float64)
    span = steps[-1] - steps[0]
    return dict(far0=float(far[0]), far_min=float(far.min()), far_final=float(far[-1]),
                far_auc=float(np.trapezoid(far, steps) / span) if span > 0 else float(far[0]),
                forgetting=float(far[0] - far[-1]), forgetting_se=forgetting_se(records[0], records[-1], metric),
                far_kl=float(records[-1].get("far_kl", np.nan)))


def run_metrics(run: Run, metric: str) -> dict[str, float]:
    """The module docstring's per-run numbers; the FAR ones only when the run has FAR records."""
    out = {"final_return": float(run.evals[-1]["mean"])}
    records = far_records(run)
    if records:
        out.update(far_metrics(records, metric))
    return out


def method_groups(runs: list[Run], group_by: list[str] | None = None) -> dict[str, list[Run]]:
    """Runs by method (module docstring), or by the `group_by` keys."""
    if group_by:
        return group_runs(runs, group_by)
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(method(run), []).append(run)
    tasks = len({r.task for r in runs}) > 1
    groups: dict[str, list[Run]] = {}
    for name in sorted(by_method, key=lambda m: (m == "scratch", m != "vanilla", m)):
        members = by_method[name]
        shared = set.intersection(*[set(r.config) for r in members]) - SAME_METHOD
        keys = sorted(k for k in shared if len({str(r.config[k]) for r in members}) > 1)
        for run in members:
            label = ",".join([name] + [f"{k.split('.')[-1]}={run.config.get(k)}" for k in keys])
            groups.setdefault(label + (f" @ {run.task}" if tasks else ""), []).append(run)
    return groups


def aggregate(groups: dict[str, list[Run]], metric: str, reps: int = 2000, seed: int = 0) -> list[dict]:
    """Per group and column: the mean over runs with rliable's 95% stratified-bootstrap CI (a column
    missing from any run of a group is left out of that group's row)."""
    from rlsuite.errors import require

    require("rliable.library", hint="pip install -e . (from the rlsuite checkout: rliable is one of its dependencies)")
    from rliable import library as rly

    values = {g: [run_metrics(r, metric) for r in runs] for g, runs in groups.items()}
    rows = [{"group": g, "runs": len(runs)} for g, runs in groups.items()]
    np.random.seed(seed)  # rliable draws its bootstrap from numpy's global RNG
    for column in COLUMNS:
        scores = {g: np.array([[v[column]] for v in vs]) for g, vs in values.items() if all(column in v for v in vs)}
        if not scores:
            continue
        point, interval = rly.get_interval_estimates(scores, lambda x: np.array([np.mean(x)]), reps=reps)
        for row in rows:
            if row["group"] in scores:
                g = row["group"]
                row[column] = (float(point[g][0]), float(interval[g][0][0]), float(interval[g][1][0]))
    return rows


def markdown_table(rows: list[dict], metric: str) -> str:
    far = "success rate (success_mean)" if metric == "success_mean" else "return (mean)"
    lines = [f"Fine-tuning: knowledge retention per method (FAR = {far} from FAR starts; "
             "mean over runs [95% stratified-bootstrap CI], rliable; forgetting = FAR(0) - final FAR, "
             "forgetting SE = its evaluation-noise standard error per run)", "",
             "| method | runs | " + " | ".join(COLUMNS.values()) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c][0]:.3g} [{row[c][1]:.3g}, {row[c][2]:.3g}]" if c in row else "-" for c in COLUMNS]
        lines.append(f"| {row['group']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _band(ax: Any, curves_by_group: dict[str, list[dict[int, float]]], rng: np.random.Generator, reps: int) -> None:
    for i, (label, points) in enumerate(curves_by_group.items()):
        points = [p for p in points if p]
        if not points:
            continue
        steps = sorted(set.intersection(*[set(p) for p in points]))
        if not steps:
            continue
        curves = np.array([[p[s] for s in steps] for p in points])
        boot = curves[rng.integers(len(points), size=(reps, len(points)))].mean(axis=1)
        ax.plot(steps, curves.mean(axis=0), color=f"C{i}", label=f"{label} (n={len(points)})")
        ax.fill_between(steps, *np.percentile(boot, [2.5, 97.5], axis=0), color=f"C{i}", alpha=0.2)


def plot(groups: dict[str, list[Run]], metric: str, out: Path, reps: int = 1000) -> Path:
    """<out>/finetune.png: normal-start return and FAR curves per group, 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, (ret, far) = plt.subplots(1, 2, figsize=(12, 4.4))
    _band(ret, {g: [dict(r.curve) for r in runs] for g, runs in groups.items()}, rng, reps)
    far_curves = {g: [{int(rec["step"]): float(rec[metric]) for rec in far_records(r)} for r in runs]
                  for g, runs in groups.items()}
    _band(far, far_curves, rng, reps)
    name = "FAR success rate" if metric == "success_mean" else "FAR return"
    for ax, title, ylabel in ((ret, "normal start (eval.jsonl)", "eval return"),
                              (far, "FAR start (far.jsonl)", name)):
        label_env_steps(ax)
        ax.set_title(title)
        ax.set_ylabel(f"{ylabel}\n(mean over runs, 95% percentile-bootstrap CI per step)", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_png(fig, out / "finetune.png")


def finetune_report(runs: list[Run], out: Path, group_by: list[str] | None = None,
                    tags: list[str] | None = None) -> tuple[str, Path]:
    """The table (also written to <out>/compare.md) and the figure's path."""
    metric = far_metric(runs)
    groups = method_groups(runs, group_by)
    table = markdown_table(aggregate(groups, metric), metric)
    if tags:
        table += "\n\n" + scalars_table(groups, tags)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table + "\n")
    return table, plot(groups, metric, out)
