"""Run directories written by an earlier release still work: tests/data/release-runs holds a DQN
and a PPO run on CartPole and a DT run on CartPole datasets, written by rlsuite before its modules
were grouped into subpackages (checkpoints are pickles, so a moved class would break them). They
must evaluate, list, and (the online runs) resume and extend."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlsuite.cli import main

RELEASE = Path(__file__).parent / "data" / "release-runs"


@pytest.fixture
def runs(tmp_path):
    shutil.copytree(RELEASE, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("name", ["dqn-cartpole", "ppo-cartpole", "dt-cartpole"])
def test_an_old_run_evaluates(runs, name, capsys):
    assert main(["eval", str(runs / name), "--episodes", "2"]) == 0
    assert "CartPole-v1" in capsys.readouterr().out


@pytest.mark.parametrize("name,steps", [("dqn-cartpole", 1500), ("ppo-cartpole", 1280)])
def test_an_old_online_run_resumes_and_extends(runs, name, steps):
    assert main(["train", "--resume", str(runs / name), "--steps", str(steps), "--no-progress"]) == 0
    assert (runs / name / "checkpoints" / f"ckpt_{steps:012d}.pt").exists()
    last = json.loads((runs / name / "eval.jsonl").read_text().splitlines()[-1])
    assert last["step"] == steps


def test_old_runs_are_listed(runs, capsys):
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("dqn-cartpole", "ppo-cartpole", "dt-cartpole"))
