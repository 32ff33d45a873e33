"""Every CLI argument is validated, and every filesystem error is one line.

A bad argument ends in exactly one line on stderr and exit code 2, before anything is written;
Ctrl-C ends in one line and exit code 130.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsuite.cli import main

RLSUITE = [sys.executable, "-m", "rlsuite.cli"]


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


@pytest.mark.parametrize("terminal", [False, True])
def test_ctrl_c_during_eval_is_one_line_and_exit_130(small_run, terminal):
    """terminal: Ctrl-C in a terminal signals the whole process group, env worker processes included."""
    extra = ["--num-envs", "2", "--set", "env.backend=gymnasium-async"] if terminal else ["--num-envs", "1"]
    # Ctrl-C's default disposition in the child, whatever pytest inherited (a shell starts background
    # jobs with SIGINT ignored, and an ignored SIGINT is rightly left ignored by the CLI).
    proc = subprocess.Popen([*RLSUITE, "eval", str(small_run), "--episodes", "100000", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=terminal,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Long enough to be inside the evaluation: a SIGINT while Python is still importing the CLI (a
        # fresh clone compiles its bytecode first; a loaded machine is slow) is not what this tests.
        time.sleep(6.0 if terminal else 5.0)
        if terminal:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed test must not leave a 100,000-game evaluation running
            os.killpg(proc.pid, signal.SIGKILL) if terminal else proc.kill()
            proc.wait()
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


# ----------------------------------------------------------------------------- filesystem errors


TRAIN = ["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "300", "--no-progress"]


@pytest.mark.parametrize("run_dir, message", [
    ("/etc/passwd/x", "/etc/passwd/x: Not a directory"),  # a path through a regular file
    ("/proc/rlsuite-test-run", "/proc/rlsuite-test-run"),
    ("/sys/rlsuite-test-run", "/sys/rlsuite-test-run"),
])
def test_a_run_dir_that_cannot_be_written_is_one_line(capsys, run_dir, message):
    if not Path(run_dir).parent.exists():
        pytest.skip(f"{run_dir} does not exist on this system")
    one_line_error(capsys, [*TRAIN, "--run-dir", run_dir], message)
    assert not Path(run_dir).exists()


def test_a_run_dir_without_write_permission_is_one_line(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere; the /proc and /sys cases cover 'cannot write'")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        one_line_error(capsys, [*TRAIN, "--run-dir", str(locked / "run")], str(locked / "run"))
    finally:
        locked.chmod(0o700)


def test_a_directory_given_as_config_is_one_line(tmp_path, capsys):
    one_line_error(capsys, ["train", "--config", str(tmp_path), "--steps", "300"], f"{tmp_path}: Is a directory")


def test_export_to_a_bad_path_is_one_line(small_run, tmp_path, capsys):
    one_line_error(capsys, ["export", str(small_run), "--sparse", "-o", "/etc/passwd/x/sparse.pt"],
                   "/etc/passwd/x: Not a directory")
    one_line_error(capsys, ["export", str(small_run), "--sparse", "-o", str(tmp_path)], "is a directory")
    if Path("/proc/self").exists():  # the message names the file asked for, not a temporary one
        line = one_line_error(capsys, ["export", str(small_run), "--sparse", "-o", "/proc/sparse.pt"],
                              "/proc/sparse.pt:")
        assert ".tmp" not in line


def test_compare_and_sweep_out_through_a_file_are_one_line(small_run, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(capsys, ["compare", str(small_run), "--out", str(afile / "cmp")],
                   f"{afile / 'cmp'}: Not a directory")
    one_line_error(capsys, ["sweep", "dqn-classic", "--env", "CartPole-v1", "--seeds", "1", "--steps", "300",
                            "--out", str(afile / "s")], "Not a directory")


class FullDisk:
    """A file whose writes fail with ENOSPC after `room` bytes, like a disk filling up."""

    def __init__(self, fh, room: int = 2048) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


@pytest.mark.parametrize("how", ["raise", "torch"])
def test_a_full_disk_while_checkpointing_keeps_the_last_good_checkpoint(small_run, tmp_path, capsys, monkeypatch, how):
    import shutil

    import torch

    from rlsuite.run import checkpoint
    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    folder = run_dir / "checkpoints"
    good = folder / (folder / "latest").read_text().strip()
    before = good.read_bytes()
    real_save = torch.save

    def full_disk_save(obj, fh, *a, **kw):
        if how == "raise":  # the writer itself fails (open/write/flush of a full disk)
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, FullDisk(fh), *a, **kw)  # torch.save turns the failed write into a RuntimeError

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    line = one_line_error(capsys, ["train", "--resume", str(run_dir), "--steps", "700"],
                          "disk full (no space left on device) while writing checkpoint")
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert f"the last good checkpoint {good} is kept" in line
    assert (folder / "latest").read_text().strip() == good.name
    assert good.read_bytes() == before
    assert checkpoint.load(checkpoint.find(run_dir))["step"] == 600
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]  # the temp file is removed


def test_compare_refuses_iteration_steps_without_the_training_score(small_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    one_line_error(capsys, ["compare", str(small_run), "--out", str(out), "--iteration-steps", "100"],
                   "--iteration-steps sets the iteration of --score train")
    assert not out.exists()


def test_an_os_error_is_described_in_one_line():
    from rlsuite.cli import describe_os_error

    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == \
        "/x/y: No space left on device (disk full; free some space)"
    assert describe_os_error(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")) == \
        "/a -> /b: Invalid cross-device link"
    assert describe_os_error(OSError("socket closed")) == "socket closed"


def test_ctrl_c_while_a_compiled_module_imports_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C landing while a C extension initialises (scipy, lazily imported by eval) surfaces as
    'ImportError: initialization failed' caused by the interrupt: still one line and exit 130."""
    import rlsuite.cli as cli

    def interrupted_import(argv):
        try:
            raise cli.Interrupted()
        except cli.Interrupted as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "_main", interrupted_import)
    assert cli.main(["eval", "x"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["rlsuite: interrupted"]
    monkeypatch.setattr(cli, "_main", lambda argv: (_ for _ in ()).throw(ImportError("no such module")))
    with pytest.raises(ImportError):  # an import error of its own is not hidden as an interrupt
        cli.main(["eval", "x"])
