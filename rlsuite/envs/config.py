"""Environment configuration and env-id resolution.

`EnvConfig` is the one description of an environment the rest of the suite passes around; every
field has a docstring right after it (the CLI turns these into `--help`). `resolve_env_id` maps the
many spellings of an id ('pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4', 'montezuma', 'nethack',
'minatar:breakout', 'CartPole-v1') to a `(family, canonical_game)` pair.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache

from rlsuite.config.fields import checked, choice, ranged
from rlsuite.errors import UserError, require

# The env backends; rlsuite.envs.make dispatches on these names.
BACKENDS = ("auto", "envpool", "gymnasium", "gymnasium-async")


@dataclass
class EnvConfig:
    """How to build a vectorized environment (see `rlsuite.envs.make`)."""

    id: str = checked("CartPole-v1", lambda value: env_id_problem(value), "a known env id")  # lambda: defined below
    """Environment id. Atari games by name ('pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4'; 'montezuma' = MontezumaRevenge), NetHack tasks ('NetHackScore-v0', 'nethack'), MinAtar ('minatar:breakout', 'MinAtar/Breakout-v1'), classic control ('CartPole-v1', 'Acrobot-v1', ...), close-far tasks ('closefar:chain', 'closefar:tworoom')."""
    backend: str = choice("auto", *BACKENDS)
    """'envpool', 'gymnasium' (in-process sync vector) or 'gymnasium-async' (one subprocess per env); 'auto' = envpool for Atari, gymnasium otherwise."""
    async_step: bool = False
    """Step the envs asynchronously (envpool's send/recv; gymnasium-async's step_async/step_wait): the training loop sends the actions, does the learning owed for the steps already stored while the env threads step, then receives. Every env still steps every vector step, so same-step autoreset, final_obs, seeds and episode statistics keep their meaning; the learner sees each step's transition one vector step later (DQN). Needs backend envpool or gymnasium-async."""
    frame_skip: int = ranged(4, ge=1)
    """Atari only: emulator frames per agent step, observation = max over the last two frames (the one frame at frame_skip=1)."""
    frame_stack: int = ranged(4, ge=1)
    """Atari only: number of consecutive frames stacked on axis 0 of an observation (zeros before an episode start)."""
    screen_size: int = ranged(84, ge=8)
    """Atari only: side of the square grayscale observation (cv2 INTER_AREA resize, as envpool)."""
    noop_max: int = ranged(30, ge=0)
    """Atari only: a reset takes a random number of 1..noop_max no-op actions (at least one, as envpool)."""
    sticky_action_prob: float = ranged(0.25, ge=0, le=1)
    """Atari and MinAtar: probability that the previous action repeats instead of the chosen one (Machado et al. 2018)."""
    terminal_on_life_loss: bool = False
    """Atari only: a lost life ends the training episode (terminated=True) while the game goes on; never in evaluation."""
    fire_reset: bool = False
    """Atari only: press FIRE after each reset, for games whose action set has FIRE."""
    clip_rewards: bool = False
    """Training reward is sign(reward); never in evaluation. Episode statistics always report the raw score."""
    max_episode_steps: int = ranged(27000, ge=1)
    """Time limit in agent steps per game (27000 steps = 108k Atari frames); reached -> truncated=True, and terminated=True as well if the game also ended on that step. Classic control also keeps its registered limit."""
    full_action_space: bool = False
    """Atari: all 18 ALE actions; MinAtar: all 6 actions; instead of the game's minimal action set (task sequences set it so one Q-head serves every game)."""
    pad_channels: int = ranged(0, ge=0)
    """MinAtar only: append all-zero observation channels up to this count (0 = none), so games with 4-10 channels share one network (task sequences set it)."""
    start_states: str = checked("", lambda value: start_states_problem(value), "'' (off) or a start-state set folder")
    """Atari only, ale-py backend: a folder made by 'rlsuite states collect' (e.g. states/far); every new game then starts from a random saved emulator state, drawn from the env's own seeded RNG, after the normal reset, and episode statistics count from there (a life-loss 'reset' continues the game instead). envpool cannot restore states: with this set, backend 'auto' uses ale-py and 'envpool' is refused. '' = off."""
    hide_velocities: bool = False
    """Classic control only: drop the velocity entries from the observation (CartPole: cart velocity and pole angular velocity; Acrobot, MountainCar, Pendulum likewise), the standard partially observed test of recurrent agents: a feed-forward policy cannot infer them from one observation."""
    start: str = choice("close", "close", "far")
    """Close-far tasks only: where every episode starts: 'close' (the task's normal start) or 'far' (the FAR part directly, the save-game analogue used to pre-train and to measure FAR skill)."""


ATARI, NETHACK, MINATAR, CLASSIC = "atari", "nethack", "minatar", "classic"
CLOSEFAR = "closefar"  # the knowledge-retention study's close-far tasks (rlsuite.envs.closefar)

# Short names people type for long game names.
_ATARI_ALIASES = {"montezuma": "montezuma_revenge", "mr": "montezuma_revenge"}
_MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
_CLOSEFAR_GAMES = ("chain", "tworoom")
_CLASSIC_IDS = ("CartPole-v0", "CartPole-v1", "Acrobot-v1", "MountainCar-v0")
_NETHACK_IDS = (
    "NetHackScore-v0", "NetHackStaircase-v0", "NetHackStaircasePet-v0", "NetHackOracle-v0",
    "NetHackGold-v0", "NetHackEat-v0", "NetHackScout-v0", "NetHackChallenge-v0",
)


@lru_cache(maxsize=1)
def _atari_roms() -> dict[str, str]:
    """Map squashed rom name ('montezumarevenge') -> CamelCase game ('MontezumaRevenge')."""
    get_all_rom_ids = require("ale_py.roms", hint="pip install -e . (from the rlsuite checkout: ale-py is one of its dependencies)").get_all_rom_ids

    return {rom.replace("_", ""): "".join(p.capitalize() for p in rom.split("_")) for rom in get_all_rom_ids()}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _atari_game(name: str) -> str | None:
    """CamelCase game for an Atari spelling, or None."""
    base = name.split("/", 1)[1] if name.lower().startswith("ale/") else name
    base = re.sub(r"-v\d+$", "", base)
    base = re.sub(r"(NoFrameskip|Deterministic)$", "", base)
    base = _ATARI_ALIASES.get(base.lower(), base)
    return _atari_roms().get(_squash(base))


def _minatar_game(name: str) -> str | None:
    low = name.lower()
    if low.startswith("minatar:"):
        game = low.split(":", 1)[1]
    elif low.startswith("minatar/"):
        game = re.sub(r"-v\d+$", "", low.split("/", 1)[1])
    else:
        return None
    squashed = {_squash(g): g for g in _MINATAR_GAMES}
    return squashed.get(_squash(game))


def _closefar_game(name: str) -> str | None:
    low = name.lower()
    for prefix in ("closefar:", "closefar/"):
        if low.startswith(prefix) and low[len(prefix):] in _CLOSEFAR_GAMES:
            return low[len(prefix):]
    return None


def resolve_env_id(env_id: str) -> tuple[str, str]:
    """Return (family, canonical game) for an env id, or raise UserError with close matches.

    Canonical games: Atari 'Pong', 'MontezumaRevenge'; NetHack 'NetHackScore-v0'; MinAtar
    'breakout' (the minatar package's name); classic 'CartPole-v1'; close-far 'chain', 'tworoom'.
    """
    name = env_id.strip()
    if name.lower() == "nethack":
        return NETHACK, "NetHackScore-v0"
    for nid in _NETHACK_IDS:
        if name.lower() == nid.lower():
            return NETHACK, nid
    for cid in _CLASSIC_IDS:
        if name.lower() == cid.lower():
            return CLASSIC, cid
    game = _minatar_game(name)
    if game is not None:
        return MINATAR, game
    game = _closefar_game(name)
    if game is not None:
        return CLOSEFAR, game
    if not name.lower().startswith(("minatar", "closefar")):
        game = _atari_game(name)
        if game is not None:
            return ATARI, game
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known_env_ids()], n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}? " if close else ""
    raise UserError(f"unknown env '{env_id}'; {hint}('rlsuite list envs' shows all)")


def start_states_problem(path: str) -> str | None:
    """EnvConfig.start_states' check: None for '' or a state-set folder, else why not."""
    from rlsuite.envs.start_states import state_set_problem

    return state_set_problem(path)


def env_id_problem(env_id: str) -> str | None:
    """EnvConfig.id's check: None for an id `resolve_env_id` accepts, else its reason."""
    try:
        resolve_env_id(env_id)
    except UserError as exc:
        return str(exc)
    return None


def known_env_ids() -> list[str]:
    """Every id `resolve_env_id` accepts in its shortest form (for `rlsuite list envs`)."""
    get_all_rom_ids = require("ale_py.roms", hint="pip install -e . (from the rlsuite checkout: ale-py is one of its dependencies)").get_all_rom_ids

    return (
        sorted(get_all_rom_ids()) + ["montezuma", "nethack"] + list(_NETHACK_IDS)
        + [f"minatar:{g}" for g in _MINATAR_GAMES] + list(_CLASSIC_IDS)
        + [f"closefar:{g}" for g in _CLOSEFAR_GAMES]
    )
