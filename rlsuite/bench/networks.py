"""`rlsuite bench networks`: what each fast mode does to each agent's network, on this machine.

For the network of each preset below, built exactly as a run builds it, one training forward +
backward (rlsuite.run.speed.time_updates: the modes take turns, each keeps its fastest of 5 rounds)
in fp32 NCHW eager, and as ratios against it: bf16 autocast, channels_last, both, and
torch.compile (fp32, and bf16). The batch is what the agent's update feeds the network (DQN:
agent.batch_size; PPO: one minibatch; the DT: agent.batch_size windows of K steps). The last
column is what `train.precision=auto`, `train.memory_format=auto` pick from these times
(rlsuite.run.speed.fastest: the fastest eager mode, if it beats fp32 NCHW by AUTO_MARGIN, 25%).

This answers "which mode for which network on which device" from measurement: bf16 and
channels_last pay off for the Atari conv encoders on CPUs with bf16 units and lose on small MLPs
and the MinAtar CNN, whose cost is per-op overhead. Optimizer steps, replay and env stepping are
not in it: `rlsuite bench dqn | ppo | dt` time whole runs.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from rlsuite.run.speed import SpeedPlan, bf16_problem, fastest, has_conv, time_updates

# (label, agent preset, env id, the networks' role in one update)
NETWORKS = (
    ("MLP 64-64 (dqn-classic)", "dqn-classic", "CartPole-v1"),
    ("MinAtar CNN (dqn-minatar)", "dqn-minatar", "minatar:breakout"),
    ("Nature CNN (dqn, Pong)", "dqn", "pong"),
    ("Nature CNN minibatch (ppo-atari, Pong)", "ppo-atari", "pong"),
    ("Decision Transformer (dt, MinAtar Breakout)", "dt", "minatar:breakout"),
)
QUICK = NETWORKS[:2]


def build_probe(preset: str, env_id: str, device: torch.device) -> tuple[Any, tuple[Any, ...], str]:
    """(network, args of one training forward, batch description) of `preset` on `env_id`."""
    from rlsuite import config
    from rlsuite.agents import agent_classes
    from rlsuite.agents.base import StorageContext
    from rlsuite.envs import make as make_env

    cfg = config.build_run_config(preset, env_id)
    env = make_env(cfg.env, 1, 0)
    try:
        agent_cls, _ = agent_classes(cfg.algo)
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, device, seed=1)
        if hasattr(agent, "begin"):
            cfg.replay.capacity = min(cfg.replay.capacity, 1_000)  # only the probe's shapes matter
            agent.begin(StorageContext(cfg, cfg.train.num_envs, env.single_observation_space, env.frame_stack, 0))
    finally:
        env.close()
    module, args = agent.speed_probe()
    first = args[0]
    rows = first.shape[0] if torch.is_tensor(first) else len(next(iter(first.values())))
    shape = tuple(first.shape[:2]) if cfg.algo == "dt" else (rows,)
    return module, args, "x".join(str(n) for n in shape)


def measure(label: str, preset: str, env_id: str, device: torch.device, rounds: int) -> dict[str, Any]:
    """One record: the fp32 time and every mode's speed-up for one network."""
    module, args, batch = build_probe(preset, env_id, device)
    modes = {"bf16": SpeedPlan("bf16", device_type=device.type),
             "channels_last": SpeedPlan(memory_format="channels_last", device_type=device.type),
             "bf16+channels_last": SpeedPlan("bf16", "channels_last", device_type=device.type),
             "compiled": SpeedPlan(compile=True, device_type=device.type),
             "compiled+bf16": SpeedPlan("bf16", compile=True, device_type=device.type)}
    if not has_conv(module):
        modes = {k: v for k, v in modes.items() if "channels_last" not in k}
    if bf16_problem(device) is not None:  # emulated bf16 says nothing about bf16 hardware
        modes = {k: v for k, v in modes.items() if "bf16" not in k}
    fp32 = SpeedPlan(device_type=device.type)
    started = time.perf_counter()
    seconds = time_updates(module, args, device, [fp32, *modes.values()], rounds, budget_s=None)
    eager = {(p.precision, p.memory_format): t for p, t in seconds.items() if not p.compile}
    pick = fastest(eager, ("fp32", "contiguous"))  # what train.precision=auto, memory_format=auto take
    return {"bench": "networks", "network": label, "preset": preset, "env": env_id, "batch": batch,
            "parameters": sum(p.numel() for p in module.parameters()), "device": str(device),
            "threads": torch.get_num_threads(), "fp32_ms": seconds[fp32] * 1e3,
            "speedup": {name: seconds[fp32] / seconds[plan] for name, plan in modes.items()},
            "auto_pick": pick[0] + ("+channels_last" if pick[1] == "channels_last" else ""),
            "seconds": time.perf_counter() - started}


def bench_networks(quick: bool = False, device: str = "cpu", threads: int = 1, rounds: int | None = None
                   ) -> list[dict[str, Any]]:
    """Records of every network in NETWORKS (QUICK with `quick`), printed as a table on the way."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    rounds = rounds or (2 if quick else 5)
    records = [measure(*row, dev, rounds) for row in (QUICK if quick else NETWORKS)]
    print(format_table(records), flush=True)
    return records


def format_table(records: list[dict[str, Any]]) -> str:
    names = ["bf16", "channels_last", "bf16+channels_last", "compiled", "compiled+bf16"]
    head = ["network", "batch", "fp32 ms", *names, "auto picks"]
    rows = [[r["network"], r["batch"], f"{r['fp32_ms']:.2f}",
             *[f"{r['speedup'][n]:.2f}x" if n in r["speedup"] else "-" for n in names], r["auto_pick"]]
            for r in records]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    first = records[0] if records else {"device": "?", "threads": "?"}
    title = (f"bench networks: one forward + backward per update, speed-up against fp32 NCHW eager "
             f"({first['device']}, {first['threads']} thread(s))")
    return "\n".join([title, line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])
