"""The Hugging Face side of `rlsuite bench dt`: `DecisionTransformerModel` built at the size of
rlsuite's DT from the same `settings(...)`, its inputs converted from the same pool of batches, and
its training update written out as `DT.update` does it (rlsuite/bench/dt.py states the rules).

Departures, where the two architectures cannot be the same (parameter counts: `parameter_counts`;
the test holds them within `PARAM_TOLERANCE`):
- GPT-2 has a position table (`wpe`); HF's DT feeds position id 0 to every token, so only row 0 is
  ever read: `n_positions=1` (a learned bias on every token, d parameters). Its unused token table
  `wte` has vocab_size 1 (d parameters). rlsuite has neither.
- HF adds a LayerNorm on the stacked embeddings (`embed_ln`) and computes, each forward, a state
  head and a return head on the action tokens that no loss reads (they get no gradient and AdamW
  skips them). rlsuite has no such heads with returns 'continuous'.
- Actions: rlsuite embeds the action index (nn.Embedding with one extra row for the unknown action
  at evaluation); HF multiplies a one-hot vector by a Linear (act_dim x d weights plus a bias): the
  same count, (A + 1) x d.
- Attention masks: rlsuite's windows are right-padded and its causal mask alone keeps padding from
  reaching a real step, so it passes no key mask; HF gets an all-ones attention mask (the same
  computation; its own default is built on the CPU, wrong for --device cuda), which its mask code
  turns into SDPA's `is_causal=True` with no mask tensor. Padded steps are left out of the loss on
  both sides. (Passing the padding mask to HF would make it build a 4-D float mask for every
  batch with padding: extra work rlsuite's model does not need.)
- Attention kernels: both sides call torch's scaled_dot_product_attention with is_causal=True and
  dropout_p = the attention dropout in training. On the CPU a nonzero dropout_p rules out the fused
  flash kernel, so with dropout 0.1 both run SDPA's math path (causal mask, softmax, dropout
  masks), the same on both sides; on a GPU SDPA picks its fused kernels for both.
- Init: GPT-2 N(0, 0.02) on both, HF also scales the residual projections by 1/sqrt(2 n_layer);
  no effect on speed.
- The lr: rlsuite's warm-up is set to 0 (`agent.warmup_updates=0`) so both sides step at the
  same constant lr; DT.update still computes it every update (a few float operations).
"""
from __future__ import annotations

import math
from typing import Any

from rlsuite.bench.dt_settings import build_rlsuite


def hf_inputs(batch: Any, num_actions: int, max_timestep: int) -> dict[str, Any]:
    """A SequenceBatch in DecisionTransformerModel's input format (plus the loss's targets and mask)."""
    import torch
    import torch.nn.functional as F

    b, k = batch.actions.shape
    return {"states": batch.obs.reshape(b, k, -1).float(),
            "actions": F.one_hot(batch.actions, num_actions).float(),
            "returns_to_go": batch.returns_to_go.float().unsqueeze(-1),
            "timesteps": batch.timesteps.clamp(0, max_timestep - 1),
            "attention_mask": torch.ones((b, k), dtype=torch.long, device=batch.actions.device),
            "targets": batch.actions, "mask": batch.mask, "valid_steps": batch.valid_steps}


def hf_config(s: dict[str, Any], state_dim: int, num_actions: int) -> Any:
    from transformers import DecisionTransformerConfig

    d = s["embed_dim"]
    return DecisionTransformerConfig(
        state_dim=state_dim, act_dim=num_actions, hidden_size=d, n_layer=s["n_layer"], n_head=s["n_head"],
        n_inner=4 * d, activation_function="gelu", max_ep_len=s["max_timestep"], action_tanh=False,
        n_positions=1, vocab_size=1, bos_token_id=None, eos_token_id=None,
        resid_pdrop=s["dropout"], embd_pdrop=s["dropout"], attn_pdrop=s["dropout"],
        attn_implementation="sdpa")


def build_hf(s: dict[str, Any], state_dim: int, num_actions: int) -> tuple[Any, Any]:
    """(DecisionTransformerModel, AdamW) for settings `s`, the optimizer set up as DT's."""
    import torch
    from transformers import DecisionTransformerModel
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(s["seed"])
    model = DecisionTransformerModel(hf_config(s, state_dim, num_actions)).to(s["device"])
    decay, no_decay = [], []
    for module in model.modules():  # DT._param_groups' rule: Linear (and GPT-2's Conv1D) weights decay
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, (torch.nn.Linear, Conv1D))
            (decay if is_weight else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return model, torch.optim.AdamW(groups, lr=s["lr"], betas=tuple(s["betas"]))


def hf_loss(model: Any, inp: dict[str, Any]) -> Any:
    """DT.losses' action cross-entropy on HF's action_preds: sum over real steps / real steps."""
    import torch.nn.functional as F

    out = model(states=inp["states"], actions=inp["actions"], returns_to_go=inp["returns_to_go"],
                timesteps=inp["timesteps"], attention_mask=inp["attention_mask"], return_dict=True)
    mask = inp["mask"]
    return F.cross_entropy(out.action_preds[mask], inp["targets"][mask], reduction="sum") / max(1, inp["valid_steps"])


def hf_update(model: Any, optimizer: Any, inp: dict[str, Any], max_grad_norm: float) -> float:
    """One training update on HF's side, step for step as DT.update."""
    import torch

    model.train()
    loss = hf_loss(model, inp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def parameter_counts(s: dict[str, Any], state_dim: int, num_actions: int) -> dict[str, dict[str, int]]:
    """Both models' parameter counts: total, and without the timestep table (which is most of a
    small DT's parameters and the same size on both sides)."""
    from gymnasium import spaces
    import numpy as np

    agent = build_rlsuite({**s, "device": "cpu"}, spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
                          spaces.Discrete(num_actions))
    hf, _ = build_hf({**s, "device": "cpu"}, state_dim, num_actions)
    ours = sum(p.numel() for p in agent.model.parameters())
    theirs = sum(p.numel() for p in hf.parameters())
    return {"rlsuite": {"total": ours, "without_timestep_table": ours - agent.model.timestep_embed.weight.numel()},
            "hf": {"total": theirs, "without_timestep_table": theirs - hf.embed_timestep.weight.numel()}}


def hf_side(s: dict[str, Any], batches: list[Any], observation_space: Any, action_space: Any) -> dict[str, Any]:
    """The worker's HF side: its update on pool batch i, its parameter count, attention and versions."""
    import transformers

    n = int(action_space.n)
    model, optimizer = build_hf(s, int(math.prod(observation_space.shape)), n)
    inputs = [hf_inputs(b, n, s["max_timestep"]) for b in batches]

    def step(i: int) -> float:
        return hf_update(model, optimizer, inputs[i % len(inputs)], s["max_grad_norm"])

    return {"step": step, "params": sum(p.numel() for p in model.parameters()),
            "attention": model.config._attn_implementation, "versions": {"transformers": transformers.__version__}}
