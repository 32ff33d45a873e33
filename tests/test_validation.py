"""Config validation: every field declares its valid values, and one pass over the resolved config
rejects a bad value (one line naming the key, exit 2) before anything runs or touches the disk."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from gymnasium import spaces

from rlsuite import config

from rlsuite.config import fields
from rlsuite.agents.dqn import DQN, DQNConfig
from rlsuite.envs.config import EnvConfig
from rlsuite.errors import UserError
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.pruning import GMPConfig
from rlsuite.replay.buffer import ReplayConfig

CONFIG_CLASSES = (config.TrainConfig, DQNConfig, EncoderConfig, GMPConfig, NaPConfig, EnvConfig, ReplayConfig)

# The examples: each must be refused up front, naming its key.
BAD_VALUES = [
    ("train.total_steps=0", "train.total_steps", "must be >= 1"),
    ("train.total_steps=-5", "train.total_steps", "must be >= 1"),
    ("agent.gamma=1.5", "agent.gamma", "must be in [0, 1]"),
    ("train.eval_every=-5", "train.eval_every", "must be >= 0"),
    ("agent.epsilon_start=3", "agent.epsilon_start", "must be in [0, 1]"),
    ("agent.lr=-1", "agent.lr", "must be > 0"),
    ("agent.train_freq=0", "agent.train_freq", "must be >= 1"),
    ("train.device=tpu", "train.device", "must be one of cpu, cuda, auto, cuda:N"),
    ("train.eval_episodes=0", "train.eval_episodes", "must be >= 1"),
    ("agent.batch_size=0", "agent.batch_size", "must be >= 1"),
]


def _declared_fields(cls: type) -> list[dataclasses.Field]:
    """The fields that must declare a check: all but bools (their type is the check) and nested configs."""
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls)
            if hints[f.name] is not bool and not dataclasses.is_dataclass(hints[f.name])]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_config_field_declares_its_valid_values(cls):
    missing = [f.name for f in _declared_fields(cls) if fields.field_check(f) is None]
    assert missing == [], f"{cls.__name__} fields without ranged()/choice()/...: {missing}"


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_defaults_pass_their_own_checks_and_docs_survive_the_call_defaults(cls):
    docs = config.field_docs(cls)
    instance = cls()
    for f in _declared_fields(cls):
        assert fields.field_check(f).problem(getattr(instance, f.name)) is None, f.name
        assert docs.get(f.name), f"{cls.__name__}.{f.name} lost its docstring"


@pytest.mark.parametrize("override, key, rule", BAD_VALUES)
def test_bad_values_are_refused_by_build_run_config(override, key, rule):
    with pytest.raises(UserError) as info:
        config.build_run_config("dqn-classic", "CartPole-v1", [override])
    message = str(info.value)
    assert message.startswith(f"bad value for {key}: ") and rule in message and "\n" not in message


def _cli_train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    run_dir = tmp_path / "run"
    script = Path(sys.executable).with_name("rlsuite")  # the installed console script, as users run it
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "rlsuite.cli"]
    cmd = [*launcher, "train", "dqn-classic", "--env", "CartPole-v1", *args, "--run-dir", str(run_dir)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("override, key, rule", BAD_VALUES)
def test_bad_values_exit_2_with_one_line_and_no_run_dir(tmp_path, override, key, rule):
    if override.startswith("train.total_steps="):
        args = ("--steps", override.split("=", 1)[1])  # the spelling: --steps 0, --steps -5
    else:
        args = ("--set", override)
    result = _cli_train(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and rule in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_saved_config_file_is_validated_too(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('algo = "dqn"\n[agent]\ngamma = 1.5\n')
    with pytest.raises(UserError, match=r"bad value for agent.gamma: 1.5 \(must be in \[0, 1\]\)"):
        config.build_run_config(config_file=path)


@pytest.mark.parametrize("overrides, message", [
    (["agent.gmp.start=0.9", "agent.gmp.end=0.5"],
     "bad value for agent.gmp.start: 0.9 (must be <= agent.gmp.end = 0.5)"),
    (["replay.capacity=16"], "bad value for replay.capacity: 16 (must be >= agent.batch_size = 64)"),
    (["train.tasks=CartPole-v1,Acrobot-v1"], "train.steps_per_task"),
    (["agent.loss=l1"], "bad value for agent.loss: l1 (must be one of mse, huber)"),
    (["agent.encoder.hidden=64,0"], "bad value for agent.encoder.hidden: 64,0 (must be >= 1)"),
    (["agent.nap.norm=batch"], "bad value for agent.nap.norm: batch (must be one of none, layer, rms)"),
    (["env.id=pongg"], "bad value for env.id: pongg (unknown env 'pongg'"),
    (["agent.lr=nan"], "bad value for agent.lr: nan (must be a finite number > 0)"),
])
def test_cross_field_choice_tuple_and_env_id_rules(overrides, message):
    with pytest.raises(UserError) as info:
        config.build_run_config("dqn-classic", "CartPole-v1", overrides)
    assert message in str(info.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_pattern_accepts_the_documented_forms(device):
    assert config.build_run_config("dqn-classic", None, [f"train.device={device}"]).train.device == device


@pytest.mark.parametrize("agent", config.preset_names("agents"))
def test_every_agent_preset_with_its_default_env_validates(agent):
    # The Atari recipes name no default_env: they are for any Atari game, so check them on one.
    env = None if "default_env" in config.read_toml(config.preset_path("agents", agent)) else "pong"
    config.validate(config.build_run_config(agent, env))


@pytest.mark.parametrize("env", config.preset_names("envs"))
def test_every_env_preset_validates(env):
    config.validate(config.build_run_config("dqn", env))


def test_help_rows_show_the_valid_values():
    rows = {key: doc for key, _, doc in config.describe(config.build_run_config("dqn-classic").agent, "agent.")}
    assert rows["agent.gamma"].endswith("Valid: in [0, 1].")
    assert rows["agent.loss"].endswith("Valid: one of mse, huber.")
    assert "Valid" not in rows["agent.double"]  # bools need no range text


def test_agent_built_directly_checks_its_config_too():
    with pytest.raises(UserError, match=r"bad value for agent.gamma: 2"):
        DQN(DQNConfig(gamma=2.0), spaces.Box(-1, 1, (4,)), spaces.Discrete(2))


def test_check_describes_intervals():
    assert fields.Check(ge=0, lt=1).describe() == "in [0, 1)"
    assert fields.Check(gt=0).describe() == "> 0"
    assert fields.Check(le=5).describe() == "<= 5"
    assert fields.Check(ge=0, lt=1).problem(1.0) == "must be in [0, 1)"
    assert fields.Check(ge=1).problem((3, 0)) == "must be >= 1"
