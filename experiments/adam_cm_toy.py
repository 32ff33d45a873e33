"""Adam against Adam with critical momenta (rlsuite.nn.adam_cm) on the paper's two toy landscapes.

Malviya et al., "Promoting Exploration in Memory-Augmented Adam using Critical Momenta" (arXiv 2307.09638)
show on Ackley and Goldstein-Price that Adam+CM leaves sharp local basins that trap Adam and finds
the lower, wider ones. Here: 50 starts drawn uniformly in each function's usual domain (one fixed
numpy SeedSequence), each run for STEPS steps with full-batch gradients, at the same learning rates for
both optimizers (Adam = torch.optim.Adam; Adam+CM = AdamCM with the official defaults C = 5,
lambda = 0.7). A run "reaches the global basin" when it ends closer to the global minimum than to any
other listed minimum (Goldstein-Price) or in the global minimum's lattice cell (Ackley: |x|, |y| < 0.5).

    .venv/bin/python experiments/adam_cm_toy.py            # ~1 CPU-minute; prints a Markdown table
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

from rlsuite.nn.adam_cm import AdamCM

STARTS, STEPS = 50, 2000
LRS = (0.01, 0.05, 0.1)


def ackley(p: torch.Tensor) -> torch.Tensor:
    """Ackley (a = 20, b = 0.2, c = 2 pi) on rows of p (N, 2); global minimum 0 at the origin."""
    r = torch.sqrt(0.5 * (p ** 2).sum(-1) + 1e-12)
    c = 0.5 * torch.cos(2 * math.pi * p).sum(-1)
    return -20 * torch.exp(-0.2 * r) - torch.exp(c) + math.e + 20


def goldstein_price(p: torch.Tensor) -> torch.Tensor:
    """Goldstein-Price on rows of p (N, 2); global minimum 3 at (0, -1), local minima at (-0.6, -0.4),
    (1.2, 0.8) and (1.8, 0.2) (values 30, 840, 84)."""
    x, y = p[:, 0], p[:, 1]
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x ** 2 - 14 * y + 6 * x * y + 3 * y ** 2)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x ** 2 + 48 * y - 36 * x * y + 27 * y ** 2)
    return a * b


GP_MINIMA = torch.tensor([[0.0, -1.0], [-0.6, -0.4], [1.2, 0.8], [1.8, 0.2]])

LANDSCAPES = {
    # name: (function, domain half-width, "in the global basin" test on final points (N, 2))
    "ackley": (ackley, 4.0, lambda p: (p.abs() < 0.5).all(-1)),
    "goldstein-price": (goldstein_price, 2.0, lambda p: torch.cdist(p, GP_MINIMA).argmin(-1) == 0),
}


def run(name: str, optimizer: str, lr: float, starts: torch.Tensor) -> tuple[float, float]:
    """(fraction of starts ending in the global basin, median final value). Each start is its own
    parameter tensor, so Adam+CM's buffer decisions are per run, as if each were optimised alone."""
    f, _, in_basin = LANDSCAPES[name]
    points = [torch.nn.Parameter(s.clone()) for s in starts]
    if optimizer == "adam":
        opts = [torch.optim.Adam([p], lr=lr) for p in points]
    else:
        opts = [AdamCM([p], lr=lr, top_c=5, decay=0.7) for p in points]
    for _ in range(STEPS):
        for p, opt in zip(points, opts):
            opt.zero_grad()
            f(p[None]).sum().backward()
            opt.step()
    final = torch.stack([p.detach() for p in points])
    finite = torch.isfinite(final).all(-1)
    hits = in_basin(torch.where(finite[:, None], final, torch.full_like(final, 1e9)))
    return float(hits.float().mean()), float(f(final[finite]).median()) if finite.any() else float("nan")


def main() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(2307_09638))
    print("| landscape | lr | Adam: reached global basin | Adam+CM: reached global basin | Adam median f | Adam+CM median f |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (_, half, _) in LANDSCAPES.items():
        starts = torch.tensor(rng.uniform(-half, half, size=(STARTS, 2)), dtype=torch.float32)
        for lr in LRS:
            adam, cm = run(name, "adam", lr, starts), run(name, "adam_cm", lr, starts)
            print(f"| {name} | {lr:g} | {adam[0]:.2f} | {cm[0]:.2f} | {adam[1]:.3g} | {cm[1]:.3g} |")
            sys.stdout.flush()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
