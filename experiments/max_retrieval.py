"""The max-retrieval toy of Veličković, Perivolaropoulos, Barbero, Pascanu, "softmax is not enough
(for sharp out-of-distribution)" (arXiv 2410.01104), at CPU scale: does the adaptive temperature of
rlsuite.nn.temperature, applied at test time only, keep a one-head attention sharp on sets larger
than it was trained on?

The task: a set of n items, item i = (priority p_i ~ U(0, 1), class c_i uniform of `classes`); the
answer is the class of the item of highest priority. The model: an MLP encodes each item, one
attention head with a learned query reads the set, and a deeper MLP predicts the class from the
read-out. It trains at n = 16 only; at test the attention's weight on the true max item (its
sharpness) and the accuracy are measured at each n, with plain softmax and with the adaptive
temperature swapped in for the attention softmax (the weights are the same).

    nice -n 10 .venv/bin/python experiments/max_retrieval.py          # 3 seeds, table + figure
    .venv/bin/python experiments/max_retrieval.py --seeds 0 --steps 300   # a quick look

Every random stream (initialisation, training sets, test sets) derives from the seed given; the
global RNGs are left alone (the initialisation draws inside torch.random.fork_rng).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rlsuite.nn.temperature import adaptive_softmax

TEST_SIZES = (16, 32, 64, 128, 256, 512, 1024)
FIGURE = "docs/components/adaptive-temperature.png"


@dataclass
class Setting:
    """The toy's size and training budget (defaults: the experiment's; the tests use fewer steps)."""

    classes: int = 10
    width: int = 64
    train_size: int = 16
    batch: int = 128
    steps: int = 3000
    lr: float = 1e-3


def make_sets(gen: torch.Generator, rows: int, n: int, classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`rows` sets of `n` items drawn from `gen`: priorities (rows, n) in [0, 1), classes (rows, n)
    int64, and the answer (rows,) = the class of each set's highest-priority item."""
    priority = torch.rand(rows, n, generator=gen)
    cls = torch.randint(classes, (rows, n), generator=gen)
    answer = cls.gather(1, priority.argmax(1, keepdim=True)).squeeze(1)
    return priority, cls, answer


class MaxRetrieval(nn.Module):
    """Items -> MLP -> one attention head (learned query) -> MLP -> class logits."""

    def __init__(self, s: Setting) -> None:
        super().__init__()
        self.classes, w = s.classes, s.width
        self.encode = nn.Sequential(nn.Linear(1 + s.classes, w), nn.GELU(), nn.Linear(w, w), nn.GELU(), nn.Linear(w, w))
        self.query = nn.Parameter(torch.randn(w) / math.sqrt(w))
        self.key, self.value = nn.Linear(w, w), nn.Linear(w, w)
        self.predict = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, w), nn.GELU(), nn.Linear(w, s.classes))

    def forward(self, priority: torch.Tensor, cls: torch.Tensor, adaptive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n) priorities and classes -> ((B, classes) logits, (B, n) attention weights)."""
        items = torch.cat([priority[..., None], F.one_hot(cls, self.classes).float()], -1)
        h = self.encode(items)
        scores = self.key(h) @ self.query / math.sqrt(h.shape[-1])
        weights = adaptive_softmax(scores, -1) if adaptive else torch.softmax(scores, -1)
        return self.predict((weights[..., None] * self.value(h)).sum(1)), weights


def train(seed: int, s: Setting) -> MaxRetrieval:
    """A model trained with Adam on fresh sets of s.train_size items per step (cross-entropy)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MaxRetrieval(s)
    gen = torch.Generator().manual_seed(10_000 + seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    for _ in range(s.steps):
        priority, cls, answer = make_sets(gen, s.batch, s.train_size, s.classes)
        loss = F.cross_entropy(model(priority, cls)[0], answer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def measure(model: MaxRetrieval, n: int, adaptive: bool, seed: int, rows: int = 512,
            chunk: int = 128) -> dict[str, float]:
    """Mean attention weight on each set's true max item ('sharpness') and accuracy, over `rows`
    test sets of `n` items drawn from `seed` (the same sets for softmax and adaptive)."""
    gen = torch.Generator().manual_seed(20_000 + seed * 7919 + n)
    sharp = correct = 0.0
    for start in range(0, rows, chunk):
        priority, cls, answer = make_sets(gen, min(chunk, rows - start), n, model.classes)
        logits, weights = model(priority, cls, adaptive)
        sharp += float(weights.gather(1, priority.argmax(1, keepdim=True)).sum())
        correct += float((logits.argmax(1) == answer).sum())
    return {"sharpness": sharp / rows, "accuracy": correct / rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--steps", type=int, default=Setting.steps, help="training steps at n = 16")
    p.add_argument("--rows", type=int, default=1024, help="test sets per size")
    p.add_argument("--figure", default=FIGURE, help="PNG to write ('' for none)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(x) for x in args.seeds.split(",")]
    s = Setting(steps=args.steps)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    start = time.process_time()
    for seed in seeds:
        model = train(seed, s)
        for n in TEST_SIZES:
            for mode in ("softmax", "adaptive"):
                results.setdefault((mode, n), []).append(measure(model, n, mode == "adaptive", seed, args.rows))
    cpu = time.process_time() - start

    def mean(mode: str, n: int, key: str) -> float:
        return sum(r[key] for r in results[(mode, n)]) / len(seeds)

    def spread(mode: str, n: int, key: str) -> float:
        values = [r[key] for r in results[(mode, n)]]
        return max(values) - min(values)

    print(f"max retrieval: trained at n={s.train_size}, {s.steps} steps x {s.batch} sets, width {s.width}, "
          f"{s.classes} classes; seeds {seeds}; {args.rows} test sets per n; {cpu:.0f} CPU-s")
    def gains(n: int, key: str) -> str:  # paired per seed: the same model and test sets
        g = [a[key] - b[key] for a, b in zip(results[("adaptive", n)], results[("softmax", n)])]
        return f"{min(g):+.3f} .. {max(g):+.3f}"

    print("| n | sharpness softmax | sharpness adaptive | accuracy softmax | accuracy adaptive "
          "| sharpness gain per seed | accuracy gain per seed |")
    print("|---|---|---|---|---|---|---|")
    for n in TEST_SIZES:
        cells = [f"{mean(m, n, k):.3f} ± {spread(m, n, k) / 2:.3f}" for k in ("sharpness", "accuracy")
                 for m in ("softmax", "adaptive")]
        print(f"| {n} | " + " | ".join(cells + [gains(n, "sharpness"), gains(n, "accuracy")]) + " |")
    print("(mean over seeds ± half the range across seeds; gains: adaptive - softmax, lowest .. highest seed)")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, key in zip(axes, ("sharpness", "accuracy")):
            for mode, style in (("softmax", "o-"), ("adaptive", "s--")):
                ax.plot(TEST_SIZES, [mean(mode, n, key) for n in TEST_SIZES], style, label=mode)
            ax.axvline(s.train_size, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("items n (trained at 16)")
            ax.set_ylabel("weight on the max item" if key == "sharpness" else "accuracy")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(f"max retrieval, {len(seeds)} seeds: softmax vs adaptive temperature at test time")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
