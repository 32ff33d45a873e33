"""Two pieces of the Decision Transformer agent (rlsuite.agents.dt), kept apart to keep it short:

- `expert_returns`: the Multi-Game DT's 'expert' return-to-go (Lee et al. 2022; the public colab's
  `DecisionTransformer.optimal_action`, its `ret_sample_fn`): many draws from the model's return
  distribution, sharpened and tilted towards high returns, and the highest of them.
- `burn_in_memory`: DT-Mem training's burn-in. Evaluation carries a working memory that has
  absorbed every step that left the window; a training window would otherwise always start from
  the initial slots. So before a window, the steps of its episode just before it
  (rlsuite.data.sequences, `SequenceBatch.burn_in`) are written into the memory, without gradient.
"""
from __future__ import annotations

from typing import Any

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


def burn_in_memory(model: Any, burn: Any) -> torch.Tensor | None:
    """The working memory each window of a batch starts from: the initial slots after writing the
    window's burn-in stretch `burn` (a SequenceBatch of the steps before it, real steps first), in
    order, one write per real step. None when there is no stretch (the model then starts from its
    initial memory); a row with an empty stretch gets the initial memory, with its gradient.
    (B, N, d) for a memory per model, (B, L, N, d) per block.

    Runs under torch.no_grad with dropout off, as evaluation writes its memory, so no gradient
    reaches the stretch. Per-block memories are written from chunks of K steps through the whole
    model, each chunk starting from the memory the last one left (the same approximation of the
    activations as a training window's own writes)."""
    if burn is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            state = _through_blocks(model, burn) if model.placement == "block" else _through_memory(model, burn)
    finally:
        model.train(was_training)
    # Windows with an empty stretch start from the learned initial slots themselves, so these keep
    # training (and every parameter stays in the graph, as DDP expects).
    empty = ~burn.mask.any(1)
    return torch.where(empty.view(-1, *([1] * (state.dim() - 1))), model.initial_memory(len(empty)), state)


def _through_memory(model: Any, burn: Any) -> torch.Tensor:
    """A memory per model depends on the tokens alone: embed the real steps only, then write."""
    b, width = burn.actions.shape
    real = burn.mask
    tokens = model.tokens(burn.obs[real][None], burn.actions[real][None], burn.returns_to_go[real][None],
                          burn.timesteps[real][None])
    steps = tokens.new_zeros((b, width, 3, tokens.shape[-1]))
    steps[real] = tokens.view(-1, 3, tokens.shape[-1])
    # Rows longest stretch first, so the rows still writing at step t are a prefix: the work is the
    # stretches' total length, not batch x the longest one.
    lengths = real.sum(1)
    order = torch.argsort(lengths, descending=True)
    active = (lengths[order][None, :] > torch.arange(width, device=lengths.device)[:, None]).sum(1).tolist()
    steps, state = steps[order], model.initial_memory(b)[order].clone()
    for t, n in enumerate(active):
        state[:n] = model.memory.write(state[:n], steps[:n, t])
    return state[torch.argsort(order)]


def _through_blocks(model: Any, burn: Any) -> torch.Tensor:
    b, width = burn.actions.shape
    k = model.cfg.context
    state = model.initial_memory(b)
    for c in range(0, width, k):
        part = slice(c, c + k)
        state = model(burn.obs[:, part], burn.actions[:, part], burn.returns_to_go[:, part],
                      burn.timesteps[:, part], burn.mask[:, part], memory=state)["memory"]
    return state


__all__ = ["expert_returns", "burn_in_memory"]
