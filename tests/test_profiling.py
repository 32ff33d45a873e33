"""train.profile: the phase timer's arithmetic (fake clock) and a short real profiled CartPole run."""
from __future__ import annotations

import json

import pytest

from rlsuite import config
from rlsuite.run.profiling import PhaseTimer
from rlsuite.loops.train import train
from tests.conftest import TINY


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_phase_timer_arithmetic_with_a_fake_clock():
    clock = FakeClock()
    timer = PhaseTimer(True, "cpu", clock=clock)
    timer.start()
    for _ in range(3):
        with timer.phase("env"):
            clock.advance(2.0)
        clock.advance(0.5)  # in no phase: "other"
        with timer.phase("learn"):
            clock.advance(0.25)  # learn's own time
            with timer.phase("update"):
                clock.advance(1.0)  # nested: update's, not learn's
            with timer.phase("update", count=False):
                clock.advance(0.5)  # update's time, not a call
    with timer.apart():
        clock.advance(50.0)  # evaluation: out of the loop
    clock.advance(0.25)
    timer.stop()
    clock.advance(7.0)  # after the loop: not counted

    report = timer.report()
    assert timer.loop_seconds == pytest.approx(3 * 4.25 + 0.25)
    assert timer.apart_seconds == pytest.approx(50.0)
    assert report["env"] == pytest.approx({"seconds": 6.0, "fraction": 6.0 / 13.0, "calls": 3, "ms_per_call": 2000.0})
    assert report["update"] == pytest.approx({"seconds": 4.5, "fraction": 4.5 / 13.0, "calls": 3, "ms_per_call": 1500.0})
    assert report["learn"] == pytest.approx({"seconds": 0.75, "fraction": 0.75 / 13.0, "calls": 3, "ms_per_call": 250.0})
    assert report["other"]["seconds"] == pytest.approx(1.75)
    assert list(report)[:3] == ["env", "update", "learn"]  # by time spent; other last
    assert sum(r["fraction"] for r in report.values()) == pytest.approx(1.0, abs=1e-12)
    table = timer.format_table()
    assert "env" in table and "46.2%" in table and "evaluation apart 50.0 s" in table


def test_disabled_timer_is_a_shared_no_op():
    timer = PhaseTimer(False, "cpu", clock=lambda: pytest.fail("a disabled timer read the clock"))
    assert timer.phase("env") is timer.phase("update") is timer.apart()
    timer.start()
    with timer.phase("env"):
        pass
    timer.stop()
    assert timer.report() == {}


def test_cuda_timer_synchronises_at_every_phase_boundary(monkeypatch):
    import torch

    synced: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    clock = FakeClock()
    timer = PhaseTimer(True, "cuda:0", clock=clock)
    timer.start()
    with timer.phase("update"):
        with timer.phase("sample"):
            clock.advance(1.0)
    with timer.apart():
        clock.advance(1.0)
    timer.stop()
    assert len(synced) == 2 + 2 * 2 + 2 and set(synced) == {torch.device("cuda:0")}
    PhaseTimer(False, "cuda").phase("env").__enter__()
    PhaseTimer(True, "cpu", clock=clock).start()
    assert len(synced) == 8  # neither a disabled timer nor a CPU one synchronises


# Learning starts at 200 env steps; 2 envs, an update round every 4 env steps: the run owes
# (STEPS // 4 - 200 // 4) gradient updates, one evaluation inside the loop (at 200) and the final one.
STEPS = 400
PROFILED = TINY + ["train.num_envs=2", "agent.train_freq=4", "train.eval_every=200", "train.profile=true"]


def test_profiled_run_reports_every_phase(tmp_path, capsys):
    from rlsuite.cli import main

    run_dir = tmp_path / "profiled"
    argv = ["train", "dqn-classic", "--env", "CartPole-v1", "--steps", str(STEPS), "--run-dir", str(run_dir),
            "--no-progress"]
    for override in PROFILED:
        argv += ["--set", override]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "where the time goes" in out and "ms/call" in out

    cfg = config.build_run_config("dqn-classic", "CartPole-v1", PROFILED + [f"train.total_steps={STEPS}"])
    a, t = cfg.agent, cfg.train
    vector_steps = t.total_steps // t.num_envs
    gradient_steps = a.gradient_steps * (t.total_steps // a.train_freq - a.learning_starts // a.train_freq)
    assert gradient_steps > 0 and a.learning_starts < t.total_steps

    profile = json.loads((run_dir / "profile.json").read_text())
    for phase in ("env", "act", "add", "sample", "update", "learn"):
        assert profile[phase]["calls"] > 0 and profile[phase]["seconds"] > 0, phase
    assert profile["env"]["calls"] == profile["act"]["calls"] == profile["add"]["calls"] == vector_steps
    assert profile["update"]["calls"] == profile["sample"]["calls"] == gradient_steps
    assert sum(r["fraction"] for r in profile.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(profile) == {"env", "act", "add", "sample", "update", "learn", "other"}


def test_unprofiled_run_has_no_profile(tmp_path, capsys):
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", TINY + [f"train.total_steps={STEPS}"])
    assert cfg.train.profile is False
    summary = train(cfg, tmp_path / "plain")
    assert summary["outcome"] == "finished" and "profile" not in summary
    assert not (tmp_path / "plain" / "profile.json").exists()
    assert "where the time goes" not in capsys.readouterr().out
