"""`rlsuite export --sparse`: write a trained agent with only its surviving (nonzero) weights.

The export is an ordinary rlsuite checkpoint (same header, so `rlsuite eval` and the space checks
work on it) whose agent state holds just the online network, every kernel with zeros stored as
(flat int32 indices, values) and everything else dense. No optimizer, target or replay state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlsuite.run import checkpoint
from rlsuite.errors import UserError


def pack(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Kernels that have zeros -> {'shape', 'indices', 'values'}; other tensors kept dense."""
    packed: dict[str, Any] = {}
    for name, tensor in state.items():
        if tensor.dim() > 1 and bool((tensor == 0).any()):
            flat = tensor.flatten()
            indices = torch.nonzero(flat, as_tuple=True)[0].to(torch.int32)
            packed[name] = {"shape": list(tensor.shape), "indices": indices, "values": flat[indices.long()].clone()}
        else:
            packed[name] = tensor.clone()
    return packed


def unpack(packed: dict[str, Any]) -> dict[str, torch.Tensor]:
    state = {}
    for name, item in packed.items():
        if isinstance(item, dict):
            dense = torch.zeros(item["shape"], dtype=item["values"].dtype).flatten()
            dense[item["indices"].long()] = item["values"]
            state[name] = dense.view(item["shape"])
        else:
            state[name] = item
    return state


def nbytes(item: Any) -> int:
    if isinstance(item, dict):
        return item["indices"].numel() * item["indices"].element_size() + item["values"].numel() * item["values"].element_size()
    return item.numel() * item.element_size()


PACKED = "packed"  # the agent entry of an export: the acting network, kernels as (indices, values)


def export_sparse(target: str | Path, out: Path) -> dict[str, Any]:
    """Export the latest checkpoint of a run (or a checkpoint file) to `out`; returns size figures."""
    from rlsuite.agents import agent_classes

    source = checkpoint.find(target)
    data = checkpoint.load(source)
    key = agent_classes(str(data.get("algo", "")))[0].EXPORT_KEY  # the acting network's state-dict entry
    online = data.get("agent", {}).get(key)
    if online is None:
        raise UserError(f"{source} holds no '{key}' network to export (is it already an export?)")
    packed = pack(online)
    payload = {k: data[k] for k in ("algo", "signature", "config", "step")}
    payload.update(agent={PACKED: packed}, exported_from=str(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(out, lambda fh: torch.save({"format": checkpoint.FORMAT, **payload}, fh))
    dense_bytes = sum(t.numel() * t.element_size() for t in online.values())
    kept_bytes = sum(nbytes(item) for item in packed.values())
    weights = sum(t.numel() for t in online.values())
    nonzero = sum(int((t != 0).sum()) for t in online.values())
    return {"source": str(source), "export": str(out), "parameters": weights, "nonzero": nonzero,
            "dense_bytes": dense_bytes, "sparse_bytes": kept_bytes, "file_bytes": out.stat().st_size,
            "saved": 1.0 - kept_bytes / dense_bytes}


def export_merged_lora(target: str | Path, out: Path) -> dict[str, Any]:
    """Export a LoRA fine-tuned offline run (agent.lora.target set) with every adapter folded into
    its weight (W0 + (alpha / r) B A, rlsuite.nn.lora.merge_lora): a plain model of the parent's
    shape whose config says lora.target = none. `rlsuite eval` takes it like any checkpoint."""
    from rlsuite import config
    from rlsuite.agents import agent_classes
    from rlsuite.nn.lora import merge_lora

    source = checkpoint.find(target)
    data = checkpoint.load(source)
    cfg = config.empty_run_config(str(data.get("algo", "")))
    config.apply_file(cfg, {k: v for k, v in data["config"].items() if k in config.SECTIONS}, str(source))
    if getattr(getattr(cfg.agent, "lora", None), "target", "none") == "none":
        raise UserError(f"{source} has no LoRA adapters to merge (agent.lora.target is none)")
    obs_space, act_space = _spaces(data)
    agent = agent_classes(cfg.algo)[0](cfg.agent, obs_space, act_space, "cpu", seed=cfg.train.seed)
    agent.load_state_dict(data["agent"])
    merged = merge_lora(agent.model)
    cfg.agent.lora.target = "none"
    state = {"model": agent.model.state_dict(), "num_updates": agent.num_updates, "rng": agent.rng.bit_generator.state}
    payload = {k: data[k] for k in ("algo", "signature", "step", "games") if k in data}
    payload.update(config=config.to_dict(cfg), agent=state, exported_from=str(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(out, lambda fh: torch.save({"format": checkpoint.FORMAT, **payload}, fh))
    return {"source": str(source), "export": str(out), "merged": merged,
            "parameters": sum(t.numel() for t in state["model"].values())}


def _spaces(data: dict[str, Any]) -> tuple[Any, Any]:
    """The observation and action spaces of an offline checkpoint, from its first evaluation game's env."""
    from rlsuite import config
    from rlsuite.envs import EnvConfig
    from rlsuite.envs import make as make_env

    env_cfg = EnvConfig()
    config.apply_table(env_cfg, data["games"][0]["env"], "env.", "the checkpoint")
    env = make_env(env_cfg, 1, 0, evaluation=True)
    try:
        return env.single_observation_space, env.single_action_space
    finally:
        env.close()
