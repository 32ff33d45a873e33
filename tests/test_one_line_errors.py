"""Bad input is one line on stderr (the fd itself: nothing printed by C++ libraries either), exit 2,
nothing written: a checkpoint used on an env with other spaces names the envs and the shapes and
dtypes (not the spaces' bound arrays), an out-of-range actions file, a PPO minibatch of one sample."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlsuite import config
from rlsuite.cli import main
from rlsuite.errors import UserError, brief_space

CARTPOLE = Path(__file__).parent / "data" / "ppo-cartpole-60k.pt"
MISMATCH = ("was trained on CartPole-v1 with observation space Box(shape (4,), float32), "
            "but montezuma has Box(shape (1, 84, 84), uint8)")


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlsuite: error: "), err
    return err


def test_brief_space_keeps_shape_and_dtype_not_the_bounds():
    box = gym.spaces.Box(np.full((3, 2), -1.5, np.float32), np.full((3, 2), 2.0, np.float32))
    assert brief_space(box) == "Box(shape (3, 2), float32)"
    assert brief_space(repr(gym.spaces.Dict({"a": box, "b": gym.spaces.Discrete(3)}))) == \
        "Dict('a': Box(shape (3, 2), float32), 'b': Discrete(3))"


def test_collect_with_a_checkpoint_of_other_spaces(tmp_path, capfd):
    out = tmp_path / "data"
    assert main(["collect", "--from", str(CARTPOLE), "--env", "montezuma", "--steps", "10", "--out", str(out)]) == 2
    assert MISMATCH in one_line(capfd)
    assert not out.exists()


def test_states_collect_with_a_checkpoint_of_other_spaces(tmp_path, capfd):
    out = tmp_path / "states"
    assert main(["states", "collect", "--env", "montezuma", "--from", str(CARTPOLE), "--when", "room==1",
                 "--count", "1", "--out", str(out)]) == 2
    assert MISMATCH in one_line(capfd)
    assert not out.exists()


def test_states_collect_with_an_action_out_of_range(tmp_path, capfd):
    actions, out = tmp_path / "actions.json", tmp_path / "states"
    actions.write_text("[0, 99]")
    assert main(["states", "collect", "--env", "montezuma", "--from", str(actions), "--when", "room==1",
                 "--count", "1", "--out", str(out)]) == 2
    assert "action 99 is not below 18, the number of actions of montezuma" in one_line(capfd)
    assert not out.exists()


SPLIT = ["train.num_envs=1", "agent.num_steps=4", "agent.num_minibatches=4"]


def test_a_ppo_minibatch_of_one_sample_is_refused_at_config_time():
    with pytest.raises(UserError) as info:
        config.build_run_config("ppo-classic", "CartPole-v1", SPLIT)
    message = str(info.value)
    assert message.startswith("bad value for agent.num_minibatches: 4 ")
    assert "1 x 4 / 4 = 1 sample(s) per minibatch" in message and "agent.norm_adv" in message
    config.build_run_config("ppo-classic", "CartPole-v1", SPLIT + ["agent.norm_adv=false"])  # no std: fine
    config.build_run_config("ppo-classic", "CartPole-v1", SPLIT[:2] + ["agent.num_minibatches=2"])  # 2 each: fine


def test_a_ppo_minibatch_of_one_sample_exits_2_and_writes_nothing(tmp_path, capfd):
    run = tmp_path / "run"
    argv = ["train", "ppo-classic", "--env", "CartPole-v1", "--run-dir", str(run)]
    assert main(argv + [a for item in SPLIT for a in ("--set", item)]) == 2
    assert "agent.num_minibatches" in one_line(capfd)
    assert not run.exists()
