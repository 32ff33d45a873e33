"""Checkpoint files: atomic writes, keep-last-N, damage and mismatch detection."""
from __future__ import annotations

import random

import pytest
import torch

from rlsuite.run import checkpoint
from rlsuite.errors import UserError


def _payload(step: int) -> dict:
    return {"algo": "dqn", "signature": {"observation_space": "obs", "action_space": "Discrete(2)"},
            "step": step, "weights": torch.arange(10.0) * step}


def test_save_keeps_last_n_and_latest_pointer(tmp_path):
    for step in (100, 200, 300, 400):
        checkpoint.save(tmp_path, step, _payload(step), keep=2)
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("ckpt_*.pt"))
    assert files == ["ckpt_000000000300.pt", "ckpt_000000000400.pt"]
    latest = checkpoint.find(tmp_path)
    assert latest.name == "ckpt_000000000400.pt"
    assert checkpoint.load(latest)["step"] == 400
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files left


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    path = checkpoint.save(tmp_path, 100, _payload(100))
    before = path.read_bytes()

    def explode(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write_bytes(path, explode)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_a_one_line_user_error(tmp_path, damage):
    path = checkpoint.save(tmp_path, 100, _payload(100))
    data = path.read_bytes()
    garbage = random.Random(7).randbytes(2000)
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": garbage, "empty": b""}[damage])
    with pytest.raises(UserError, match="corrupt or truncated") as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


def test_foreign_file_and_missing_run(tmp_path):
    other = tmp_path / "weights.pt"
    torch.save({"state": 1}, other)
    with pytest.raises(UserError, match="not an rlsuite checkpoint"):
        checkpoint.load(other)
    with pytest.raises(UserError, match="no such run or checkpoint"):
        checkpoint.find(tmp_path / "nope")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(UserError, match="no checkpoint in"):
        checkpoint.find(tmp_path / "empty_run")


def test_check_compatible_refuses_other_agent_and_spaces(tmp_path):
    data = _payload(1)
    checkpoint.check_compatible(data, "dqn", data["signature"], tmp_path)
    with pytest.raises(UserError, match="from agent 'dqn', not 'ppo'"):
        checkpoint.check_compatible(data, "ppo", data["signature"], tmp_path)
    with pytest.raises(UserError, match="action space Discrete\\(2\\), but this env has Discrete\\(6\\)"):
        checkpoint.check_compatible(data, "dqn", {**data["signature"], "action_space": "Discrete(6)"}, tmp_path)
