"""Atari: an envpool backend and an ale-py game env with the same preprocessing.

Preprocessing (both backends, modelled on envpool's C++ Atari env so outputs agree):
- reset: a random number k in 1..noop_max of actions, the last one FIRE when `fire_reset` and the
  game has FIRE (k-1 no-ops then FIRE), else k no-ops;
- step: the action repeated `frame_skip` frames (stopping at game over), observation = pixel max of
  the last two grayscale frames (at frame_skip=1 the one emulated frame, as envpool 1.2.5 shows),
  resized to screen_size² with cv2 INTER_AREA; a reset observation is the last frame alone; a game
  that ends within a step shows what envpool shows (see `AtariGame._repeat`);
- life loss with `terminal_on_life_loss`: terminated=True while lives remain, but the game is not
  reset — the next "reset" only takes the no-ops/FIRE above and the game goes on (envpool's
  `episodic_life`); the time limit counts agent steps of the whole game;
- a game over (or, with life loss, a lost life) on the time-limit step is terminated=True as well
  as truncated=True. envpool reports only trunc there, so its flags are rebuilt from its game-over
  info and the lives.
- sticky actions are ALE's `repeat_action_probability`.

envpool keeps its own next-step autoreset internally; we step just the ended envs at once (a
partial `step(actions, env_ids)`, whose action envpool ignores) so the layer sees same-step
autoreset.

Split-phase stepping (`EnvConfig.async_step`): the pool is the same (batch_size == num_envs, so
every env steps every vector step); `send` is envpool's non-blocking `send(actions)` (its worker
threads step while the caller goes on) and `recv` is envpool's `recv()` followed by everything a
synchronous step does, the partial reset step of ended envs included: nothing else is in flight
then, so it behaves exactly as in a synchronous step. envpool's own `step` is `send` + `recv`, so
both modes give identical results. With batch_size == num_envs envpool already returns rows in
the order sent (env_id order); rows are still put in `info["env_id"]` order (`_in_env_order`), the
order envpool's async mode (batch_size < num_envs, which we never build) does not keep. With sticky actions off and the same actions both backends give pixel-identical
observations (tested). Montezuma's `rooms` comes from RAM byte 3, the room index (checked in the
tests: 1 in the first room, and writing another index into it redraws the screen as that room); the
ale-py game env also reports that byte as `room` in every step's info.

Start states (`EnvConfig.start_states`, ale-py only; see rlsuite.envs.start_states): a new game
restores a random saved emulator state after its normal reset. envpool cannot restore states, so
it refuses such a config.
"""
from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from rlsuite.envs.config import EnvConfig
from rlsuite.envs.vector import RawStep, VecEnv, private_rng
from rlsuite.errors import UserError, require

ROOM_RAM_BYTE = 3  # Montezuma's Revenge: index of the current room


def rom_name(game: str) -> str:
    """'MontezumaRevenge' -> 'montezuma_revenge' (ale-py rom id)."""
    get_all_rom_ids = require("ale_py.roms", hint="pip install -e . (from the rlsuite checkout: ale-py is one of its dependencies)").get_all_rom_ids

    return next(rom for rom in get_all_rom_ids() if rom.replace("_", "") == game.lower())


def metric_keys(game: str) -> tuple[str, ...]:
    return ("rooms",) if game == "MontezumaRevenge" else ()


class EnvpoolAtari(VecEnv):
    """envpool (batch_size == num_envs, stack_num=1) under the common layer; split-phase
    (`send` returns while envpool's threads step) when `cfg.async_step`."""

    def __init__(self, cfg: EnvConfig, game: str, num_envs: int, seeds: list[int], evaluation: bool) -> None:
        if cfg.start_states:
            raise UserError(f"env.start_states needs the ale-py backend (envpool cannot restore emulator "
                            f"states): set env.backend=gymnasium (it is '{cfg.backend}')")
        self._envpool = require("envpool", "envpool")
        self._kwargs = dict(
            num_envs=num_envs, batch_size=num_envs, stack_num=1, frame_skip=cfg.frame_skip,
            noop_max=max(1, cfg.noop_max), episodic_life=cfg.terminal_on_life_loss and not evaluation,
            reward_clip=False, use_fire_reset=cfg.fire_reset, img_height=cfg.screen_size,
            img_width=cfg.screen_size, repeat_action_probability=cfg.sticky_action_prob,
            full_action_space=cfg.full_action_space, max_episode_steps=cfg.max_episode_steps,
            gray_scale=True, use_inter_area_resize=True,
        )
        self._task = f"{game}-v5"
        if self._task not in self._envpool.list_all_envs():
            raise UserError(f"envpool has no Atari game '{game}'; use backend='gymnasium' (ale-py)")
        self._pool = self._make_pool(seeds)
        size = cfg.screen_size
        super().__init__(
            num_envs=num_envs, frame_space=gym.spaces.Box(0, 255, (size, size), np.uint8),
            action_space=gym.spaces.Discrete(int(self._pool.action_space.n)), family="atari", game=game,
            frame_stack=cfg.frame_stack, clip_rewards=cfg.clip_rewards and not evaluation,
            metric_keys=metric_keys(game), asynchronous=cfg.async_step,
        )
        self._seeds, self._fresh = list(seeds), True  # fresh: not reset yet, so already in its seeded state
        self._episodic_life = self._kwargs["episodic_life"]
        self._lives = np.zeros(num_envs, np.int64)  # after the last step, to see a life lost on the cap step
        self._terminated = np.zeros(num_envs, bool)
        self._game_over = np.zeros(num_envs, bool)
        self._track_rooms = bool(self.metric_keys)
        self._visited = np.zeros((num_envs, 256), bool)
        self._rows = np.arange(num_envs)
        self._final = np.zeros((num_envs, size, size), np.uint8)
        self._actions = np.zeros(num_envs, np.int32)

    def _make_pool(self, seeds: list[int]) -> Any:
        # A seed list is envpool's per-env `env_seed` (it then sets its base `seed` to 0).
        return self._envpool.make_gymnasium(self._task, seed=list(seeds), **self._kwargs)

    def _raw_reset(self, seeds: list[int] | None) -> np.ndarray:
        # envpool fixes seeds at construction: a seeded reset needs a new pool, unless this one
        # was just built with these seeds and never reset.
        if seeds is not None and not (self._fresh and seeds == self._seeds):
            self._pool.close()
            self._pool, self._seeds = self._make_pool(seeds), list(seeds)
        self._fresh = False
        obs, info = self._pool.reset()
        np.copyto(self._lives, info["lives"])
        if self._track_rooms:
            self._visited.fill(False)
            self._visited[self._rows, info["ram"][:, ROOM_RAM_BYTE]] = True
        return obs[:, 0]

    def _raw_step(self, actions: np.ndarray) -> RawStep:
        """One synchronous vector step (envpool's step is its send + recv)."""
        np.copyto(self._actions, actions, casting="unsafe")
        return self._finish(*self._pool.step(self._actions))

    def _raw_send(self, actions: np.ndarray) -> None:
        """Async: hand the actions to envpool's threads and return. envpool keeps a reference to
        the array it is given, so it gets a fresh one each time."""
        if not self.asynchronous:
            return super()._raw_send(actions)
        self._pool.send(np.array(actions, np.int32))

    def _raw_recv(self) -> RawStep:
        """Async: wait for every env's step, then finish it as a synchronous step does."""
        if not self.asynchronous:
            return super()._raw_recv()
        return self._finish(*self._pool.recv())

    def _finish(self, obs: np.ndarray, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                info: dict) -> RawStep:
        """A full batch from envpool ((num_envs, 1, H, W) obs, ...) -> RawStep, with end flags
        rebuilt, rooms counted and same-step autoreset of the ended envs."""
        obs, reward, term, trunc, info = _in_env_order(obs, reward, term, trunc, info)
        frames = obs[:, 0]
        self._end_flags(term, trunc, info)
        raw = RawStep(frames, self._final, reward, self._terminated, trunc, self._game_over)
        if self._track_rooms:
            self._visited[self._rows, info["ram"][:, ROOM_RAM_BYTE]] = True
            raw.metrics["rooms"] = self._visited.sum(1)  # counted before a game-over clears it
        ended = self._terminated | trunc
        if ended.any():
            self._reset_ended(np.flatnonzero(ended), frames, self._game_over)
        return raw

    def _end_flags(self, term: np.ndarray, trunc: np.ndarray, info: dict) -> None:
        """terminated = the game (or, with episodic life, a life) really ended, even on the cap
        step, where envpool reports trunc=True and term=False; game_over = the whole game ended."""
        game_ended = info["terminated"] != 0  # envpool's info "terminated" is ALE's game_over()
        lives = info["lives"]
        np.logical_or(term, game_ended, out=self._terminated)
        if self._episodic_life:
            self._terminated |= (lives > 0) & (lives < self._lives)  # envpool's own life-loss test
        np.copyto(self._lives, lives)
        np.logical_or(trunc, game_ended, out=self._game_over)

    def _reset_ended(self, ids: np.ndarray, frames: np.ndarray, game_over: np.ndarray) -> None:
        """Same-step autoreset: keep the last frames, then reset just these envs."""
        self._final[ids] = frames[ids]
        # A step of just these envs runs envpool's own autoreset (the action is ignored). An
        # explicit reset(ids) would not do: it restarts the whole game even after a lost life.
        # Nothing else is in flight here (also in async mode, where this runs inside recv), so
        # envpool returns just these envs; `_in_env_order` puts them in `ids` order (ids ascend).
        ids32 = ids.astype(np.int32)
        obs, _, _, _, info = _in_env_order(*self._pool.step(np.zeros(len(ids32), np.int32), ids32))
        frames[ids] = obs[:, 0]
        self._lives[ids] = info["lives"]
        if self._track_rooms:
            over = ids[game_over[ids]]
            self._visited[over] = False
            self._visited[ids, info["ram"][:, ROOM_RAM_BYTE]] = True

    def close(self) -> None:
        self._pool.close()


def _in_env_order(obs: np.ndarray, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                  info: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Sort the rows of an envpool batch by `info["env_id"]` (ascending; a no-op when they already
    are, as with batch_size == num_envs). Per-env arrays of info are sorted too."""
    ids = info["env_id"]
    if len(ids) < 2 or bool(np.all(ids[:-1] < ids[1:])):
        return obs, reward, term, trunc, info
    order = np.argsort(ids, kind="stable")
    rows = {k: v[order] for k, v in info.items() if isinstance(v, np.ndarray) and v.shape[:1] == ids.shape}
    return obs[order], reward[order], term[order], trunc[order], {**info, **rows}


class AtariGame(gym.Env):
    """One ale-py game (frameskip=1 at the ALE) with envpool-equivalent preprocessing."""

    def __init__(self, cfg: EnvConfig, game: str, evaluation: bool = False) -> None:
        require("ale_py.env", hint="pip install -e . (from the rlsuite checkout: ale-py is one of its dependencies)")
        from ale_py import Action, ALEInterface, LoggerMode
        from ale_py.env import AtariEnv

        ALEInterface.setLoggerMode(LoggerMode.Warning)  # no two-line banner on stderr: warnings still show
        self._env = AtariEnv(rom_name(game), obs_type="grayscale", frameskip=1,
                             repeat_action_probability=cfg.sticky_action_prob,
                             full_action_space=cfg.full_action_space)
        self.ale = self._env.ale
        self._actions = self._env._action_set
        self.action_space = gym.spaces.Discrete(len(self._actions))
        size = cfg.screen_size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)
        self._size, self._skip = size, cfg.frame_skip
        self._noop_max = max(1, cfg.noop_max)
        self._noop, self._fire_action = Action.NOOP, Action.FIRE
        self._fire = cfg.fire_reset and Action.FIRE in list(self._actions)
        self._life_loss = cfg.terminal_on_life_loss and not evaluation
        self._cap = cfg.max_episode_steps
        self._track_rooms = game == "MontezumaRevenge"
        self._buf = np.zeros((2, 210, 160), np.uint8)
        self._rng = np.random.default_rng()
        self._elapsed, self._lives, self._game_over_pending = 0, 0, True
        self._rooms: set[int] = set()
        self._starts = self._load_starts(cfg.start_states, game)
        self._start_rng = np.random.default_rng()
        self.start_index = -1
        """Index in the start-state set the current game started from (-1: a normal start)."""
        self.last_info: dict[str, Any] = {}
        """The info of the last step (for tools that drive this env inside a VecEnv, which drops it)."""

    @staticmethod
    def _load_starts(path: str, game: str) -> Any:
        if not path:
            return None
        from rlsuite.envs.start_states import load_state_set

        starts = load_state_set(path)
        if starts.manifest.get("game") != game:
            raise UserError(f"start states {path} were saved in {starts.manifest.get('game')}, not {game}")
        return starts

    def _screen(self, slot: int) -> None:
        self.ale.getScreenGrayscale(self._buf[slot])

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (self._size, self._size), interpolation=cv2.INTER_AREA)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._env.reset(seed=seed)  # reseeds the ALE (sticky actions) and reloads the game
            self._rng = private_rng(seed, "atari_reset_noops")
            self._start_rng = private_rng(seed, "atari_start_states")  # its own stream: no-op counts stay as without
            self._game_over_pending = True
        new_game = self._game_over_pending or not self._life_loss
        if new_game:
            self.ale.reset_game()
            self._elapsed, self._rooms = 0, set()
        # k in 1..noop_max actions in total, the last one FIRE when fire_reset (as envpool).
        noops = int(self._rng.integers(1, self._noop_max + 1)) - int(self._fire)
        for _ in range(noops):
            self.ale.act(self._noop)
            if self.ale.game_over():
                self.ale.reset_game()
        if self._fire:
            self.ale.act(self._fire_action)
        self._screen(0)
        if new_game and self._starts is not None:
            self._restore_start()
        self._game_over_pending = False
        self._lives = self.ale.lives()
        self._visit()
        return self._resize(self._buf[0]), {}

    def _restore_start(self) -> None:
        """Continue from a random saved state. restoreState leaves the frame buffer as it was, so
        the observation is the screen saved with the state (what the game showed then)."""
        from ale_py import ALEState

        i = int(self._start_rng.integers(len(self._starts)))
        self.ale.restoreState(ALEState(self._starts.states[i]))
        self._buf[0] = self._starts.screen[i]
        self.start_index = i

    def _visit(self) -> None:
        if self._track_rooms:
            self._rooms.add(int(self.ale.getRAM()[ROOM_RAM_BYTE]))

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, over = self._repeat(self._actions[action])
        self._elapsed += 1
        self._visit()
        lives = self.ale.lives()
        truncated = self._elapsed >= self._cap
        # A real end counts even on the cap step (then both flags are set): its value is 0.
        terminated = over or (self._life_loss and 0 < lives < self._lives)
        self._lives = lives
        self._game_over_pending = over or truncated
        info: dict[str, Any] = {"game_over": over or truncated, "lives": lives}
        if self._track_rooms:
            info["rooms"] = len(self._rooms)
            info["room"] = int(self.ale.getRAM()[ROOM_RAM_BYTE])
        self.last_info = info
        return self._resize(self._buf[0]), reward, terminated, truncated, info

    def _repeat(self, a: Any) -> tuple[float, bool]:
        """Act `frame_skip` frames (stopping at game over) and leave the observation in slot 0.

        As envpool: the last two frames go to slots 0, 1 and are max-pooled when all frames ran.
        At frame_skip=1 the one frame goes to slot 0 alone, since envpool 1.2.5 shows exactly that
        frame (measured; pooling it with a frame from an earlier step would show stale pixels).
        """
        reward, over, ran, pooled = 0.0, False, 0, self._skip >= 2
        while ran < self._skip and not over:
            reward += self.ale.act(a)
            over = self.ale.game_over()
            left = self._skip - ran  # envpool's skip_id: frames still to run, this one included
            ran += 1
            if left <= 2:
                self._screen(2 - left if pooled else 0)
        if pooled and ran == self._skip:
            np.maximum(self._buf[0], self._buf[1], out=self._buf[0])
        # Else, if the game ended early, slot 0 holds the last frame when it ended on the
        # second-last one, or else the previous observation's frame: exactly what envpool shows.
        return reward, over

    def render_rgb(self) -> np.ndarray:
        """The full-resolution RGB screen of the last emulated frame, uint8 (210, 160, 3) — the real
        game picture, not the downsampled grayscale observation (for videos, `rlsuite.trained.video`)."""
        return self.ale.getScreenRGB()

    def close(self) -> None:
        self._env.close()
