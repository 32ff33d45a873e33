"""`rlsuite collect` and the offline dataset format (rlsuite.data), on real envs and a real checkpoint.

The stored data is checked against what the env itself returned, recorded by a wrapper around the
vector env: per env, every step's observation, action, reward, end flags and the observation that
truly followed it (info['final_obs'] where an episode ended), and the returns info['episode']
reported. Stored episode k of env i must be that env's k-th episode, step for step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlsuite.cli import main
from rlsuite.data import Dataset, DatasetWriter, collect
from rlsuite.envs import EnvConfig, make
from rlsuite.errors import UserError


@pytest.fixture(scope="module")
def run(small_run) -> Path:
    """A short real CartPole DQN run with one checkpoint (conftest's small_run)."""
    return small_run


def _row(obs: Any, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: np.array(v[i]) for k, v in obs.items()}
    return np.array(obs[i])


class Recorder:
    """Wraps a VecEnv; records per env what it returned (the ground truth the dataset is checked against)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.steps: list[list[dict]] = [[] for _ in range(env.num_envs)]
        self.game_returns: list[list[float]] = [[] for _ in range(env.num_envs)]
        self._obs: Any = None

    def reset(self, seed: Any = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed)
        self._obs = [_row(obs, i) for i in range(self.num_envs)]
        return obs, info

    def step(self, actions: np.ndarray) -> tuple:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        for i in range(self.num_envs):
            ended = bool(terminated[i] or truncated[i])
            following = _row(info["final_obs"] if ended else obs, i)
            self.steps[i].append({"obs": self._obs[i], "action": int(actions[i]), "reward": float(reward[i]),
                                  "terminated": bool(terminated[i]), "truncated": bool(truncated[i]),
                                  "next": following})
            if info["episode"]["done"][i]:
                self.game_returns[i].append(float(info["episode"]["return"][i]))
            self._obs[i] = _row(obs, i)
        return obs, reward, terminated, truncated, info

    def episodes(self, i: int) -> list[list[dict]]:
        """Env i's episodes as lists of steps (the last one possibly unfinished)."""
        out: list[list[dict]] = [[]]
        for s in self.steps[i]:
            out[-1].append(s)
            if s["terminated"] or s["truncated"]:
                out.append([])
        return [e for e in out if e]

    def close(self) -> None:
        self.env.close()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


def _take(obs: Any, j: int) -> Any:
    return {k: v[j] for k, v in obs.items()} if isinstance(obs, dict) else obs[j]


def check_against_env(ds: Dataset, rec: Recorder) -> None:
    """Every stored step is the env's own step; definitions hold (returns, flags, next observations)."""
    n = len(ds)
    assert n == sum(length for _, length, _, _ in ds.episodes)
    all_idx = np.arange(n)
    obs, nxt = ds.observations(all_idx), ds.next_observations(all_idx)
    table = ds.episode_table
    seen = [0] * rec.num_envs
    covered = np.zeros(n, bool)
    for e, (start, length, ret, complete) in enumerate(ds.episodes):
        env_i = int(table["env"][e])
        truth = rec.episodes(env_i)[seen[env_i]]
        seen[env_i] += 1
        sl = slice(start, start + length)
        covered[sl] = True
        assert (ds.episode_index[sl] == e).all()
        if complete:
            assert len(truth) == length
            assert truth[-1]["terminated"] or truth[-1]["truncated"]
        else:
            last = start + length - 1
            assert len(truth) >= length and not ds.terminated[last] and not ds.truncated[last]
        for t in range(length):
            s, j = truth[t], start + t
            assert _equal(_take(obs, j), s["obs"])
            assert _equal(_take(nxt, j), s["next"])  # final_obs where the episode ended, else the next row
            assert ds.actions[j] == s["action"] and ds.rewards[j] == np.float32(s["reward"])
            if t < length - 1 or complete:
                assert ds.terminated[j] == s["terminated"] and ds.truncated[j] == s["truncated"]
            if t < length - 1:
                assert _equal(_take(obs, j + 1), _take(nxt, j))  # within an episode: obs[t+1] == next(t)
                assert not ds.terminated[j] and not ds.truncated[j]
        assert ret == pytest.approx(float(ds.rewards[sl].astype(np.float64).sum()))
        if complete:  # the env's own game return (evaluation envs: an episode is a whole game)
            assert ret == pytest.approx(rec.game_returns[env_i][seen[env_i] - 1])
            assert table["game_return"][e] == pytest.approx(ret)
    assert covered.all()
    done = [r for _, _, r, c in ds.episodes if c]
    stats = ds.manifest["stats"]
    assert stats["episodes"] == len(done) and stats["transitions"] == n
    if done:
        assert stats["return_mean"] == pytest.approx(np.mean(done))
        assert stats["return_min"] == min(done) and stats["return_max"] == max(done)


class RandomAgent:
    def __init__(self, n: int, seed: int) -> None:
        self.n, self.rng = n, np.random.default_rng(seed)

    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        rows = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        return self.rng.integers(self.n, size=rows)


def _policy_collect(run: Path, out: Path, rec_envs: int = 3, chunk_size: int = 100,
                    **kw: Any) -> tuple[Dataset, Recorder]:
    from rlsuite.trained.policy import load_policy

    policy = load_policy(run, num_envs=rec_envs, seed=7)
    rec = Recorder(policy.env)
    try:
        ds = collect(policy.agent, rec, out, epsilon=0.3, rng=np.random.default_rng(5), seed=7,
                     manifest={"source": "test"}, chunk_size=chunk_size, **kw)
    finally:
        rec.close()
    return ds, rec


# ----------------------------------------------------------------------------- the format, vs the env


def test_steps_budget_matches_env_and_chunking_changes_nothing(run, tmp_path):
    small, rec = _policy_collect(run, tmp_path / "small", chunk_size=100, steps=700)
    assert len(small) == 700 and len(small.manifest["chunks"]) == 7
    check_against_env(small, rec)
    assert small.manifest["stats"]["incomplete_episodes"] >= 1  # the budget cut the envs' last episodes
    one, _ = _policy_collect(run, tmp_path / "one", chunk_size=10_000, steps=700)
    assert len(one.manifest["chunks"]) == 1
    idx = np.arange(700)
    for name in ("actions", "rewards", "terminated", "truncated", "episode_index"):
        assert np.array_equal(getattr(small, name), getattr(one, name)), name
    assert np.array_equal(small.observations(idx), one.observations(idx))
    assert np.array_equal(small.next_observations(idx), one.next_observations(idx))
    for name in small.episode_table.dtype.names:  # (game_return is nan for the episodes cut short)
        assert np.array_equal(small.episode_table[name], one.episode_table[name], equal_nan=name.endswith("return"))
    # files are memory-mapped
    assert isinstance(np.load(tmp_path / "small" / "chunk_00003" / "obs.npy", mmap_mode="r"), np.memmap)


def test_episodes_budget_gives_whole_episodes(run, tmp_path):
    ds, rec = _policy_collect(run, tmp_path / "eps", episodes=5, chunk_size=64)
    assert ds.num_episodes == 5 and all(c for *_, c in ds.episodes)
    assert sorted(np.bincount(ds.episode_table["env"], minlength=3).tolist()) == [1, 2, 2]  # quotas fixed in advance
    check_against_env(ds, rec)
    ends = np.zeros(len(ds), bool)
    ends[[s + n - 1 for s, n, _, _ in ds.episodes]] = True
    assert np.array_equal(ds.terminated | ds.truncated, ends)  # end flags exactly at episode ends
    assert ds.manifest["source"] == "test" and ds.manifest["epsilon"] == 0.3


def test_dict_observations_nethack(tmp_path):
    env = make(EnvConfig(id="NetHackScore-v0"), 2, 0, evaluation=True)
    rec = Recorder(env)
    try:
        ds = collect(RandomAgent(env.single_action_space.n, 0), rec, tmp_path / "nh", steps=300, seed=3,
                     chunk_size=128)
    finally:
        rec.close()
    assert len(ds) == 300 and isinstance(ds.observations([0]), dict)
    space = ds.observation_space
    assert set(space.spaces) == set(env.single_observation_space.spaces)
    for k, s in env.single_observation_space.spaces.items():
        assert space[k].shape == s.shape and space[k].dtype == s.dtype
        assert (tmp_path / "nh" / "chunk_00000" / f"obs.{k}.npy").exists()
    assert ds.action_space.n == env.single_action_space.n
    check_against_env(ds, rec)


def test_windows_stay_inside_episodes(run, tmp_path):
    ds, _ = _policy_collect(run, tmp_path / "w", steps=400, chunk_size=50)
    windows = ds.sample_windows(500, 6, np.random.default_rng(0))
    ep = ds.episode_index[windows]
    assert (ep == ep[:, :1]).all() and (np.diff(windows, axis=1) == 1).all()
    idx = ds.sample(1000, np.random.default_rng(1))
    assert idx.min() >= 0 and idx.max() < len(ds)


def test_writer_refuses_existing_data_and_reader_names_bad_manifest(tmp_path):
    import gymnasium as gym

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="non-empty"):
        DatasetWriter(tmp_path / "full", gym.spaces.Box(0, 1, (2,)), gym.spaces.Discrete(2), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="manifest.json is missing"):
        Dataset(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        Dataset(tmp_path / "empty")
    # an empty dataset is still a dataset; the Box bounds (with infinities) survive the manifest
    space = gym.spaces.Box(np.array([-np.inf, 0], np.float32), np.array([np.inf, 1], np.float32))
    DatasetWriter(tmp_path / "new", space, gym.spaces.Discrete(3), {"a": 1}).close()
    ds = Dataset(tmp_path / "new")
    assert len(ds) == 0 and ds.num_episodes == 0 and ds.observation_space == space and ds.manifest["a"] == 1
    json.loads((tmp_path / "new" / "manifest.json").read_text())  # strict JSON


# ----------------------------------------------------------------------------- the command line


def test_cli_collect_and_info(run, tmp_path, capsys):
    out = tmp_path / "data" / "cp"
    assert main(["collect", "--from", str(run), "--episodes", "3", "--out", str(out), "--num-envs", "2",
                 "--epsilon", "0.1", "--seed", "4", "--set", "env.max_episode_steps=60"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "3 whole episode(s)" in printed and "transitions" in printed
    ds = Dataset(out)
    assert ds.num_episodes == 3 and all(c for *_, c in ds.episodes)
    m = ds.manifest
    assert m["source"] == "rlsuite collect" and m["algo"] == "dqn" and m["epsilon"] == 0.1
    assert Path(m["checkpoint"]).exists() and m["checkpoint_step"] > 0 and m["seed"] == 4
    assert m["env"]["id"] == "CartPole-v1" and m["env"]["max_episode_steps"] == 60  # --set reached the env
    assert max(n for _, n, _, _ in ds.episodes) <= 60
    assert main(["dataset", "info", str(out)]) == 0
    info = capsys.readouterr().out
    for word in ("episodes", "transitions", "return mean", "size on disk", "rlsuite collect", "CartPole-v1",
                 "checkpoint", "epsilon"):
        assert word in info, word
    assert f"{len(ds)}" in info


def one_line_error(capsys, argv: list[str], message: str) -> None:
    capsys.readouterr()
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's own usage errors (Parser.error: one line, exit 2)
        got = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == 2, (out, err)
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_cli_errors(run, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "f").write_text("x")
    base = ["collect", "--from", str(run)]
    cases = [
        (base + ["--episodes", "2"], "--out"),
        (base + ["--out", str(tmp_path / "a")], "exactly one of --episodes N or --steps N"),
        (base + ["--episodes", "2", "--steps", "9", "--out", str(tmp_path / "a")], "exactly one of"),
        (base + ["--episodes", "0", "--out", str(tmp_path / "a")], "--episodes must be at least 1"),
        (base + ["--steps", "-3", "--out", str(tmp_path / "a")], "--steps must be at least 1"),
        (base + ["--steps", "9", "--num-envs", "0", "--out", str(tmp_path / "a")], "--num-envs must be at least 1"),
        (base + ["--steps", "9", "--epsilon", "1.5", "--out", str(tmp_path / "a")], "between 0 and 1"),
        (base + ["--steps", "9", "--out", str(full)], "non-empty directory"),
        (base + ["--steps", "9", "--out", str(full / "f")], "is a file"),
        (["collect", "--from", str(tmp_path / "nope"), "--steps", "9", "--out", str(tmp_path / "a")], "nope"),
        (base + ["--steps", "9", "--sample", "--out", str(tmp_path / "a")], "--sample"),
        (["dataset", "info", str(full)], "manifest.json is missing"),
        (["dataset", "info", str(tmp_path / "nope")], "not a dataset directory"),
    ]
    for argv, message in cases:
        one_line_error(capsys, argv, message)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    assert main(["dataset"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--help"])
    assert exc.value.code == 0 and "rlsuite collect --from" in capsys.readouterr().out
