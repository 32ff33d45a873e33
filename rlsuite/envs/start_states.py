"""Start-state sets: saved ALE emulator states that Atari resets start from (`EnvConfig.start_states`),
their on-disk format, and the `--when` condition of `rlsuite states collect`.

A state set is a folder:

- `manifest.json`: `format` (1), `env` (the id), `game` ('MontezumaRevenge'), `env_config` (the
  EnvConfig the states were played with), `source` ({"kind": "policy", "checkpoint": path} or
  {"kind": "actions", "file": path}), `condition`, `every`, `seed`, `count`, and `states`: one
  record per state, in file order, with `episode` (0-based), `step` (agent steps into the episode),
  `room` (Montezuma's RAM byte 3, null for other games), `score` (raw points so far), `lives`.
- `states.npz` (numpy, no pickles): `ale_state` uint8 (total bytes,) = every state's
  `ale_py.ALEState.serialize()` bytes concatenated, `ale_state_offsets` int64 (count + 1,) = where
  state i lies (`ale_state[off[i]:off[i+1]]`, rebuilt with `ale_py.ALEState(bytes)`), `ram` uint8
  (count, 128) and `screen` uint8 (count, 210, 160): the RAM and the grayscale last frame at save time.

The screen is stored because `ALEInterface.restoreState` restores the emulator but not the frame
buffer: a restored env shows the saved screen as its first observation. States are saved without the
ALE's RNG (`cloneState()`), so sticky actions after a restore still follow the env's own seed.
"""
from __future__ import annotations

import json
import zipfile
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rlsuite.errors import UserError

MANIFEST, ARRAYS, FORMAT = "manifest.json", "states.npz", 1

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_TERM = re.compile(r"\s*([A-Za-z_]\w*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*")


def condition_keys(game: str) -> tuple[str, ...]:
    """Info keys a condition may name for an Atari game: `step` (agent steps into the episode),
    `score` (raw points so far), `lives`, and for Montezuma `room` (current room index) and `rooms`
    (distinct rooms visited). `game_over` is left out: a state saved at game over cannot continue."""
    return ("step", "score", "lives") + (("room", "rooms") if game == "MontezumaRevenge" else ())


@dataclass(frozen=True)
class Condition:
    """A conjunction of `KEY OP NUMBER` terms over a step's info (a dict of numbers)."""

    text: str
    terms: tuple[tuple[str, str, float], ...]

    def __call__(self, info: dict[str, Any]) -> bool:
        return all(OPS[op](float(info[key]), value) for key, op, value in self.terms)


def parse_condition(text: str, keys: tuple[str, ...]) -> Condition:
    """Parse 'room>=1 and lives>2' (terms `KEY OP NUMBER` joined by the word `and`; OP one of
    >=, >, ==, <=, <, !=). Raises UserError for bad syntax or a key not in `keys`. Never evals."""
    terms = []
    for part in re.split(r"\band\b", text):
        match = _TERM.fullmatch(part)
        if match is None:
            raise UserError(f"bad --when '{text}': '{part.strip()}' is not KEY OP NUMBER "
                            f"(OP one of {', '.join(OPS)}; terms joined by 'and'), e.g. 'room>=1 and lives>2'")
        key, op, number = match.groups()
        if key not in keys:
            raise UserError(f"bad --when '{text}': unknown key '{key}'; this env has {', '.join(keys)}")
        terms.append((key, op, float(number)))
    return Condition(text.strip(), tuple(terms))


@dataclass
class StateSet:
    """A loaded state set: `states[i]` serialized ALEState bytes, `ram` (n, 128) uint8,
    `screen` (n, 210, 160) uint8, and the manifest dict."""

    manifest: dict[str, Any]
    states: list[bytes]
    ram: np.ndarray
    screen: np.ndarray

    def __len__(self) -> int:
        return len(self.states)

    def save(self, folder: Path) -> None:
        """Write the folder (created; existing files of the same names are replaced)."""
        folder.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(s) for s in self.states]).astype(np.int64)
        blob = np.frombuffer(b"".join(self.states), np.uint8)
        np.savez_compressed(folder / ARRAYS, ale_state=blob, ale_state_offsets=offsets, ram=self.ram,
                            screen=self.screen)
        (folder / MANIFEST).write_text(json.dumps(self.manifest, indent=1) + "\n")


def state_set_problem(path: str) -> str | None:
    """EnvConfig.start_states' check: None for '' (off) or a folder holding a manifest and states."""
    if path == "":
        return None
    folder = Path(path)
    missing = [name for name in (MANIFEST, ARRAYS) if not (folder / name).is_file()]
    if missing:
        return f"not a start-state set (no {' or '.join(missing)} there; make one with 'rlsuite states collect')"
    return None


def load_state_set(path: str | Path) -> StateSet:
    """Read a state-set folder. Raises UserError when it is missing, damaged or empty."""
    problem = state_set_problem(str(path))
    if problem is not None:
        raise UserError(f"{path}: {problem}")
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
            blob, offsets = arrays["ale_state"].tobytes(), arrays["ale_state_offsets"]
            ram, screen = arrays["ram"], arrays["screen"]
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:  # e.g. a truncated states.npz
        raise UserError(f"damaged start-state set {folder}: {folder / ARRAYS} is unreadable ({exc}); "
                        "collect it again with 'rlsuite states collect'") from None
    states = [blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    if not states or len(ram) != len(states) or len(screen) != len(states):
        raise UserError(f"damaged start-state set {folder}: "
                        f"{len(states)} states, {len(ram)} RAMs, {len(screen)} screens")
    return StateSet(manifest, states, ram, screen)
