"""Shared fixtures: small, fast run configurations on real environments."""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# CI runs the same examples every time, so a red run can be reproduced exactly; locally the
# examples vary, which keeps finding new cases.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Tiny CartPole DQN: learning starts after 200 steps so a few thousand steps exercise every path.
TINY = ["agent.learning_starts=200", "agent.batch_size=16", "agent.target_update_period=100",
        "agent.encoder.hidden=32,32", "replay.capacity=5000", "train.eval_episodes=2", "train.eval_num_envs=2",
        "train.progress=false", "train.torch_threads=1", "train.log_every=100",
        "train.diagnostics_every=300"]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
