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


def pytest_collection_modifyitems(session, config, items):
    """When the DQN CartPole learning check is among the tests to run, start its runs now, in the
    background (tests/background_runs.py): they then use the core the serial suite leaves idle."""
    if any("cartpole_learning_runs" in getattr(item, "fixturenames", ()) for item in items):
        from tests import test_learning

        import tempfile
        from pathlib import Path

        # pytest's tmp_path_factory (the fixture is not available during collection), else a temp dir
        factory = getattr(config, "_tmp_path_factory", None)
        root = factory.mktemp("cartpole-learning") if factory else Path(tempfile.mkdtemp(prefix="cartpole-learning-"))
        test_learning.BACKGROUND["cartpole"] = test_learning.start_cartpole_learning(root)


def pytest_sessionfinish(session, exitstatus):
    import sys

    module = sys.modules.get("tests.test_learning")
    for pool in getattr(module, "BACKGROUND", {}).values():
        pool.stop()  # an interrupted or failed session leaves no training process behind


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A short real CartPole DQN run (config, one checkpoint, eval.jsonl, TensorBoard events)."""
    from rlsuite.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    code = main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "600", "--set", "agent.learning_starts=200",
                 "--set", "train.eval_episodes=1", "--set", "train.torch_threads=1", "--no-progress",
                 "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def cartpole_datasets(tmp_path_factory):
    """Two real CartPole-v1 datasets for the offline tests, collected once from the committed PPO
    teacher (tests/data/ppo-cartpole-60k.pt): `expert` (2 greedy episodes) and `noisy` (4 episodes
    at epsilon 0.5), with the manifest rlsuite collect writes. Returns their parent directory."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from agent_reference import collect_cartpole_data  # the same recipe the agent references record

    root = tmp_path_factory.mktemp("cartpole-data")
    collect_cartpole_data(root)
    return root


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (small networks run fastest so), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
