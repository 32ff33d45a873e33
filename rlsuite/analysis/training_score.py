"""Dopamine's training score of a run (`rlsuite compare --score train`): the mean raw return of the
training games that ended in each complete iteration, read from TensorBoard's training returns."""
from __future__ import annotations

import numpy as np

from rlsuite.analysis.runs import Run
from rlsuite.analysis.scalars import read_events
from rlsuite.errors import UserError

TRAIN_RETURN_TAG = "charts/episodic_return"  # one point per finished training game (rlsuite/run/monitor.py)


def training_returns(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(env step at which each training game ended, its raw return), from TensorBoard."""
    events = read_events(run)
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
