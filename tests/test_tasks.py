"""Task sequences on real MinAtar games: one network across games, switch evaluations, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rlsuite import config
from rlsuite.cli import main
from rlsuite.run.monitor import Monitor
from rlsuite.loops.online import advance, build_session, end_phase, restore_checkpoint, save_checkpoint
from rlsuite.run.lifecycle import crossed as _crossed
from tests.conftest import TINY

SEQUENCE = ["train.tasks=minatar:breakout,minatar:space_invaders", "train.steps_per_task=400", "train.cycles=2",
            "env.max_episode_steps=200", "agent.encoder.kind=minatar"]


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def test_sequence_run_from_the_cli(tmp_path, capsys):
    run = tmp_path / "seq"
    code = main(["train", "dqn-minatar", "--run-dir", str(run), *sets(TINY + SEQUENCE), "--set", "train.eval_every=200"])
    assert code == 0
    records = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    switch = [(r["step"], r["phase"], r["task"]) for r in records if r.get("source") == "switch"]
    tasks = ["minatar:breakout", "minatar:space_invaders"]
    assert switch == [(400 * (k + 1), k, t) for k in range(4) for t in tasks]  # every task, every switch
    periodic = [(r["step"], r["task"]) for r in records if r.get("source") == "periodic"]
    assert periodic == [(200, tasks[0]), (600, tasks[1]), (1000, tasks[0]), (1400, tasks[1])]
    assert config.read_toml(run / "config.toml")["train"]["total_steps"] == 1600


def test_one_network_serves_every_game(tmp_path):
    cfg = config.build_run_config("dqn-minatar", None, TINY + SEQUENCE)
    from rlsuite.loops import tasks
    tasks.validate(cfg)
    s = build_session(cfg, tmp_path)
    # breakout has 4 channels and 3 actions, space invaders 6 and 4: padded to 6 channels, all 6 actions
    assert s.env.single_observation_space.shape == (6, 10, 10)
    assert s.env.single_action_space.n == 6
    obs, _ = s.env.reset(seed=0)
    assert not obs[:, 4:].any()  # breakout's padding channels stay empty


def step_through(s, monitor, until: int) -> list[np.ndarray]:
    actions = []
    while s.step < until:
        result = advance(s)
        actions.append(result.actions.copy())
        if _crossed(s.step, s.env.num_envs, s.cfg.train.steps_per_task):
            end_phase(s, monitor)
    return actions


def session(run_dir):
    from rlsuite.loops import tasks
    cfg = config.build_run_config("dqn-minatar", None, TINY + SEQUENCE + ["train.save_replay=true"])
    tasks.validate(cfg)
    s = build_session(cfg, run_dir)
    s.obs, _ = s.env.reset(seed=cfg.train.seed)
    return s, Monitor(run_dir, cfg.train.total_steps, 0, False)


def test_resume_mid_sequence_equals_an_uninterrupted_run(tmp_path):
    full, monitor = session(tmp_path / "full")
    step_through(full, monitor, 600)
    reference = step_through(full, monitor, 1000)
    assert full.phase == 2

    first, monitor = session(tmp_path / "split")
    step_through(first, monitor, 600)  # in phase 1, on space invaders
    save_checkpoint(first)
    resumed, monitor = session(tmp_path / "split")
    messages: list[str] = []
    restore_checkpoint(resumed, messages.append)
    assert resumed.phase == 1 and resumed.env.game == "space_invaders" and "(exact)" in messages[-1]
    assert np.array_equal(np.concatenate(step_through(resumed, monitor, 1000)), np.concatenate(reference))


@pytest.mark.parametrize("bad,message", [
    (["train.tasks=minatar:breakout,CartPole-v1", "train.steps_per_task=10"], "all be MinAtar games or all Atari"),
    (["train.tasks=minatar:breakout,minatar:freeway"], "steps_per_task > 0"),
    (["train.tasks=minatar:breakout", "train.steps_per_task=10", "train.cycles=0"], "train.cycles: 0 (must be >= 1)"),
])
def test_bad_sequences_exit_2_with_one_line(tmp_path, capsys, bad, message):
    code = main(["train", "dqn-minatar", "--run-dir", str(tmp_path / "r"), *sets(TINY + bad)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_atari_sequences_share_the_full_action_set(tmp_path):
    from rlsuite.loops import tasks
    cfg = config.build_run_config("dqn", "pong", TINY + ["train.tasks=pong,breakout", "train.steps_per_task=100",
                                                         "replay.capacity=1000"])
    tasks.validate(cfg)
    s = build_session(cfg, tmp_path)
    for phase, game in ((0, "Pong"), (1, "Breakout")):
        env, eval_env = tasks.make_task_envs(cfg, phase)
        assert env.game == game and env.single_action_space.n == eval_env.single_action_space.n == 18
        assert env.single_observation_space.shape == s.env.single_observation_space.shape == (4, 84, 84)
        env.close(), eval_env.close()
