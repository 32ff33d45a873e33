"""Minari import and export (rlsuite.data.minari_io), on real envs, in a temporary Minari root.

Round trips start from datasets `collect` made on real envs (CartPole: float observations, episodes
cut by the step budget; MinAtar: uint8 image observations) and must come back equal, boundaries and
unfinished episodes included. The import is also held to Minari's own writer: a dataset recorded by
minari.DataCollector around a gymnasium env, checked against what that env returned.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("h5py", reason="Minari's hdf5 storage needs h5py (pip install 'minari[hdf5]')")

from rlsuite.cli import main  # noqa: E402
from rlsuite.data import Dataset, collect  # noqa: E402
from rlsuite.data.minari_io import export_minari, import_minari  # noqa: E402
from rlsuite.envs import EnvConfig, make  # noqa: E402
from rlsuite.errors import UserError  # noqa: E402


class RandomAgent:
    def __init__(self, n: int, seed: int) -> None:
        self.n, self.rng = n, np.random.default_rng(seed)

    def act(self, obs, epsilon, rng=None):
        return self.rng.integers(self.n, size=len(obs))


def collected(tmp_path, env_id: str, steps: int, num_envs: int, seed: int) -> Dataset:
    env = make(EnvConfig(id=env_id), num_envs, seed, evaluation=True)
    try:
        return collect(RandomAgent(env.single_action_space.n, seed), env, tmp_path / env_id.replace(":", "-"),
                       steps=steps, seed=seed, chunk_size=128, manifest={"source": "test", "env_id": env_id})
    finally:
        env.close()


def assert_same(a: Dataset, b: Dataset) -> None:
    assert len(a) == len(b) and a.num_episodes == b.num_episodes
    assert a.observation_space == b.observation_space and a.action_space == b.action_space
    idx = np.arange(len(a))
    for name in ("actions", "rewards", "terminated", "truncated", "episode_index"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.observations(idx), b.observations(idx))
    assert np.array_equal(a.next_observations(idx), b.next_observations(idx))  # final observations included
    for name in ("start", "length", "return", "complete", "env"):
        assert np.array_equal(a.episode_table[name], b.episode_table[name]), name


@pytest.mark.parametrize("env_id,steps,num_envs", [("CartPole-v1", 400, 3), ("minatar:breakout", 300, 2)])
def test_round_trip(tmp_path, monkeypatch, env_id, steps, num_envs):
    import minari

    original = collected(tmp_path, env_id, steps, num_envs, seed=3)
    assert original.manifest["stats"]["incomplete_episodes"] == num_envs  # the budget cut every env's last episode
    root = tmp_path / "minari"
    path = export_minari(original, "rlsuite/test-v0", dataset_dir=root, batch_steps=100)
    assert path == root / "rlsuite" / "test-v0" and (path / "data" / "metadata.json").is_file()
    # Minari's own reader sees T + 1 observations per episode, and unfinished episodes ending truncated
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    theirs = minari.load_dataset("rlsuite/test-v0")
    assert theirs.total_episodes == original.num_episodes and theirs.total_steps == len(original)
    for ep, (start, length, _, complete) in zip(theirs.iterate_episodes(), original.episodes):
        assert len(ep.observations) == length + 1 and len(ep.actions) == length
        assert np.array_equal(ep.observations[:length], original.observations(np.arange(start, start + length)))
        assert bool(ep.terminations[-1] or ep.truncations[-1])
        assert bool(ep.truncations[-1]) == (not complete or bool(original.truncated[start + length - 1]))
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    back = import_minari("rlsuite/test-v0", tmp_path / "back", root=root)
    assert_same(original, back)
    assert back.manifest["source"] == "minari" and back.manifest["minari_id"] == "rlsuite/test-v0"
    assert back.manifest["origin"]["env_id"] == env_id
    assert_same(original, import_minari(path, tmp_path / "by-path"))  # a dataset directory works too


def test_import_of_minari_data_collector(tmp_path, monkeypatch):
    """A dataset written by Minari's own DataCollector: 3 whole episodes, then one cut by create_dataset."""
    import minari

    pytest.importorskip("jax", reason="minari.DataCollector needs jax (pip install 'minari[create]')")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    env = minari.DataCollector(gym.make("CartPole-v1"))
    rng = np.random.default_rng(0)
    episodes: list[dict] = []
    obs, _ = env.reset(seed=11)
    current = {"obs": [obs], "actions": [], "rewards": [], "terminated": [], "truncated": []}
    while len(episodes) < 3 or len(current["actions"]) < 5:
        action = int(rng.integers(2))
        obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in (("obs", obs), ("actions", action), ("rewards", reward), ("terminated", terminated),
                           ("truncated", truncated)):
            current[key].append(value)
        if terminated or truncated:
            episodes.append(current)
            obs, _ = env.reset()
            current = {"obs": [obs], "actions": [], "rewards": [], "terminated": [], "truncated": []}
    current["truncated"][-1] = True  # what DataCollector does to the episode create_dataset cuts
    episodes.append(current)
    env.create_dataset("cartpole/random-v0", eval_env="CartPole-v1", algorithm_name="random", author="test",
                       author_email="t@example.com", code_permalink="none", description="random CartPole")
    env.close()
    monkeypatch.delenv("MINARI_DATASETS_PATH")

    ds = import_minari("cartpole/random-v0", tmp_path / "out", root=tmp_path / "root")
    assert ds.num_episodes == 4 and all(c for *_, c in ds.episodes)  # Minari marks the cut one truncated
    assert ds.observation_space == gym.make("CartPole-v1").observation_space and ds.action_space.n == 2
    for (start, length, ret, _), truth in zip(ds.episodes, episodes):
        idx = np.arange(start, start + length)
        assert length == len(truth["actions"])
        assert np.array_equal(ds.observations(idx), np.array(truth["obs"][:-1], np.float32))
        assert np.array_equal(ds.next_observations(idx), np.array(truth["obs"][1:], np.float32))
        assert np.array_equal(ds.actions[idx], truth["actions"])
        assert np.array_equal(ds.rewards[idx], np.array(truth["rewards"], np.float32))
        assert np.array_equal(ds.terminated[idx], truth["terminated"])
        assert np.array_equal(ds.truncated[idx], truth["truncated"])
        assert ret == pytest.approx(sum(truth["rewards"]))
    assert ds.truncated[-1] and not ds.terminated[-1]


def test_errors_are_one_line(tmp_path, capsys):
    import minari

    original = collected(tmp_path, "CartPole-v1", 60, 1, seed=1)
    root = tmp_path / "root"
    export_minari(original, "taken-v0", dataset_dir=root)
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    with pytest.MonkeyPatch.context() as mp, pytest.warns(UserWarning):
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        buffer = minari.data_collector.EpisodeBuffer(observations=np.zeros((3, 2), np.float32),
                                                     actions=np.zeros((2, 2), np.float32), rewards=[0.0, 1.0],
                                                     terminations=[False, True], truncations=[False, False])
        minari.create_dataset_from_buffers("continuous-v0", [buffer], observation_space=box, action_space=box)
    with pytest.raises(UserError, match="Discrete"):
        import_minari("continuous-v0", tmp_path / "o1", root=root)
    with pytest.raises(UserError, match="already exists"):
        export_minari(original, "taken-v0", dataset_dir=root)
    for argv, message in [
        (["dataset", "import-minari", "nope-v0", "--root", str(root), "--out", str(tmp_path / "o2")], "is not in"),
        (["dataset", "import-minari", "not an id", "--root", str(root), "--out", str(tmp_path / "o3")], "malformed"),
        (["dataset", "import-minari", str(tmp_path), "--out", str(tmp_path / "o4")], "not a Minari dataset"),
        (["dataset", "export-minari", str(original.path), "--id", "bad", "--root", str(root)], "malformed"),
        (["dataset", "export-minari", str(original.path), "--id", "taken-v0", "--root", str(root)], "already exists"),
        (["dataset", "export-minari", str(tmp_path / "none"), "--id", "x-v0", "--root", str(root)], "not a dataset"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err


def test_cli_export_and_import(tmp_path, capsys, monkeypatch):
    original = collected(tmp_path, "CartPole-v1", 200, 2, seed=5)
    monkeypatch.chdir(tmp_path)
    root = "root"  # a relative root, as typed
    assert main(["dataset", "export-minari", str(original.path), "--id", "rlsuite/cp-v1", "--root", root]) == 0
    assert (tmp_path / "root" / "rlsuite" / "cp-v1" / "data" / "main_data.hdf5").is_file()
    printed = capsys.readouterr().out
    assert "rlsuite/cp-v1" in printed and "2 unfinished" in printed
    out = tmp_path / "back"
    assert main(["dataset", "import-minari", "rlsuite/cp-v1", "--root", root, "--out", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    assert_same(original, Dataset(out))
    for command in ("import-minari", "export-minari"):
        with pytest.raises(SystemExit) as exc:
            main(["dataset", command, "--help"])
        assert exc.value.code == 0 and f"rlsuite dataset {command}" in capsys.readouterr().out
