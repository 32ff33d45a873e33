"""Evaluation statistics (IQM, bootstrap CIs, human-normalised scores) and the protocol, the
latter against a real gymnasium vector env (CartPole-v1)."""
from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import scipy.stats

from rlsuite.run.evaluate import (
    ATARI_RANDOM_HUMAN,
    EvalResult,
    append_jsonl,
    atari_game_name,
    bootstrap_ci,
    episode_quotas,
    evaluate,
    format_table,
    human_normalized,
    iqm,
    summarize,
)

# --------------------------------------------------------------------------------------------
# statistics


def test_iqm_hand_computed() -> None:
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # cut 2 each side: mean(3, 4, 5, 6)
    assert iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # cut int(1.25) = 1 each side
    assert iqm([7.0]) == pytest.approx(7.0)


def test_iqm_matches_rliable() -> None:
    from rliable import metrics

    rng = np.random.default_rng(1)
    for n in (5, 10, 37, 100):
        x = rng.standard_cauchy(n)
        assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x.reshape(-1, 1)))


def test_bootstrap_ci_hand_computed() -> None:
    # Mean of 2 draws from {0, 1}: 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4).
    assert bootstrap_ci([0.0, 1.0], stat=np.mean, reps=4000) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], stat=np.mean, reps=4000, alpha=0.6) == (0.5, 0.5)
    assert bootstrap_ci([3.0] * 10) == (3.0, 3.0)


def test_bootstrap_ci_vectorised_equals_loop() -> None:
    x = np.random.default_rng(2).normal(size=30)
    looped = bootstrap_ci(x, stat=lambda s: float(np.median(s)), reps=500, seed=3)
    assert bootstrap_ci(x, stat=np.median, reps=500, seed=3) == pytest.approx(looped)
    assert bootstrap_ci(x, reps=500, seed=3) != bootstrap_ci(x, reps=500, seed=4)


def test_bootstrap_ci_covers_true_iqm() -> None:
    # IQM of Exp(1) = 2 * integral of x e^-x over [ln 4/3, ln 4] = 2 * [(a+1)e^-a - (b+1)e^-b].
    a, b = math.log(4 / 3), math.log(4)
    true_iqm = 2 * ((a + 1) * 0.75 - (b + 1) * 0.25)
    rng = np.random.default_rng(0)
    trials = 100
    covered = 0
    for t in range(trials):
        lo, hi = bootstrap_ci(rng.exponential(size=100), reps=1000, seed=t)
        covered += lo <= true_iqm <= hi
    assert 0.88 <= covered / trials <= 1.0  # nominal 95%; a broken CI (e.g. too narrow) fails


def test_bootstrap_ci_close_to_rliable() -> None:
    from rliable import library as rly  # a hard dependency (pyproject pins pandas<3 for its arch import)
    x = np.random.default_rng(5).normal(size=200)
    _, cis = rly.get_interval_estimates({"a": x.reshape(-1, 1)}, lambda s: np.array([iqm(s)]), reps=4000)
    lo, hi = bootstrap_ci(x, reps=4000)
    assert lo == pytest.approx(cis["a"][0, 0], abs=0.03)
    assert hi == pytest.approx(cis["a"][1, 0], abs=0.03)


def test_summarize() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    s = summarize(x)
    assert set(s) == {"mean", "median", "iqm", "iqm_ci_lo", "iqm_ci_hi", "min", "max", "std", "episodes"}
    assert s["mean"] == pytest.approx(22.0) and s["median"] == 3.0 and s["iqm"] == pytest.approx(3.0)
    assert (s["min"], s["max"], s["episodes"]) == (1.0, 100.0, 5)
    assert s["iqm_ci_lo"] <= s["iqm"] <= s["iqm_ci_hi"]
    assert summarize([])["episodes"] == 0


# --------------------------------------------------------------------------------------------
# human-normalised scores


def test_human_normalized_anchor_points() -> None:
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("MontezumaRevenge", 4753.3 / 2) == pytest.approx(0.5)
    assert human_normalized("CartPole", 100.0) is None
    np.testing.assert_allclose(human_normalized("Pong", np.array([-20.7, 14.6])), [0.0, 1.0])


def test_atari_table_shape() -> None:
    assert len(ATARI_RANDOM_HUMAN) == 57
    assert ATARI_RANDOM_HUMAN["Pong"] == (-20.7, 14.6)
    assert ATARI_RANDOM_HUMAN["Breakout"] == (1.7, 30.5)
    assert ATARI_RANDOM_HUMAN["MontezumaRevenge"] == (0.0, 4753.3)
    assert all(human > random for random, human in ATARI_RANDOM_HUMAN.values())


@pytest.mark.parametrize("name", ["Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_game_name_forms(name: str) -> None:
    assert atari_game_name(name) == "Pong"


def test_game_name_snake_case() -> None:
    assert atari_game_name("ms_pacman") == "MsPacman"
    assert atari_game_name("montezuma_revenge") == "MontezumaRevenge"
    assert atari_game_name(None) is None


@pytest.mark.parametrize("name", ["MinAtar/Breakout-v1", "minatar:breakout", "MinAtar/SpaceInvaders-v1",
                                  "CartPole-v1", "NetHackScore-v0", "nethack"])
def test_non_atari_ids_have_no_human_score(name: str) -> None:
    """MinAtar's Breakout is not Atari Breakout (whose row would give (10 - 1.7) / (30.5 - 1.7))."""
    assert atari_game_name(name) is None
    assert human_normalized(name, 10.0) is None


def test_montezuma_alias_is_normalised() -> None:
    """'montezuma' is MontezumaRevenge: random 0.0, human 4753.3."""
    assert atari_game_name("montezuma") == "MontezumaRevenge"
    assert human_normalized("montezuma", 100.0) == pytest.approx((100 - 0.0) / (4753.3 - 0.0))


def test_summary_of_a_minatar_game_is_not_normalised() -> None:
    res = EvalResult(returns=np.array([10.0, 20.0]), lengths=np.ones(2, dtype=np.int64), game="MinAtar/Breakout-v1")
    assert "hns_mean" not in res.summary() and "hns_iqm" not in res.summary()


# --------------------------------------------------------------------------------------------
# the protocol, on a real gymnasium vector env


class CartPoleVec:
    """SyncVectorEnv of CartPole-v1 (same-step autoreset) emitting ``info['episode']`` as rlsuite
    envs do, plus a fake domain metric ``score``. Logs every finished game per env."""

    def __init__(self, num_envs: int) -> None:
        self.env = gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1") for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self.num_envs = num_envs
        self.log: list[list[tuple[float, int]]] = [[] for _ in range(num_envs)]

    def reset(self, seed: int | None = None):
        self.ret = np.zeros(self.num_envs)
        self.len = np.zeros(self.num_envs, dtype=np.int64)
        return self.env.reset(seed=seed)

    def step(self, actions):
        obs, reward, term, trunc, info = self.env.step(actions)
        self.ret += reward
        self.len += 1
        done = term | trunc
        info = dict(info)
        info["episode"] = {"done": done, "return": self.ret.copy(), "length": self.len.copy(),
                           "score": 10 * self.ret}
        for i in np.flatnonzero(done):
            self.log[i].append((float(self.ret[i]), int(self.len[i])))
        self.ret[done] = 0
        self.len[done] = 0
        return obs, reward, term, trunc, info


class SplitAgent:
    """Env 0 always pushes left (games of ~10 steps); the others balance the pole (long games)."""

    def __init__(self) -> None:
        self.epsilons: set[float] = set()
        self.rng = np.random.default_rng(0)

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        self.epsilons.add(epsilon)
        balance = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        actions = np.where(np.arange(len(obs)) == 0, 0, balance)
        explore = self.rng.random(len(obs)) < epsilon
        return np.where(explore, self.rng.integers(0, 2, len(obs)), actions)


def test_quotas() -> None:
    assert episode_quotas(10, 4).tolist() == [3, 3, 2, 2]
    assert episode_quotas(8, 4).tolist() == [2, 2, 2, 2]
    assert episode_quotas(1, 3).tolist() == [1, 0, 0]


def test_evaluate_counts_exactly_and_does_not_favour_short_games() -> None:
    env = CartPoleVec(2)
    agent = SplitAgent()
    res = evaluate(agent, env, episodes=4, epsilon=0.0, seed=0)
    assert len(res.returns) == len(res.lengths) == 4
    assert np.bincount(res.env_ids, minlength=2).tolist() == [2, 2]
    # Env 0 finished many short games while env 1 played its two long ones; only the first two
    # of each env count. "First 4 to finish" would have reported four short games.
    assert len(env.log[0]) > 2
    for i in range(2):
        mine = sorted((r, l) for r, l, e in zip(res.returns, res.lengths, res.env_ids) if e == i)
        assert mine == sorted(env.log[i][:2])
    assert res.returns[res.env_ids == 0].max() < 30
    assert res.returns[res.env_ids == 1].min() > 100
    assert agent.epsilons == {0.0}


def test_evaluate_uneven_quota_and_metrics() -> None:
    env = CartPoleVec(2)
    res = evaluate(SplitAgent(), env, episodes=3, epsilon=0.05, seed=1, game="CartPole")
    assert np.bincount(res.env_ids, minlength=2).tolist() == [2, 1]
    np.testing.assert_allclose(res.returns, res.lengths)  # CartPole: +1 per step
    np.testing.assert_allclose(res.metrics["score"], 10 * res.returns)
    s = res.summary()
    assert s["episodes"] == 3 and s["epsilon"] == 0.05
    assert s["score_mean"] == pytest.approx(10 * s["mean"])
    assert "hns_iqm" not in s


def test_evaluate_fewer_episodes_than_envs() -> None:
    env = CartPoleVec(3)
    res = evaluate(SplitAgent(), env, episodes=1, epsilon=0.0, seed=0)
    assert res.env_ids.tolist() == [0]


def test_evaluate_is_deterministic() -> None:
    a = evaluate(SplitAgent(), CartPoleVec(2), episodes=4, epsilon=0.1, seed=7)
    b = evaluate(SplitAgent(), CartPoleVec(2), episodes=4, epsilon=0.1, seed=7)
    np.testing.assert_array_equal(a.returns, b.returns)


def test_game_taken_from_atari_env_only() -> None:
    env = CartPoleVec(2)
    env.family, env.game = "atari", "Pong"
    assert evaluate(SplitAgent(), env, episodes=2, epsilon=0.0, seed=0).game == "Pong"
    env.family, env.game = "minatar", "breakout"
    assert evaluate(SplitAgent(), env, episodes=2, epsilon=0.0, seed=0).game is None


def test_summary_human_normalised() -> None:
    res = EvalResult(returns=np.array([-20.7, 14.6, 14.6, -20.7]), lengths=np.ones(4, dtype=np.int64),
                     epsilon=0.001, game="ALE/Pong-v5")
    s = res.summary()
    assert s["hns_mean"] == pytest.approx(0.5)
    assert s["hns_iqm"] == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# output


def test_format_table() -> None:
    rows = [{"game": "Pong", "iqm": 12.3456, "episodes": 10, "hns": None},
            {"game": "MontezumaRevenge", "iqm": 2500.0, "episodes": 100, "hns": 0.5259}]
    text = format_table(rows, "eval")
    lines = text.splitlines()
    assert lines[0] == "eval" and set(lines[1]) == {"="}
    assert lines[2].split() == ["game", "iqm", "episodes", "hns"]
    assert "12.346" in text and "2500.0" in text and "0.526" in text and " -" in text
    assert len({len(l) for l in lines[3:]}) == 1  # every row is padded to the same width
    assert lines[4].startswith("Pong ")  # strings left-aligned


def test_append_jsonl(tmp_path) -> None:
    path = tmp_path / "sub" / "eval.jsonl"
    append_jsonl(path, {"step": np.int64(5), "iqm": np.float32(1.5), "ci": np.array([1.0, 2.0])})
    append_jsonl(path, {"step": 6, "iqm": float("nan")})
    records = [json.loads(l) for l in path.read_text().splitlines()]
    assert records == [{"step": 5, "iqm": 1.5, "ci": [1.0, 2.0]}, {"step": 6, "iqm": None}]


def test_trim_mean_is_rliable_definition() -> None:
    x = np.random.default_rng(9).normal(size=41)
    assert iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))
