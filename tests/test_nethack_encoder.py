"""NetHack encoder (rlsuite.nn.nethack): shapes on real NLE observations, the egocentric crop by
hand and against a raw NLE screen, prev_action in the env's observations, parameter count,
gradients, and DQN training on NetHack through the CLI."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("nle")

from rlsuite.cli import main  # noqa: E402
from rlsuite.envs import make  # noqa: E402
from rlsuite.envs.config import EnvConfig  # noqa: E402
from rlsuite.envs.nethack import NetHackGame  # noqa: E402
from rlsuite.errors import UserError  # noqa: E402
from rlsuite.nn.encoders import EncoderConfig, auto_kind, make_encoder  # noqa: E402
from rlsuite.nn.nethack import NetHackEncoder, egocentric_crop  # noqa: E402
from rlsuite.replay.buffer import _frame_specs  # noqa: E402

BLANK = ord(" ")
SCREEN = np.arange(5 * 7).reshape(5, 7)  # a 5x7 "terminal" whose cells are all distinct


@pytest.fixture(scope="module")
def real():
    """(observation space, a batch of 3 real observations after a few random steps) from rlsuite.envs.make."""
    with make(EnvConfig(id="NetHackScore-v0", max_episode_steps=50), 3, 0) as env:
        obs, _ = env.reset()
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, *_ = env.step(rng.integers(0, env.single_action_space.n, 3))
        return env.single_observation_space, {k: v.copy() for k, v in obs.items()}


def test_output_shape_on_real_observations(real) -> None:
    space, obs = real
    assert auto_kind(space) == "nethack"
    enc = make_encoder(EncoderConfig(kind="nethack"), space)
    assert isinstance(enc, NetHackEncoder) and enc.output_dim == 256
    out = enc(obs)  # numpy arrays straight from the env layer
    assert out.shape == (3, 256) and out.dtype == torch.float32 and torch.isfinite(out).all()
    wide = make_encoder(EncoderConfig(kind="nethack", nethack_hidden=64, width=2), space)
    assert wide(obs).shape == (3, wide.output_dim) and wide.output_dim == 64


def test_parameter_count(real) -> None:
    space, _ = real
    enc = make_encoder(EncoderConfig(kind="nethack"), space)
    n = sum(p.numel() for p in enc.parameters())
    parts = ", ".join(f"{name} {sum(p.numel() for p in m.parameters()):,}" for name, m in enc.named_children())
    # The module docstring quotes this number (23 actions, default widths).
    assert n == 2_453_056, f"NetHackEncoder at defaults: {n:,} parameters ({parts})"


def test_gradients_reach_every_parameter(real) -> None:
    space, obs = real
    enc = make_encoder(EncoderConfig(kind="nethack"), space)
    enc(obs).square().sum().backward()
    missing = [name for name, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_crop_in_the_middle() -> None:
    tty = torch.as_tensor(SCREEN)[None]
    crop = egocentric_crop(tty, torch.tensor([[2, 3]]), 3)
    assert crop.tolist() == [[[9, 10, 11], [16, 17, 18], [23, 24, 25]]]


def test_crop_at_corners_is_padded() -> None:
    tty = torch.as_tensor(SCREEN)[None].repeat(2, 1, 1)
    crop = egocentric_crop(tty, torch.tensor([[0, 0], [4, 6]]), 3, pad=-1)
    assert crop[0].tolist() == [[-1, -1, -1], [-1, 0, 1], [-1, 7, 8]]  # top-left
    assert crop[1].tolist() == [[26, 27, -1], [33, 34, -1], [-1, -1, -1]]  # bottom-right
    big = egocentric_crop(tty[:1], torch.tensor([[0, 0]]), 5, pad=-1)[0]
    assert big[2:, 2:].tolist() == SCREEN[:3, :3].tolist() and (big[:2] == -1).all() and (big[:, :2] == -1).all()


def test_crop_clamps_a_cursor_off_screen() -> None:
    """Random samples of the space (dry runs) can hold any cursor; it must not index out of range."""
    crop = egocentric_crop(torch.as_tensor(SCREEN)[None], torch.tensor([[200, 255]]), 3, pad=-1)
    assert crop[0].tolist() == [[26, 27, -1], [33, 34, -1], [-1, -1, -1]]


def test_crop_matches_raw_nle_screen() -> None:
    raw = gym.make("NetHackScore-v0", observation_keys=("tty_chars", "tty_cursor"))
    try:
        raw.reset(seed=3)
        for action in (1, 2, 3):  # a few moves so the cursor is not where the game starts
            obs, *_ = raw.step(action)
        tty, (row, col) = obs["tty_chars"].copy(), obs["tty_cursor"].tolist()
    finally:
        raw.close()
    assert tty[row, col] == ord("@")  # the cursor sits on the hero
    by_hand = [[tty[r, c] if 0 <= r < 24 and 0 <= c < 80 else BLANK for c in range(col - 4, col + 5)]
               for r in range(row - 4, row + 5)]
    crop = egocentric_crop(torch.as_tensor(tty)[None], torch.as_tensor([[row, col]]), 9, pad=BLANK)
    assert crop[0].tolist() == by_hand


def test_prev_action_is_the_action_taken() -> None:
    game = NetHackGame(EnvConfig(id="NetHackScore-v0", max_episode_steps=50), "NetHackScore-v0")
    try:
        assert game.observation_space["prev_action"] == gym.spaces.Box(0, 22, (1,), np.int64)
        obs, _ = game.reset(seed=0)
        assert obs["prev_action"].tolist() == [0]
        for action in (5, 17, 2, 11):
            obs, *_ = game.step(action)
            assert obs["prev_action"].tolist() == [action]
        obs, _ = game.reset()
        assert obs["prev_action"].tolist() == [0]
    finally:
        game.close()


def test_vector_env_and_replay_carry_prev_action() -> None:
    with make(EnvConfig(id="NetHackScore-v0", max_episode_steps=50), 2, 0) as env:
        space = env.single_observation_space
        assert {"tty_chars", "tty_colors", "tty_cursor", "blstats", "message", "prev_action"} <= set(space.spaces)
        env.reset()
        actions = np.array([4, 9])
        obs, *_ = env.step(actions)
        assert obs["prev_action"][:, 0].tolist() == actions.tolist()
    assert _frame_specs(space, 1)["prev_action"] == ((1,), torch.int64)


def test_dqn_trains_on_nethack_through_the_cli(tmp_path) -> None:
    code = main(["train", "dqn", "--env", "NetHackScore-v0", "--set", "agent.encoder.kind=nethack",
                 "--steps", "300", "--set", "agent.learning_starts=100", "--set", "train.eval_episodes=1",
                 "--set", "env.max_episode_steps=100", "--run-dir", str(tmp_path / "nh"), "--no-progress"])
    assert code == 0


def test_config_and_space_errors_are_user_errors(real) -> None:
    space, _ = real
    with pytest.raises(UserError, match="must be odd"):
        make_encoder(EncoderConfig(kind="nethack", nethack_crop=8), space)
    old = gym.spaces.Dict({k: space[k] for k in ("tty_chars", "blstats")})
    with pytest.raises(UserError, match="lack tty_colors, tty_cursor, message, prev_action"):
        make_encoder(EncoderConfig(kind="nethack"), old)
