"""The NaP paper's sequence prediction (Lyle et al. 2024), from the runs of
experiments/nap_minatar_sequence.sh (run directories or their records):

1. a plain network trained on games in turn loses plasticity: on a revisited game it ends below
   what it reached on its first visit (revisit / first visit < 1) and below a fresh network
   (revisit / fresh < 1);
2. NaP keeps it: NaP re-learns a revisited game better than plain DQN does.

Both measures are `rlsuite compare`'s (rlsuite/analysis/continual.py), each arm normalized by its own
fresh networks. Per arm it prints the per-seed values and their mean, and against plain DQN the
difference of means and rliable's probability of improvement P(arm > DQN). Every interval is a 95%
percentile bootstrap over seeds, resampled within each arm (the arms' seeds are separate networks,
not pairs; rliable's stratified bootstrap for the probability of improvement). TASKS picks the games
the means run over (default: all of the sequence's); a game no network learns at this budget only adds
noise to them, so the study's page also gives the learnable ones.

    .venv/bin/python experiments/nap_report.py experiments/records/nap-minatar-100k-per-task
    .venv/bin/python experiments/nap_report.py runs/nap-minatar-100k-per-task --tasks minatar:breakout,minatar:space_invaders
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from rliable import library as rly
from rliable import metrics

from rlsuite.analysis.continual import build_reference, load_sequence, relearn, revisit, task_mean
from rlsuite.analysis.runs import Run, find_runs
from rlsuite.errors import UserError

REPS = 2000
MEASURES = {"revisit / first visit": relearn, "revisit / fresh": revisit}


def arm_of(run: Run) -> str:
    """dqn, ln or nap, from the run's NaP settings."""
    norm, project = run.config.get("agent.nap.norm", "none"), bool(run.config.get("agent.nap.project", False))
    return "nap" if project else ("ln" if norm == "layer" else "dqn" if norm == "none" else str(norm))


def is_fresh(run: Run) -> bool:
    """A fresh reference: one task, once (the study's references are one-task "sequences" of one cycle)."""
    return len(set(run.config.get("train.tasks") or [])) <= 1 and int(run.config.get("train.cycles", 1)) <= 1


def scores(runs: list[Run], tasks: list[str] | None) -> dict[str, dict[str, np.ndarray]]:
    """{measure: {arm: (seeds,) task means}}, each arm's sequences normalized by its own fresh runs."""
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in MEASURES}
    order = {"dqn": 0, "ln": 1, "nap": 2}  # other norms (e.g. rms) after, by name
    for arm in sorted({arm_of(r) for r in runs if not is_fresh(r)}, key=lambda a: (order.get(a, 3), a)):
        seqs = [load_sequence(r) for r in runs if not is_fresh(r) and arm_of(r) == arm]
        fresh = [r for r in runs if is_fresh(r) and arm_of(r) == arm]
        chosen = tasks or seqs[0].tasks
        ref = build_reference(fresh, set(seqs[0].tasks), {s.steps_per_task for s in seqs})
        for name, measure in MEASURES.items():
            out[name][arm] = np.array([task_mean(measure(s, ref), chosen) for s in seqs])
    return out


def interval(samples) -> str:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return f"[{lo:.2f}, {hi:.2f}]"


def report(name: str, by_arm: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    boot = {arm: np.array([rng.choice(v, len(v)).mean() for _ in range(REPS)]) for arm, v in by_arm.items()}
    print(f"\n## {name}\n")
    print("| arm | seeds | per seed | mean [95% CI] | minus DQN [95% CI] | P(arm > DQN) [95% CI] |")
    print("|---|---|---|---|---|---|")
    for arm, values in by_arm.items():
        cells = [arm, str(len(values)), " / ".join(f"{v:.2f}" for v in values),
                 f"{values.mean():.2f} {interval(boot[arm])}", "", ""]
        if arm != "dqn" and "dqn" in by_arm:
            cells[4] = f"{values.mean() - by_arm['dqn'].mean():+.2f} {interval(boot[arm] - boot['dqn'])}"
            point, ci = rly.get_interval_estimates(
                {"p": (values[:, None], by_arm["dqn"][:, None])},
                lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=REPS)
            cells[5] = f"{point['p'][0]:.2f} [{ci['p'][0][0]:.2f}, {ci['p'][1][0]:.2f}]"
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", nargs="+", help="the study's folder(s): run directories or records")
    parser.add_argument("--tasks", help="comma-separated canonical tasks the means run over (default: all)")
    args = parser.parse_args()
    try:
        table = scores(find_runs(args.study), args.tasks.split(",") if args.tasks else None)
        if not table["revisit / fresh"]:
            raise UserError("no task-sequence runs (config train.tasks) there")
    except UserError as err:  # bad input: one line on stderr, exit code 2
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"tasks: {args.tasks or 'all of the sequence'}")
    for name, by_arm in table.items():
        report(name, by_arm)


if __name__ == "__main__":
    main()
