"""One process per run directory (the lock), and resumes that never damage their run."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlsuite.run import rundir
from rlsuite.cli import main
from tests.conftest import TINY


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def latest_step(run_dir: Path) -> int:
    name = (run_dir / "checkpoints" / "latest").read_text()
    return torch.load(run_dir / "checkpoints" / name, weights_only=False)["step"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- the lock


def test_two_trainers_on_one_run_dir_exactly_one_runs(tmp_path):
    run_dir = tmp_path / "same"
    cmd = [sys.executable, "-m", "rlsuite.cli", "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "3000",
           "--run-dir", str(run_dir), "--no-progress"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    assert sorted(p.returncode for p, _, _ in results) == [0, 2], [(p.returncode, e) for p, _, e in results]
    winner = next(p for p, _, _ in results if p.returncode == 0)
    (loser_err,) = [err for p, _, err in results if p.returncode == 2]
    line = one_line(loser_err)
    assert f"is in use by pid {winner.pid} on {socket.gethostname()} since " in line, line
    assert len(list(run_dir.glob("config.toml"))) == 1
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert latest_step(run_dir) == 3000
    assert not (run_dir / rundir.LOCK).exists() and rundir.holder(run_dir) is None


def test_lock_names_its_holder_and_refuses_a_second_process(tmp_path, capsys):
    run_dir = tmp_path / "held"
    lock = rundir.acquire(run_dir)  # unregistered, so it conflicts like another process's lock
    code, _, err = run_cli(capsys, "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "300",
                           "--run-dir", str(run_dir), *sets(TINY))
    assert code == 2
    assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in one_line(err)
    assert rundir.holder(run_dir)["pid"] == os.getpid()
    assert sorted(p.name for p in run_dir.iterdir()) == [rundir.LOCK]
    rundir.release(lock)
    assert not (run_dir / rundir.LOCK).exists() and rundir.holder(run_dir) is None


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    pid = dead_pid()
    (run_dir / rundir.LOCK).write_text(f'{{"pid": {pid}, "host": "{socket.gethostname()}", "since": "earlier"}}')
    code, out, _ = run_cli(capsys, "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "300",
                           "--run-dir", str(run_dir), *sets(TINY))
    assert code == 0
    assert f"took over the lock of pid {pid} on {socket.gethostname()}" in out
    assert not (run_dir / rundir.LOCK).exists()


def test_lock_of_a_killed_process_is_released_by_the_kernel(tmp_path):
    run_dir = tmp_path / "killed"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from rlsuite.run import rundir; rundir.acquire(Path(sys.argv[1])); "
                               "print('held', flush=True); time.sleep(120)", str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rundir.RunInUse, match=f"pid {holder.pid}"):
        rundir.acquire(run_dir, wait=0.2)
    holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
    holder.wait()
    assert (run_dir / rundir.LOCK).exists() and rundir.holder(run_dir) is None
    lock = rundir.acquire(run_dir)
    assert lock.stale["pid"] == holder.pid
    rundir.release(lock)


def test_lock_is_released_after_sigint(tmp_path):
    run_dir = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "rlsuite.cli", "train", "dqn-classic", "--env", "CartPole-v1", "--steps", "10000000",
           "--run-dir", str(run_dir), *sets(TINY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(run_dir.glob("events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.2)
    assert rundir.holder(run_dir)["pid"] == proc.pid
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not (run_dir / rundir.LOCK).exists() and rundir.holder(run_dir) is None


def test_sweep_skips_a_run_in_use(tmp_path, capsys):
    out = tmp_path / "sweep"
    lock = rundir.acquire(out / "base" / "s1")
    code, stdout, _ = run_cli(capsys, "sweep", "dqn-classic", "--env", "CartPole-v1", "--seeds", "1",
                              "--steps", "300", "--out", str(out))
    rundir.release(lock)
    assert code == 0
    assert f"skip base s1 (in use by pid {os.getpid()} on {socket.gethostname()})" in stdout
    assert "1 skipped (in use)" in stdout
    assert not (out / "base" / "s1.log").exists()


def test_sweep_hands_its_lock_to_the_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, _ = run_cli(capsys, "sweep", "dqn-classic", "--env", "CartPole-v1", "--seeds", "1",
                              "--steps", "300", "--out", str(out), *sets(TINY))
    assert code == 0 and "1 ok, 0 failed" in stdout
    log = (out / "base" / "s1.log").read_text()
    assert "took over" not in log and "in use" not in log
    assert latest_step(out / "base" / "s1") == 300 and not (out / "base" / "s1" / rundir.LOCK).exists()


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "1500", "--run-dir", str(run_dir),
                 *sets(TINY)]) == 0
    return run_dir


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A private copy of the finished run."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.mark.parametrize("override", ["agent.encoder.hidden=64,64", "agent.dueling=true", "agent.nap.norm=layer",
                                      "env.id=Acrobot-v1", "train.seed=2", "replay.capacity=100"])
def test_resume_refuses_a_config_change_before_writing_anything(run, capsys, override):
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--steps", "2000", "--set", override)
    assert code == 2
    line = one_line(err)
    assert f"cannot resume {run} with {override.split('=')[0]} (" in line, line
    assert snapshot(run) == before
    code, out, _ = run_cli(capsys, "train", "--resume", str(run), "--steps", "1800")  # the run still resumes
    assert code == 0 and "resumed from" in out and latest_step(run) == 1800


def test_resume_refuses_fewer_steps(run, capsys):
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--steps", "10")
    assert code == 2
    assert "train.total_steps 1,500 -> 10: a resume can only extend a run" in one_line(err)
    assert snapshot(run) == before


@pytest.mark.parametrize("extra", [["dqn-classic"], ["--env", "CartPole-v1"], ["--config", "x.toml"],
                                   ["--run-dir", "elsewhere"]], ids=["agent", "env", "config", "run-dir"])
def test_resume_refuses_arguments_it_would_ignore(run, capsys, extra):
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), *extra)
    assert code == 2
    assert "cannot be given with it" in one_line(err)
    assert snapshot(run) == before


def test_resume_of_a_finished_run_does_nothing(run, capsys):
    before = snapshot(run)
    code, out, err = run_cli(capsys, "train", "--resume", str(run), "--set", "train.eval_episodes=3")
    assert code == 0, err
    assert f"{run} is finished (1,500 of 1,500 steps" in out
    assert snapshot(run) == before


def test_resume_extends_a_run_and_logs_the_changes(run, capsys):
    code, out, err = run_cli(capsys, "train", "--resume", str(run), "--steps", "2000",
                             "--set", "train.eval_episodes=3")
    assert code == 0, err
    assert latest_step(run) == 2000
    (line,) = (run / "resume.log").read_text().splitlines()
    assert "resumed at step 1500: train.eval_episodes 2 -> 3, train.total_steps 1500 -> 2000" in line
    assert "total_steps = 2000" in (run / "config.toml").read_text()
    code, out, _ = run_cli(capsys, "train", "--resume", str(run))
    assert code == 0 and "is finished (2,000 of 2,000 steps" in out


# ----------------------------------------------------------------------------- rlsuite runs


def test_runs_lists_running_finished_and_interrupted(finished_run, tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("done", "cut", "live"):
        shutil.copytree(finished_run, root / "group" / name)
    cut = root / "group" / "cut" / "config.toml"  # planned longer than done: as a run stopped at 1,500
    cut.write_text(cut.read_text().replace("total_steps = 1500", "total_steps = 3000"))
    lock = rundir.acquire(root / "group" / "live")
    try:
        code, out, _ = run_cli(capsys, "runs", str(root))
    finally:
        rundir.release(lock)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(str(root))}
    assert len(rows) == 3
    done, cut, live = (rows[str(root / "group" / n)] for n in ("done", "cut", "live"))
    assert "dqn" in done and "CartPole-v1" in done and "1,500 / 1,500" in done and done.endswith("finished")
    assert "1,500 / 3,000" in cut and cut.endswith("interrupted")
    assert live.endswith(f"running (pid {os.getpid()} on {socket.gethostname()})")
    mean = [v for v in done.split() if v.replace(".", "").lstrip("-").isdigit() and "." in v]
    assert mean, done  # the last evaluation's mean


def test_runs_of_a_missing_or_empty_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "runs", str(tmp_path / "nowhere"))
    assert code == 2 and "no such directory" in one_line(err)
    code, out, _ = run_cli(capsys, "runs", str(tmp_path))
    assert code == 0 and "no runs below" in out
