"""Close-far tasks (DTMEM_RETENTION.md §2.7): the rules checked against the spec.

Expected values come from the definition (the fixed codes are read from the module's constants,
rewards and limits from the spec), never from the env's own output.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlsuite.envs import EnvConfig, known_env_ids, make, resolve_env_id
from rlsuite.envs import closefar as cf
from rlsuite.errors import UserError
from rlsuite.run.evaluate import evaluate

CHAIN = "closefar:chain"
TWO_ROOM = "closefar:tworoom"
OPTIMAL = list(cf.CORRIDOR_CODE) + list(cf.LOCK_CODE)


def chain(start: str = "close", seed: int = 0, **kw) -> tuple[cf.ChainGame, np.ndarray]:
    env = cf.ChainGame(EnvConfig(id=CHAIN, start=start, **kw))
    obs, _ = env.reset(seed=seed)
    return env, obs


def wrong(action: int) -> int:
    return (action + 1) % 4


def position(obs: np.ndarray) -> int:
    onehot = obs[:10]
    assert onehot.sum() == 1.0 and set(np.unique(onehot)) <= {0.0, 1.0}
    return int(onehot.argmax())


# -- ids and config ---------------------------------------------------------------------------------
def test_ids_resolve_and_are_listed() -> None:
    assert resolve_env_id(CHAIN) == ("closefar", "chain")
    assert resolve_env_id("CloseFar:TwoRoom") == ("closefar", "tworoom")
    assert {CHAIN, TWO_ROOM} <= set(known_env_ids())
    with pytest.raises(UserError):
        resolve_env_id("closefar:maze")
    with pytest.raises(UserError, match="envpool"):
        make(EnvConfig(id=CHAIN, backend="envpool"), 1, 0)


def test_start_field_accepts_only_close_and_far() -> None:
    import dataclasses

    from rlsuite.config.fields import field_check

    start = next(f for f in dataclasses.fields(EnvConfig) if f.name == "start")
    assert start.default == "close" and tuple(field_check(start).options) == ("close", "far")


def test_fixed_codes_are_a_valid_task() -> None:
    assert len(cf.CORRIDOR_CODE) == 10 and len(cf.LOCK_CODE) == 6
    assert all(a in range(4) for a in OPTIMAL)


# -- the two-phase chain ----------------------------------------------------------------------------
def test_optimal_close_start_returns_1_5_in_16_steps() -> None:
    env, obs = chain()
    assert env.observation_space.shape == (15,) and obs.dtype == np.float32 and env.action_space.n == 4
    assert position(obs) == 0 and obs[10] == 0.0
    rewards = []
    for t, action in enumerate(OPTIMAL):
        obs, reward, term, trunc, info = env.step(action)
        rewards.append(reward)
        last = t == len(OPTIMAL) - 1
        assert (term, trunc, info["game_over"]) == (last, False, last)
        if t < 9:
            assert (position(obs), obs[10], info["phase"]) == (t + 1, 0.0, 0)
        elif not last:  # phase B: the position restarts at slot 0 of the shared one-hot
            assert (position(obs), obs[10], info["phase"]) == (t - 9, 1.0, 1)
        assert info["progress"] == t + 1
    assert rewards == pytest.approx([0.05] * 10 + [0.0] * 5 + [1.0])
    assert sum(rewards) == pytest.approx(1.5)
    assert (info["success"], info["phase"], info["progress"]) == (1, 1, 16)


def test_wrong_corridor_actions_stay_in_place() -> None:
    env, obs = chain()
    for cell, forward in enumerate(cf.CORRIDOR_CODE):
        for action in range(4):
            if action == forward:
                continue
            obs, reward, term, trunc, info = env.step(action)
            assert (position(obs), reward, term, trunc) == (cell, 0.0, False, False)
            assert (info["progress"], info["phase"], info["success"], info["game_over"]) == (cell, 0, 0, False)
        obs, reward, *_ = env.step(forward)
        assert reward == pytest.approx(0.05)
    assert obs[10] == 1.0 and position(obs) == 0


@pytest.mark.parametrize("opened", [0, 3, 5])
def test_a_wrong_lock_action_ends_the_episode_without_success(opened: int) -> None:
    env, obs = chain("far")
    for action in cf.LOCK_CODE[:opened]:
        obs, reward, term, trunc, info = env.step(action)
        assert (reward, term) == (0.0, False)
    obs, reward, term, trunc, info = env.step(wrong(cf.LOCK_CODE[opened]))
    assert (reward, term, trunc) == (0.0, True, False)
    assert (info["game_over"], info["success"], info["phase"], info["progress"]) == (True, 0, 1, opened)


def test_a_wrong_lock_action_after_the_corridor_ends_the_episode() -> None:
    env, _ = chain()
    for action in cf.CORRIDOR_CODE:
        env.step(action)
    _, reward, term, _, info = env.step(wrong(cf.LOCK_CODE[0]))
    assert (reward, term, info["success"], info["progress"]) == (0.0, True, 0, 10)


def test_far_start_begins_at_lock_cell_0() -> None:
    env, obs = chain("far")
    assert position(obs) == 0 and obs[10] == 1.0
    total = 0.0
    for t, action in enumerate(cf.LOCK_CODE):
        obs, reward, term, trunc, info = env.step(action)
        total += reward
    assert (t + 1, total, term, info["success"], info["phase"], info["progress"]) == (6, 1.0, True, 1, 1, 6)


@pytest.mark.parametrize("limit, expected", [(27000, 60), (60, 60), (20, 20)])
def test_time_limit_is_60_or_less(limit: int, expected: int) -> None:
    env, _ = chain(max_episode_steps=limit)
    for t in range(1, expected + 1):
        _, _, term, trunc, info = env.step(wrong(cf.CORRIDOR_CODE[0]))  # never moves
        assert (term, trunc, info["game_over"]) == (False, t == expected, t == expected)


def test_task_is_the_same_for_every_seed_and_only_distractors_vary() -> None:
    observations = []
    for seed in (0, 1, 12345):
        env, obs = chain(seed=seed)
        observations.append(obs)
        total = sum(env.step(a)[1] for a in OPTIMAL)
        assert total == pytest.approx(1.5)
    distractors = [o[11:] for o in observations]
    assert all(((d >= 0) & (d < 1)).all() for d in distractors)
    assert not np.allclose(distractors[0], distractors[1])
    np.testing.assert_array_equal(chain(seed=1)[1], observations[1])  # seeded: reproducible


def test_distractors_change_every_step() -> None:
    env, obs = chain()
    nxt = env.step(wrong(cf.CORRIDOR_CODE[0]))[0]
    assert np.array_equal(obs[:11], nxt[:11]) and not np.allclose(obs[11:], nxt[11:])


def test_render_rgb_is_a_small_picture() -> None:
    env, _ = chain()
    first = env.render_rgb()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3 and first.shape[0] < first.shape[1]
    env.step(cf.CORRIDOR_CODE[0])
    assert not np.array_equal(first, env.render_rgb())


class LockPicker:
    """Acts from the definition: in phase B the lock code of the observed cell, else the corridor's."""

    def act(self, obs: np.ndarray, epsilon: float, rng=None) -> np.ndarray:
        cells = obs[:, :10].argmax(axis=1)
        return np.array([(cf.LOCK_CODE if o[10] else cf.CORRIDOR_CODE)[c] for o, c in zip(obs, cells)])


def test_vector_env_reports_success_in_episode_stats() -> None:
    with make(EnvConfig(id=CHAIN, start="far"), 4, 7) as env:
        assert env.metric_keys == ["success", "phase", "progress"]
        obs, _ = env.reset()
        actions = [np.array([a, a, a, wrong(a)]) for a in cf.LOCK_CODE]
        _, _, term, _, info = env.step(actions[0])
        ep = info["episode"]
        assert term.tolist() == [False, False, False, True]
        assert (ep["done"][3], ep["success"][3], ep["length"][3], ep["return"][3]) == (True, 0, 1, 0.0)
        for step in actions[1:]:
            _, _, term, _, info = env.step(step)
        ep = info["episode"]
        assert term[:3].all() and ep["done"][:3].all()
        assert ep["success"][:3].tolist() == [1, 1, 1] and ep["return"][:3].tolist() == pytest.approx([1.0] * 3)
        assert ep["length"][:3].tolist() == [6, 6, 6] and ep["progress"][:3].tolist() == [6, 6, 6]


@pytest.mark.parametrize("start, ret", [("close", 1.5), ("far", 1.0)])
def test_evaluate_reports_success_mean(start: str, ret: float) -> None:
    with make(EnvConfig(id=CHAIN, start=start), 2, 0, evaluation=True) as env:
        summary = evaluate(LockPicker(), env, episodes=4, epsilon=0.0, seed=0).summary()
    assert summary["success_mean"] == 1.0 and summary["phase_mean"] == 1.0
    assert summary["progress_mean"] == (16.0 if start == "close" else 6.0)
    assert summary["mean"] == pytest.approx(ret) and summary["episodes"] == 4


def test_chain_async_backend_matches() -> None:
    with make(EnvConfig(id=CHAIN, start="far", backend="gymnasium-async"), 2, 0) as env:
        env.reset()
        for a in cf.LOCK_CODE:
            _, _, _, _, info = env.step(np.array([a, a]))
        assert info["episode"]["success"].tolist() == [1, 1]


# -- the two rooms ----------------------------------------------------------------------------------
LEFT, RIGHT, FORWARD = 0, 1, 2  # MiniGrid's action numbers; directions 0 east, 1 south, 2 west, 3 north


def two_room(start: str = "close", seed: int = 0, **kw) -> tuple[cf.TwoRoomGame, np.ndarray]:
    env = cf.TwoRoomGame(EnvConfig(id=TWO_ROOM, start=start, **kw))
    obs, _ = env.reset(seed=seed)
    return env, obs


def path_to_goal(x: int, y: int, direction: int) -> list[int]:
    """From (x, y) in row 2 (the door's row): face east, walk to column 7, face south, walk to row 3."""
    assert y == 2 and cf.GOAL_POS == (7, 3) and cf.DOOR_Y == 2
    return [RIGHT] * ((0 - direction) % 4) + [FORWARD] * (7 - x) + [RIGHT] + [FORWARD]


@pytest.mark.parametrize("start", ["close", "far"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scripted_path_reaches_the_goal(start: str, seed: int) -> None:
    env, obs = two_room(start, seed)
    assert env.observation_space.shape == obs.shape == (7 * 7 * 11 + 4,) and obs.dtype == np.float32
    assert env.action_space.n == 3
    x, y = env.agent_pos
    assert (x < 4) if start == "close" else (x > 4)  # room 1 is columns 1-3, room 2 columns 5-7
    assert obs[-4:].tolist() == [float(d == env.agent_dir) for d in range(4)]
    assert obs[:-4].reshape(49, 11).sum(axis=1).tolist() == [1.0] * 49  # one object type per view cell
    path = path_to_goal(x, y, env.agent_dir)
    for t, action in enumerate(path):
        obs, reward, term, trunc, info = env.step(action)
        last = t == len(path) - 1
        assert (term, trunc, info["game_over"]) == (last, False, last)
    assert reward == pytest.approx(1 - 0.9 * len(path) / 60)
    assert (info["success"], info["room"]) == (1, 1)


def test_room_metric_and_start_direction() -> None:
    env, _ = two_room("close", 0)
    _, _, _, _, info = env.step(LEFT)
    assert info["room"] == 0 and info["success"] == 0
    directions = {two_room("close", seed)[0].agent_dir for seed in range(12)}
    assert len(directions) > 1  # the direction comes from the env seed
    assert {two_room("close", seed)[0].agent_pos for seed in range(6)} == {cf.CLOSE_START}


def test_two_room_time_limit() -> None:
    env, _ = two_room(max_episode_steps=25)
    for t in range(1, 26):
        _, reward, term, trunc, info = env.step(LEFT)  # spins in place
        assert (reward, term, trunc, info["game_over"]) == (0.0, False, t == 25, t == 25)
    assert info["success"] == 0


def test_two_room_vector_env_and_picture() -> None:
    with make(EnvConfig(id=TWO_ROOM, start="far"), 2, 3) as env:
        assert env.metric_keys == ["success", "room"]
        env.reset()
        games = env.envs
        paths = [path_to_goal(*g.agent_pos, g.agent_dir) for g in games]
        steps = max(map(len, paths))
        done = [None, None]
        for t in range(steps):
            actions = np.array([p[t] if t < len(p) else LEFT for p in paths])
            _, _, _, _, info = env.step(actions)
            for i in range(2):
                if t == len(paths[i]) - 1:
                    done[i] = (info["episode"]["done"][i], info["episode"]["success"][i], info["episode"]["room"][i])
        assert done == [(True, 1, 1), (True, 1, 1)]
        picture = games[0].render_rgb()
        assert picture.dtype == np.uint8 and picture.shape == (5 * 32, 9 * 32, 3)


# -- end to end through the CLI ---------------------------------------------------------------------
def test_cli_trains_ppo_on_the_chain_and_evaluates_success(tmp_path: Path, capsys) -> None:
    from rlsuite.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "ppo-classic", "--env", CHAIN, "--steps", "4096", "--run-dir", str(run_dir),
                 "--no-progress", "--set", "train.eval_every=2048", "--set", "train.torch_threads=1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert records and all("success_mean" in r for r in records)
    assert all(0.0 <= r["success_mean"] <= 1.0 for r in records)


def test_cli_rejects_an_unknown_start(tmp_path: Path, capsys) -> None:
    from rlsuite.cli import main

    code = main(["train", "ppo-classic", "--env", CHAIN, "--steps", "4096", "--run-dir", str(tmp_path / "run"),
                 "--no-progress", "--set", "env.start=middle"])
    _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "start" in err


@pytest.mark.parametrize("env_id", [CHAIN, TWO_ROOM])
def test_vector_state_dict_resumes_exactly(env_id: str) -> None:
    rng = np.random.default_rng(0)
    with make(EnvConfig(id=env_id), 2, 5) as env:
        n = env.single_action_space.n
        env.reset()
        for _ in range(10):
            env.step(rng.integers(0, n, 2))
        state = env.state_dict()
        assert state is not None
        actions = rng.integers(0, n, (90, 2))  # past the 60-step limit: resets are replayed too
        first = [env.step(a)[0].copy() for a in actions]
        env.load_state_dict(state)
        again = [env.step(a)[0].copy() for a in actions]
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
