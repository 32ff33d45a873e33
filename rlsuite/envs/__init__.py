"""Vectorized environments: `make(cfg, num_envs, seed)` -> `VecEnv` for Atari, NetHack, MinAtar,
classic control and the close-far tasks, on envpool or gymnasium, with one autoreset meaning
(same-step; see `rlsuite.envs.vector`) and the same episode statistics on every backend.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

from rlsuite.envs.config import ATARI, BACKENDS, CLASSIC, CLOSEFAR, MINATAR, NETHACK, EnvConfig, known_env_ids, resolve_env_id
from rlsuite.envs.vector import VecEnv
from rlsuite.errors import UserError
from rlsuite.run.seeding import vector_seeds

__all__ = ["EnvConfig", "VecEnv", "make", "resolve_env_id", "known_env_ids"]



def make(cfg: EnvConfig, num_envs: int, seed: int | Sequence[int], *, evaluation: bool = False) -> VecEnv:
    """Build `num_envs` copies of `cfg.id`. `seed` is one int per env (env i gets seed[i]) or an int
    root whose SeedSequence children seed the envs (`rlsuite.run.seeding.vector_seeds`); it seeds the
    first reset.

    With `evaluation=True` episodes never end on a lost life and rewards are never clipped, so
    episodes are whole games scored in raw points.

    With `cfg.async_step` the env's `send` / `recv` overlap the envs' stepping (envpool or
    gymnasium-async only; any other backend, 'auto' included when it resolves to gymnasium, is a
    UserError).
    """
    family, game = resolve_env_id(cfg.id)
    if cfg.backend not in BACKENDS:
        raise UserError(f"unknown env backend '{cfg.backend}'; choose one of: {', '.join(BACKENDS)}")
    if num_envs < 1:
        raise UserError(f"num_envs must be at least 1, got {num_envs}")
    _validate(cfg)
    if cfg.start_states and family != ATARI:
        raise UserError(f"env.start_states holds saved Atari (ale-py) emulator states; {cfg.id} is a {family} env, "
                        "which cannot start from them: remove env.start_states (--set env.start_states=)")
    seeds = vector_seeds(seed, num_envs)
    backend = cfg.backend
    if backend == "auto":  # envpool for Atari, unless start states need ale-py's emulator restore
        backend = "envpool" if family == ATARI and not cfg.start_states else "gymnasium"
    _check_async(cfg, backend)
    if backend == "envpool":
        if family != ATARI:
            raise UserError(f"backend 'envpool' supports Atari only, not '{cfg.id}'; use backend='gymnasium'")
        from rlsuite.envs.atari import EnvpoolAtari

        return EnvpoolAtari(cfg, game, num_envs, seeds, evaluation)
    return _make_gym(cfg, family, game, num_envs, seeds, evaluation, backend == "gymnasium-async")


ASYNC_BACKENDS = ("envpool", "gymnasium-async")  # the backends that can step split-phase


def _check_async(cfg: EnvConfig, backend: str) -> None:
    """Refuse env.async_step on a backend (after 'auto' is resolved) that cannot overlap steps."""
    if not cfg.async_step or backend in ASYNC_BACKENDS:
        return
    resolved = f" (which resolves to '{backend}' for {cfg.id})" if cfg.backend != backend else ""
    raise UserError(f"env.async_step=true needs env.backend envpool (Atari) or gymnasium-async, but env.backend is "
                    f"'{cfg.backend}'{resolved}: set env.backend=gymnasium-async or env.async_step=false")


def _validate(cfg: EnvConfig) -> None:
    """Reject values no backend can honour, with the field name in the message."""
    checks = [
        (cfg.frame_skip >= 1, "frame_skip must be >= 1"), (cfg.frame_stack >= 1, "frame_stack must be >= 1"),
        (cfg.screen_size >= 8, "screen_size must be >= 8"), (cfg.noop_max >= 0, "noop_max must be >= 0"),
        (0.0 <= cfg.sticky_action_prob <= 1.0, "sticky_action_prob must be in [0, 1]"),
        (cfg.max_episode_steps >= 1, "max_episode_steps must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"bad env config: {message}")


def _make_gym(cfg: EnvConfig, family: str, game: str, num_envs: int, seeds: list[int], evaluation: bool,
              use_async: bool) -> VecEnv:
    from rlsuite.envs.gym_backend import AsyncGameVec, SyncGameVec

    kw: dict = {"family": family, "game": game, "clip_rewards": cfg.clip_rewards and not evaluation}
    if family == ATARI:
        from rlsuite.envs.atari import AtariGame, metric_keys

        factory = partial(AtariGame, cfg, game, evaluation)
        kw.update(frame_stack=cfg.frame_stack, metric_keys=metric_keys(game))
    elif family == NETHACK:
        from rlsuite.envs.nethack import METRIC_KEYS, NetHackGame

        factory = partial(NetHackGame, cfg, game)
        kw.update(metric_keys=METRIC_KEYS)
    elif family == MINATAR:
        from rlsuite.envs.minatar import MinAtarGame

        factory = partial(MinAtarGame, cfg, game)
    elif family == CLOSEFAR:
        from rlsuite.envs.closefar import CHAIN_METRIC_KEYS, TWO_ROOM_METRIC_KEYS, ChainGame, TwoRoomGame

        factory = partial(ChainGame, cfg) if game == "chain" else partial(TwoRoomGame, cfg)
        kw.update(metric_keys=CHAIN_METRIC_KEYS if game == "chain" else TWO_ROOM_METRIC_KEYS)
    else:
        assert family == CLASSIC
        from rlsuite.envs.classic import ClassicGame

        factory = partial(ClassicGame, cfg, game)
    if use_async:
        return AsyncGameVec(factory, num_envs, seeds, asynchronous=cfg.async_step, **kw)
    return SyncGameVec(factory, num_envs, seeds, **kw)
