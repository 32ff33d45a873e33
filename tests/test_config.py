"""Config: field docs, presets, overrides, errors, TOML round trip."""
from __future__ import annotations

import pytest

from rlsuite import config
from rlsuite.agents.dqn import DQNConfig
from rlsuite.errors import UserError


def test_field_docs_cover_every_dqn_field():
    docs = config.field_docs(DQNConfig)
    import dataclasses

    missing = [f.name for f in dataclasses.fields(DQNConfig) if not docs.get(f.name)]
    assert missing == []
    assert "Adam learning rate" in docs["lr"]


def test_dopamine_preset_values_and_env_family_default():
    cfg = config.build_run_config("dqn", "pong")
    assert cfg.agent.lr == pytest.approx(6.25e-5) and cfg.agent.adam_eps == pytest.approx(1.5e-4)
    assert cfg.agent.target_update_period == 8000 and cfg.agent.train_freq == 4 and cfg.agent.loss == "mse"
    assert cfg.env.id == "pong" and cfg.env.sticky_action_prob == pytest.approx(0.25)
    assert cfg.presets == ["agents/dqn.toml", "envs/atari-dopamine.toml"]


def test_overrides_full_bare_nested_and_types():
    cfg = config.build_run_config("dqn", "pong", ["agent.lr=1e-4", "batch_size=64", "agent.encoder.width=3",
                                                 "double=yes", "train.total_steps=1e6", "encoder.hidden=32,16"])
    assert cfg.agent.lr == 1e-4 and cfg.agent.batch_size == 64 and cfg.agent.encoder.width == 3
    assert cfg.agent.double is True and cfg.train.total_steps == 1_000_000
    assert cfg.agent.encoder.hidden == (32, 16)


@pytest.mark.parametrize("override, message", [
    ("agent.lrr=1", "unknown config key 'agent.lrr'; did you mean: agent.lr"),
    ("agent.lr=fast", "bad value for 'agent.lr': 'fast' is not a valid float"),
    ("train.total_steps=1.5", "is not a valid int"),
    ("double=maybe", "is not a valid bool"),
    ("nonsense", "expected key=value"),
])
def test_bad_overrides_are_one_line_user_errors(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        config.build_run_config("dqn", "pong", [override])
    assert "\n" not in str(info.value)


def test_ambiguous_bare_key_is_refused():
    # 'seed' exists only in train, but 'capacity' only in replay: both fine; 'id' only in env.
    cfg = config.build_run_config("dqn", "pong", ["seed=7", "capacity=1000"])
    assert cfg.train.seed == 7 and cfg.replay.capacity == 1000


def test_unknown_preset_suggests_close_names():
    with pytest.raises(UserError, match="did you mean: dqn"):
        config.build_run_config("dqnn", "pong")


def test_resolved_toml_round_trip(tmp_path):
    cfg = config.build_run_config("dqn-cleanrl", "breakout", ["agent.encoder.width=2", "seed=3"])
    path = tmp_path / "config.toml"
    path.write_text(config.dumps_toml(cfg))
    again = config.build_run_config(config_file=path)
    assert config.to_dict(again) == config.to_dict(cfg)


def test_config_file_with_unknown_key_is_a_user_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('algo = "dqn"\n[agent]\nlearning_rate = 1\n')
    with pytest.raises(UserError, match="unknown config key 'agent.learning_rate'"):
        config.build_run_config(config_file=path)
    path.write_text("algo = [")
    with pytest.raises(UserError, match="not valid TOML"):
        config.build_run_config(config_file=path)


def test_agent_preset_chooses_its_env_protocol_for_bare_ids():
    cleanrl = config.build_run_config("dqn-cleanrl", "breakout")
    assert cleanrl.env.id == "breakout" and cleanrl.env.sticky_action_prob == 0.0
    assert cleanrl.env.terminal_on_life_loss and "envs/atari-cleanrl.toml" in cleanrl.presets
    dopamine = config.build_run_config("dqn", "breakout")
    assert dopamine.env.sticky_action_prob == pytest.approx(0.25) and not dopamine.env.terminal_on_life_loss
