"""Record evaluation episodes as videos of the real game screen (`rlsuite eval --video DIR`).

One evaluation env is built with the agent's training preprocessing but on the in-process
gymnasium backend (envpool cannot render). Each game env is wrapped in a `_Tap` that renders the
screen right after every reset and every step, inside the vector env's loop: the vector env resets
an ended game on the same step (see `rlsuite.envs.vector`), and the tap sees the last frame of the
ended game before that reset overwrites it.

What one episode file holds: the reset frame, then one frame per agent step, so
**frames = length + 1** (`length` as in `info["episode"]["length"]` and episodes.json).

- Atari: ALE's full RGB screen, 210x160 (the last emulated frame of each agent step);
- MinAtar: the state channels coloured by `rlsuite.envs.minatar.PALETTE`, 200x200;
- classic control: gymnasium's rgb_array picture (CartPole 400x600);
- NetHack: no MP4 but `episode-K.txt`, each frame a `--- step N ---` line (N = 0 for the reset
  frame) followed by the 24x80 terminal screen.

MP4s are H.264 (yuv420p) written with imageio's ffmpeg writer, frames never resized
(macro_block_size=1): every family's picture has even sides, which yuv420p needs.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from rlsuite.envs import EnvConfig, make, resolve_env_id
from rlsuite.envs.config import ATARI, CLASSIC, NETHACK
from rlsuite.errors import UserError

DEFAULT_FPS = 15  # frames per second of non-Atari videos (Atari: 60 / frame_skip, real time)
INSTALL_HINT = "pip install -e '.[video]'"


def record_episodes(agent, env_cfg: EnvConfig, out_dir: Path, episodes: int, epsilon: float,
                    seed: int, rng: np.random.Generator | None = None, fps: int | None = None) -> list[Path]:
    """Play `episodes` whole games with `agent.act(obs, epsilon)` (or `rng=rng` when given, the
    epsilon stream) on one evaluation env seeded with `seed`, and write each as a video.

    Writes `out_dir/episode-K.mp4` (K = 0..episodes-1; NetHack: `episode-K.txt`), each with
    length + 1 frames (see the module docstring), and `out_dir/episodes.json`: one row per episode
    with `file`, `return` (raw game score), `length` (agent steps), `frames`, `env_id`, `epsilon`,
    `seed`, `fps` (None for NetHack text). `fps` (frames per second) defaults to 60 / frame_skip
    for Atari (real time) and 15 otherwise.
    Returns the episode files in order.

    Raises UserError for episodes < 1 or fps < 1, and when an optional package of the `video`
    extra (imageio, imageio-ffmpeg; pygame for classic control) is missing.
    """
    if episodes < 1:
        raise UserError(f"episodes must be at least 1, got {episodes}")
    family, _ = resolve_env_id(env_cfg.id)
    fps = fps if fps is not None else (60 / env_cfg.frame_skip if family == ATARI else DEFAULT_FPS)
    if fps <= 0:
        raise UserError(f"video fps must be positive, got {fps}")
    _check_packages(family)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = _EpisodeFiles(out_dir, episodes, fps, text=family == NETHACK)
    vec = _make_rendering_env(env_cfg, family, seed, sink.add)
    try:
        stats = _play(agent, vec, episodes, epsilon, seed, rng)
    finally:
        sink.close()
        vec.close()
    rows = [{"file": path.name, "return": ret, "length": length, "frames": frames, "env_id": env_cfg.id,
             "epsilon": float(epsilon), "seed": int(seed), "fps": None if family == NETHACK else float(fps)}
            for path, frames, (ret, length) in zip(sink.paths, sink.frames, stats)]
    (out_dir / "episodes.json").write_text(json.dumps(rows, indent=2) + "\n")
    return sink.paths


def _check_packages(family: str) -> None:
    """Import the optional packages this family's video needs, or raise a one-line UserError."""
    needed = [] if family == NETHACK else ["imageio", "imageio_ffmpeg"]
    if family == CLASSIC:
        needed.append("pygame")
    for module in needed:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"recording videos needs '{module}' ({exc}); install it with: {INSTALL_HINT}") from exc


def _make_rendering_env(env_cfg: EnvConfig, family: str, seed: int, on_frame: Callable[[Any, bool], None]):
    """One sync gymnasium evaluation env whose game env reports every rendered frame to `on_frame`."""
    cfg = dataclasses.replace(env_cfg, backend="gymnasium")
    vec = make(cfg, 1, [seed], evaluation=True)
    game = vec.envs[0]
    if family == NETHACK:
        # The terminal screen is only filled by an env asked for it at construction.
        from rlsuite.envs.nethack import NetHackGame

        game.close()
        game = NetHackGame(cfg, vec.game, tty=True)
    render = game.render_text if family == NETHACK else game.render_rgb
    vec.envs[0] = _Tap(game, render, on_frame)
    return vec


class _Tap(gym.Wrapper):
    """Calls `on_frame(render(), is_reset)` after every reset and step of the wrapped game env."""

    def __init__(self, env: gym.Env, render: Callable[[], Any], on_frame: Callable[[Any, bool], None]) -> None:
        super().__init__(env)
        self._render, self._on_frame = render, on_frame

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        out = self.env.reset(**kwargs)
        self._on_frame(self._render(), True)
        return out

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        out = self.env.step(action)
        self._on_frame(self._render(), False)
        return out


def _play(agent, vec, episodes: int, epsilon: float, seed: int,
          rng: np.random.Generator | None) -> list[tuple[float, int]]:
    """Step until `episodes` games ended; (raw return, length in agent steps) of each."""
    stats: list[tuple[float, int]] = []
    obs, _ = vec.reset(seed=[seed])
    with torch.no_grad():
        while len(stats) < episodes:
            actions = agent.act(obs, epsilon) if rng is None else agent.act(obs, epsilon, rng=rng)
            obs, _, _, _, info = vec.step(actions)
            ep = info["episode"]
            if ep["done"][0]:
                stats.append((float(ep["return"][0]), int(ep["length"][0])))
    return stats


class _EpisodeFiles:
    """Streams frames into episode-K files: a reset frame closes the current file and starts the
    next (an evaluation env resets only when a whole game ended); frames past the last wanted
    episode are dropped. Streaming keeps memory flat for 27k-step games."""

    def __init__(self, out_dir: Path, episodes: int, fps: float, text: bool) -> None:
        self._dir, self._episodes, self._fps, self._text = out_dir, episodes, fps, text
        self._writer: Any = None
        self.paths: list[Path] = []
        self.frames: list[int] = []  # frames written per file

    def add(self, frame: Any, is_reset: bool) -> None:
        if is_reset:
            self._close_writer()
            if len(self.paths) < self._episodes:
                self._open(self._dir / f"episode-{len(self.paths)}.{'txt' if self._text else 'mp4'}")
        if self._writer is None:
            return
        if self._text:
            self._writer.write(f"--- step {self.frames[-1]} ---\n{frame}\n")
        else:
            self._writer.append_data(frame)
        self.frames[-1] += 1

    def _open(self, path: Path) -> None:
        if self._text:
            self._writer = path.open("w", encoding="utf-8")
        else:
            import imageio.v2 as imageio

            # macro_block_size=1: never resize (imageio's default 16 would scale 210 up to 224).
            self._writer = imageio.get_writer(path, fps=self._fps, codec="libx264", quality=8,
                                              macro_block_size=1, ffmpeg_log_level="error")
        self.paths.append(path)
        self.frames.append(0)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._close_writer()
