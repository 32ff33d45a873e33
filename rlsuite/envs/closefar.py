"""Close-far tasks for the knowledge-retention study.

Wołczyk et al., ICML 2024, "Fine-tuning Reinforcement Learning Models is Secretly a Forgetting
Mitigation Problem", show that fine-tuning a pre-trained policy forgets what it knew about FAR states
(reached only through CLOSE ones) while it is still learning the CLOSE states it starts in. These
tasks make that state-coverage gap small enough to study on a CPU; they follow
the "small, CPU-feasible check" its authors' claim suggests (a two-phase chain, and a two-room map).

`ChainGame` ('closefar:chain'), numpy only:
- Phase A (CLOSE): a corridor of `CORRIDOR_LEN` = 10 cells and 4 actions. Each cell has one
  'forward' action (`CORRIDOR_CODE`); any other action leaves the agent in place. Each step of
  progress pays +0.05; the forward action of the last cell enters phase B.
- Phase B (FAR): a lock of `LOCK_LEN` = 6 cells, each opened by one action (`LOCK_CODE`). A wrong
  action ends the episode (terminated, no reward); opening the last cell pays +1 and ends it
  (terminated, success).
- The codes are fixed constants, the same for every env and every run (the env seed only drives
  the distractor features), so the task itself never changes.
- Observation, float32 (`CHAIN_OBS_SIZE` = 15): [0:10] one-hot position within the phase (both
  phases use the same 10 slots, so a shared MLP interferes across phases), [10] the phase bit
  (1 in phase B), [11:15] distractors, uniform in [0, 1), drawn from the env's own seeded RNG at
  every reset and step.
- The optimal episode from a close start: 16 steps, return 10 * 0.05 + 1 = 1.5.

`TwoRoomGame` ('closefar:tworoom'): a fixed MiniGrid map of two rooms joined by an open door, the
goal in the second (FAR) room. Actions: MiniGrid's left, right, forward. Reward: MiniGrid's
1 - 0.9 * steps / time limit on reaching the goal. Observation, float32 (`TWO_ROOM_OBS_SIZE` = 543):
the one-hot object type (11 MiniGrid types) of each cell of the agent's egocentric 7x7 view, cell by
cell in MiniGrid's (column, row) order, then the one-hot direction (4).

Both: `EnvConfig.start` = 'close' starts every episode at the task's normal start (corridor cell 0;
room 1), 'far' in the FAR part directly (lock cell 0; room 2), the save-game analogue used to
pre-train and to measure FAR skill. Time limit: min(`TIME_LIMIT` = 60, `EnvConfig.max_episode_steps`)
steps (truncated). Every step's info holds `game_over` (always True when an episode ends: no lives)
and the metrics (ints): chain `success` (1 once the lock is open), `phase` (phase reached, 0 or 1),
`progress` (cells passed in this episode: 0..16 from a close start, 0..6 from a far one); two-room
`success` (1 on reaching the goal), `room` (room reached, 0 or 1).
"""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from rlsuite.envs.config import EnvConfig

CLOSEFAR_GAMES = ("chain", "tworoom")
TIME_LIMIT = 60  # agent steps per episode (at most; a smaller EnvConfig.max_episode_steps wins)

# -- the two-phase chain ---------------------------------------------------------------------------
CORRIDOR_LEN, LOCK_LEN, NUM_ACTIONS, NUM_DISTRACTORS = 10, 6, 4, 4
# Drawn once with np.random.default_rng(14).integers(4, size=16) (14: a fixed seed; corridor
# first, then lock) and written out,
# so the task never depends on a numpy version or an env seed.
CORRIDOR_CODE = (0, 3, 2, 1, 0, 2, 1, 3, 1, 2)  # the forward action of each corridor cell
LOCK_CODE = (0, 2, 0, 3, 0, 2)  # the action that opens each lock cell
PROGRESS_REWARD, LOCK_REWARD = 0.05, 1.0
POSITION_SLOTS = max(CORRIDOR_LEN, LOCK_LEN)
PHASE_INDEX = POSITION_SLOTS  # the phase bit's index in the observation
CHAIN_OBS_SIZE = POSITION_SLOTS + 1 + NUM_DISTRACTORS
CHAIN_METRIC_KEYS = ("success", "phase", "progress")

CELL_PIXELS = 16  # side of one cell in render_rgb pictures
_COLOURS = {  # render_rgb palette
    "corridor": (90, 90, 90), "lock": (40, 60, 140), "passed": (40, 110, 40), "agent": (255, 220, 60),
    "open": (80, 230, 80), "broken": (230, 60, 60),
}


def time_limit(cfg: EnvConfig) -> int:
    return min(TIME_LIMIT, cfg.max_episode_steps)


class ChainGame(gym.Env):
    """The two-phase chain (see the module docstring for the rules and the layout)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, cfg: EnvConfig) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (CHAIN_OBS_SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._far_start = cfg.start == "far"
        self._cap = time_limit(cfg)
        self._phase = self._cell = self._elapsed = self._progress = 0
        self._success, self._broken = False, False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)  # seeds self.np_random (the distractors) when given a seed
        self._phase, self._cell = (1 if self._far_start else 0), 0
        self._elapsed = self._progress = 0
        self._success = self._broken = False
        return self._obs(), self._info(False)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(CHAIN_OBS_SIZE, np.float32)
        obs[min(self._cell, POSITION_SLOTS - 1)] = 1.0  # the cell stays in range after the lock opens
        obs[PHASE_INDEX] = float(self._phase)
        obs[PHASE_INDEX + 1:] = self.np_random.random(NUM_DISTRACTORS, dtype=np.float32)
        return obs

    def _info(self, over: bool) -> dict:
        return {"game_over": over, "success": int(self._success), "phase": self._phase, "progress": self._progress}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = int(action)
        reward, terminated = 0.0, False
        if self._phase == 0:
            if action == CORRIDOR_CODE[self._cell]:
                reward, self._progress = PROGRESS_REWARD, self._progress + 1
                self._cell += 1
                if self._cell == CORRIDOR_LEN:
                    self._phase, self._cell = 1, 0
        elif action == LOCK_CODE[self._cell]:
            self._cell, self._progress = self._cell + 1, self._progress + 1
            if self._cell == LOCK_LEN:
                reward, terminated, self._success = LOCK_REWARD, True, True
        else:
            terminated = self._broken = True
        self._elapsed += 1
        truncated = self._elapsed >= self._cap  # may coincide with a real end: both flags are then set
        return self._obs(), reward, terminated, truncated, self._info(terminated or truncated)

    def render_rgb(self) -> np.ndarray:
        """The chain as a picture, uint8 (2 * CELL_PIXELS, 10 * CELL_PIXELS, 3): the top row is the
        corridor (grey), the bottom one the lock (blue); passed cells are green, the agent's cell
        yellow; an opened lock is all bright green, a broken one red at the failed cell."""
        image = np.zeros((2, POSITION_SLOTS, 3), np.uint8)
        image[0, :CORRIDOR_LEN] = _COLOURS["corridor"]
        image[1, :LOCK_LEN] = _COLOURS["lock"]
        image[self._phase, :self._cell] = _COLOURS["passed"]
        if self._phase == 1 and not self._far_start:
            image[0, :CORRIDOR_LEN] = _COLOURS["passed"]
        if self._success:
            image[1, :LOCK_LEN] = _COLOURS["open"]
        else:
            image[self._phase, self._cell] = _COLOURS["broken" if self._broken else "agent"]
        return image.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


# -- the two-room MiniGrid map -----------------------------------------------------------------------
# 9 x 5 grid (outer walls included): room 1 is columns 1-3, the wall column 4 has an open door at
# row 2, room 2 is columns 5-7; rows 1-3 in both rooms.
GRID_WIDTH, GRID_HEIGHT = 9, 5
WALL_X, DOOR_Y = 4, 2
GOAL_POS = (7, 3)
CLOSE_START, FAR_START = (1, 2), (5, 2)  # agent positions; the direction comes from the env seed
TWO_ROOM_ACTIONS = 3  # MiniGrid's left, right, forward
NUM_OBJECT_TYPES, NUM_DIRECTIONS, VIEW = 11, 4, 7  # len(minigrid OBJECT_TO_IDX); 7x7 egocentric view
TWO_ROOM_OBS_SIZE = VIEW * VIEW * NUM_OBJECT_TYPES + NUM_DIRECTIONS
TWO_ROOM_METRIC_KEYS = ("success", "room")


def _two_room_grid_class() -> type:
    """The MiniGridEnv subclass, built on first use so that importing this module does not need
    minigrid (nor print pygame's greeting, which minigrid imports)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    from rlsuite.errors import require

    require("minigrid")  # pip install --no-deps minigrid: its pygame-ce would replace pygame
    from minigrid.core.grid import Grid
    from minigrid.core.mission import MissionSpace
    from minigrid.core.world_object import Door, Goal
    from minigrid.minigrid_env import MiniGridEnv

    class TwoRoomGrid(MiniGridEnv):
        def __init__(self, far: bool, max_steps: int) -> None:
            self.far = far
            super().__init__(mission_space=MissionSpace(mission_func=lambda: "reach the goal in the second room"),
                             width=GRID_WIDTH, height=GRID_HEIGHT, max_steps=max_steps, see_through_walls=False)

        def _gen_grid(self, width: int, height: int) -> None:
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.grid.vert_wall(WALL_X, 0, height)
            self.put_obj(Door("yellow", is_open=True), WALL_X, DOOR_Y)
            self.put_obj(Goal(), *GOAL_POS)
            self.agent_pos = FAR_START if self.far else CLOSE_START
            self.agent_dir = int(self._rand_int(0, 4))
            self.mission = "reach the goal in the second room"

    return TwoRoomGrid


class TwoRoomGame(gym.Env):
    """Two MiniGrid rooms (see the module docstring), flat float32 observations."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, cfg: EnvConfig) -> None:
        self._far, self._cap = cfg.start == "far", time_limit(cfg)
        self._grid = _two_room_grid_class()(self._far, self._cap)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (TWO_ROOM_OBS_SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(TWO_ROOM_ACTIONS)
        self._room = self._success = 0

    # MiniGrid envs do not pickle (a lambda mission, a class local to this module): the vector env's
    # state_dict (exact resume) pickles the few things that change instead; the map itself is fixed.
    def __getstate__(self) -> dict:
        grid = self._grid
        started = getattr(grid, "_np_random", None) is not None and grid.agent_pos is not None
        return {"far": self._far, "cap": self._cap, "room": self._room, "success": self._success,
                "agent": (tuple(int(v) for v in grid.agent_pos), int(grid.agent_dir), int(grid.step_count),
                          grid.np_random.bit_generator.state) if started else None}

    def __setstate__(self, state: dict) -> None:
        self._far, self._cap, self._room, self._success = state["far"], state["cap"], state["room"], state["success"]
        self._grid = _two_room_grid_class()(self._far, self._cap)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (TWO_ROOM_OBS_SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(TWO_ROOM_ACTIONS)
        if state["agent"] is not None:
            pos, direction, steps, rng = state["agent"]
            self._grid.reset(seed=0)  # builds the fixed map
            self._grid.agent_pos, self._grid.agent_dir, self._grid.step_count = pos, direction, steps
            self._grid.np_random.bit_generator.state = rng

    def _obs(self, raw: dict) -> np.ndarray:
        obs = np.zeros(TWO_ROOM_OBS_SIZE, np.float32)
        types = raw["image"][:, :, 0].reshape(-1).astype(np.int64)  # (7, 7, 3) -> object type per cell
        obs[np.arange(types.size) * NUM_OBJECT_TYPES + types] = 1.0
        obs[VIEW * VIEW * NUM_OBJECT_TYPES + int(raw["direction"])] = 1.0
        return obs

    def _update_room(self) -> None:
        self._room = max(self._room, int(self._grid.agent_pos[0] > WALL_X))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        raw, _ = self._grid.reset(seed=seed)
        self._room = self._success = 0
        self._update_room()
        return self._obs(raw), {"game_over": False, "success": 0, "room": self._room}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        raw, reward, terminated, truncated, _ = self._grid.step(int(action))
        self._update_room()
        self._success = int(bool(terminated) and reward > 0)
        over = bool(terminated or truncated)
        return self._obs(raw), float(reward), bool(terminated), bool(truncated), \
            {"game_over": over, "success": self._success, "room": self._room}

    def render_rgb(self) -> np.ndarray:
        """MiniGrid's own full-map picture, uint8 (5 * 32, 9 * 32, 3), the agent's view highlighted."""
        return self._grid.get_frame(highlight=True, tile_size=32)

    @property
    def agent_pos(self) -> tuple[int, int]:
        return tuple(int(v) for v in self._grid.agent_pos)

    @property
    def agent_dir(self) -> int:
        return int(self._grid.agent_dir)

    def close(self) -> None:
        self._grid.close()
