"""Determinism and exact resume of the training loop on a real CartPole env (CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlsuite import config
from rlsuite.loops.online import advance, build_session, restore_checkpoint, save_checkpoint
from tests.conftest import TINY


def make_session(run_dir: Path, seed: int = 3, extra: tuple[str, ...] = ()):
    cfg = config.build_run_config("dqn-classic", "CartPole-v1",
                                  TINY + [f"train.seed={seed}", "train.save_replay=true", *extra])
    session = build_session(cfg, run_dir)
    session.obs, _ = session.env.reset(seed=cfg.train.seed)
    return session


def record(session, steps: int) -> tuple[list[np.ndarray], list[float]]:
    actions, losses = [], []
    while session.step < steps:
        result = advance(session)
        actions.append(result.actions.copy())
        if result.metrics is not None:
            losses.append(float(result.metrics["losses/td"]))
    return actions, losses


def test_same_seed_gives_identical_actions_and_losses(tmp_path):
    a_actions, a_losses = record(make_session(tmp_path / "a"), 2000)
    b_actions, b_losses = record(make_session(tmp_path / "b"), 2000)
    assert len(a_losses) == 900  # (2000 - 200 warm-up) / train_freq 2: learning really ran
    assert np.array_equal(np.concatenate(a_actions), np.concatenate(b_actions))
    assert a_losses == b_losses
    # and the seed matters: a different seed acts differently
    c_actions, _ = record(make_session(tmp_path / "c", seed=4), 2000)
    assert not np.array_equal(np.concatenate(a_actions), np.concatenate(c_actions))


# NaP (norms, projection every 3 updates so the phase matters), GMP and a decaying learning rate
# together: their radii, masks, counters and schedule must all come back from the checkpoint.
NAP_GMP = ("agent.nap.norm=layer", "agent.nap.project=true", "agent.nap.project_every=3",
           "agent.gmp.sparsity=0.8", "agent.gmp.update_freq=50", "agent.lr_schedule=linear",
           "train.total_steps=2000")


@pytest.mark.parametrize("extra", [(), NAP_GMP], ids=["dense", "nap+gmp+lr-decay"])
def test_resume_equals_uninterrupted_run(tmp_path, extra):
    full = make_session(tmp_path / "full", extra=extra)
    record(full, 1000)
    full_actions, full_losses = record(full, 2000)

    first = make_session(tmp_path / "split", extra=extra)
    record(first, 1000)
    save_checkpoint(first)
    resumed = make_session(tmp_path / "split", seed=3, extra=extra)
    messages: list[str] = []
    restore_checkpoint(resumed, messages.append)
    assert resumed.step == 1000 and "(exact)" in messages[-1]
    actions, losses = record(resumed, 2000)
    assert np.array_equal(np.concatenate(actions), np.concatenate(full_actions))
    assert losses == full_losses and len(losses) > 400
