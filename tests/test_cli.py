"""Smoke tests of every CLI command, and every user mistake: one line on stderr, exit code 2."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlsuite.cli import main
from tests.conftest import TINY


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One short real CartPole run shared by the smoke tests below."""
    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    code = main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "1500", "--run-dir", str(run_dir),
                 *sets(TINY)])
    assert code == 0
    return run_dir


def test_help_is_generated_from_config_docstrings(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "agent.lr = 6.25e-05" in out and "Adam learning rate" in out
    assert "agent.encoder.width" in out and "replay.prioritized" in out and "env.sticky_action_prob" in out


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "dqn-classic" in out and "atari-dopamine" in out and "pong" in out and "montezuma_revenge" in out and "NetHackScore-v0" in out


def test_train_writes_a_complete_run_directory(trained_run, capsys):
    assert (trained_run / "config.toml").is_file()
    assert list(trained_run.glob("events.out.tfevents.*"))
    assert (trained_run / "checkpoints" / "latest").is_file()
    record = json.loads((trained_run / "eval.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 1500 and record["episodes"] == 2


def test_tensorboard_has_the_documented_tags(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"charts/episodic_return", "charts/episodic_length", "losses/td", "losses/q_values",
            "charts/epsilon", "charts/eval_mean", "plasticity/param_norm", "plasticity/dormant_fraction",
            "plasticity/srank", "plasticity/grad_norm", "charts/learning_rate",
            "plasticity/weight_norm/encoder.net.1", "plasticity/effective_lr/encoder.net.1",
            "plasticity/grad_norm/head"} <= tags


def test_eval_prints_the_table_and_appends_jsonl(trained_run, capsys):
    code, out, _ = run_cli(capsys, "eval", str(trained_run), "--episodes", "3", "--num-envs", "2")
    assert code == 0
    for word in ("mean", "median", "iqm", "iqm_ci_lo", "min", "max"):
        assert word in out
    last = json.loads((trained_run / "eval.jsonl").read_text().splitlines()[-1])
    assert last["source"] == "rlsuite eval" and last["episodes"] == 3


def test_relaunch_from_config_and_resume(trained_run, tmp_path, capsys):
    copy = tmp_path / "relaunched"
    code, out, _ = run_cli(capsys, "train", "--config", str(trained_run / "config.toml"), "--steps", "600",
                           "--run-dir", str(copy))
    assert code == 0 and (copy / "checkpoints" / "latest").is_file()
    code, out, _ = run_cli(capsys, "train", "--resume", str(copy), "--steps", "900")
    assert code == 0 and "resumed from" in out
    assert torch.load(copy / "checkpoints" / (copy / "checkpoints" / "latest").read_text(),
                      weights_only=False)["step"] == 900


# ----------------------------------------------------------------------------- user mistakes


def assert_user_error(capsys, argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


def test_unknown_env_suggests_close_matches(capsys):
    assert_user_error(capsys, ["train", "dqn", "--env", "pongg"], "did you mean")


def test_unknown_preset(capsys):
    assert_user_error(capsys, ["train", "dqm", "--env", "pong"], "unknown agent or preset 'dqm'")


def test_bad_override_key_and_type(capsys):
    assert_user_error(capsys, ["train", "dqn", "--env", "pong", "--set", "agent.lrr=1"], "unknown config key 'agent.lrr'")
    assert_user_error(capsys, ["train", "dqn", "--env", "pong", "--set", "agent.lr=fast"], "not a valid float")


def test_eval_of_missing_corrupt_and_truncated_checkpoints(trained_run, tmp_path, capsys):
    assert_user_error(capsys, ["eval", str(tmp_path / "nowhere")], "no such run or checkpoint")
    ckpt = trained_run / "checkpoints" / (trained_run / "checkpoints" / "latest").read_text()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    assert_user_error(capsys, ["eval", str(truncated)], "corrupt or truncated")
    for seed in range(5):  # fixed seeds: random bytes can hit any unpickling error, MemoryError included
        garbage = tmp_path / f"garbage{seed}.pt"
        garbage.write_bytes(random.Random(seed).randbytes(4096))
        assert_user_error(capsys, ["eval", str(garbage)], "corrupt or truncated")


def test_eval_on_an_env_with_other_spaces(trained_run, capsys):
    assert_user_error(capsys, ["eval", str(trained_run), "--env", "Acrobot-v1", "--episodes", "1"],
                      "with observation space")


def test_checkpoint_of_another_agent(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / (trained_run / "checkpoints" / "latest").read_text()
    data = torch.load(ckpt, weights_only=False)
    data["algo"] = "nosuch"
    other = tmp_path / "other.pt"
    torch.save(data, other)
    assert_user_error(capsys, ["eval", str(other)], "unknown agent 'nosuch'")
    data["algo"] = "ppo"
    # A run directory whose config says dqn but whose checkpoint is from another agent.
    run = tmp_path / "mixed"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text((trained_run / "config.toml").read_text())
    torch.save(data, run / "checkpoints" / "ckpt_000000000001.pt")
    assert_user_error(capsys, ["train", "--resume", str(run)], "is from agent 'ppo', not 'dqn'")


def test_existing_run_dir_is_not_overwritten(trained_run, capsys):
    assert_user_error(capsys, ["train", "dqn-classic", "--run-dir", str(trained_run)], "already holds a run")


def test_missing_optional_dependency_is_named(tmp_path):
    # Hide nle from the interpreter the way a machine without it would look.
    code = ("import sys; sys.modules['nle'] = None; from rlsuite.cli import main; "
            "sys.exit(main(['train', 'dqn', '--env', 'NetHackScore-v0', '--steps', '10', "
            f"'--run-dir', {str(tmp_path / 'r')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "optional dependency 'nle' is missing" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- signals and divergence


def test_sigint_writes_a_checkpoint_and_exits_zero(tmp_path):
    run_dir = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "rlsuite.cli", "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "10000000",
           "--run-dir", str(run_dir), *sets(TINY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(run_dir.glob("events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # let it train past learning_starts
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted at step" in out
    data = torch.load(run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text(), weights_only=False)
    assert data["step"] > 0


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "diverged"
    code, out, err = run_cli(capsys, "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "20000",
                             "--run-dir", str(run_dir), *sets(TINY), "--set", "agent.lr=1e30",
                             "--set", "agent.max_grad_norm=0", "--set", "train.checkpoint_every=100")
    assert code == 1
    assert "training stopped: TD loss became" in err and "last good checkpoint" in err
    latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()
    data = torch.load(latest, weights_only=False)
    assert data["step"] >= 200 and str(latest) in err  # the message names the checkpoint it kept
    assert all(torch.isfinite(t).all() for t in data["agent"]["online"].values())
