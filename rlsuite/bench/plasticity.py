"""`rlsuite bench plasticity`: random-label memorization across tasks (NaP paper, Lyle et al. 2024, Fig. 1).

The setup follows the supervised plasticity experiments of Lyle et al., "Normalization and effective
learning rates in reinforcement learning" (NeurIPS 2024).

- **Data.** scikit-learn's `load_digits`: 1797 real 8x8 digit images that ship inside the package
  (no download, unlike MNIST or CIFAR-10), flattened to 64 features and standardized per feature.
- **Tasks.** At the start of each task every image gets a fresh label drawn uniformly from 10
  classes; the network then trains a fixed number of Adam steps (constant learning rate) on random
  minibatches of that task. Random labels carry no signal shared between tasks, so the only way to
  do well is to memorize each task afresh: a falling per-task accuracy is lost plasticity.
- **Network.** An MLP (64 -> 3 x 256 ReLU -> 10, linear head), the same init per seed in every arm.
- **Arms.** `plain` (no norm); `ln` (LayerNorm before every ReLU, `insert_norms`); `nap` (`ln` plus
  `NormProjector` after every optimizer step, the head and the norm feeding it left free);
  `ln_wd` (`ln` with AdamW's decoupled weight decay on every parameter, see `weight_decay`).
  Any arm name + `_cm` (`plain_cm`, `ln_cm`, `nap_cm`, `ln_wd_cm`; not run by default) is that arm
  with Adam with critical momenta (rlsuite.nn.adam_cm, the official defaults C = 5, lambda = 0.7)
  in place of Adam, at the same learning rate and decay.
  Per seed, every arm sees the same label draws and the same minibatch order.
- **Per task.** End-of-task accuracy on the whole task (memorization accuracy), the mean online
  accuracy of the minibatches during the task (measured before each step), the total parameter
  norm, and the fraction of dormant ReLU units (tau 0.1, ReDo's score) on the whole data set.
  The end-of-task accuracy of the normalized arms sits near 1 for many tasks (a ceiling); the
  online accuracy separates them earlier.

Outputs: per-task records (`records.jsonl`), `accuracy.png` (per-task accuracy vs task index, mean
over seeds with a min-max band), `param_norm.png` (log scale) and `summary.md` in the output folder;
the CLI prints one JSON line per arm on stdout and the Markdown table on stderr.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlsuite.errors import UserError
from rlsuite.nn.adam_cm import AdamCM
from rlsuite.nn.diagnostics import dormant_fraction, parameter_norm
from rlsuite.nn.nap import NormProjector, insert_norms

ARMS = ("plain", "ln", "nap", "ln_wd")
"""The default arms; each also exists with Adam+CM as `<arm>_cm` (CM_ARMS)."""
CM_ARMS = tuple(f"{arm}_cm" for arm in ARMS)


@dataclass
class PlasticityConfig:
    """The random-label plasticity benchmark (defaults: the full run, ~10 CPU-minutes on one core)."""

    tasks: int = 30
    """Number of tasks; each re-draws every label uniformly at random."""
    steps: int = 600
    """Adam steps per task at a constant learning rate (600 x 64 images = ~21 passes over the data;
    a fresh network memorizes 80-95% of a task in that; the whole run fits ~10 min on one core)."""
    batch_size: int = 64
    """Minibatch size (images drawn uniformly with replacement from the 1797)."""
    lr: float = 1e-3
    """Adam / AdamW learning rate, the same in every arm and task."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Widths of the MLP's hidden ReLU layers."""
    classes: int = 10
    """Number of random classes per task."""
    weight_decay: float = 0.1
    """`ln_wd` only: AdamW's decoupled decay. For a scale-invariant layer it balances the norm growth
    of Adam's steps near a per-weight RMS of sqrt(lr / (2 wd)) = 0.07 at lr 1e-3, about twice the
    init RMS of a 256-wide layer, reached in ~1 / (2 lr wd) = 5000 steps (a few tasks)."""
    seeds: int = 3
    """Seeds per arm (seed s fixes the init, the labels and the minibatch order)."""
    arms: tuple[str, ...] = ARMS
    """Which arms to run."""
    tau: float = 0.1
    """Dormant-unit threshold (ReDo score)."""
    threads: int = 1
    """torch CPU threads."""

    @classmethod
    def quick(cls) -> "PlasticityConfig":
        """A smoke test (well under 30 s): every arm, one seed, a few short tasks."""
        return cls(tasks=4, steps=150, seeds=1)


# ----------------------------------------------------------------------------- data and model


def load_data() -> torch.Tensor:
    """The 1797 digits images as a (1797, 64) float tensor, each feature standardized."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserError("bench plasticity needs scikit-learn: pip install scikit-learn") from exc
    x = torch.tensor(load_digits().data, dtype=torch.float32)
    std = x.std(dim=0)
    return (x - x.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))


def build_mlp(inputs: int, cfg: PlasticityConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in cfg.hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, cfg.classes))


def build_arm(arm: str, cfg: PlasticityConfig, seed: int,
              x: torch.Tensor) -> tuple[nn.Sequential, torch.optim.Optimizer, NormProjector | None]:
    """(model, optimizer, projector or None) for one arm; the init depends only on `seed`."""
    critical_momenta = arm.endswith("_cm")
    arm = arm.removesuffix("_cm")
    torch.manual_seed(seed)
    model = build_mlp(x.shape[1], cfg)
    head = model[-1]
    norms = insert_norms(model, x[:2], "layer") if arm != "plain" else []
    projector = NormProjector(model, exclude=[head, norms[-1]]) if arm == "nap" else None
    decay = cfg.weight_decay if arm == "ln_wd" else 0.0
    if critical_momenta:  # critical_test is 0, so the buffer is deterministic: no generator is drawn from
        optimizer: torch.optim.Optimizer = AdamCM(model.parameters(), lr=cfg.lr, weight_decay=decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=decay)
    return model, optimizer, projector


# ----------------------------------------------------------------------------- training


def train_task(model: nn.Module, optimizer: torch.optim.Optimizer, projector: NormProjector | None,
               x: torch.Tensor, y: torch.Tensor, cfg: PlasticityConfig, gen: torch.Generator) -> float:
    """`cfg.steps` steps on one task; returns the mean online (pre-step minibatch) accuracy."""
    correct = torch.zeros(())
    for _ in range(cfg.steps):
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
        logits = model(x[idx])
        loss = nn.functional.cross_entropy(logits, y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if projector is not None:
            projector()
        correct += (logits.detach().argmax(1) == y[idx]).sum()
    return float(correct) / (cfg.steps * cfg.batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tau: float) -> tuple[float, float]:
    """(accuracy on the whole task, dormant fraction over every ReLU) in one forward pass."""
    acts: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: acts.append(out))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        acc = float((model(x).argmax(1) == y).float().mean())
    finally:
        for hook in hooks:
            hook.remove()
    return acc, dormant_fraction(acts, tau)


def run_arm(arm: str, seed: int, cfg: PlasticityConfig, x: torch.Tensor) -> list[dict[str, Any]]:
    """One arm and seed through every task: one record per task."""
    model, optimizer, projector = build_arm(arm, cfg, seed, x)
    labels = torch.Generator().manual_seed(seed)
    batches = torch.Generator().manual_seed(10_000 + seed)
    records = []
    for task in range(cfg.tasks):
        y = torch.randint(cfg.classes, (len(x),), generator=labels)
        online = train_task(model, optimizer, projector, x, y, cfg, batches)
        acc, dormant = evaluate(model, x, y, cfg.tau)
        records.append({"arm": arm, "seed": seed, "task": task, "acc": round(acc, 4),
                        "online_acc": round(online, 4), "param_norm": round(parameter_norm(model), 4),
                        "dormant": round(dormant, 4)})
    return records


# ----------------------------------------------------------------------------- reporting


def _per_task(records: list[dict[str, Any]], arm: str, key: str) -> torch.Tensor:
    """(seeds, tasks) tensor of one metric for one arm."""
    rows = sorted((r for r in records if r["arm"] == arm), key=lambda r: (r["seed"], r["task"]))
    seeds = len({r["seed"] for r in rows})
    return torch.tensor([r[key] for r in rows]).view(seeds, -1)


def summarize(records: list[dict[str, Any]], arms: tuple[str, ...]) -> list[dict[str, Any]]:
    """One summary per arm, averaged over seeds."""
    out = []
    for arm in arms:
        acc = _per_task(records, arm, "acc").mean(0)
        out.append({"bench": "plasticity", "arm": arm, "seeds": len(_per_task(records, arm, "acc")),
                    "first_task_acc": round(float(acc[0]), 4), "last_task_acc": round(float(acc[-1]), 4),
                    "ratio_last_first": round(float(acc[-1] / acc[0]), 3),
                    "final_online_acc": round(float(_per_task(records, arm, "online_acc").mean(0)[-1]), 4),
                    "final_param_norm": round(float(_per_task(records, arm, "param_norm").mean(0)[-1]), 2),
                    "final_dormant": round(float(_per_task(records, arm, "dormant").mean(0)[-1]), 4)})
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    lines = ["| arm | first-task acc | last-task acc | last/first | final param norm | final dormant |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['arm']} | {s['first_task_acc']:.3f} | {s['last_task_acc']:.3f} | {s['ratio_last_first']:.2f} "
              f"| {s['final_param_norm']:.1f} | {s['final_dormant']:.3f} |" for s in summary]
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], arms: tuple[str, ...], key: str, ylabel: str, path: Path,
         log: bool = False) -> None:
    """Mean over seeds per arm vs task index, with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in arms:
        values = _per_task(records, arm, key)
        tasks = range(1, values.shape[1] + 1)
        ax.plot(tasks, values.mean(0), label=arm)
        ax.fill_between(tasks, values.min(0).values, values.max(0).values, alpha=0.2)
    ax.set(xlabel="task", ylabel=ylabel, yscale="log" if log else "linear",
           title=f"random-label digits ({values.shape[0]} seed(s))")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(records, summary, cfg: PlasticityConfig, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "records.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    plot(records, cfg.arms, "acc", "end-of-task training accuracy", out / "accuracy.png")
    plot(records, cfg.arms, "param_norm", "parameter norm", out / "param_norm.png", log=True)
    table = markdown_table(summary)
    (out / "summary.md").write_text(f"{table}\n\nconfig: `{json.dumps(asdict(cfg))}`\n")
    return table


# ----------------------------------------------------------------------------- entry point


def bench_plasticity(cfg: PlasticityConfig | None = None, out: str | Path = "runs/bench-plasticity",
                     quick: bool = False) -> list[dict[str, Any]]:
    """Run every arm and seed, write the figures and table to `out`; return one summary per arm."""
    cfg = cfg or (PlasticityConfig.quick() if quick else PlasticityConfig())
    unknown = set(cfg.arms) - set(ARMS) - set(CM_ARMS)
    if unknown:
        raise UserError(f"unknown plasticity arm(s) {sorted(unknown)}; choose from {', '.join(ARMS + CM_ARMS)}")
    torch.set_num_threads(cfg.threads)
    x = load_data()
    records: list[dict[str, Any]] = []
    for arm in cfg.arms:
        for seed in range(cfg.seeds):
            start = time.perf_counter()
            records += run_arm(arm, seed, cfg, x)
            print(f"plasticity: {arm} seed {seed}: last-task acc {records[-1]['acc']:.3f} "
                  f"({time.perf_counter() - start:.0f}s)", file=sys.stderr, flush=True)
    summary = summarize(records, cfg.arms)
    table = write_outputs(records, summary, cfg, Path(out))
    print(table, file=sys.stderr, flush=True)
    return summary


__all__ = ["ARMS", "CM_ARMS", "PlasticityConfig", "bench_plasticity", "build_arm", "run_arm"]
