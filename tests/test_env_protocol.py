"""The env layer's contract, checked against the raw environments: a game that ends on the
time-limit step is terminated (and the replay stores discount 0), Atari observations at every frame
skip are built from the frames actually emulated, and per-env seeds are the ones given (a list) or
SeedSequence children of a root (an int), never overlapping between runs."""
from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest

from rlsuite.envs import EnvConfig, VecEnv, make
from rlsuite.envs.vector import private_rng
from rlsuite.replay import ReplayBuffer, ReplayConfig
from rlsuite.run.seeding import generator, vector_seeds

GAMMA = 0.99
# A '+async' suffix runs the backend split-phase (env.async_step): send/recv overlap the stepping.
ATARI_BACKENDS = ["envpool", "envpool+async", "gymnasium"]
GYM_BACKENDS = ["gymnasium", "gymnasium-async", "gymnasium-async+async"]


def env_cfg(backend: str, **kw) -> EnvConfig:
    """EnvConfig for a test backend name: 'envpool+async' is backend envpool with async_step=True."""
    name, _, mode = backend.partition("+")
    return EnvConfig(backend=name, async_step=mode == "async", **kw)


def run_layer(env: VecEnv, actions: list[int], seeds: list[int] | None = None) -> list[dict]:
    """Step env 0 with `actions` (other envs take action 0); per step, copies of what env 0 returned."""
    obs, _ = env.reset(seed=seeds)
    steps = []
    for a in actions:
        prev = _copy(obs)
        batch = np.zeros(env.num_envs, np.int64)
        batch[0] = a
        obs, _, term, trunc, info = env.step(batch)
        steps.append({"obs": prev, "term": bool(term[0]), "trunc": bool(trunc[0]),
                      "done": bool(info["episode"]["done"][0]), "final": _copy(info["final_obs"])})
    return steps


def _copy(x):
    return {k: v.copy() for k, v in x.items()} if isinstance(x, dict) else x.copy()


def replay_discounts(env: VecEnv, steps: list[dict], last: int = 4) -> dict[int, float]:
    """Add the last `last` steps of a 1-env run to a ReplayBuffer (transition t stored with action
    id t) and return each sampled transition's discount by id."""
    assert env.num_envs == 1
    buf = ReplayBuffer(ReplayConfig(capacity=64), env.single_observation_space, 1, frame_stack=env.frame_stack,
                       n_step=1, gamma=GAMMA, seed=0)
    for t in range(len(steps) - last, len(steps)):
        s = steps[t]
        buf.add(s["obs"], np.array([t]), np.zeros(1), np.array([s["term"]]), np.array([s["trunc"]]), s["final"])
    batch = buf.sample(256)
    return dict(zip(batch.action.tolist(), batch.discount.tolist()))


def assert_ends_exactly_at_cap(env: VecEnv, actions: list[int], seeds: list[int] | None = None) -> None:
    """The game ends on the last action, which is also the cap step: terminated, done, discount 0."""
    steps = run_layer(env, actions, seeds)
    k = len(steps)
    assert not any(s["term"] or s["trunc"] for s in steps[:-1]), "nothing ends before the cap step"
    assert steps[-1]["term"], "a game that ends on the time-limit step is terminated"
    assert steps[-1]["done"]  # and the whole game is over (truncated may be set as well)
    discounts = replay_discounts(env, steps)
    assert discounts[k - 1] == 0.0
    assert all(d == pytest.approx(GAMMA) for t, d in discounts.items() if t != k - 1)


# -- Fault 1: a real end on the cap step is a termination -----------------------------------------------
@pytest.mark.parametrize("backend", GYM_BACKENDS)
def test_cartpole_falling_on_the_cap_step_is_terminated(backend: str) -> None:
    seed = 4
    raw = gym.make("CartPole-v1")
    raw.reset(seed=seed)
    k = 0
    while True:  # the step at which the raw env terminates under action 0
        k += 1
        _, _, term, trunc, _ = raw.step(0)
        assert not trunc
        if term:
            break
    with make(env_cfg(backend, id="CartPole-v1", max_episode_steps=k), 1, [seed]) as env:
        assert_ends_exactly_at_cap(env, [0] * k)


def test_minatar_game_over_on_the_cap_step_is_terminated() -> None:
    import minatar

    seed, rng = 3, np.random.default_rng(0)
    raw = minatar.Environment("space_invaders", sticky_action_prob=0.0)
    raw.seed(seed)
    raw.reset()
    actions, minimal = [], raw.minimal_action_set()
    while True:  # seeded random actions until the raw game terminates
        actions.append(int(rng.integers(len(minimal))))
        _, terminal = raw.act(minimal[actions[-1]])
        if terminal:
            break
    cfg = EnvConfig(id="minatar:space_invaders", sticky_action_prob=0.0, max_episode_steps=len(actions))
    with make(cfg, 1, [seed]) as env:
        assert_ends_exactly_at_cap(env, actions)


def raw_breakout_ends(frame_skip: int = 4) -> tuple[int, int]:
    """Raw ALE Breakout holding FIRE, after the layer's documented reset (noop_max=0: one no-op):
    the agent step at which the first life is lost and the one at which the game is over."""
    from ale_py import Action
    from ale_py.env import AtariEnv

    raw = AtariEnv("breakout", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0)
    ale = raw.ale
    raw.reset(seed=0)
    ale.reset_game()
    ale.act(Action.NOOP)
    lives, first_loss, step = ale.lives(), 0, 0
    while not ale.game_over():
        step += 1
        for _ in range(frame_skip):
            ale.act(Action.FIRE)
            if ale.game_over():
                break
        if not first_loss and ale.lives() < lives:
            first_loss = step
    raw.close()
    return first_loss, step


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
@pytest.mark.parametrize("life_loss", [False, True])
def test_atari_end_on_the_cap_step_is_terminated(backend: str, life_loss: bool) -> None:
    """Game over (or, with life-loss termination, a lost life) on the cap step is terminated."""
    first_loss, game_over = raw_breakout_ends()
    k = first_loss if life_loss else game_over
    cfg = env_cfg(backend, id="breakout", sticky_action_prob=0.0, noop_max=0, fire_reset=False,
                  terminal_on_life_loss=life_loss, max_episode_steps=k)
    with make(cfg, 1, 0) as env:
        fire = 1  # FIRE in Breakout's minimal action set
        assert_ends_exactly_at_cap(env, [fire] * k)


def test_nethack_death_on_the_cap_step_is_terminated() -> None:
    from rlsuite.envs.nethack import NetHackGame

    seed, rng = 5, np.random.default_rng(1)
    probe = NetHackGame(EnvConfig(id="nethack", max_episode_steps=100_000), "NetHackScore-v0")
    probe.reset(seed=seed)  # the game the layer plays with this seed; then the raw NLE env plays it
    actions = []
    while True:
        actions.append(int(rng.integers(probe.action_space.n)))
        _, _, term, trunc, _ = probe._env.step(actions[-1])
        assert not trunc
        if term:
            break
    probe.close()
    with make(EnvConfig(id="nethack", max_episode_steps=len(actions)), 1, [seed]) as env:
        assert_ends_exactly_at_cap(env, actions)


# -- Fault 2: observations come from the frames emulated, at every frame skip ----------------------------
@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_frame_skip_one_shows_each_new_frame(backend: str) -> None:
    """Pong at frame_skip=1: each observation is the raw ALE screen of that frame (INTER_AREA to
    84x84), so consecutive observations differ in most steps."""
    from ale_py import Action
    from ale_py.env import AtariEnv

    raw = AtariEnv("pong", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0)
    ale = raw.ale
    raw.reset(seed=0)
    ale.reset_game()
    ale.act(Action.NOOP)  # the documented reset with noop_max=0: one no-op
    minimal = ale.getMinimalActionSet()

    def screen() -> np.ndarray:
        return cv2.resize(ale.getScreenGrayscale(), (84, 84), interpolation=cv2.INTER_AREA)

    cfg = env_cfg(backend, id="pong", frame_skip=1, frame_stack=1, sticky_action_prob=0.0, noop_max=0)
    actions = np.random.default_rng(0).integers(0, len(minimal), 200)
    changed = 0
    with make(cfg, 1, 0) as env:
        obs, _ = env.reset()
        assert np.array_equal(obs[0, 0], screen())
        for t, a in enumerate(actions):
            prev = obs[0, 0].copy()
            obs, *_ = env.step(np.array([a]))
            ale.act(minimal[a])
            assert np.array_equal(obs[0, 0], screen()), t
            changed += not np.array_equal(obs[0, 0], prev)
    raw.close()
    assert changed >= 150  # 171 of 200 in Pong with these actions


# -- Fault 5: per-env seeds ------------------------------------------------------------------------------
def test_vector_seeds_of_different_runs_never_overlap() -> None:
    per_run = [vector_seeds(root, 8) for root in range(1, 11)]
    everything = [s for run in per_run for s in run]
    assert len(set(everything)) == len(everything)
    assert vector_seeds([7, 3, 9], 3) == [7, 3, 9]  # a list is taken as given


@pytest.mark.parametrize("backend", GYM_BACKENDS)
def test_env_i_gets_the_ith_seed(backend: str) -> None:
    seeds = [101, 7, 2024, 55]
    cfg = env_cfg(backend, id="CartPole-v1")
    with make(cfg, 4, seeds) as env:
        obs, _ = env.reset()
        for i, s in enumerate(seeds):
            assert np.allclose(obs[i], gym.make("CartPole-v1").reset(seed=s)[0])
        env.step(np.zeros(4, np.int64))
        again, _ = env.reset(seed=seeds[::-1])  # a reset with a list re-seeds env i with its value
        for i, s in enumerate(seeds[::-1]):
            assert np.allclose(again[i], gym.make("CartPole-v1").reset(seed=s)[0])


def test_int_roots_of_neighbouring_runs_share_no_env() -> None:
    firsts = []
    for root in (1, 2, 3):
        with make(EnvConfig(id="CartPole-v1"), 8, root) as env:
            obs, _ = env.reset()
            expected = [gym.make("CartPole-v1").reset(seed=s)[0] for s in vector_seeds(root, 8)]
            assert np.allclose(obs, expected)
            firsts += [tuple(row) for row in obs.tolist()]
    assert len(set(firsts)) == len(firsts)


@pytest.mark.parametrize("backend", ATARI_BACKENDS)
def test_atari_env_i_plays_the_game_of_its_seed(backend: str) -> None:
    """Sticky actions and random no-ops make Pong depend on the seed: env 1 of a [a, b] vector
    plays exactly the game of a 1-env vector seeded [b], also after a seeded reset."""
    cfg = env_cfg(backend, id="pong", frame_stack=1, sticky_action_prob=0.25, noop_max=30)
    actions = np.random.default_rng(0).integers(0, 6, (40, 2))

    def play(env: VecEnv, column: int, seeds: list[int] | None = None) -> list[np.ndarray]:
        out = [env.reset(seed=seeds)[0][column].copy()]
        for a in actions:
            out.append(env.step(a[: env.num_envs] if env.num_envs == 2 else a[1:])[0][column].copy())
        return out

    with make(cfg, 2, [11, 12]) as pair, make(cfg, 1, [12]) as alone, make(cfg, 1, [13]) as other:
        want = play(alone, 0)
        assert all(np.array_equal(x, y) for x, y in zip(play(pair, 1), want))
        assert not all(np.array_equal(x, y) for x, y in zip(play(other, 0), want))
        assert all(np.array_equal(x, y) for x, y in zip(play(pair, 1, [11, 12]), want))  # seeded reset replays


def test_env_private_streams_are_not_the_plain_seed_stream() -> None:
    """Reset no-ops and NetHack game seeds come from a keyed child of the env seed, never the
    `default_rng(seed)` stream an agent given the same int would draw."""
    draws = private_rng(5, "atari_reset_noops").integers(2**31, size=4)
    assert not np.array_equal(draws, np.random.default_rng(5).integers(2**31, size=4))
    assert not np.array_equal(draws, private_rng(5, "nethack_game_seeds").integers(2**31, size=4))
    assert not np.array_equal(draws, generator(5, "exploration").integers(2**31, size=4))


def test_sync_state_dict_resumes_exactly() -> None:
    cfg = EnvConfig(id="minatar:breakout", sticky_action_prob=0.1, max_episode_steps=30)
    actions = np.random.default_rng(0).integers(0, 3, (60, 2))
    with make(cfg, 2, [3, 4]) as env, make(cfg, 2, 99) as resumed:
        env.reset()
        for a in actions[:20]:
            env.step(a)
        resumed.load_state_dict(env.state_dict())
        for a in actions[20:]:
            x, y = env.step(a), resumed.step(a)
            for k in range(4):
                assert np.array_equal(x[k], y[k])
