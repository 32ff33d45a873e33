"""LoRA (Hu et al. 2021) for DT-Mem's memory fine-tuning (Kang et al., ICML 2024;
DTMEM_RETENTION.md §1.4): a frozen linear layer W0 plus a trained low-rank update,

    y = W0 x + b + (alpha / r) * B A x,    A (r x in) Kaiming-uniform, B (out x r) zeros,

so the update starts at exactly zero and only A and B train. `add_lora` wraps the chosen
`nn.Linear`s of a model in place ('memory': the working memory's projections only, the paper's
method; 'all': the transformer stack's, i.e. every linear layer of the blocks and of the working
memory, as the released code's `add_lora(dt_model.module.transformer)`, whose blocks hold its memory:
not the observation embedding, the encoder or the heads);
`merge_lora` folds each update into its weight (W0 + (alpha / r) B A) and unwraps it, which is what
`rlsuite export --merge-lora` writes.

A small module rather than Hugging Face `peft`: peft's injection renames every wrapped weight
(`base_layer`, `lora_A.default`), which would make an rlsuite checkpoint depend on peft's naming;
this keeps peft's semantics (rank r, alpha, B = 0 at the start, scaling alpha / r, frozen base).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rlsuite.config.fields import choice, ranged

TARGETS = ("none", "memory", "all")


@dataclass
class LoRAConfig:
    """Low-rank adapters for fine-tuning (rlsuite finetune --lora)."""

    target: str = choice("none", *TARGETS)
    """'memory': adapters on the working memory's linear layers only (DT-Mem's LoRA memory fine-tuning, per model or per block); 'all': on every linear layer of the transformer blocks and the working memory (the released code adapts its GPT stack, which holds the memory; the observation encoder and embedding and the action and return heads get none); 'none': no adapters (full fine-tuning when starting from a parent). Adapter parameters get no weight decay (rlsuite decays linear and conv weights only), where the released code's AdamW applies its default 0.01 to them."""
    rank: int = ranged(4, ge=1)
    """r: rank of the update B A (DT-Mem: 4)."""
    alpha: float = ranged(1.0, gt=0)
    """alpha: the update is scaled by alpha / r (DT-Mem: 1, so 0.25 at rank 4)."""
    lr_scale: float = ranged(1.0, gt=0, le=1000)
    """The adapters' learning rate as a multiple of agent.lr (the schedule applies to both). LoRA practice trains adapters at a larger rate than full fine-tuning, since B starts at zero and (alpha / r) shrinks each step (Hu et al. 2021 used 2e-4 to 5e-4 for GPT-scale models); DT-Mem's released code uses the parent's rate (1)."""


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus (alpha / r) B A; see the module docstring."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's (and peft's) default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain linear layer computing the same function."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _is_memory(name: str) -> bool:
    """A layer of a working memory: the model's (`memory.*`) or a block's (`blocks.N.memory.*`)."""
    return name.startswith("memory.") or ".memory." in name


def _targets(model: nn.Module, target: str) -> list[str]:
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or ".base" in name:
            continue
        in_stack = name.startswith("blocks.") or _is_memory(name)  # the GPT stack and its memory
        if (target == "all" and in_stack) or (target == "memory" and _is_memory(name)):
            names.append(name)
    return names


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def add_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Freeze every parameter of `model`, wrap the target linear layers with adapters (the only
    trainable parameters); returns the wrapped layers' names. ValueError when nothing matches."""
    names = _targets(model, cfg.target)
    if not names:
        raise ValueError(f"lora.target={cfg.target}: the model has no such linear layer"
                         + (" (no working memory: agent.memory.placement is none)" if cfg.target == "memory" else ""))
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        _set(model, name, LoRALinear(model.get_submodule(name), cfg.rank, cfg.alpha))
    return names


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight, in place; returns how many were merged."""
    wrapped = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in wrapped:
        _set(model, name, model.get_submodule(name).merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return len(wrapped)


def base_state(state: dict[str, torch.Tensor], wrapped: list[str]) -> dict[str, torch.Tensor]:
    """A plain model's state dict renamed for the wrapped model (`x.weight` -> `x.base.weight`)."""
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        out[f"{module}.base.{leaf}" if module in wrapped else key] = value
    return out
