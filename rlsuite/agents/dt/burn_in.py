"""DT-Mem training's burn-in of the working memory. Evaluation carries a working memory that has
absorbed every step that left the window; a training window would otherwise always start from the
initial slots. So before a window, the steps of its episode just before it (rlsuite.data.sequences,
`SequenceBatch.burn_in`) are written into the memory, without gradient."""
from __future__ import annotations

from typing import Any

import torch


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


__all__ = ["burn_in_memory"]
