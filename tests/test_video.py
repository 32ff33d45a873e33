"""Episode videos on real environments: every file decodes to length + 1 frames (the reset frame,
then one per agent step) of the real game screen, checked against the raw environments."""
from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlsuite.envs import EnvConfig
from rlsuite.errors import UserError
from rlsuite.trained.video import record_episodes

imageio = pytest.importorskip("imageio.v2")
SEED = 7


class RandomAgent:
    """Uniform random actions from its own generator; logs them so a raw env can replay them."""

    def __init__(self, n_actions: int, seed: int = 0) -> None:
        self.n, self.rng, self.actions = n_actions, np.random.default_rng(seed), []

    def act(self, obs, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray:
        a = (rng or self.rng).integers(0, self.n, size=1)
        self.actions.append(int(a[0]))
        return a


def decode(path: Path) -> np.ndarray:
    """All frames of an MP4, (T, H, W, 3) uint8."""
    with imageio.get_reader(path) as reader:
        return np.stack([frame for frame in reader.iter_data()])  # len(reader) is inf


def check_files(paths: list[Path], episodes: int, suffix: str) -> list[dict]:
    """The files and episodes.json agree; returns its rows."""
    assert [p.name for p in paths] == [f"episode-{k}.{suffix}" for k in range(episodes)]
    assert all(p.is_file() for p in paths)
    rows = json.loads((paths[0].parent / "episodes.json").read_text())
    assert [r["file"] for r in rows] == [p.name for p in paths]
    assert all(r["frames"] == r["length"] + 1 and r["seed"] == SEED for r in rows)
    return rows


def test_atari_video_is_the_full_screen_from_first_to_last_frame(tmp_path):
    # noop_max=1: a reset takes exactly one no-op, so a raw ALE env can replay the game.
    cfg = EnvConfig(id="pong", max_episode_steps=60, noop_max=1, sticky_action_prob=0.0, backend="envpool")
    agent = RandomAgent(6)
    paths = record_episodes(agent, cfg, tmp_path, 2, 0.0, SEED)
    rows = check_files(paths, 2, "mp4")
    assert [r["length"] for r in rows] == [60, 60]  # capped games
    frames = decode(paths[0])
    assert frames.shape == (61, 210, 160, 3)  # no codec padding: macro_block_size=1
    assert rows[0]["fps"] == 15.0  # 60 / frame_skip

    # The expected screens come from a raw ALE env replaying the reset no-op and the agent's actions.
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    raw.reset(seed=SEED)
    ale, action_set = raw.unwrapped.ale, raw.unwrapped._action_set
    ale.act(action_set[0])  # the reset no-op
    screens = [ale.getScreenRGB()]
    for a in agent.actions[:60]:
        for _ in range(4):  # frame_skip
            ale.act(action_set[a])
        screens.append(ale.getScreenRGB())
    raw.close()

    def diff(i: int, j: int) -> float:
        return float(np.abs(frames[i].astype(int) - screens[j]).mean())

    assert max(diff(i, i) for i in range(61)) < 3  # lossy codec (measured: at most 1.2)
    # Frame i is step i's screen, not a neighbour's (an off-by-one would match the next one).
    for i in range(61):
        assert diff(i, i) <= min(diff(i, j) for j in (i - 1, i + 1) if 0 <= j <= 60) + 0.1, i
    assert diff(60, 0) > 10  # the game moved on: the comparison can fail


def test_minatar_video_colours_the_set_channels(tmp_path):
    minatar = pytest.importorskip("minatar")
    from rlsuite.envs.minatar import PALETTE, RENDER_SCALE

    cfg = EnvConfig(id="minatar:breakout", max_episode_steps=40)
    paths = record_episodes(RandomAgent(3), cfg, tmp_path, 2, 0.1, SEED, rng=np.random.default_rng(1))
    rows = check_files(paths, 2, "mp4")
    frames = decode(paths[0])
    assert frames.shape == (rows[0]["length"] + 1, 200, 200, 3)

    raw = minatar.Environment("breakout", sticky_action_prob=cfg.sticky_action_prob)
    raw.seed(SEED)
    raw.reset()
    state = raw.state()  # (10, 10, C) bool
    assert state.any()
    centres = frames[0][RENDER_SCALE // 2::RENDER_SCALE, RENDER_SCALE // 2::RENDER_SCALE].astype(int)
    expected = np.zeros((10, 10, 3), int)
    for c in range(state.shape[2]):  # the last set channel wins
        expected[state[..., c]] = PALETTE[c]
    assert np.abs(centres - expected).max() < 40  # lossy codec, but each cell is its colour
    assert (centres.max(-1) > 60).tolist() == state.any(-1).tolist()


def test_classic_video_is_gymnasium_rgb_array(tmp_path):
    pytest.importorskip("pygame")
    paths = record_episodes(RandomAgent(2), EnvConfig(id="CartPole-v1"), tmp_path, 1, 0.0, SEED)
    (row,) = check_files(paths, 1, "mp4")
    frames = decode(paths[0])
    assert frames.shape == (row["length"] + 1, 400, 600, 3)
    raw = gym.make("CartPole-v1", render_mode="rgb_array")
    raw.reset(seed=SEED)
    assert np.abs(frames[0].astype(int) - raw.render()).mean() < 3
    raw.close()


def test_nethack_text_frames_are_the_terminal(tmp_path):
    pytest.importorskip("nle")
    cfg = EnvConfig(id="NetHackScore-v0", max_episode_steps=15)
    paths = record_episodes(RandomAgent(8), cfg, tmp_path, 2, 0.0, SEED)
    rows = check_files(paths, 2, "txt")
    blocks = paths[0].read_text(encoding="utf-8").split("--- step ")[1:]
    assert len(blocks) == rows[0]["length"] + 1 == 16
    screens = []
    for n, block in enumerate(blocks):
        header, *lines = block.rstrip("\n").split("\n")
        assert header == f"{n} ---"
        assert len(lines) == 24 and all(len(line) == 80 for line in lines)
        screens.append(lines)

    # The game env seeds NLE with two draws from SeedSequence(SEED) keyed by crc32 of its purpose.
    key = zlib.crc32(b"nethack_game_seeds")
    core, disp = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(key,))).integers(1, 2**31, size=2)
    raw = gym.make("NetHackScore-v0", observation_keys=("tty_chars",))
    raw.unwrapped.seed(core=int(core), disp=int(disp), reseed=False)
    obs, _ = raw.reset()
    raw.close()
    tty = np.where(obs["tty_chars"] >= 32, obs["tty_chars"], 32).astype(np.uint8)
    assert screens[0] == [bytes(row).decode("latin-1") for row in tty]
    assert any(line.strip() for line in screens[0])


def test_missing_video_package_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)  # makes `import imageio` fail
    with pytest.raises(UserError, match=r"pip install -e '\.\[video\]'"):
        record_episodes(RandomAgent(2), EnvConfig(id="CartPole-v1"), tmp_path / "v", 1, 0.0, SEED)
    assert not (tmp_path / "v").exists()


def test_bad_episode_count_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="episodes"):
        record_episodes(RandomAgent(2), EnvConfig(), tmp_path, 0, 0.0, SEED)


def test_eval_video_from_the_cli_records_a_trained_pong_run(tmp_path, capsys):
    """`rlsuite eval RUN --video DIR` on a real (briefly trained, envpool) Pong run: one MP4 of the
    full screen per requested game, returns in episodes.json, the evaluation itself unchanged."""
    from rlsuite.cli import main

    run = tmp_path / "pong"
    assert main(["train", "dqn", "--env", "pong", "--steps", "200", "--run-dir", str(run), "--no-progress",
                 "--set", "env.max_episode_steps=50", "--set", "train.eval_episodes=1",
                 "--set", "replay.capacity=1000", "--set", "agent.learning_starts=100"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--set", "env.max_episode_steps=30", "--video",
                 str(tmp_path / "v"), "--video-episodes", "2"]) == 0
    assert "recorded 2 game(s)" in capsys.readouterr().out
    rows = json.loads((tmp_path / "v" / "episodes.json").read_text())
    assert [r["length"] for r in rows] == [30, 30]
    assert decode(tmp_path / "v" / "episode-1.mp4").shape == (31, 210, 160, 3)
    record = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert record["source"] == "rlsuite eval" and record["episode_lengths"] == [30]


def test_eval_video_episodes_must_be_positive(tmp_path, capsys):
    from rlsuite.cli import main

    assert main(["eval", str(tmp_path), "--video", str(tmp_path / "v"), "--video-episodes", "0"]) == 2
    assert "--video-episodes must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
