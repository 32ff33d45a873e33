"""The Multi-Game DT's 'expert' return-to-go (Lee et al. 2022; the public colab's
`DecisionTransformer.optimal_action`, its `ret_sample_fn`), what the DT agent conditions on with
eval_target 'expert': many draws from the model's return distribution, sharpened and tilted towards
high returns, and the highest of them."""
from __future__ import annotations

import numpy as np
import torch


def expert_returns(logits: torch.Tensor, values: torch.Tensor, kappa: float, temperature: float,
                   samples: int, rng: np.random.Generator) -> np.ndarray:
    """MGDT's expert return of each row: the highest of `samples` independent draws of the bin
    index from P(i) proportional to exp(temperature * (logits[i] + kappa * (values[i] - values[0]) /
    (values[-1] - values[0]))), the colab's `categorical(temperature * (logits + opt_weight *
    linspace(0, 1)))` then `max` over its `num_samples` draws.

    `logits` (B, num_bins) return logits; `values` (num_bins,) the return of each bin, ascending
    (so the highest index drawn is the highest return); draws from `rng`. Returns (B,) float64."""
    span = max(1.0, float(values[-1] - values[0]))
    tilt = kappa * (values.double() - float(values[0])) / span
    probs = torch.softmax(temperature * (logits.double() + tilt), dim=-1).numpy()
    out = np.empty(len(probs))
    for i, p in enumerate(probs):
        out[i] = float(values[int(rng.choice(len(p), size=samples, p=p / p.sum()).max())])
    return out


__all__ = ["expert_returns"]
