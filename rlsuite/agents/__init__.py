"""Agents, one package (or file) each. `agent_classes(name)` maps a CLI name to (agent class, config class)."""
from __future__ import annotations

import importlib

from rlsuite.errors import UserError

# name -> (module, agent class, config class); one line per agent, no registry machinery.
AGENTS = {
    "dqn": ("rlsuite.agents.dqn", "DQN", "DQNConfig"),
    "ppo": ("rlsuite.agents.ppo", "PPO", "PPOConfig"),
    "dt": ("rlsuite.agents.dt", "DT", "DTConfig"),
    "bc": ("rlsuite.agents.bc", "BC", "BCConfig"),
}


def agent_classes(name: str) -> tuple[type, type]:
    if name not in AGENTS:
        raise UserError(f"unknown agent '{name}'; available: {', '.join(AGENTS)}")
    module_name, agent_name, config_name = AGENTS[name]
    module = importlib.import_module(module_name)
    return getattr(module, agent_name), getattr(module, config_name)
