"""DQN-Replay import (rlsuite.data.dqn_replay) on fixtures written in Dopamine's checkpoint format.

`DopamineRing` plays Dopamine's OutOfGraphReplayBuffer (circular_replay_buffer.py): `add` writes
stack_size - 1 zero rows before every episode (as `add` / `_add_zero_transition` do), rows go to
add_count % capacity, and `log` writes batch_rl's checkpoint files (`<name>_ckpt.<i>.gz`, one
np.save per gzip stream) whenever add_count % capacity == capacity - 1, as OutOfGraphLoggedReplayBuffer
does. Every episode it was fed is kept with the add numbers of its rows, so what a stream of
checkpoints must give back is computed from the episodes, not from the files.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from rlsuite.cli import main
from rlsuite.data import Dataset
from rlsuite.data.dqn_replay import import_dqn_replay, minimal_action_set
from rlsuite.errors import UserError

PONG_MINIMAL = [0, 1, 3, 4, 11, 12]  # NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE, as full-set ALE indices
H = W = 84


def write_array(path: Path, array: np.ndarray) -> None:
    """Dopamine's save: np.save into a gzip.GzipFile wrapped around the opened file."""
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb") as out:
        np.save(out, array, allow_pickle=False)


class DopamineRing:
    def __init__(self, directory: Path, capacity: int, stack_size: int = 4, log: bool = True) -> None:
        self.dir, self.capacity, self.stack = directory, capacity, stack_size
        directory.mkdir(parents=True, exist_ok=True)
        self.store = {"observation": np.zeros((capacity, H, W), np.uint8), "action": np.zeros(capacity, np.int32),
                      "reward": np.zeros(capacity, np.float32), "terminal": np.zeros(capacity, np.uint8)}
        self.add_count, self.log_count, self.logging = 0, 0, log
        self.episodes: list[dict] = []  # frames, actions, rewards, adds (add number of each step), ended

    def _add(self, obs, action, reward, terminal) -> None:
        cursor = self.add_count % self.capacity
        for name, value in zip(self.store, (obs, action, reward, terminal)):
            self.store[name][cursor] = value
        self.add_count += 1
        if self.logging and self.add_count % self.capacity == self.capacity - 1:
            self.save(self.log_count)
            self.log_count += 1

    def add(self, obs, action, reward, terminal) -> None:
        if self.add_count == 0 or self.store["terminal"][(self.add_count - 1) % self.capacity] == 1:
            for _ in range(self.stack - 1):
                self._add(np.zeros((H, W), np.uint8), 0, 0.0, 0)
            self.episodes.append({"frames": [], "actions": [], "rewards": [], "adds": [], "ended": False})
        ep = self.episodes[-1]
        ep["frames"].append(obs)
        ep["actions"].append(action)
        ep["rewards"].append(reward)
        ep["adds"].append(self.add_count)
        ep["ended"] = bool(terminal)
        self._add(obs, action, reward, terminal)

    def play(self, rng: np.random.Generator, lengths: list[int], last_unfinished: int = 0) -> None:
        for i, n in enumerate(lengths + ([last_unfinished] if last_unfinished else [])):
            for t in range(n):
                terminal = t == n - 1 and i < len(lengths)
                self.add(rng.integers(1, 256, (H, W), dtype=np.uint8), int(rng.integers(0, 6)),
                         float(rng.choice([-1.0, 0.0, 1.0])), int(terminal))

    def save(self, suffix: int) -> None:
        for name, array in self.store.items():
            write_array(self.dir / f"$store$_{name}_ckpt.{suffix}.gz", array)
        write_array(self.dir / f"add_count_ckpt.{suffix}.gz", np.array(self.add_count))
        write_array(self.dir / f"invalid_range_ckpt.{suffix}.gz", np.zeros(self.stack, np.int64))


def expected_episodes(ring: DopamineRing, first_add: int, end_add: int) -> list[dict]:
    """What a stream holding adds first_add .. end_add - 1 must give: every episode that starts after the
    stream's first terminal (or all, when the stream starts at add 0), the last one cut short."""
    out = []
    pad = ring.stack - 1
    for ep in ring.episodes:
        start, last = ep["adds"][0], ep["adds"][-1]
        previous_end = start - pad - 1  # the terminal row before this episode's padding
        if first_add > 0 and previous_end < first_add:
            continue
        if last < end_add and ep["ended"]:
            out.append({**ep, "complete": True, "n": len(ep["adds"])})
        elif start <= end_add - 2:  # rows start .. end_add - 1 are there: the last one is only a next frame
            out.append({**ep, "complete": False, "n": end_add - 1 - start})
    return out


def stack_of(frames: list[np.ndarray], t: int, k: int = 4) -> np.ndarray:
    """The k-frame stack ending at frame t, oldest first, zeros before frame 0 (and after the last)."""
    rows = [frames[j] if 0 <= j < len(frames) else np.zeros((H, W), np.uint8) for j in range(t - k + 1, t + 1)]
    return np.stack(rows)


def check(ds: Dataset, expected: list[dict], env_of: list[int] | None = None) -> None:
    assert ds.num_episodes == len(expected)
    assert ds.action_space.n == 18 and ds.observation_space.shape == (4, H, W)
    for e, ((start, length, ret, complete), want) in enumerate(zip(ds.episodes, expected)):
        n = want["n"]
        assert (length, complete) == (n, want["complete"])
        idx = np.arange(start, start + length)
        assert np.array_equal(ds.actions[idx], np.array(PONG_MINIMAL)[want["actions"][:n]])
        assert np.array_equal(ds.rewards[idx], np.array(want["rewards"][:n], np.float32))
        assert ret == pytest.approx(sum(want["rewards"][:n]))
        assert not ds.truncated[idx].any()
        assert np.array_equal(ds.terminated[idx], np.arange(n) == n - 1 if complete else np.zeros(n, bool))
        obs, nxt = ds.observations(idx), ds.next_observations(idx)
        for t in range(n):
            assert np.array_equal(obs[t], stack_of(want["frames"], t))
        # the final observation: Dopamine's next state of a terminal row (a zero newest frame), else the next frame
        assert np.array_equal(nxt[-1], stack_of(want["frames"], n))
        if env_of is not None:
            assert ds.episode_table["env"][e] == env_of[e]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> DopamineRing:
    """batch_rl-style logs: capacity 60, episodes of 1..17 steps and one of 70 (longer than a checkpoint),
    four checkpoints and a run going on."""
    ring = DopamineRing(tmp_path_factory.mktemp("pong") / "1" / "replay_logs", capacity=60)
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 18, 16)]
    ring.play(rng, lengths[:8] + [70] + lengths[8:], last_unfinished=9)
    assert ring.log_count == 4 and ring.add_count > 4 * 60
    return ring


def test_minimal_action_set_from_ale():
    assert minimal_action_set("Pong") == PONG_MINIMAL == minimal_action_set("pong")
    assert minimal_action_set("Breakout") == [0, 1, 3, 4]
    with pytest.raises(UserError, match="not an Atari game"):
        minimal_action_set("CartPole-v1")


def test_unwrapped_buffer_episodes_stacks_and_actions(tmp_path):
    ring = DopamineRing(tmp_path / "replay_logs", capacity=200, log=False)
    ring.play(np.random.default_rng(1), [5, 1, 2, 9], last_unfinished=4)
    ring.save(0)
    ds = import_dqn_replay(tmp_path, tmp_path / "out", game="Pong", chunk_size=7)  # the run dir finds replay_logs
    want = expected_episodes(ring, 0, ring.add_count)
    assert [w["n"] for w in want] == [5, 1, 2, 9, 3] and not want[-1]["complete"]
    check(ds, want)
    # an episode start shows zero frames before its first frame (the 1-step episode: three zero frames)
    first_of_second = ds.episodes[1][0]
    assert not ds.observations([first_of_second])[0][:3].any() and ds.observations([first_of_second])[0][3].any()
    m = ds.manifest
    assert m["source"] == "dqn-replay" and m["game"] == "Pong" and m["suffixes"] == [0]
    assert m["reward"] == "clipped [-1, 1] by Dopamine" and m["action_set"] == "full 18"
    assert m["action_space"] == {"type": "discrete", "n": 18, "start": 0} and m["minimal_action_set"] == PONG_MINIMAL
    assert m["stats"]["episodes"] == 4 and m["stats"]["incomplete_episodes"] == 1


def test_wrapped_checkpoints_alone_and_joined(logged, tmp_path):
    c = logged.capacity
    # checkpoint i holds adds i*c - 1 .. (i+1)*c - 2; alone, each one drops the episode it starts inside
    for suffix in (1, 2):
        ds = import_dqn_replay(logged.dir, tmp_path / f"alone{suffix}", game="Pong", suffixes=[suffix])
        check(ds, expected_episodes(logged, suffix * c - 1, (suffix + 1) * c - 1))
    # consecutive checkpoints continue each other: one stream, no episode lost at the seams
    ds = import_dqn_replay(logged.dir, tmp_path / "joined", game="pong", suffixes=[0, 1, 2])
    want = expected_episodes(logged, 0, 3 * c - 1)
    check(ds, want, env_of=[0] * len(want))
    assert ds.manifest["streams"] == [{"suffixes": [0, 1, 2], "first_add": 0, "rows": 3 * c - 1}]
    # a gap makes two streams (env 0 and env 1)
    ds = import_dqn_replay(logged.dir, tmp_path / "gap", game="Pong", suffixes=[2, 0])
    first, second = expected_episodes(logged, 0, c - 1), expected_episodes(logged, 2 * c - 1, 3 * c - 1)
    check(ds, first + second, env_of=[0] * len(first) + [1] * len(second))


def test_max_steps_cuts_the_last_episode(logged, tmp_path):
    full = import_dqn_replay(logged.dir, tmp_path / "full", game="Pong", suffixes=[0, 1])
    cut = next(s for s, n, _, _ in full.episodes[3:] if n >= 4) + 2  # two steps into an episode
    ds = import_dqn_replay(logged.dir, tmp_path / "cut", game="Pong", suffixes=[0, 1], max_steps=cut)
    assert len(ds) == cut and ds.num_episodes == 4 + sum(s < cut for s, *_ in full.episodes[4:])
    start, length, _, complete = ds.episodes[-1]
    assert length == 2 and not complete and not ds.terminated[-1]
    idx = np.arange(cut)
    assert np.array_equal(ds.observations(idx), full.observations(idx))
    assert np.array_equal(ds.next_observations(idx), full.next_observations(idx))  # the cut's final obs is the next one
    assert np.array_equal(ds.actions, full.actions[:cut])


def test_bad_input_is_one_user_error(logged, tmp_path, capsys):
    with pytest.raises(UserError, match="does not exist"):
        import_dqn_replay(tmp_path / "nope", tmp_path / "o1", game="Pong")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no DQN-Replay checkpoints"):
        import_dqn_replay(tmp_path / "empty", tmp_path / "o2", game="Pong")
    with pytest.raises(UserError, match=r"\$store\$_observation_ckpt.7.gz is missing"):
        import_dqn_replay(logged.dir, tmp_path / "o3", game="Pong", suffixes=[0, 7])
    with pytest.raises(UserError, match="minimal action set of 4"):  # Pong data read as Breakout
        import_dqn_replay(logged.dir, tmp_path / "o4", game="Breakout", suffixes=[0])
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in logged.dir.glob("*_ckpt.0.gz"):
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "$store$_reward_ckpt.0.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="not a gzipped numpy array"):
        import_dqn_replay(broken, tmp_path / "o5", game="Pong")
    (broken / "$store$_reward_ckpt.0.gz").write_bytes((logged.dir / "$store$_reward_ckpt.0.gz").read_bytes())
    frames = (logged.dir / "$store$_observation_ckpt.0.gz").read_bytes()
    (broken / "$store$_observation_ckpt.0.gz").write_bytes(frames[: len(frames) // 2])  # a cut-off download
    with pytest.raises(UserError, match="observation_ckpt.0.gz is corrupt|ends early"):
        import_dqn_replay(broken, tmp_path / "o5b", game="Pong")
    # the command line: one line, exit 2
    for argv, message in [
        (["dataset", "import-dqn-replay", str(tmp_path / "nope"), "--game", "Pong", "--out", str(tmp_path / "o6")],
         "does not exist"),
        (["dataset", "import-dqn-replay", str(logged.dir), "--game", "Pong", "--suffixes", "0,x", "--out",
          str(tmp_path / "o7")], "--suffixes"),
        (["dataset", "import-dqn-replay", str(logged.dir), "--game", "Pong", "--suffixes", "9", "--out",
          str(tmp_path / "o8")], "is missing"),
        (["dataset", "import-dqn-replay", str(logged.dir), "--game", "Pong", "--max-steps", "0", "--out",
          str(tmp_path / "o9")], "--max-steps"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err


def test_cli_import_and_info(logged, tmp_path, capsys):
    out = tmp_path / "pong"
    assert main(["dataset", "import-dqn-replay", str(logged.dir.parent), "--game", "Pong", "--suffixes", "1,2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "dqn-replay" in printed
    ds = Dataset(out)
    check(ds, expected_episodes(logged, logged.capacity - 1, 3 * logged.capacity - 1))
    assert main(["dataset", "info", str(out)]) == 0
    assert "dqn-replay" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "import-dqn-replay", "--help"])
    assert exc.value.code == 0 and "rlsuite dataset import-dqn-replay" in capsys.readouterr().out
