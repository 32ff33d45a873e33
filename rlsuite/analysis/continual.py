"""Continual-learning metrics for task-sequence runs: `rlsuite compare SEQ_RUNS --reference FRESH_RUNS`.

A sequence run (config `train.tasks`, `train.steps_per_task` = N, `train.cycles` = C) trains phase k on
task `tasks[k % len(tasks)]` during env steps [kN, (k+1)N). At the end of every phase it evaluates every
task (eval.jsonl records with `source = "switch"`, `phase = k`, `task`); during training it evaluates the
task being trained (`source = "periodic"`). Reference runs are single-task runs of the same agent: a
fresh network trained for N steps on one task (several seeds). Tasks are matched by their canonical
"family:game" (`rlsuite.analysis.runs.canonical_task`), so a reference run on 'MinAtar/Breakout-v1' serves the
sequence task 'minatar:breakout'; the report names tasks that way.

All metrics use the normalized performance p_i = return_i / R_i, where R_i is the mean over reference
seeds of the reference run's final eval return on task i (1.0 = as good as a fresh network). When the
reference runs hold a fresh network of every group (arm), each group is normalized by its own: the
reference runs that agree with it on the config keys that tell the groups apart (`own_references`), so
that a normalized arm is measured against the same normalized network trained fresh. Tasks without a
(positive) reference keep raw returns, and the table header says so. Definitions follow
Continual World (Wołczyk et al., NeurIPS 2021), adapted to cycles and to unbounded returns:

- average performance  A   = 1/T sum_i p_i(end)
- forgetting           F_i = p_i(end of task i's first phase) - p_i(end)
- forward transfer     FT_i = AUC_i - AUC_i^ref                          (see `forward_transfer`)
- revisit / fresh      V_i = mean over phases k of cycle >= 2 training task i of p_i(end of phase k)
                             (the plasticity measure of the NaP paper, Lyle et al. 2024: how well the
                             network re-learns a task it has seen, relative to a fresh network)
- revisit / first      R_i = V_i / p_i(end of task i's first phase): re-learning relative to the
                             same network's first visit (needs no reference)

Each run gives one number per metric and task, and their mean over tasks (over the tasks with a
reference when some lack one: raw returns and p do not average); a group reports the mean over its runs
(seeds) with a 95% percentile-bootstrap CI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlsuite.analysis.figures import label_env_steps
from rlsuite.analysis.runs import Run, canonical_task, group_keys, group_runs
from rlsuite.errors import UserError

METRICS = {"final": "final p", "forgetting": "forgetting", "transfer": "forward transfer",
           "revisit": "revisit / fresh", "relearn": "revisit / first visit"}


# ----------------------------------------------------------------------------- runs


def is_sequence(run: Run) -> bool:
    """A run trained on a task sequence (its config lists `train.tasks`)."""
    return bool(run.config.get("train.tasks"))


@dataclass
class Sequence:
    """A sequence run's schedule and its evaluations, keyed by (phase, task)."""

    run: Run
    tasks: list[str]
    steps_per_task: int
    cycles: int
    switch: dict[tuple[int, str], float]  # return of `task` evaluated at the end of `phase`
    end: int  # the last phase whose switch evaluations cover every task

    def task_of(self, phase: int) -> str:
        return self.tasks[phase % len(self.tasks)]

    def p(self, ref: Reference, phase: int, task: str) -> float:
        """Normalized return of `task` evaluated at the end of `phase` (NaN if not evaluated then)."""
        return ref.normalize(task, self.switch[phase, task]) if (phase, task) in self.switch else np.nan

    def first_phase(self, task: str) -> int:
        return self.tasks.index(task)

    def curve(self, task: str, phase: int) -> tuple[list[int], list[float]]:
        """The learning curve of `task` during `phase`: its periodic evaluations, then its switch one."""
        points = {e["step"]: float(e["mean"]) for e in self.run.evals if e.get("phase") == phase
                  and canonical_task(e.get("task")) == task and e.get("source") == "periodic"}
        if (phase, task) in self.switch:
            points.setdefault((phase + 1) * self.steps_per_task, self.switch[phase, task])
        steps = sorted(points)
        return steps, [points[s] for s in steps]


def load_sequence(run: Run) -> Sequence:
    """Read a sequence run's schedule and switch evaluations; a run without any is a UserError.
    Tasks are canonical, as the reference runs' are, whichever spelling the config used."""
    tasks = list(dict.fromkeys(canonical_task(t) for t in run.config["train.tasks"]))
    switch = {(int(e["phase"]), canonical_task(e["task"])): float(e["mean"]) for e in run.evals
              if e.get("source") == "switch"}
    complete = [k for k in {k for k, _ in switch} if all((k, t) in switch for t in tasks)]
    if not complete:
        raise UserError(f"{run.path} is a task-sequence run without switch evaluations (eval.jsonl records "
                        f"with source=\"switch\" for every task at the end of a phase); nothing to compare yet")
    return Sequence(run, tasks, int(run.config["train.steps_per_task"]), int(run.config.get("train.cycles", 1)),
                    switch, max(complete))


# ----------------------------------------------------------------------------- reference


def curve_mean(steps: list[int], values: list[float]) -> float:
    """Mean of the piecewise-linear curve through the points over the steps it spans:
    (1 / (x_n - x_0)) * trapezoid integral. Independent of how x is scaled, so it is the same with x
    normalized to [0, 1]. A single point is its own mean."""
    if len(steps) == 1:
        return float(values[0])
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


@dataclass
class Reference:
    """Per task: R_i (mean final return over fresh runs) and AUC_i^ref (mean over them of the
    normalized curve's mean, `curve_mean(steps, returns / R_i)`)."""

    returns: dict[str, float] = field(default_factory=dict)
    aucs: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def normalize(self, task: str, value: float) -> float:
        """p_i = return / R_i, or the raw return when task i has no reference."""
        return value / self.returns[task] if task in self.returns else value


def reference_task(run: Run) -> str:
    """The canonical task of a fresh run: its env's, or that of a one-task, one-cycle "sequence"."""
    tasks = {canonical_task(t) for t in run.config.get("train.tasks") or []}
    if len(tasks) > 1 or (tasks and int(run.config.get("train.cycles", 1)) > 1):
        raise UserError(f"reference run {run.path} trains a task sequence; --reference takes single-task runs")
    return tasks.pop() if tasks else run.task


def build_reference(runs: list[Run], tasks: set[str], steps_per_task: set[int]) -> Reference:
    """Pool the fresh runs per task. Runs on tasks outside every sequence are ignored, with a note."""
    ref = Reference()
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        task = reference_task(run)
        if task not in tasks:
            ref.notes.append(f"reference run {run.path} on {task}: task not in any sequence; ignored")
            continue
        by_task.setdefault(task, []).append(run)
    for task, task_runs in sorted(by_task.items()):
        r = float(np.mean([run.final for run in task_runs]))
        if r <= 0:
            ref.notes.append(f"reference return on {task} is {r:.3g} (not positive); raw returns used")
            continue
        ref.returns[task] = r
        curves = [{e["step"]: e["mean"] / r for e in run.evals} for run in task_runs]  # one point per step
        ref.aucs[task] = float(np.mean([curve_mean(sorted(c), [c[x] for x in sorted(c)]) for c in curves]))
        trained = sorted({int(run.evals[-1]["step"]) for run in task_runs})
        if set(trained) - steps_per_task:
            ref.notes.append(f"reference runs on {task} end at step(s) {trained}, but the sequences train "
                             f"{sorted(steps_per_task)} steps per task")
    return ref


def own_references(groups: dict[str, list[Run]], keys: list[str],
                   references: list[Run]) -> tuple[dict[str, list[Run]] | None, str]:
    """Each group's reference runs, and a note for the report. A reference run belongs to a group when
    it agrees with the group's runs on every key in `keys` (those that tell the groups apart). When every
    group has some, each gets its own; otherwise (None) every group is measured against all of them,
    pooled (e.g. fresh plain DQN as the one yardstick for every arm), and the note names the groups
    without their own."""
    if not keys or not references:
        return None, ""

    def agrees(ref: Run, run: Run) -> bool:
        return all(str(ref.config.get(k)) == str(run.config.get(k)) for k in keys)

    own = {label: [r for r in references if agrees(r, members[0])] for label, members in groups.items()}
    if all(own.values()):
        unused = len(references) - len({id(r) for refs in own.values() for r in refs})
        return own, (f"each group is normalized by its own fresh runs (those with its {', '.join(keys)})"
                     + (f"; {unused} reference runs match no group and are unused" if unused else ""))
    missing = [label for label, refs in own.items() if not refs]
    return None, (f"no reference run has the settings of {'; '.join(missing)}: every group is normalized "
                  f"by all {len(references)} reference runs, pooled")


# ----------------------------------------------------------------------------- metrics


def final_performance(seq: Sequence, ref: Reference) -> dict[str, float]:
    """p_i(end): each task's normalized switch return at the end of the last (complete) phase. Their
    mean over tasks is the average performance A = 1/T sum_i p_i(end)."""
    return {t: seq.p(ref, seq.end, t) for t in seq.tasks}


def forgetting(seq: Sequence, ref: Reference) -> dict[str, float]:
    """Continual World forgetting, adapted to cycles: F_i = p_i(end of task i's first training phase)
    - p_i(end). Positive = performance lost since the task was first learned. NaN for a task not yet
    trained by the end."""
    return {t: seq.p(ref, seq.first_phase(t), t) - seq.p(ref, seq.end, t) if seq.first_phase(t) <= seq.end
            else np.nan for t in seq.tasks}


def forward_transfer(seq: Sequence, ref: Reference) -> dict[str, float]:
    """Forward transfer FT_i = AUC_i - AUC_i^ref, where AUC_i is the mean of the normalized learning
    curve of task i over its first training phase (periodic evals, then the switch eval at its end;
    x normalized to [0, 1], see `curve_mean`) and AUC_i^ref the same for the fresh reference runs.

    Departure from Continual World: CW uses FT_i = (AUC_i - AUC_i^ref) / (1 - AUC_i^ref), which assumes
    success rates in [0, 1]. Returns are unbounded (1 - AUC_i^ref can be 0 or negative), so this reports
    the plain difference of normalized AUCs: 0 = learns as fast as a fresh network, > 0 = faster.
    NaN for a task without a reference or not yet trained."""
    out = {}
    for t in seq.tasks:
        k = seq.first_phase(t)
        steps, values = seq.curve(t, k)
        if t not in ref.aucs or k > seq.end or not steps:
            out[t] = np.nan
            continue
        out[t] = curve_mean(steps, [ref.normalize(t, v) for v in values]) - ref.aucs[t]
    return out


def revisit(seq: Sequence, ref: Reference) -> dict[str, float]:
    """Revisit performance relative to fresh (NaP's plasticity measure): V_i = mean over the phases
    k >= len(tasks) (cycle 2 onwards, up to the end) that train task i of p_i(end of phase k).
    1.0 = re-learns the task as well as a fresh network in the same N steps. NaN without revisits."""
    out = {}
    for t in seq.tasks:
        values = [seq.p(ref, k, t) for k in range(len(seq.tasks), seq.end + 1) if seq.task_of(k) == t]
        out[t] = float(np.mean(values)) if values else np.nan
    return out


def relearn(seq: Sequence, ref: Reference) -> dict[str, float]:
    """Revisit performance relative to the same network's first visit: V_i / p_i(end of task i's first
    phase), which equals the ratio of raw returns, so it needs no reference. 1.0 = re-learns the task
    as well as it first learned it; below 1 = plasticity lost along the sequence. A fresh reference
    cannot tell that apart from an arm that learns faster or slower from scratch (a normalized network
    against a plain fresh one); this can. NaN without revisits or when the first visit ends at <= 0."""
    first = {t: seq.p(ref, seq.first_phase(t), t) for t in seq.tasks}
    return {t: v / first[t] if np.isfinite(v) and first[t] > 0 else np.nan for t, v in revisit(seq, ref).items()}


def run_metrics(seq: Sequence, ref: Reference) -> dict[str, dict[str, float]]:
    """{metric: {task: value}} for one run."""
    return {"final": final_performance(seq, ref), "forgetting": forgetting(seq, ref),
            "transfer": forward_transfer(seq, ref), "revisit": revisit(seq, ref), "relearn": relearn(seq, ref)}


def task_mean(values: dict[str, float], tasks: list[str] | None = None) -> float:
    """Mean over the tasks (all, or those in `tasks`) that have a value; NaN when none has."""
    finite = [v for t, v in values.items() if np.isfinite(v) and (tasks is None or t in tasks)]
    return float(np.mean(finite)) if finite else np.nan


def bootstrap_ci(values: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean over runs, resampling runs with replacement.
    NaN values (metric undefined for that run) are left out."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return np.nan, np.nan, np.nan
    means = x[np.random.default_rng(seed).integers(x.size, size=(reps, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


@dataclass
class GroupResult:
    label: str
    runs: int
    summary: dict[str, tuple[float, float, float]]  # metric -> (mean, lo, hi) of the per-run task mean
    per_task: dict[str, dict[str, tuple[float, float, float]]]  # task -> metric -> (mean, lo, hi)


def group_metrics(label: str, seqs: list[Sequence], ref: Reference) -> GroupResult:
    per_run = [run_metrics(s, ref) for s in seqs]
    tasks = list(dict.fromkeys(t for s in seqs for t in s.tasks))
    # normalized and raw scores do not average: the means over tasks use the normalized ones, if any
    mean_over = [t for t in tasks if t in ref.returns] or tasks
    summary = {m: bootstrap_ci([task_mean(r[m], mean_over) for r in per_run]) for m in METRICS}
    per_task = {t: {m: bootstrap_ci([r[m][t] for r in per_run if t in r[m]]) for m in METRICS} for t in tasks}
    return GroupResult(label, len(seqs), summary, per_task)


# ----------------------------------------------------------------------------- report


def _cell(stat: tuple[float, float, float]) -> str:
    mean, lo, hi = (round(float(x), 12) + 0.0 for x in stat)  # 0.1 - 0.1 prints 0, not 5.55e-17 or -0
    return "n/a" if not np.isfinite(mean) else f"{mean:.3g} [{lo:.3g}, {hi:.3g}]"


def markdown_report(results: list[GroupResult], refs: dict[str, Reference], notes: list[str]) -> str:
    tasks = list(dict.fromkeys(t for g in results for t in g.per_task))
    raw = [t for t in tasks if any(t not in ref.returns for ref in refs.values())]
    unit = "p = eval return / fresh-network return on the task (1.0 = fresh reference)"
    if raw:
        unit += f"; raw eval return (no reference) for {', '.join(raw)}"
        unit += ", left out of the group means" if len(raw) < len(tasks) else ""
    rule = "|" + "---|" * (2 + len(METRICS))
    summary_names = {**METRICS, "final": "average performance"}  # the mean over tasks of final p
    lines = [f"Continual metrics ({unit}; mean over seeds [95% bootstrap CI])", "",
             "| group | runs | " + " | ".join(summary_names.values()) + " |", rule]
    for g in results:
        lines.append(f"| {g.label} | {g.runs} | " + " | ".join(_cell(g.summary[m]) for m in METRICS) + " |")
    lines += ["", "Per task", "", "| group | task | " + " | ".join(METRICS.values()) + " |", rule]
    for g in results:
        for t, stats in g.per_task.items():
            lines.append(f"| {g.label} | {t} | " + " | ".join(_cell(stats[m]) for m in METRICS) + " |")
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


def plot(groups: dict[str, list[Sequence]], refs: dict[str, Reference], out: Path) -> Path:
    """One subplot per task: its normalized switch-evaluation return (each group by its reference,
    `refs[label]`) over env steps, mean over each group's runs with a 95% bootstrap band; grey lines at
    the task switches, the phases training the task shaded (when every run shares one schedule), a
    dashed line at 1.0 (the fresh reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = [s for g in groups.values() for s in g]
    tasks = list(dict.fromkeys(t for s in seqs for t in s.tasks))
    schedules = {(tuple(s.tasks), s.steps_per_task, s.cycles) for s in seqs}
    switches = {(k + 1) * s.steps_per_task for s in seqs for k in range(len(s.tasks) * s.cycles - 1)}
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for label, group in groups.items():
            points: dict[int, list[float]] = {}
            for s in group:
                for (k, t), v in s.switch.items():
                    if t == task:
                        points.setdefault((k + 1) * s.steps_per_task, []).append(refs[label].normalize(t, v))
            steps = sorted(points)
            line, = ax.plot(steps, [np.mean(points[x]) for x in steps], marker="o", ms=3,
                            label=f"{label} (n={len(group)})")
            low, high = zip(*(bootstrap_ci(points[x])[1:] for x in steps))
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        for x in switches:
            ax.axvline(x, color="grey", lw=0.6, alpha=0.5)
        if len(schedules) == 1:
            s = seqs[0]
            for k in range(len(s.tasks) * s.cycles):
                if s.task_of(k) == task:
                    ax.axvspan(k * s.steps_per_task, (k + 1) * s.steps_per_task, color="C7", alpha=0.12)
        normalized = all(task in ref.returns for ref in refs.values())
        if normalized:
            ax.axhline(1.0, color="black", ls="--", lw=1)
        ax.set_xlim(left=0)
        ax.set_title(task, fontsize=9)
        label_env_steps(ax)
        ax.set_ylabel("p (return / fresh)" if normalized else "eval return (no reference)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "continual.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def continual_report(runs: list[Run], references: list[Run], out: Path,
                     group_by: list[str] | None = None) -> tuple[str, Path]:
    """The `rlsuite compare` report for sequence runs: writes compare.md and continual.png in `out`."""
    refs = {r.path.resolve() for r in references}
    runs = [r for r in runs if r.path.resolve() not in refs]  # e.g. a folder holding both kinds
    single = [r for r in runs if not is_sequence(r)]
    if len(single) == len(runs):
        raise UserError("--reference needs task-sequence runs (config train.tasks) to compare")
    if single:
        raise UserError(f"{single[0].path} is a single-task run among task-sequence runs; "
                        f"pass fresh single-task runs with --reference")
    seqs = {id(r): load_sequence(r) for r in runs}
    tasks = {t for s in seqs.values() for t in s.tasks}
    steps = {s.steps_per_task for s in seqs.values()}
    run_groups = group_runs(runs, group_by)
    own, note = own_references(run_groups, group_keys(runs, group_by), references)
    if own is None:
        pooled = build_reference(references, tasks, steps)
        refs = {label: pooled for label in run_groups}
    else:
        refs = {label: build_reference(members, tasks, steps) for label, members in own.items()}
    notes = list(dict.fromkeys(n for ref in refs.values() for n in ref.notes)) + ([note] if note else [])
    for s in seqs.values():
        if s.end < len(s.tasks) * s.cycles - 1:
            notes.append(f"{s.run.path} is incomplete: metrics at the end of phase {s.end} "
                         f"of {len(s.tasks) * s.cycles}")
    if not references:
        notes.append("no --reference runs: raw eval returns, no forward transfer")
    groups = {label: [seqs[id(r)] for r in members] for label, members in run_groups.items()}
    results = [group_metrics(label, members, refs[label]) for label, members in groups.items()]
    text = markdown_report(results, refs, notes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text + "\n")
    return text, plot(groups, refs, out)
