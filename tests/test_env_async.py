"""Split-phase stepping (`env.async_step`): `send` / `recv` on envpool and gymnasium-async give
bit-for-bit what the synchronous backend gives (whose meaning test_env_protocol checks against
the raw envs), episode ends included; misuse is a clear RuntimeError; backends that cannot step
split-phase are refused with a one-line UserError."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from rlsuite.envs import EnvConfig, VecEnv, make
from rlsuite.errors import UserError


def snapshot(out: tuple) -> dict:
    """Copies of one step's outputs: obs, reward, flags, the valid final_obs rows, episode stats."""
    obs, reward, term, trunc, info = out
    ended = info["_final_obs"].copy()
    return {"obs": obs.copy(), "reward": reward.copy(), "term": term.copy(), "trunc": trunc.copy(),
            "ended": ended, "final": info["final_obs"][ended].copy(),
            "episode": {k: v.copy() for k, v in info["episode"].items()}}


def play(env: VecEnv, actions: np.ndarray, seeds: list[int], split: bool, reseed: bool) -> list[dict]:
    """Reset with `seeds`, step through `actions` (T, num_envs), re-seed halfway if `reseed`; a
    snapshot per step. split: send/recv, overwriting the caller's action array while in flight."""
    steps = [{"obs": env.reset(seed=seeds)[0].copy()}]
    buf = np.zeros(env.num_envs, np.int64)
    for t, a in enumerate(actions):
        if reseed and t == len(actions) // 2:
            steps.append({"obs": env.reset(seed=[s + 100 for s in seeds])[0].copy()})
        np.copyto(buf, a)
        if split:
            env.send(buf)
            buf.fill(env.single_action_space.n - 1)  # the caller reuses its array: the sent copy counts
            steps.append(snapshot(env.recv()))
        else:
            steps.append(snapshot(env.step(buf)))
    return steps


def assert_same_runs(sync: list[dict], split: list[dict]) -> dict[str, int]:
    """Every array of every step bitwise equal; returns how many ends of each kind happened."""
    assert len(sync) == len(split)
    for t, (x, y) in enumerate(zip(sync, split)):
        assert x.keys() == y.keys(), t
        for k in x:
            if k == "episode":
                assert x[k].keys() == y[k].keys()
                for m in x[k]:
                    assert np.array_equal(x[k][m], y[k][m]), (t, m)
            else:
                assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (t, k)
    done = [s for s in sync if "term" in s]
    return {"terminated": sum(int(s["term"].sum()) for s in done), "truncated": sum(int(s["trunc"].sum()) for s in done),
            "games": sum(int(s["episode"]["done"].sum()) for s in done)}


def compare(cfg: EnvConfig, sync_backend: str, split_backend: str, steps: int, seeds: list[int],
            reseed: bool = True) -> dict:
    """Play the same random actions and seeds on the sync backend and split-phase (one env per
    seed); assert every output equal and return the counts of ends (`assert_same_runs`)."""
    n = len(seeds)
    actions = None
    runs = []
    for backend, split in ((sync_backend, False), (split_backend, True)):
        c = dataclasses.replace(cfg, backend=backend, async_step=split)
        with make(c, n, seeds) as env:
            assert env.asynchronous == split
            if actions is None:
                actions = np.random.default_rng(0).integers(0, env.single_action_space.n, (steps, n))
            runs.append(play(env, actions, seeds, split, reseed))
    return assert_same_runs(*runs)


# -- (a) identical results, episode ends included ----------------------------------------------------
def test_envpool_async_equals_sync_across_lost_lives_and_time_limits() -> None:
    """Breakout with life-loss terminations and a short time limit, sticky actions, random reset
    no-ops and a re-seeded reset halfway: every output of every step is the synchronous envpool's."""
    cfg = EnvConfig(id="breakout", terminal_on_life_loss=True, max_episode_steps=60, sticky_action_prob=0.25,
                    noop_max=30, clip_rewards=True)
    ends = compare(cfg, "envpool", "envpool", 200, [11, 12, 13, 14])
    assert ends["terminated"] >= 8 and ends["truncated"] >= 4


def test_envpool_async_equals_sync_across_game_overs() -> None:
    """Whole Breakout games ending (FIRE after each reset): identical, episode statistics included."""
    cfg = EnvConfig(id="breakout", max_episode_steps=400, fire_reset=True, sticky_action_prob=0.25, noop_max=30)
    ends = compare(cfg, "envpool", "envpool", 300, [21, 22, 23], reseed=False)
    assert ends["terminated"] >= 2 and ends["games"] >= 2


def test_envpool_async_equals_sync_with_room_metric() -> None:
    """Montezuma's `rooms` statistic (from RAM rows of envpool's info) matches too."""
    cfg = EnvConfig(id="montezuma", max_episode_steps=40, sticky_action_prob=0.25)
    ends = compare(cfg, "envpool", "envpool", 130, [1, 2, 3])
    assert ends["truncated"] >= 6


@pytest.mark.parametrize("env_id,cap", [("CartPole-v1", 30), ("minatar:breakout", 40)])
def test_gymnasium_async_split_equals_in_process_sync(env_id: str, cap: int) -> None:
    """gymnasium-async's step_async/step_wait against the in-process sync backend."""
    cfg = EnvConfig(id=env_id, max_episode_steps=cap, sticky_action_prob=0.1)
    ends = compare(cfg, "gymnasium", "gymnasium-async", 200, [5, 6])
    assert ends["games"] >= 6


def test_envpool_rows_follow_env_id() -> None:
    """A batch whose rows come in another order (envpool's async mode returns envs as they finish)
    is put back in env_id order, info arrays included."""
    import envpool

    from rlsuite.envs.atari import _in_env_order

    pool = envpool.make_gymnasium("Pong-v5", num_envs=3, batch_size=3, stack_num=1, seed=[1, 2, 3])
    pool.reset()
    out = pool.step(np.array([2, 3, 4], np.int32))
    order = np.array([2, 0, 1])
    obs, reward, term, trunc, info = out
    shuffled = {k: v[order] if isinstance(v, np.ndarray) else v for k, v in info.items()}
    back = _in_env_order(obs[order], reward[order], term[order], trunc[order], shuffled)
    for x, y in zip(back[:4], out[:4]):
        assert np.array_equal(x, y)
    for k in ("env_id", "lives", "terminated", "ram"):
        assert np.array_equal(back[4][k], info[k])
    pool.close()


# -- (b) misuse ------------------------------------------------------------------------------------------
MISUSE = [("CartPole-v1", "gymnasium", False), ("CartPole-v1", "gymnasium-async", True), ("pong", "envpool", True),
          ("pong", "envpool", False)]


@pytest.mark.parametrize("env_id,backend,split", MISUSE)
def test_send_recv_misuse_is_a_clear_error(env_id: str, backend: str, split: bool) -> None:
    with make(EnvConfig(id=env_id, backend=backend, async_step=split), 2, 0) as env:
        env.reset()
        a = np.zeros(2, np.int64)
        with pytest.raises(RuntimeError, match=r"recv called with no step in flight: call send\(actions\) first"):
            env.recv()
        with pytest.raises(ValueError, match=r"one action per env, shape \(2,\)"):
            env.send(np.zeros(3, np.int64))
        env.send(a)
        with pytest.raises(RuntimeError, match=r"send called while a step is in flight: call recv\(\)"):
            env.send(a)
        with pytest.raises(RuntimeError, match="in flight"):
            env.step(a)  # step is send + recv: the same rule
        obs, reward, *_ = env.recv()
        assert obs.shape[0] == 2 and reward.shape == (2,)
        with pytest.raises(RuntimeError, match="no step in flight"):
            env.recv()  # each send is received once


@pytest.mark.parametrize("env_id,backend,split", MISUSE)
def test_reset_finishes_a_step_in_flight(env_id: str, backend: str, split: bool) -> None:
    """A reset between send and recv drops that step; the env then plays as a fresh one."""
    cfg = EnvConfig(id=env_id, backend=backend, async_step=split)
    actions = np.random.default_rng(1).integers(0, 2, (20, 2))
    with make(cfg, 2, 3) as env, make(cfg, 2, 3) as fresh:
        env.reset()
        env.send(actions[0])
        assert np.array_equal(env.reset(seed=[8, 9])[0], fresh.reset(seed=[8, 9])[0])
        with pytest.raises(RuntimeError, match="no step in flight"):
            env.recv()
        for a in actions:
            assert np.array_equal(env.step(a)[0], fresh.step(a)[0])


@pytest.mark.parametrize("env_id,backend", [("CartPole-v1", "gymnasium-async"), ("pong", "envpool")])
def test_close_with_a_step_in_flight_is_quiet(env_id: str, backend: str) -> None:
    """An error between send and recv leaves a step in flight: closing still works, warning-free."""
    env = make(EnvConfig(id=env_id, backend=backend, async_step=True), 2, 0)
    env.reset()
    env.send(np.zeros(2, np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.close()


# -- (c) backends that cannot step split-phase -------------------------------------------------------
@pytest.mark.parametrize("env_id,backend", [("CartPole-v1", "auto"), ("CartPole-v1", "gymnasium"),
                                            ("minatar:breakout", "auto"), ("pong", "gymnasium")])
def test_async_step_on_a_sync_backend_is_refused(env_id: str, backend: str) -> None:
    with pytest.raises(UserError) as err:
        make(EnvConfig(id=env_id, backend=backend, async_step=True), 2, 0)
    message = str(err.value)
    assert "\n" not in message
    assert "env.async_step" in message and f"env.backend is '{backend}'" in message
    if backend == "auto":
        assert "resolves to 'gymnasium'" in message


@pytest.mark.parametrize("env_id,backend", [("pong", "auto"), ("CartPole-v1", "gymnasium-async")])
def test_async_step_is_honoured_where_possible(env_id: str, backend: str) -> None:
    """'auto' resolving to envpool for Atari is fine; without async_step nothing overlaps."""
    with make(EnvConfig(id=env_id, backend=backend, async_step=True), 2, 0) as env:
        assert env.asynchronous
    with make(EnvConfig(id=env_id, backend=backend), 2, 0) as env:
        assert not env.asynchronous
