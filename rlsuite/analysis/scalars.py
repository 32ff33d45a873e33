"""The TensorBoard scalars of finished runs: reading them, refusing tags no run logged, and the
table of each tag's final value per group (`rlsuite compare --tags`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from rlsuite.analysis.runs import Run, did_you_mean
from rlsuite.errors import UserError


def read_events(run: Run) -> Any:
    """Every scalar the run logged to TensorBoard (size_guidance 0: keep all points, not a sample)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.path), size_guidance={"scalars": 0})
    events.Reload()
    return events


def check_tags(runs: list[Run], tags: list[str]) -> None:
    """Refuse a --tags tag no run has logged, naming the logged tags closest to it."""
    logged = sorted(set().union(*[set(read_events(r).Tags()["scalars"]) for r in runs]))
    for tag in tags:
        if tag not in logged:
            hint = did_you_mean(tag, logged) or (f"; logged tags include {', '.join(logged[:8])}" if logged
                                                 else "; these runs logged no TensorBoard scalars")
            raise UserError(f"--tags {tag!r}: no run logged this TensorBoard tag{hint}")


def final_scalars(run: Run, tags: list[str]) -> dict[str, float]:
    """The last logged value of each TensorBoard tag in a run directory (tags it lacks are left out)."""
    events = read_events(run)
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
