"""`import_dqn_replay`: the DQN-Replay dataset (Dopamine's checkpointed replay buffers) as an rlsuite dataset.

DQN-Replay (Agarwal, Schuurmans & Norouzi 2020, "An Optimistic Perspective on Offline Reinforcement
Learning", https://research.google/resources/datasets/dqn-replay/) holds every transition a Dopamine DQN
saw while training on an Atari game, logged by batch_rl's OutOfGraphLoggedReplayBuffer in the format of
Dopamine's `dopamine/replay_memory/circular_replay_buffer.py`. What this reader relies on, from there:

* Files (`OutOfGraphReplayBuffer.save` / `load`, `_generate_filename`): one per checkpointable element
  and suffix, ``<name>_ckpt.<suffix>.gz``, each a gzip stream (`gzip.GzipFile`) of one `np.save` array.
  The `_store` arrays carry `STORE_FILENAME_PREFIX` ``$store$_``: ``$store$_observation`` (C, 84, 84)
  uint8 single frames, ``$store$_action`` int32 (C,), ``$store$_reward`` float32 (C,),
  ``$store$_terminal`` uint8 (C,); beside them ``add_count`` (0-d int, every add ever made) and
  ``invalid_range``. C, the capacity, is 1,000,000 in DQN-Replay.
* Ring (`cursor`, `add`): add k goes to row k % C, so a buffer with add_count A holds adds
  max(0, A - C) .. A - 1 and, once A > C, its oldest row is A % C. batch_rl logs a buffer each time
  A % C == C - 1, so suffix i holds adds iC - 1 .. (i+1)C - 2 and consecutive suffixes continue each
  other exactly: this reader joins them into one stream.
* Row i (`add`, the agent's `_store_transition`): the frame the agent acted in, its action (an index
  into the game's *minimal* action set), the reward that followed, already clipped to [-1, 1] by
  Dopamine's Runner, and terminal = 1 on the last step of an episode (a game over, or the 27,000-step
  time limit: Dopamine stored both as terminal, so they cannot be told apart).
* Padding (`add`, `_add_zero_transition`): before every episode's first row Dopamine writes
  stack_size - 1 all-zero rows (DQN-Replay: 3), so a stack of the last stack_size rows shows zeros
  before an episode start; `get_observation_stack` reads stacks off the ring this way, and a terminal
  row's next state (`sample_transition_batch`) is the stack ending at the padding row after it.

What the rlsuite dataset gets (layout: rlsuite.data.format):

* observations: (frame_stack, 84, 84) uint8, oldest frame first, zeros before the episode's first
  frame: what rlsuite's Atari env shows (rlsuite.envs.vector.VecEnv) and what Dopamine's padding gives.
* actions: the full 18-action ALE index, minimal_set[a] (ale_py's `getMinimalActionSet` of the game's
  ROM), so the data fits an env made with `env.full_action_space=true`.
* rewards: Dopamine's clipped rewards, unchanged (the manifest says so; returns are clipped returns).
* ends: terminated = True where Dopamine's terminal is 1 (time-limit cuts included, as above); the
  final observation of such an episode is Dopamine's own next state of a terminal row: the stack
  shifted by one with a zero frame as newest (the true last frame was never stored). A learner never
  bootstraps from it (terminated), so nothing depends on the missing frame.
* the first episode of a stream that does not start at add 0 began before the oldest row and is
  dropped; the last episode, cut by the end of the data (or by `max_steps`), is kept complete=False
  without its last row, whose next frame was never stored; that row's frame is the final observation.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import gymnasium as gym
import numpy as np

from rlsuite.data.dataset import Dataset
from rlsuite.data.format import DEFAULT_CHUNK_SIZE
from rlsuite.data.writer import DatasetWriter
from rlsuite.errors import UserError

STORE_FILENAME_PREFIX = "$store$_"  # Dopamine's prefix of the `_store` arrays' file names
STORE = ("observation", "action", "reward", "terminal")
FULL_ACTIONS = 18  # the ALE's full action set
_SUFFIX = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


def checkpoint_file(replay_dir: str | Path, name: str, suffix: int) -> Path:
    """Dopamine's `_generate_filename`: ``<dir>/<name>_ckpt.<suffix>.gz`` (name with its ``$store$_``)."""
    return Path(replay_dir) / f"{name}_ckpt.{suffix}.gz"


def minimal_action_set(game: str) -> list[int]:
    """The game's minimal action set as full-set ALE indices (ale_py, from the game's ROM); UserError
    for a game the ALE does not know."""
    from rlsuite.envs import resolve_env_id
    from rlsuite.envs.atari import rom_name
    from rlsuite.errors import require

    family, name = resolve_env_id(game)
    if family != "atari":
        raise UserError(f"game {game!r} is not an Atari game")
    ale_py = require("ale_py")
    from ale_py.roms import get_rom_path

    rom = get_rom_path(rom_name(name))
    if rom is None:
        raise UserError(f"ale-py has no ROM for {name}")
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(str(rom))
    return [int(a.value) if hasattr(a, "value") else int(a) for a in ale.getMinimalActionSet()]


# --------------------------------------------------------------------------------------------
# reading the files


def _load_small(path: Path) -> np.ndarray:
    """A whole gzipped .npy file (actions, rewards, terminals, add_count: a few MB)."""
    if not path.is_file():
        raise UserError(f"DQN-Replay file {path} is missing")
    try:
        with gzip.open(path, "rb") as fh:
            return np.load(fh, allow_pickle=False)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise UserError(f"{path} is not a gzipped numpy array ({exc})") from None


class _FrameFile:
    """Rows of a gzipped .npy observation file, read on demand (a DQN-Replay file holds 7 GB of frames:
    only the rows asked for are kept; reading forward decompresses, reading backward starts over)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise UserError(f"DQN-Replay file {path} is missing")
        self.path = path
        self._fh = gzip.open(path, "rb")
        try:
            version = np.lib.format.read_magic(self._fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(self._fh)
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            self._fh.close()
            raise UserError(f"{path} is not a gzipped numpy array ({exc})") from None
        if fortran or len(shape) != 3 or dtype != np.uint8:
            self._fh.close()
            raise UserError(f"{path} holds a {dtype} array of shape {shape}; expected (capacity, 84, 84) uint8 "
                            "frames in C order")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = int(np.prod(shape[1:]))
        self._start = self._fh.tell()

    def rows(self, a: int, b: int) -> np.ndarray:
        """Rows a .. b-1 as a (b - a, H, W) array."""
        try:
            self._fh.seek(self._start + a * self._row_bytes)
            data = self._fh.read((b - a) * self._row_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{self.path} is corrupt ({exc})") from None
        if len(data) != (b - a) * self._row_bytes:
            raise UserError(f"{self.path} ends early (truncated download?)")
        return np.frombuffer(data, self.dtype).reshape(b - a, *self.shape[1:])

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Segment:
    """Consecutive checkpoints read as one stream of rows in add order."""

    suffixes: list[int]
    first_add: int  # add number of row 0
    parts: list[tuple[int, np.ndarray]]  # (suffix, physical rows in add order) per checkpoint
    action: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray

    def physical(self, a: int, b: int) -> Iterator[tuple[int, int, int]]:
        """(suffix, physical start, physical stop) runs covering stream rows a .. b-1, in order."""
        offset = 0
        for suffix, rows in self.parts:
            lo, hi = max(a, offset), min(b, offset + len(rows))
            if lo < hi:
                idx = rows[lo - offset:hi - offset]
                cuts = [0, *(np.flatnonzero(np.diff(idx) != 1) + 1).tolist(), len(idx)]  # where the ring wraps
                for i, j in zip(cuts[:-1], cuts[1:]):
                    yield suffix, int(idx[i]), int(idx[j - 1]) + 1
            offset += len(rows)


def _ring_order(add_count: int, capacity: int) -> np.ndarray:
    """Physical rows of a Dopamine ring in add order (oldest first)."""
    if add_count <= capacity:
        return np.arange(add_count, dtype=np.int64)
    p = add_count % capacity
    return np.concatenate([np.arange(p, capacity), np.arange(0, p)]).astype(np.int64)


def _read_checkpoint(replay_dir: Path, suffix: int) -> dict[str, Any]:
    small = {name: _load_small(checkpoint_file(replay_dir, STORE_FILENAME_PREFIX + name, suffix))
             for name in STORE[1:]}
    add_count = int(_load_small(checkpoint_file(replay_dir, "add_count", suffix)))
    capacity = len(small["terminal"])
    if not all(len(v) == capacity for v in small.values()) or add_count < 0:
        raise UserError(f"DQN-Replay checkpoint {suffix} in {replay_dir} is inconsistent: arrays of lengths "
                        f"{[len(v) for v in small.values()]}, add_count {add_count}")
    order = _ring_order(add_count, capacity)
    return {"suffix": suffix, "add_count": add_count, "capacity": capacity, "order": order,
            **{k: v[order] for k, v in small.items()}}


def _segments(checkpoints: list[dict[str, Any]]) -> list[_Segment]:
    """Join checkpoints whose adds continue each other (batch_rl's logs do) into streams."""
    segments: list[_Segment] = []
    for ck in sorted(checkpoints, key=lambda c: c["add_count"]):
        first = ck["add_count"] - len(ck["order"])
        last = segments[-1] if segments else None
        if last is not None and last.first_add + len(last.terminal) == first:
            last.suffixes.append(ck["suffix"])
            last.parts.append((ck["suffix"], ck["order"]))
            last.action = np.concatenate([last.action, ck["action"]])
            last.reward = np.concatenate([last.reward, ck["reward"]])
            last.terminal = np.concatenate([last.terminal, ck["terminal"]])
        else:
            segments.append(_Segment([ck["suffix"]], first, [(ck["suffix"], ck["order"])], ck["action"],
                                     ck["reward"], ck["terminal"]))
    return segments


def _is_padding(seg: _Segment, a: int, b: int) -> np.ndarray:
    """Per row a .. b-1: action, reward and terminal all zero (Dopamine's padding rows are)."""
    return (seg.action[a:b] == 0) & (seg.reward[a:b] == 0) & (seg.terminal[a:b] == 0)


def _episodes(seg: _Segment, pad: int, clean_start: bool) -> Iterator[tuple[int, int, bool]]:
    """(first row, stop row, ended) of the segment's episodes in order. ended: the last row (stop - 1)
    is terminal; else the data ran out and row `stop` is the frame after the last kept step."""
    n = len(seg.terminal)
    ends = np.flatnonzero(seg.terminal != 0)
    if clean_start:
        i = pad
    elif len(ends):
        i = int(ends[0]) + 1 + pad  # the first episode began before the oldest row: drop it
    else:
        return
    for j in ends[np.searchsorted(ends, i):]:  # the terminal rows from row i on: one episode each
        j = int(j)
        yield i, j + 1, True
        following = slice(j + 1, min(n, j + 1 + pad))
        if not _is_padding(seg, following.start, following.stop).all():
            bad = following.start + int(np.argmin(_is_padding(seg, following.start, following.stop)))
            raise UserError(f"DQN-Replay checkpoint(s) {seg.suffixes}: row {bad} of the stream follows an episode end "
                            f"but is not Dopamine's zero padding; was the buffer written with stack_size {pad + 1}?")
        i = j + 1 + pad
    if i < n - 1:
        yield i, n - 1, False


def _stacks(frames: np.ndarray, following: np.ndarray, k: int) -> np.ndarray:
    """(L + 1, k, H, W) frame stacks ending at each of the L frames and then at `following`; zeros before
    the first frame (Dopamine's padding, rlsuite's fresh stack)."""
    h, w = frames.shape[1:]
    padded = np.concatenate([np.zeros((k - 1, h, w), frames.dtype), frames, following[None]])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=0)  # (L + 1, H, W, k)
    return np.ascontiguousarray(np.moveaxis(windows, -1, 1))


def _locate(replay_dir: str | Path) -> Path:
    path = Path(replay_dir)
    if not path.is_dir():
        raise UserError(f"DQN-Replay directory {path} does not exist (give a game/run directory such as Pong/1, "
                        "or its replay_logs)")
    return path / "replay_logs" if (path / "replay_logs").is_dir() else path


def find_suffixes(replay_dir: str | Path) -> list[int]:
    """The checkpoint suffixes that have an observation file in `replay_dir`, ascending."""
    path = _locate(replay_dir)
    found = sorted(int(m.group(1)) for f in path.iterdir() if (m := _SUFFIX.match(f.name)))
    if not found:
        raise UserError(f"no DQN-Replay checkpoints in {path} (expected files like "
                        f"{STORE_FILENAME_PREFIX}observation_ckpt.0.gz)")
    return found


def import_dqn_replay(replay_dir: str | Path, out: str | Path, *, game: str, suffixes: Sequence[int] | None = None,
                      max_steps: int | None = None, frame_stack: int = 4, stack_size: int = 4,
                      chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dataset:
    """Write DQN-Replay checkpoints of one game and run as a new rlsuite dataset at `out`; returns it.

    `replay_dir`: the run's ``replay_logs`` directory (or the run directory holding it); `game`: the
    Atari game ('Pong', 'pong', 'MsPacman'), for its minimal action set; `suffixes`: the checkpoints to
    read (default all; consecutive ones join into one stream, others are separate streams, env 0, 1,
    ...); `max_steps`: stop after this many transitions (the episode it cuts is kept, complete=False);
    `frame_stack`: frames per stored observation; `stack_size`: the stack size Dopamine wrote the buffer
    with (its padding is stack_size - 1 zero rows; DQN-Replay: 4). Conventions: the module docstring.
    A missing file, a bad directory or data that does not fit raise UserError.
    """
    if frame_stack < 1 or stack_size < 1:
        raise UserError(f"frame_stack and stack_size must be >= 1, got {frame_stack} and {stack_size}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"max_steps must be >= 1, got {max_steps}")
    path = _locate(replay_dir)
    chosen = sorted(set(int(s) for s in suffixes)) if suffixes is not None else find_suffixes(path)
    if not chosen:
        raise UserError("no DQN-Replay checkpoint suffixes given")
    for suffix in chosen:  # every file first, so a missing one fails before any work
        for name in [STORE_FILENAME_PREFIX + n for n in STORE] + ["add_count"]:
            if not checkpoint_file(path, name, suffix).is_file():
                raise UserError(f"DQN-Replay checkpoint {suffix} in {path} is incomplete: "
                                f"{name}_ckpt.{suffix}.gz is missing")
    minimal = np.array(minimal_action_set(game), np.int64)
    from rlsuite.envs import resolve_env_id

    name = resolve_env_id(game)[1]
    checkpoints = [_read_checkpoint(path, s) for s in chosen]
    files: dict[int, _FrameFile] = {}
    try:
        for s in chosen:
            files[s] = _FrameFile(checkpoint_file(path, STORE_FILENAME_PREFIX + "observation", s))
        for ck in checkpoints:
            if files[ck["suffix"]].shape[0] != ck["capacity"]:
                raise UserError(f"DQN-Replay checkpoint {ck['suffix']}: {files[ck['suffix']].shape[0]} frames but "
                                f"{ck['capacity']} actions")
        frame_shape = files[chosen[0]].shape[1:]
        segments = _segments(checkpoints)
        manifest = {
            "source": "dqn-replay", "game": name, "env_id": name, "replay_dir": str(path), "suffixes": chosen,
            "streams": [{"suffixes": s.suffixes, "first_add": s.first_add, "rows": len(s.terminal)} for s in segments],
            "capacity": checkpoints[0]["capacity"], "reward": "clipped [-1, 1] by Dopamine",
            "action_set": "full 18", "minimal_action_set": minimal.tolist(), "frame_stack": frame_stack,
            "dopamine_stack_size": stack_size, "max_steps": max_steps,
            "terminated": "Dopamine's terminal flag: a game over or the 27,000-step time limit (not told apart)",
            "final_obs": "of a terminated episode: the stack shifted with a zero frame (never stored by Dopamine)",
            "reference": "https://research.google/resources/datasets/dqn-replay/ (Agarwal et al. 2020)",
        }
        space = gym.spaces.Box(0, 255, (frame_stack, *frame_shape), np.uint8)
        writer = DatasetWriter(out, space, gym.spaces.Discrete(FULL_ACTIONS), manifest, chunk_size)
        budget = max_steps if max_steps is not None else np.inf
        for env, seg in enumerate(segments):
            budget = _write_segment(writer, seg, env, files, minimal, frame_stack, stack_size - 1, budget)
            if budget <= 0:
                break
        writer.close()
    finally:
        for f in files.values():
            f.close()
    return Dataset(out)


def _rows(seg: _Segment, files: dict[int, _FrameFile], a: int, b: int) -> np.ndarray:
    """Frames of stream rows a .. b-1."""
    parts = [files[s].rows(p, q) for s, p, q in seg.physical(a, b)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _write_segment(writer: DatasetWriter, seg: _Segment, env: int, files: dict[int, _FrameFile],
                   minimal: np.ndarray, k: int, pad: int, budget: float) -> float:
    """Write one stream's episodes; returns the transitions budget left."""
    n = len(seg.terminal)
    clean = seg.first_add == 0 and n > pad and bool(_is_padding(seg, 0, pad).all())
    if clean and pad:
        clean = not _rows(seg, files, 0, pad).any()  # the padding frames are zeros too
    for a, b, ended in _episodes(seg, pad, clean):
        if budget <= 0:
            break
        if b - a > budget:  # the step budget cuts this episode: keep its first steps, row b is the next frame
            b, ended = a + int(budget), False
        actions = seg.action[a:b].astype(np.int64)
        if actions.min() < 0 or actions.max() >= len(minimal):
            bad = a + int(np.argmax((actions < 0) | (actions >= len(minimal))))
            raise UserError(f"DQN-Replay checkpoint(s) {seg.suffixes}: action {int(seg.action[bad])} at stream row "
                            f"{bad} is outside the game's minimal action set of {len(minimal)} actions; "
                            "is --game the game of this data?")
        frames = _rows(seg, files, a, b if ended else b + 1)
        following = np.zeros_like(frames[0]) if ended else frames[-1]
        stacks = _stacks(frames[: b - a], following, k)
        terminated = np.zeros(b - a, bool)
        terminated[-1] = ended
        writer.add_episode(stacks[:-1], minimal[actions], seg.reward[a:b], terminated, np.zeros(b - a, bool),
                           stacks[-1], complete=ended, env=env)
        budget -= b - a
    return budget
