"""What both sides of `rlsuite bench dt` are built from: the model sizes, one measurement's settings,
rlsuite's config for them and the DT agent it builds (which the HF side's parameter count is held
to). rlsuite.bench.dt runs the measurements; rlsuite.bench.dt_peers is Hugging Face's side."""
from __future__ import annotations

from typing import Any

from rlsuite.errors import UserError

PARAM_TOLERANCE = 0.01
"""Largest relative difference of the two models' parameter counts that the test accepts."""

SIZES: dict[str, dict[str, Any]] = {
    # the `dt` preset (rlsuite/presets/agents/dt.toml): d 128, 3 layers, 4 heads, K 20, batch 64
    "default": {"embed_dim": 128, "n_layer": 3, "n_head": 4, "context": 20, "batch_size": 64,
                "warmup": 5, "updates": 30},
    # a quick run (and the test's size)
    "small": {"embed_dim": 64, "n_layer": 2, "n_head": 2, "context": 10, "batch_size": 16,
              "warmup": 2, "updates": 10},
}
COMMON: dict[str, Any] = {
    "env": "CartPole-v1", "dataset_steps": 4_000, "pool": 8, "seed": 0, "dropout": 0.1,
    "max_timestep": 10_000,  # rlsuite's TransformerConfig default (the preset leaves it)
    "lr": 3e-4, "betas": (0.9, 0.95), "weight_decay": 0.1, "max_grad_norm": 1.0, "threads": 2,
}


def settings(size: str = "default", *, updates: int | None = None, device: str = "cpu",
             threads: int | None = None) -> dict[str, Any]:
    """The one description of a measurement that both sides are built from."""
    if size not in SIZES:
        raise UserError(f"unknown bench dt size {size!r}; choose from {', '.join(SIZES)}")
    s = {**COMMON, **SIZES[size], "size": size, "device": device}
    if updates is not None:
        s["updates"] = int(updates)
    if threads is not None:
        s["threads"] = int(threads)
    s["tokens_per_update"] = 3 * s["context"] * s["batch_size"]
    return s


def rlsuite_config(s: dict[str, Any], extra: tuple[str, ...] | list[str] = ()) -> Any:
    """rlsuite's RunConfig for settings `s`: the dt preset with every shared setting overridden
    (then `extra`: --fast keys, read by `fast_plan`)."""
    from rlsuite import config
    overrides = [
        f"agent.model.embed_dim={s['embed_dim']}", f"agent.model.n_layer={s['n_layer']}",
        f"agent.model.n_head={s['n_head']}", f"agent.model.context={s['context']}",
        f"agent.model.dropout={s['dropout']}", f"agent.model.max_timestep={s['max_timestep']}",
        "agent.model.returns=continuous", "agent.model.return_scale=1.0",
        f"agent.batch_size={s['batch_size']}", f"agent.lr={s['lr']}", "agent.lr_schedule=constant",
        "agent.warmup_updates=0", f"agent.weight_decay={s['weight_decay']}",
        "agent.betas=" + ",".join(str(v) for v in s["betas"]), f"agent.max_grad_norm={s['max_grad_norm']}",
        "agent.encoder.kind=mlp", "agent.encoder.hidden=", "agent.encoder.width=1",
        "agent.gmp.sparsity=0", "agent.nap.norm=none", "agent.nap.project=false",
        f"train.seed={s['seed']}", f"train.device={s['device']}", f"train.torch_threads={s['threads']}",
    ]
    return config.build_run_config("dt", s["env"], overrides + list(extra))


FFN_KEYS = ("agent.model.ffn", "agent.model.ffn_rank", "agent.model.ffn_blocks", "agent.model.ffn_first_dense",
            "agent.model.sgt_ratio", "agent.model.sgt_schedule")
"""The model keys `--fast` may carry beside the speed keys: a structured FFN (rlsuite.nn.structured)
for the fast mode, measured against the fp32 mode's dense FFN (`--fast agent.model.ffn=lowrank`)."""


def split_ffn(fast: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--fast` assignments split into (speed keys, structured-FFN keys: FFN_KEYS)."""
    ffn = tuple(a for a in fast if a.split("=", 1)[0].strip() in FFN_KEYS)
    return tuple(a for a in fast if a not in ffn), ffn


def build_rlsuite(s: dict[str, Any], observation_space: Any, action_space: Any, extra: tuple[str, ...] = ()) -> Any:
    """The DT agent `rlsuite train dt` would build for settings `s` (with `extra` overrides: FFN keys)."""
    from rlsuite.agents.dt import DT

    cfg = rlsuite_config(s, extra)
    return DT(cfg.agent, observation_space, action_space, device=s["device"], seed=s["seed"])
