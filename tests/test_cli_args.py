"""Every CLI argument is validated, and every filesystem error is one line.

A bad argument ends in exactly one line on stderr and exit code 2, before anything is written;
Ctrl-C ends in one line and exit code 130.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsuite.cli import main

RLSUITE = [sys.executable, "-m", "rlsuite.cli"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A short real CartPole run (config, checkpoint, eval.jsonl, TensorBoard events)."""
    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    code = main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "600", "--set", "agent.learning_starts=200",
                 "--set", "train.eval_episodes=1", "--set", "train.torch_threads=1", "--no-progress",
                 "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def one_line_error(capsys, argv: list[str], message: str, code: int = 2) -> str:
    capsys.readouterr()
    got = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, (out, err)
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- sweep


@pytest.mark.parametrize("argv, message", [
    (["--grid", "agent.lr="], "no values after '='"),
    (["--grid", "agent.lr=1e-3,,2e-3"], "an empty value"),
    (["--grid", "agent.lr=1e-3,2e-3,"], "an empty value"),
    (["--grid", "=1,2"], "no key"),
    (["--grid", "agent.lr=1e-3,1e-3"], "given twice"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "-2"], "--jobs must be at least 1"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--seeds", ""], "--seeds must be"),
    (["--seeds", "1,,2"], "--seeds must be"),
    (["--seeds", "1,1"], "names a seed twice"),
])
def test_bad_sweep_arguments_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    one_line_error(capsys, ["sweep", "dqn-classic", "--env", "CartPole-v1", "--out", str(out), *argv], message)
    assert not out.exists()


# ----------------------------------------------------------------------------- eval


@pytest.mark.parametrize("argv, message", [
    (["--epsilon", "2"], "--epsilon is a probability"),
    (["--epsilon", "-0.1"], "--epsilon is a probability"),
    (["--epsilon", "nan"], "--epsilon is a probability"),
    (["--episodes", "0"], "--episodes must be at least 1"),
    (["--num-envs", "0"], "--num-envs must be at least 1"),
])
def test_bad_eval_arguments_write_nothing(small_run, capsys, argv, message):
    before = (small_run / "eval.jsonl").read_text()
    one_line_error(capsys, ["eval", str(small_run), *argv], message)
    assert (small_run / "eval.jsonl").read_text() == before


def test_ctrl_c_during_eval_is_one_line_and_exit_130(small_run):
    proc = subprocess.Popen([*RLSUITE, "eval", str(small_run), "--episodes", "100000", "--num-envs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert lines == ["rlsuite: interrupted"], err


# ----------------------------------------------------------------------------- compare


def test_compare_refuses_an_unknown_group_by_key(small_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    line = one_line_error(capsys, ["compare", str(small_run), "--out", str(out), "--group-by", "env.nosuch"],
                          "--group-by 'env.nosuch': no run's config has this key")
    assert "did you mean" in line
    assert not out.exists()


def test_compare_refuses_a_tag_no_run_logged(small_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    one_line_error(capsys, ["compare", str(small_run), "--out", str(out), "--tags", "no/such/tag"],
                   "--tags 'no/such/tag': no run logged this TensorBoard tag")
    line = one_line_error(capsys, ["compare", str(small_run), "--out", str(out),
                                   "--tags", "charts/eval_mean,charts/eval_maen"], "charts/eval_maen")
    assert "did you mean charts/eval_mean" in line
    assert not out.exists()
    assert main(["compare", str(small_run), "--out", str(out), "--tags", "charts/eval_mean"]) == 0
