"""Report of DT-Mem's three claims at MinAtar scale (DTMEM_RETENTION.md §1.10):

1. runs/dtmem-minatar/<arm>-s<seed> (experiments/dtmem_minatar.sh): multi-game offline training,
   DT-Mem against the parameter-matched DT and the released memory: normalised score against
   gradient updates, final mean and IQM with rliable's stratified-bootstrap 95% CIs, and the
   probability that DT-Mem beats the matched DT;
2. runs/dtmem-adapt/<arm>-s<seed> (experiments/dtmem_adapt.sh): adaptation to held-out Space
   Invaders from 10% of its data: LoRA on the memory, LoRA on all linears, full fine-tuning,
   training from scratch;
3. the same runs' scores on the stage-1 games (Breakout, Asterix), which every fine-tune keeps
   evaluating: the drop from update 0 (the parent) to the end, DT-Mem (full) against DT (dt-full).

Scores are normalised per game by (mean of the random data, best complete episode in the game's
three full datasets), the spec's "(random, best-in-data)". Prints markdown tables; writes
docs/dtmem-minatar.png (claim 1) and docs/dtmem-adapt.png (claims 2 and 3).

    .venv/bin/python experiments/dtmem_report.py --data data/minatar
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rliable import library as rly  # noqa: E402
from rliable import metrics  # noqa: E402

QUALITIES = ("expert", "medium", "random")
CLAIM1_ARMS = {"dtmem": "DT-Mem", "mgdt-matched": "DT (matched)", "dtmem-released": "DT-Mem, released memory"}
ADAPT_ARMS = {"lora-memory": "LoRA memory", "lora-memory-lr10": "LoRA memory, adapters at 10x the rate",
              "lora-all": "LoRA all", "full": "full fine-tune", "scratch": "from scratch",
              "dt-full": "DT full fine-tune"}


def reference(data: Path, game: str) -> tuple[float, float]:
    """(random, best): the random data's mean return and the best episode of the three full datasets."""
    stats = {q: json.loads((data / f"{game}-{q}" / "manifest.json").read_text())["stats"] for q in QUALITIES}
    return float(stats["random"]["return_mean"]), max(float(s["return_max"]) for s in stats.values())


def evaluations(run: Path) -> list[dict]:
    rows = map(json.loads, (run / "eval.jsonl").read_text().splitlines())
    return [r for r in rows if r.get("source") == "periodic"]


def per_game(record: dict) -> dict[str, float]:
    games = record.get("games") or {record["game"]: record}
    return {name: float(g["mean"]) for name, g in games.items()}


class Normaliser:
    def __init__(self, data: Path):
        self.data, self.refs = data, {}

    def __call__(self, game: str, value: float) -> float:
        if game not in self.refs:
            self.refs[game] = reference(self.data, game)
        low, high = self.refs[game]
        return (value - low) / max(1e-9, high - low)


def seeds_of(root: Path, arm: str) -> list[Path]:
    runs = sorted(root.glob(f"{arm}-s*"), key=lambda p: p.name)
    return [r for r in runs if r.is_dir() and (r / "eval.jsonl").is_file() and evaluations(r)]


def parameters(run: Path) -> tuple[int, int]:
    """(all parameters, LoRA adapter parameters) of a run's latest checkpoint, or of the record.json
    that experiments/records.py wrote from it when the run is kept without checkpoints."""
    if not (run / "checkpoints").is_dir() and (run / "record.json").is_file():
        record = json.loads((run / "record.json").read_text())
        return record["parameters"], record["lora_parameters"]
    ckpt = max((run / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    model = torch.load(ckpt, map_location="cpu", weights_only=False)["agent"]["model"]
    total = sum(v.numel() for v in model.values())
    return total, sum(v.numel() for k, v in model.items() if "lora_" in k)


def interval(matrix: np.ndarray) -> str:
    """'mean [lo, hi] / IQM [lo, hi]' of a (runs, games) score matrix, rliable bootstrap."""
    point, ci = rly.get_interval_estimates({"x": matrix}, lambda x: np.array(
        [metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]), reps=2000)
    (m, q), (lo, hi) = point["x"], ci["x"]
    return f"{m:.3f} [{lo[0]:.3f}, {hi[0]:.3f}] | {q:.3f} [{lo[1]:.3f}, {hi[1]:.3f}]"


def claim1(root: Path, norm: Normaliser, out: Path) -> None:
    arms = {a: seeds_of(root, a) for a in CLAIM1_ARMS}
    arms = {a: runs for a, runs in arms.items() if runs}
    if not arms:
        return
    finals, curves, rows = {}, {}, []
    for arm, runs in arms.items():
        evals = [evaluations(r) for r in runs]
        games = sorted(per_game(evals[0][-1]))
        finals[arm] = np.array([[norm(g, per_game(e[-1])[g]) for g in games] for e in evals])
        steps = sorted({r["step"] for e in evals for r in e})
        curves[arm] = (steps, [[np.mean([norm(g, v) for g, v in per_game(r).items()]) for r in e] for e in evals])
        raw = " / ".join(f"{np.mean([per_game(e[-1])[g] for e in evals]):.2f}" for g in games)
        by_update = ", ".join(f"{s}: {np.mean([c[i] for c in curves[arm][1] if i < len(c)]):.2f}"
                              for i, s in enumerate(steps))
        rows.append(f"| {CLAIM1_ARMS[arm]} | {parameters(runs[0])[0]:,} | {len(runs)} | "
                    f"{interval(finals[arm])} | {raw} | {by_update} |")
    print("\n### Claim 1: multi-game training (normalised score)\n")
    print("| arm | parameters | seeds | final mean [95% CI] | final IQM [95% CI] | "
          f"{' / '.join(games)} (returns) | mean normalised by update |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if "dtmem" in finals and "mgdt-matched" in finals:
        point, ci = rly.get_interval_estimates({"p": (finals["dtmem"], finals["mgdt-matched"])},
                                               lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
                                               reps=2000)
        print(f"\nP(DT-Mem > matched DT) = {point['p'][0]:.2f} [{ci['p'][0][0]:.2f}, {ci['p'][1][0]:.2f}] "
              "(rliable probability of improvement, 95% CI)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, (steps, per_seed) in curves.items():
        n = min(len(c) for c in per_seed)
        values = np.array([c[:n] for c in per_seed])
        ax.plot(steps[:n], values.mean(0), marker="o", label=f"{CLAIM1_ARMS[arm]} ({len(per_seed)} seeds)")
        ax.fill_between(steps[:n], values.min(0), values.max(0), alpha=0.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("gradient updates")
    ax.set_ylabel(f"mean normalised score ({len(games)} games)")
    ax.set_title("DT-Mem vs parameter-matched DT, MinAtar (band: min-max over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "dtmem-minatar.png", dpi=110)
    print(f"wrote {out / 'dtmem-minatar.png'}")


def adapt(root: Path, norm: Normaliser, out: Path) -> None:
    arms = {a: seeds_of(root, a) for a in ADAPT_ARMS}
    arms = {a: runs for a, runs in arms.items() if runs}
    if not arms:
        return
    held = "space_invaders"
    print("\n### Claim 2: adaptation to held-out Space Invaders from 10% of its data\n")
    print("| arm | trainable parameters | seeds | update 0 | final return | final normalised | "
          "normalised mean [95% CI] | IQM [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for arm, runs in arms.items():
        evals = [evaluations(r) for r in runs]
        total, lora = parameters(runs[0])
        trainable = lora if arm.startswith("lora") else total
        start = [per_game(e[0])[held] for e in evals if e[0]["step"] == 0]
        final = np.array([[norm(held, per_game(e[-1])[held])] for e in evals])
        raw = np.mean([per_game(e[-1])[held] for e in evals])
        print(f"| {ADAPT_ARMS[arm]} | {trainable:,} | {len(runs)} | "
              f"{np.mean(start) if start else float('nan'):.2f} | {raw:.2f} | {final.mean():.3f} | {interval(final)} |")
        steps = [r["step"] for r in evals[0]]
        values = np.array([[norm(held, per_game(r)[held]) for r in e[:len(steps)]] for e in evals])
        ax1.plot(steps, values.mean(0), marker="o", label=ADAPT_ARMS[arm])
    print("\n### Claim 3: the sequential probe (stage 1 Breakout + Asterix, then Space Invaders)\n")
    print("| arm | seeds | Asterix before -> after | Breakout before -> after | drop in normalised score "
          "(mean [95% CI]) |")
    print("|---|---|---|---|---|")
    labels, drops = [], []
    for arm, runs in arms.items():
        if arm == "scratch":
            continue
        evals = [e for e in (evaluations(r) for r in runs) if e[0]["step"] == 0]
        earlier = sorted(g for g, x in (evals[0][0].get("games") or {}).items() if x.get("earlier"))
        if not earlier:
            continue
        before = np.array([[norm(g, per_game(e[0])[g]) for g in earlier] for e in evals])
        after = np.array([[norm(g, per_game(e[-1])[g]) for g in earlier] for e in evals])
        drop = before - after
        cells = " | ".join(f"{np.mean([per_game(e[0])[g] for e in evals]):.2f} -> "
                           f"{np.mean([per_game(e[-1])[g] for e in evals]):.2f}" for g in earlier)
        print(f"| {ADAPT_ARMS[arm]} | {len(evals)} | {cells} | {interval(drop).split(' | ')[0]} |")
        labels.append(ADAPT_ARMS[arm])
        drops.append(drop.mean(1))
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set_xlabel("fine-tuning updates")
    ax1.set_ylabel("Space Invaders normalised score")
    ax1.set_title("claim 2: adaptation (mean over seeds)")
    ax1.legend(fontsize=8)
    if drops:
        ax2.boxplot(drops, tick_labels=labels)
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.set_ylabel("drop on Breakout + Asterix (normalised)")
        ax2.set_title("claim 3: forgetting of stage-1 games (per seed)")
        ax2.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "dtmem-adapt.png", dpi=110)
    print(f"wrote {out / 'dtmem-adapt.png'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the folder of the MinAtar datasets")
    p.add_argument("--claim1", type=Path, default=Path("runs/dtmem-minatar"))
    p.add_argument("--adapt", type=Path, default=Path("runs/dtmem-adapt"))
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    norm = Normaliser(args.data)
    claim1(args.claim1, norm, args.out)
    adapt(args.adapt, norm, args.out)


if __name__ == "__main__":
    main()
