"""`rlsuite dataset export`: a DQN run's saved replay as a dataset (rlsuite.data.export_replay), on real runs.

The truth is what the replay buffer itself would train on: every transition its sampling rule allows
(the `valid` flag it saved), gathered with the buffer's own reference operators
(rlsuite.replay.ops.frame_stack_gather, nstep_returns) straight from the saved arrays. The export must
hold exactly those transitions, less the ones of each stream's oldest episode, whose start the ring
had overwritten (dropped by design), with flags and next observations as the buffer sees them.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsuite.cli import main
from rlsuite.data import Dataset
from rlsuite.replay import ops
from tests.conftest import TINY


def train(run: Path, *argv: str) -> Path:
    assert main(["train", *argv, "--save-replay", "--no-progress", "--run-dir", str(run), "--set",
                 "train.eval_episodes=1", "--set", "train.torch_threads=1"]) == 0
    return run


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    """CartPole, 2 envs of 600 ring slots for 1500 steps each: the rings have wrapped."""
    sets = [x for o in TINY + ["replay.capacity=1200", "train.num_envs=2", "train.checkpoint_every=1000"]
            for x in ("--set", o)]
    return train(tmp_path_factory.mktemp("runs") / "cp", "dqn-classic", "--env", "CartPole-v1", "--steps", "3000",
                 *sets)


@pytest.fixture(scope="module")
def pong(tmp_path_factory) -> Path:
    """Pong with 4-frame stacks, 300-step episodes (time-limit truncations), 2 envs of 500 slots, no learning."""
    sets = [x for o in ["replay.capacity=1000", "train.num_envs=2", "train.checkpoint_every=1500",
                        "env.max_episode_steps=300", "agent.learning_starts=100000", "train.eval_every=0"]
            for x in ("--set", o)]
    return train(tmp_path_factory.mktemp("runs") / "pong", "dqn", "--env", "pong", "--steps", "1500", *sets)


def replay_truth(replay: Path) -> tuple[Counter, int]:
    """The replay's sampleable 1-step transitions after each stream's first episode start, as a multiset of
    (env, obs, action, reward, terminated, truncated, next obs); and how many streams there are."""
    meta = json.loads((replay / "meta.json").read_text())
    arrays = {}
    for name, entry in meta["fields"].items():
        parts = [np.load(replay / f"{name}-{c:05d}.npy") for c in range(entry["chunks"])]
        arrays[name] = np.concatenate(parts).reshape(entry["shape"])
    num_envs, slots, k = meta["layout"]["num_envs"], meta["layout"]["slots"], meta["layout"]["frame_stack"]
    cursor = np.array(meta["state"]["storage"]["cursor"])
    gidx = torch.from_numpy(np.flatnonzero(arrays["valid"].reshape(-1)))
    env, t = gidx // slots, gidx % slots
    tensors = {name: torch.from_numpy(a) for name, a in arrays.items()}
    _, discount, boot = ops.nstep_returns(tensors["reward"], tensors["terminated"], tensors["truncated"], t, env, 1,
                                          0.99)
    obs = ops.frame_stack_gather(tensors["frames.obs"], tensors["first"], t, env, k).numpy()
    nxt = ops.frame_stack_gather(tensors["frames.obs"], tensors["first"], boot, env, k).numpy()
    if k == 1:
        obs, nxt = obs[:, 0], nxt[:, 0]
    env, t = env.numpy(), t.numpy()
    time = cursor[env] - 1 - (cursor[env] - 1 - t) % slots  # absolute time of each slot
    first_start = []
    for e in range(num_envs):  # the first episode start still in stream e's ring
        live = np.arange(max(0, cursor[e] - slots), cursor[e])
        starts = live[arrays["first"][e, live % slots] & ~arrays["final"][e, live % slots]]
        first_start.append(starts[0])
    keep = time >= np.array(first_start)[env]
    truth = Counter()
    for i in np.flatnonzero(keep):
        truth[(int(env[i]), obs[i].tobytes(), int(arrays["action"][env[i], t[i]]), float(arrays["reward"][env[i], t[i]]),
               bool(discount[i] == 0), bool(arrays["truncated"][env[i], t[i]]), nxt[i].tobytes())] += 1
    assert keep.sum() < len(keep)  # the rings wrapped: something was dropped
    return truth, num_envs


def exported(ds: Dataset) -> Counter:
    idx = np.arange(len(ds))
    obs, nxt = ds.observations(idx), ds.next_observations(idx)
    env = np.asarray(ds.episode_table["env"])[ds.episode_index]
    return Counter((int(env[i]), obs[i].tobytes(), int(ds.actions[i]), float(ds.rewards[i]), bool(ds.terminated[i]),
                    bool(ds.truncated[i]), nxt[i].tobytes()) for i in idx)


def check_structure(ds: Dataset, num_envs: int) -> None:
    table = ds.episode_table
    ends = np.zeros(len(ds), bool)
    for start, length, ret, complete in ds.episodes:
        assert ret == pytest.approx(float(ds.rewards[start:start + length].sum()))
        ends[start + length - 1] = complete
    assert np.array_equal(ds.terminated | ds.truncated, ends)  # flags exactly at the ends of whole episodes
    for e in range(num_envs):  # each stream: whole episodes, then its unfinished one last
        complete = np.asarray(table["complete"])[np.asarray(table["env"]) == e]
        assert len(complete) >= 2 and not complete[-1] and complete[:-1].all()


def test_cartpole_export_equals_the_replay(cartpole, tmp_path, capsys):
    out = tmp_path / "cp-data"
    assert main(["dataset", "export", str(cartpole), "--out", str(out), "--chunk-size", "500"]) == 0
    printed = capsys.readouterr().out
    assert "exported" in printed and "2 stream(s)" in printed
    ds = Dataset(out)
    truth, num_envs = replay_truth(cartpole / "replay")
    assert exported(ds) == truth
    check_structure(ds, num_envs)
    assert ds.terminated.any()  # CartPole's pole falls: terminations
    m = ds.manifest
    assert m["source"] == "rlsuite replay" and m["algo"] == "dqn" and m["env_id"] == "CartPole-v1"
    assert m["reward"] == "raw, as the env returned it" and m["num_envs"] == 2 and m["replay_added"] == 3000
    assert ds.observation_space.shape == (4,) and ds.action_space.n == 2


def test_pong_frame_stacks_and_truncations(pong, tmp_path):
    from rlsuite.data.export_replay import export_replay

    ds = export_replay(pong, tmp_path / "pong-data")
    truth, num_envs = replay_truth(pong / "replay")
    assert exported(ds) == truth
    check_structure(ds, num_envs)
    assert ds.observation_space.shape == (4, 84, 84)
    whole = [(s, n) for s, n, _, c in ds.episodes if c]
    assert whole and all(n == 300 for _, n in whole)  # the time limit cut them ...
    assert ds.truncated.sum() == len(whole) and not ds.terminated.any()  # ... as truncations, not terminations
    for s, _ in whole:  # an episode's first observation: three zero frames, then its first frame
        first = ds.observations([s])[0]
        assert not first[:3].any() and first[3].any()
    assert ds.manifest["reward"] == "clipped to sign(r) (env.clip_rewards)"


def test_errors_are_one_line(cartpole, tmp_path, capsys):
    no_replay = tmp_path / "no-replay"
    no_replay.mkdir()
    shutil.copy(cartpole / "config.toml", no_replay / "config.toml")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    for argv, message in [
        (["dataset", "export", str(tmp_path / "nope"), "--out", str(tmp_path / "a")], "not a run directory"),
        (["dataset", "export", str(no_replay), "--out", str(tmp_path / "a")], "--save-replay"),
        (["dataset", "export", str(cartpole), "--out", str(full)], "non-empty directory"),
        (["dataset", "export", str(cartpole), "--out", str(tmp_path / "a"), "--chunk-size", "0"], "--chunk-size"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "export", "--help"])
    assert exc.value.code == 0 and "rlsuite dataset export runs/" in capsys.readouterr().out
