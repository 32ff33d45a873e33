"""Report of the multi-game MinAtar Decision Transformer study (experiments/dt_minatar.sh).

Per game, a return is normalised as (R - random) / (best - random), where `random` is the mean
return of the game's uniformly random dataset (`<game>-random`) and `best` the best complete
episode in any of the game's datasets (the spec's "normalised by (random, best-in-data)",
DTMEM_RETENTION.md §1.10). The final evaluation of each seed gives one normalised score per game;
rliable aggregates the (seeds x games) matrix: mean and IQM with stratified-bootstrap 95% CIs.
The PNG shows the mean normalised score against gradient updates (one line per seed) and the final
per-game scores. With `--bc RUN...` (behaviour-cloning runs on the same datasets, `bc-minatar`),
each game's row also gives plain BC's return, so a game where both fail (the data do not pin down
a policy) can be told from one where only the DT fails.

    .venv/bin/python experiments/dt_minatar_report.py runs/dt-minatar/mgdt-s* --data data/minatar \\
        --out docs/dt-minatar.png [--label MGDT] [--bc runs/dt-minatar/bc-s*]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable import library as rly  # noqa: E402
from rliable import metrics  # noqa: E402


def data_reference(data: Path, game: str) -> dict[str, float]:
    """random (mean of the random data), best (best episode over all qualities), and each quality's mean."""
    out: dict[str, float] = {}
    best = -np.inf
    for quality_dir in sorted(data.glob(f"{game}-*")):
        stats = json.loads((quality_dir / "manifest.json").read_text())["stats"]
        quality = quality_dir.name[len(game) + 1:]
        out[quality] = float(stats["return_mean"])
        best = max(best, float(stats["return_max"]))
    out["best"] = best
    return out


def evaluations(run: Path) -> list[dict]:
    lines = (run / "eval.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("source") == "periodic"]


def per_game(record: dict) -> dict[str, float]:
    games = record.get("games") or {record["game"]: record}
    return {name: float(g["mean"]) for name, g in games.items()}


def normalise(value: float, ref: dict[str, float]) -> float:
    return (value - ref["random"]) / max(1e-9, ref["best"] - ref["random"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--label", default="MGDT")
    p.add_argument("--bc", nargs="*", type=Path, default=[], help="behaviour-cloning runs: a BC column")
    args = p.parse_args()
    runs = [r for r in args.runs if (r / "eval.jsonl").is_file()]
    finals = [per_game(evaluations(r)[-1]) for r in runs]
    games = sorted(finals[0])
    refs = {g: data_reference(args.data, g) for g in games}
    scores = np.array([[normalise(f[g], refs[g]) for g in games] for f in finals])  # (seeds, games)
    point, ci = rly.get_interval_estimates({args.label: scores}, lambda x: np.array([
        metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]), reps=2000)

    bc_finals = [per_game(evaluations(r)[-1]) for r in args.bc if (r / "eval.jsonl").is_file()]
    bc_head = f" BC return ({len(bc_finals)} seeds) | BC normalised |" if bc_finals else ""
    print(f"| game | random data | medium data | expert data | best episode in data | {args.label} return "
          f"(mean over {len(runs)} seeds) | normalised |{bc_head}")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if bc_finals else ""))
    for j, g in enumerate(games):
        r = refs[g]
        raw = [f[g] for f in finals]
        bc = [f[g] for f in bc_finals if g in f]
        bc_cells = (f" {np.mean(bc):.2f} ({', '.join(f'{x:.1f}' for x in bc)}) | "
                    f"{np.mean([normalise(x, r) for x in bc]):.2f} |") if bc else ""
        print(f"| {g} | {r.get('random', float('nan')):.2f} | {r.get('medium', float('nan')):.2f} | "
              f"{r.get('expert', float('nan')):.2f} | {r['best']:.0f} | {np.mean(raw):.2f} "
              f"({', '.join(f'{x:.1f}' for x in raw)}) | {scores[:, j].mean():.2f} |{bc_cells}")
    lo, hi = ci[args.label]
    print(f"\naggregate normalised score over {len(games)} games x {len(runs)} seeds: mean "
          f"{point[args.label][0]:.3f} [{lo[0]:.3f}, {hi[0]:.3f}], IQM {point[args.label][1]:.3f} "
          f"[{lo[1]:.3f}, {hi[1]:.3f}] (95% stratified-bootstrap CIs, rliable)")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        evals = evaluations(run)
        steps = [e["step"] for e in evals]
        means = [np.mean([normalise(v, refs[g]) for g, v in per_game(e).items()]) for e in evals]
        ax1.plot(steps, means, marker="o", label=run.name)
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.axhline(1, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("gradient updates")
    ax1.set_ylabel("mean normalised score over games")
    ax1.legend(fontsize=8)
    x = np.arange(len(games))
    width = 0.4 if bc_finals else 0.8
    shift = width / 2 if bc_finals else 0.0
    ax2.bar(x - shift, scores.mean(0), width, yerr=scores.std(0), capsize=4, color="tab:blue", alpha=0.7,
            label=args.label)
    for row in scores:
        ax2.scatter(x - shift, row, color="k", s=10, zorder=3)
    if bc_finals:
        bc_scores = np.array([[normalise(f[g], refs[g]) for g in games] for f in bc_finals])
        ax2.bar(x + shift, bc_scores.mean(0), width, yerr=bc_scores.std(0), capsize=4, color="tab:orange",
                alpha=0.7, label="BC")
        for row in bc_scores:
            ax2.scatter(x + shift, row, color="k", s=10, zorder=3)
        ax2.legend(fontsize=8)
    ax2.set_xticks(x, games)
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.axhline(1, color="grey", lw=0.8, ls="--")
    ax2.set_ylabel("final normalised score (dots: seeds)")
    fig.suptitle(f"{args.label} on MinAtar ({len(games)} games, {len(runs)} seeds); "
                 "normalised: 0 = random data's mean, 1 = best episode in the data")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
