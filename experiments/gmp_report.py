"""The two predictions of the GMP study (Obando-Ceron et al. 2024), from the runs of
experiments/gmp_minatar.sh (run directories or their records):

1. at the wider network, the pruned network scores at least as well as the dense one;
2. the pruned/dense ratio grows with width.

For each width it prints the final greedy evaluation per seed, the IQM of each arm, rliable's
probability of improvement P(pruned > dense) and the ratio of IQMs pruned/dense; then the growth of
that ratio from the narrowest to the widest network. Every interval is a 95% percentile bootstrap
over seeds, resampled within each arm (rliable's stratified bootstrap for the IQMs and the
probability of improvement; the same resampling, written out here, for the ratios, which rliable
has no estimator for). The same is printed for a steadier score, the mean of the last five
evaluations (250k-500k steps of a 500k run), because single evaluations swing by 10-20 points.

    .venv/bin/python experiments/gmp_report.py runs/gmp-minatar-breakout-500k
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
from rliable import library as rly
from rliable import metrics

from rlsuite.analysis.runs import Run, find_runs
from rlsuite.errors import UserError

REPS = 2000


def arms(runs: list[Run]) -> dict[int, dict[bool, dict[int, Run]]]:
    """{width: {pruned: {seed: run}}} from the runs' configs."""
    table: dict[int, dict[bool, dict[int, Run]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        pruned = float(run.config.get("agent.gmp.sparsity", 0)) > 0
        table[int(run.config["agent.encoder.width"])][pruned][int(run.config["train.seed"])] = run
    return table


def iqm_ratio(pruned: np.ndarray, dense: np.ndarray) -> float:
    return float(metrics.aggregate_iqm(pruned) / metrics.aggregate_iqm(dense))


def resampled(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap resample of a (seeds,) array, with replacement."""
    return scores[rng.integers(0, len(scores), len(scores))]


def interval(samples: list[float]) -> str:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return f"[{lo:.2f}, {hi:.2f}]"


def report(table: dict[int, dict[bool, dict[int, Run]]], score, label: str) -> None:
    print(f"\n## Score: {label}\n")
    print("| width | seeds | dense per seed | pruned per seed | dense IQM | pruned IQM | "
          "P(pruned > dense) | ratio pruned/dense |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    scores, boot = {}, {}
    for width in sorted(table):
        seeds = sorted(set(table[width][False]) & set(table[width][True]))
        dense = np.array([score(table[width][False][s]) for s in seeds])
        pruned = np.array([score(table[width][True][s]) for s in seeds])
        scores[width] = pruned, dense
        point, ci = rly.get_interval_estimates(
            {"dense": dense[:, None], "pruned": pruned[:, None]},
            lambda x: np.array([metrics.aggregate_iqm(x)]), reps=REPS)
        p_point, p_ci = rly.get_interval_estimates(
            {"p": (pruned[:, None], dense[:, None])},
            lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=REPS)
        boot[width] = [iqm_ratio(resampled(pruned, rng), resampled(dense, rng)) for _ in range(REPS)]
        cell = {arm: f"{point[arm][0]:.1f} [{ci[arm][0][0]:.1f}, {ci[arm][1][0]:.1f}]" for arm in point}
        print(f"| ×{width} | {len(seeds)} | {' / '.join(f'{v:.1f}' for v in dense)} | "
              f"{' / '.join(f'{v:.1f}' for v in pruned)} | {cell['dense']} | {cell['pruned']} | "
              f"{p_point['p'][0]:.2f} [{p_ci['p'][0][0]:.2f}, {p_ci['p'][1][0]:.2f}] | "
              f"{iqm_ratio(*scores[width]):.2f} {interval(boot[width])} |")
    if len(scores) > 1:
        narrow, wide = min(scores), max(scores)
        growth = iqm_ratio(*scores[wide]) - iqm_ratio(*scores[narrow])
        samples = np.array(boot[wide]) - np.array(boot[narrow])
        print(f"\nratio ×{wide} − ratio ×{narrow} = {growth:.2f} {interval(list(samples))}; "
              f"bootstrap share of resamples where it grows: {np.mean(samples > 0):.2f}")


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", nargs="+", help="the study's folder(s): run directories or records")
    args = parser.parse_args()
    try:
        table = arms(find_runs(args.study))
    except UserError as err:  # no runs there
        fail(str(err))
    except KeyError as key:  # runs of another study
        fail(f"a run without {key} in its config")
    if not all(table[width][False] and table[width][True] for width in table):
        fail("every width needs both a dense and a pruned run")
    report(table, lambda run: run.final, "final greedy evaluation (20 episodes)")
    report(table, lambda run: float(np.mean([e["mean"] for e in run.evals[-5:]])),
           "mean of the last five evaluations")


if __name__ == "__main__":
    main()
