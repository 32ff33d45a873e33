"""Training curves of the README's CPU-scale PPO runs (experiments/cpu_scale_runs.sh): each run's
TensorBoard `charts/episodic_*` scalars (every finished training game), smoothed over 50 games, one
line per seed, one panel per metric.

    .venv/bin/python experiments/cpu_scale_plot.py runs/cpu-scale/nethack-s1 runs/cpu-scale/nethack-s2 \\
        --tags return,score,depth --out docs/ppo-nethack-cpu.png
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curve(run: str, tag: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    events = EventAccumulator(run, size_guidance={"scalars": 0})
    events.Reload()
    points = events.Scalars(f"charts/episodic_{tag}")
    steps = np.array([p.step for p in points], dtype=np.float64)
    values = np.array([p.value for p in points], dtype=np.float64)
    if len(values) >= window:  # trailing mean over the last `window` games
        values = np.convolve(values, np.ones(window) / window, mode="valid")
        steps = steps[window - 1:]
    return steps, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--tags", default="return")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tags = args.tags.split(",")
    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.6), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for run in args.runs:
            steps, values = curve(run, tag, args.window)
            ax.plot(steps, values, label=run.rstrip("/").split("/")[-1])
        ax.set_title(f"training games: {tag} (mean of the last {args.window})")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
