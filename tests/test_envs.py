"""Vectorized env layer on real environments (Atari via envpool and ale-py, NetHack, MinAtar,
CartPole): id resolution, spaces, same-step autoreset with final_obs, frame stacking, life-loss
semantics, whole-game statistics, seeding, presets."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import tomllib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlsuite.envs import EnvConfig, VecEnv, known_env_ids, make, resolve_env_id
from rlsuite.errors import UserError

ATARI_BACKENDS = ["envpool", "gymnasium"]
PRESETS = Path(__file__).resolve().parents[1] / "rlsuite" / "presets" / "envs"


def rollout(env: VecEnv, steps: int, seed: int = 0, actions: np.ndarray | None = None) -> list[tuple]:
    """Step with `actions` (steps, num_envs), default seeded random ones; keep copies of everything returned."""
    if actions is None:
        actions = np.random.default_rng(seed).integers(0, env.single_action_space.n, (steps, env.num_envs))
    out = []
    obs, _ = env.reset()
    prev = _copy(obs)
    for t in range(steps):
        obs, reward, term, trunc, info = env.step(actions[t])
        out.append((prev, _copy(obs), reward.copy(), term.copy(), trunc.copy(), _copy(info["final_obs"]),
                    {k: v.copy() for k, v in info["episode"].items()}))
        prev = _copy(obs)
    return out


def _copy(x):
    return {k: v.copy() for k, v in x.items()} if isinstance(x, dict) else x.copy()


def _rows(x, rows: np.ndarray):
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


# -- ids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["pong", "Pong", "ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_atari_spellings_resolve_to_one_game(spelling: str) -> None:
    assert resolve_env_id(spelling) == ("atari", "Pong")


def test_other_families_resolve() -> None:
    assert resolve_env_id("montezuma") == ("atari", "MontezumaRevenge")
    assert resolve_env_id("nethack") == ("nethack", "NetHackScore-v0")
    assert resolve_env_id("NetHackScore-v0") == ("nethack", "NetHackScore-v0")
    assert resolve_env_id("minatar:breakout") == ("minatar", "breakout")
    assert resolve_env_id("MinAtar/Breakout-v1") == ("minatar", "breakout")
    assert resolve_env_id("CartPole-v1") == ("classic", "CartPole-v1")
    assert {"pong", "montezuma", "nethack", "minatar:breakout", "CartPole-v1"} <= set(known_env_ids())


def test_unknown_env_raises_user_error_with_suggestion() -> None:
    with pytest.raises(UserError, match=r"unknown env 'pongg'; did you mean: pong"):
        make(EnvConfig(id="pongg"), 1, 0)
    with pytest.raises(UserError, match="rlsuite list envs"):
        resolve_env_id("xyzzy-nothing")


def test_every_config_field_has_a_docstring() -> None:
    tree = ast.parse(inspect.getsource(EnvConfig))
    body = tree.body[0].body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign):
            doc = body[i + 1]
            assert isinstance(doc, ast.Expr) and isinstance(doc.value.value, str), node.target.id


def test_presets_state_every_field_and_build() -> None:
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    names = sorted(p.stem for p in PRESETS.glob("*.toml"))
    assert names == ["atari-cleanrl", "atari-dopamine", "cartpole", "closefar", "minatar", "montezuma", "nethack"]
    for path in PRESETS.glob("*.toml"):
        table = tomllib.loads(path.read_text())
        assert list(table) == ["env"] and set(table["env"]) == fields, path.name
        EnvConfig(**table["env"])
    dopamine = tomllib.loads((PRESETS / "atari-dopamine.toml").read_text())["env"]
    assert (dopamine["sticky_action_prob"], dopamine["max_episode_steps"], dopamine["terminal_on_life_loss"]) \
        == (0.25, 27000, False)
    cleanrl = tomllib.loads((PRESETS / "atari-cleanrl.toml").read_text())["env"]
    assert (cleanrl["sticky_action_prob"], cleanrl["terminal_on_life_loss"], cleanrl["fire_reset"]) == (0.0, True, True)


# -- Atari ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ATARI_BACKENDS)
@pytest.mark.parametrize("game", ["pong", "montezuma"])
def test_atari_spaces_and_dtypes(backend: str, game: str) -> None:
    with make(EnvConfig(id=game, backend=backend, max_episode_steps=60), 2, 0) as env:
        assert env.family == "atari" and env.frame_stack == 4
        assert env.game == {"pong": "Pong", "montezuma": "MontezumaRevenge"}[game]
        assert env.single_observation_space.shape == (4, 84, 84) and env.single_observation_space.dtype == np.uint8
        assert isinstance(env.single_action_space, gym.spaces.Discrete)
        assert env.single_action_space.n == {"pong": 6, "montezuma": 18}[game]
        steps = rollout(env, 70)
        _, obs, reward, term, trunc, _, ep = steps[-1]
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert reward.dtype == np.float32 and term.dtype == bool and trunc.dtype == bool
        assert ep["return"].dtype == np.float64 and ep["length"].dtype.kind == "i"
        # the 60-step cap truncates (no game ends by then, so nothing terminates) and ends the whole game
        assert steps[59][4].all() and not steps[59][3].any() and steps[59][6]["done"].all()
        assert (steps[59][6]["length"] == 60).all()


@pytest.mark.parametrize("frame_skip", [1, 2, 3, 4])
@pytest.mark.parametrize("game, life_loss", [("pong", False), ("breakout", True)])
def test_atari_backends_are_pixel_identical(game: str, life_loss: bool, frame_skip: int) -> None:
    """No sticky actions, one no-op: envpool and our ale-py preprocessing give the same pixels at
    every frame skip. Breakout presses FIRE most of the time, so its games end (at game over
    too, whose step may stop inside the skip) within 2 x 600 frames."""
    cap = 150 if game == "pong" else 600 // frame_skip
    cfg = dict(id=game, sticky_action_prob=0.0, noop_max=0, fire_reset=life_loss, terminal_on_life_loss=life_loss,
               clip_rewards=True, max_episode_steps=cap, frame_skip=frame_skip)
    steps = 2 * cap + 20
    rng = np.random.default_rng(frame_skip)
    actions = rng.integers(0, 4 if game == "breakout" else 6, (steps, 2))
    if game == "breakout":
        actions[rng.random((steps, 2)) < 0.7] = 1  # FIRE
    with make(EnvConfig(backend="envpool", **cfg), 2, 3) as a, make(EnvConfig(backend="gymnasium", **cfg), 2, 3) as b:
        ra, rb = rollout(a, steps, actions=actions), rollout(b, steps, actions=actions)
    ends = 0
    for t, (x, y) in enumerate(zip(ra, rb)):
        for k in range(5):
            assert _equal(x[k], y[k]), (t, k)
        ended = x[3] | x[4]
        ends += ended.sum()
        assert np.array_equal(x[5][ended], y[5][ended]), t
        for key in x[6]:
            assert np.array_equal(x[6][key], y[6][key]), (t, key)
    assert ends >= 4  # truncations (and lost lives) happened and matched
    if game == "breakout":
        assert any(x[6]["done"].any() and x[3].any() for x in ra)  # a game over too


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_frame_stack_starts_with_zeros_and_final_obs_is_the_shifted_stack(backend: str) -> None:
    with make(EnvConfig(id="pong", backend=backend, max_episode_steps=10), 2, 0) as env:
        obs, _ = env.reset()
        assert not obs[:, :-1].any() and obs[:, -1].any()
        steps = rollout(env, 25)
    for prev, obs, _, term, trunc, final, _ in steps:
        ended = term | trunc
        for i in range(2):
            if ended[i]:
                assert not obs[i, :-1].any() and obs[i, -1].any()
                assert np.array_equal(final[i, :-1], prev[i, 1:]) and final[i, -1].any()
            else:
                assert np.array_equal(obs[i, :-1], prev[i, 1:])
    assert sum((s[3] | s[4]).sum() for s in steps) == 4  # steps 10 and 20, both envs


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_life_loss_ends_episodes_but_not_games(backend: str) -> None:
    cfg = EnvConfig(id="breakout", backend=backend, terminal_on_life_loss=True, fire_reset=True, sticky_action_prob=0.0)
    with make(cfg, 2, 0) as env:
        steps = rollout(env, 1400)
    terms = np.array([s[3] for s in steps])
    done = np.array([s[6]["done"] for s in steps])
    lengths = np.array([s[6]["length"] for s in steps])
    rewards = np.array([s[2] for s in steps])
    assert done.any(axis=0).all(), "every env should finish a 5-life game of random Breakout"
    for i in range(2):
        ends = np.flatnonzero(terms[:, i])
        first_game = ends[: np.argmax(done[ends, i]) + 1]
        assert len(first_game) == 5  # four lost lives, then game over
        assert not done[first_game[:-1], i].any() and done[first_game[-1], i]
        t_over = first_game[-1]
        assert lengths[t_over, i] == t_over + 1  # the whole game, across lives
        assert steps[t_over][6]["return"][i] == rewards[: t_over + 1, i].sum()  # Breakout pays 1..7: raw here
        assert not steps[first_game[0]][1][i, :-1].any()  # fresh stack after a lost life


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_evaluation_never_ends_on_life_loss_nor_clips(backend: str) -> None:
    cfg = EnvConfig(id="space_invaders", backend=backend, terminal_on_life_loss=True, clip_rewards=True,
                    sticky_action_prob=0.0)
    # seed 1: random play loses a life within 400 steps on both backends
    with make(cfg, 1, 1) as train, make(cfg, 1, 1, evaluation=True) as ev:
        tr, evs = rollout(train, 400), rollout(ev, 400)
    train_rewards = np.concatenate([s[2] for s in tr])
    eval_rewards = np.concatenate([s[2] for s in evs])
    assert set(np.unique(train_rewards)) <= {0.0, 1.0} and train_rewards.max() == 1.0
    assert eval_rewards.max() > 1.0  # Space Invaders pays 5..30 points: raw in evaluation
    assert any(s[3].any() and not s[6]["done"].any() for s in tr)  # a lost life ended a training episode
    assert all(s[6]["done"].all() for s in evs if s[3].any())  # evaluation ends only at game over


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_same_seed_same_observations(backend: str) -> None:
    def run(seed: int) -> list:
        with make(EnvConfig(id="pong", backend=backend), 2, seed) as env:
            return [s[1] for s in rollout(env, 60)]

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))  # noops and sticky actions depend on the seed


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_montezuma_rooms(backend: str) -> None:
    with make(EnvConfig(id="montezuma", backend=backend, max_episode_steps=100), 2, 0) as env:
        steps = rollout(env, 100)
    ep = steps[-1][6]
    assert ep["done"].all() and (ep["rooms"] >= 1).all() and (ep["rooms"] <= 24).all()


def test_montezuma_room_is_ram_byte_3() -> None:
    from rlsuite.envs.atari import ROOM_RAM_BYTE, AtariGame

    game = AtariGame(EnvConfig(id="montezuma", sticky_action_prob=0.0), "MontezumaRevenge")
    first, _ = game.reset(seed=0)
    assert game.ale.getRAM()[ROOM_RAM_BYTE] == 1  # the game starts in room 1
    game.ale.setRAM(ROOM_RAM_BYTE, 0)
    other, *_ = game.step(0)
    game.ale.setRAM(ROOM_RAM_BYTE, 1)
    back, *_ = game.step(0)
    assert np.abs(other.astype(int) - first).mean() > 10  # another room is drawn
    assert np.abs(back.astype(int) - first).mean() < 2
    game.close()


# -- NetHack, MinAtar, classic ---------------------------------------------------------------------
def test_nethack_observations_metrics_and_autoreset() -> None:
    with make(EnvConfig(id="nethack", max_episode_steps=40), 2, 0) as env:
        assert env.family == "nethack" and env.game == "NetHackScore-v0" and env.frame_stack == 1
        space = env.single_observation_space
        assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {
            "tty_chars", "tty_colors", "tty_cursor", "blstats", "message", "prev_action"}
        assert (space["tty_chars"].shape, space["tty_chars"].dtype) == ((24, 80), np.uint8)
        assert space["tty_colors"].shape == (24, 80) and space["message"].shape == (256,)
        assert (space["blstats"].shape, space["blstats"].dtype) == ((27,), np.int64)
        steps = rollout(env, 45)
    prev, obs, _, term, trunc, final, ep = steps[39]
    assert trunc.all() and not term.any() and ep["done"].all() and (ep["length"] == 40).all()
    assert obs["tty_chars"].shape == (2, 24, 80) and final["blstats"].shape == (2, 27)
    assert (ep["depth"] >= 1).all() and (ep["xp"] >= 1).all() and (ep["turns"] >= 1).all() and (ep["score"] >= 0).all()
    assert (ep["turns"] == final["blstats"][:, 20]).all()  # turns of the ended game, from its last obs
    assert not _equal(obs, final)  # obs already belongs to the next game
    assert np.allclose(ep["return"], sum(s[2] for s in steps[:40]))


def test_nethack_same_seed_same_games() -> None:
    def run(seed: int) -> list:
        with make(EnvConfig(id="NetHackScore-v0"), 2, seed) as env:
            return [s[1] for s in rollout(env, 30)]

    a, b, c = run(1), run(1), run(2)
    assert all(_equal(x, y) for x, y in zip(a, b)) and not all(_equal(x, y) for x, y in zip(a, c))


def test_minatar_channels_first_and_episodes() -> None:
    with make(EnvConfig(id="minatar:breakout", sticky_action_prob=0.1), 3, 0) as env:
        assert env.family == "minatar" and env.single_observation_space.shape == (4, 10, 10)
        assert env.single_observation_space.dtype == np.uint8 and env.frame_stack == 1
        steps = rollout(env, 150)
    assert any(s[6]["done"].any() for s in steps)
    for prev, obs, _, term, trunc, final, ep in steps:
        assert obs.max() <= 1 and obs.any(axis=(1, 2, 3)).all()  # paddle and bricks are drawn
        if term.any():
            assert ep["done"][term].all()


@pytest.mark.parametrize("backend", ["gymnasium", "gymnasium-async"])
def test_cartpole_same_step_autoreset_matches_a_plain_env(backend: str) -> None:
    """Truncation at 7 steps: obs is the next episode's first obs, final_obs the true last one."""
    with make(EnvConfig(id="CartPole-v1", backend=backend, max_episode_steps=7), 2, [11, 12]) as env:
        assert env.family == "classic" and env.single_observation_space.dtype == np.float32
        steps = rollout(env, 20)
    actions = np.random.default_rng(0).integers(0, 2, (20, 2))
    for i in range(2):
        ref = gym.make("CartPole-v1")
        obs, _ = ref.reset(seed=[11, 12][i])
        count = 0
        for t in range(20):
            obs, _, term, trunc, _ = ref.step(int(actions[t, i]))
            count += 1
            _, got, reward, gterm, gtrunc, final, ep = steps[t]
            if term or count == 7:
                assert gtrunc[i] == (count == 7) and gterm[i] == term
                assert np.allclose(final[i], obs) and ep["done"][i] and ep["length"][i] == count
                assert ep["return"][i] == count  # +1 per step, counted from this episode's start
                obs, _ = ref.reset()
                count = 0
            assert np.allclose(got[i], obs), (t, i)


@pytest.mark.parametrize("env_id", ["minatar:breakout", "nethack"])
def test_async_backend_matches_sync(env_id: str) -> None:
    cfg = dict(id=env_id, max_episode_steps=20)
    with make(EnvConfig(backend="gymnasium", **cfg), 2, 4) as a, make(EnvConfig(backend="gymnasium-async", **cfg), 2, 4) as b:
        ra, rb = rollout(a, 45), rollout(b, 45)
    ends = 0
    for x, y in zip(ra, rb):
        assert all(_equal(x[k], y[k]) for k in range(5))
        ended = x[3] | x[4]
        ends += ended.sum()
        assert _equal(_rows(x[5], ended), _rows(y[5], ended))
        assert all(np.array_equal(x[6][k], y[6][k]) for k in x[6])
    assert ends >= 4


def test_bad_backend_and_config_values() -> None:
    with pytest.raises(UserError, match="Atari only"):
        make(EnvConfig(id="nethack", backend="envpool"), 1, 0)
    with pytest.raises(UserError, match="unknown env backend"):
        make(EnvConfig(id="pong", backend="magic"), 1, 0)
    with pytest.raises(UserError, match="frame_stack"):
        make(EnvConfig(id="pong", frame_stack=0), 1, 0)


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_atari_frame_stack_one_keeps_the_stack_axis(backend: str) -> None:
    with make(EnvConfig(id="pong", backend=backend, frame_stack=1), 2, 0) as env:
        obs, _ = env.reset()
        assert env.frame_stack == 1 and obs.shape == (2, 1, 84, 84) and obs.any()
        obs, *_ = env.step(np.zeros(2, np.int64))
        assert obs.shape == (2, 1, 84, 84)


def test_hide_velocities_keeps_position_and_angle_of_the_raw_cartpole() -> None:
    """CartPole's documented layout is [x, x_dot, theta, theta_dot]: the masked env shows x, theta."""
    raw = gym.make("CartPole-v1")
    expected, _ = raw.reset(seed=3)
    with make(EnvConfig(id="CartPole-v1", hide_velocities=True), 1, [3]) as env:
        obs, _ = env.reset(seed=[3])
        assert env.single_observation_space.shape == (2,)
        np.testing.assert_array_equal(obs[0], expected[[0, 2]])
        for action in (0, 1, 1, 0):
            obs, *_ = env.step(np.array([action]))
            expected, *_ = raw.step(action)
            np.testing.assert_array_equal(obs[0], expected[[0, 2]])
    from rlsuite.envs.classic import kept_entries

    assert list(kept_entries("Acrobot-v1", 6)) == [0, 1, 2, 3]  # [cos1, sin1, cos2, sin2] of Acrobot's six
    with pytest.raises(UserError, match="no velocity layout"):
        kept_entries("Taxi-v3", 1)
