"""`rlsuite states collect`: save Atari emulator states where a condition holds (start-state sets,
the format in rlsuite.envs.start_states), played by a trained policy or a replayed action list."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rlsuite.errors import UserError

if TYPE_CHECKING:  # numpy is imported where it is used: `rlsuite` starts (and takes Ctrl-C) sooner
    import numpy as np

ACTION_SUFFIXES = (".json", ".txt")


def add(sub: Any) -> None:
    p = sub.add_parser("states", help="start-state sets: saved emulator states to start games from",
                       description="Start-state sets for env.start_states (Atari, ale-py backend).")
    p.set_defaults(func=lambda _: p.print_help() or 0)  # `rlsuite states` alone: its help, not the top-level one
    commands = p.add_subparsers(metavar="action", parser_class=type(p))
    c = commands.add_parser(
        "collect", help="play games and save emulator states where --when holds",
        description="Play games on the ale-py backend and save the emulator state (with its RAM and screen) at "
                    "each step of an episode where the --when condition becomes true (and, with --every K, "
                    "every K steps while it stays true), until --count states are saved. Played by a run's "
                    "policy (its env config, epsilon-greedy; whole games) or by replaying a .json/.txt list of "
                    "action indices once (sticky actions off, one no-op at reset: deterministic). If --max-steps "
                    "run out first, nothing is written.")
    c.add_argument("--env", default="montezuma", help="Atari env id (default montezuma)")
    c.add_argument("--from", dest="source", required=True,
                   help="run directory or checkpoint file; or a .json (a list of ints) / .txt (ints separated by "
                        "spaces, commas or newlines; '#' comments) file of action indices")
    c.add_argument("--when", required=True,
                   help="KEY OP NUMBER terms joined by 'and', OP one of >= > == <= < !=; keys: step, score, lives, "
                        "and for Montezuma room (current room) and rooms (distinct rooms visited), e.g. 'room>=1'")
    c.add_argument("--count", type=int, required=True, help="states to save")
    c.add_argument("--out", required=True, help="new folder for the state set, e.g. states/far")
    c.add_argument("--seed", type=int, default=0, help="env (and policy exploration) seed (default 0)")
    c.add_argument("--max-steps", type=int, default=1_000_000, help="give up after this many agent steps (default 1e6)")
    c.add_argument("--every", type=int, default=0, metavar="K",
                   help="also save every K steps while the condition stays true (default 0: only when it becomes true)")
    c.add_argument("--epsilon", type=float, help="policy exploration epsilon (default: the agent's eval_epsilon)")
    c.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    from rlsuite.envs.config import ATARI, resolve_env_id
    from rlsuite.envs.start_states import FORMAT, condition_keys, parse_condition

    family, game = resolve_env_id(args.env)
    if family != ATARI:
        raise UserError(f"states collect needs an Atari game, not '{args.env}'")
    checks = [(args.count >= 1, f"--count must be at least 1, got {args.count}"),
              (args.max_steps >= 1, f"--max-steps must be at least 1, got {args.max_steps}"),
              (args.every >= 0, f"--every must be >= 0, got {args.every}"),
              (args.epsilon is None or 0.0 <= args.epsilon <= 1.0, f"--epsilon must be in [0, 1], got {args.epsilon}")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    condition = parse_condition(args.when, condition_keys(game))
    source, out = Path(args.source), Path(args.out)
    if not source.exists():
        raise UserError(f"--from: no such run, checkpoint or actions file: {source}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} exists and is not empty; choose a new folder")
    env_cfg, actor, source_record = _source(args, source)
    states = collect(env_cfg, actor, condition, args.count, args.every, args.max_steps, args.seed)
    states.manifest = {"format": FORMAT, "env": args.env, "game": game, "env_config": dataclasses.asdict(env_cfg),
                       "source": source_record, "condition": condition.text, "every": args.every, "seed": args.seed,
                       "count": len(states), "states": states.manifest["states"]}
    states.save(out)
    rooms = sorted({s["room"] for s in states.manifest["states"] if s["room"] is not None})
    print(f"saved {len(states)} states to {out}" + (f" (rooms {rooms})" if rooms else ""))
    return 0


Actor = Callable[["np.ndarray", int, int], "np.ndarray | None"]
"""(stacked obs (1, stack, H, W), episode, step in episode) -> actions (1,) int64, or None: stop playing."""


def _source(args: argparse.Namespace, source: Path) -> tuple[Any, Actor, dict]:
    """The env config to play on (ale-py backend), the actor, and the manifest's `source` record."""
    from rlsuite.envs import EnvConfig

    if source.is_file() and source.suffix.lower() in ACTION_SUFFIXES:
        actions = read_actions(source)
        # sticky actions off and exactly one reset no-op: the same list always plays the same game
        cfg = EnvConfig(id=args.env, backend="gymnasium", sticky_action_prob=0.0, noop_max=0)
        allowed = _action_count(cfg)
        if max(actions) >= allowed:
            raise UserError(f"bad actions file {source}: action {max(actions)} is not below {allowed}, "
                            f"the number of actions of {args.env}")
        return cfg, _replay(actions), {"kind": "actions", "file": str(source), "actions": len(actions)}
    from rlsuite.trained.policy import load_policy

    policy = load_policy(source, env_id=args.env, num_envs=1, seed=args.seed)
    policy.env.close()  # built on the run's backend (maybe envpool): we need the ALE itself
    cfg = dataclasses.replace(policy.cfg.env, backend="gymnasium")
    epsilon = getattr(policy.cfg.agent, "eval_epsilon", 0.0) if args.epsilon is None else args.epsilon
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(1,)))
    record = {"kind": "policy", "checkpoint": str(policy.path), "step": policy.step, "epsilon": epsilon}
    return cfg, lambda obs, episode, t: policy.agent.act(obs, epsilon, rng=rng), record


def _action_count(cfg: Any) -> int:
    from rlsuite.envs.atari import AtariGame
    from rlsuite.envs.config import resolve_env_id

    game = AtariGame(cfg, resolve_env_id(cfg.id)[1])
    try:
        return int(game.action_space.n)
    finally:
        game.close()


def read_actions(path: Path) -> list[int]:
    """Action indices from a .json list (or {"actions": [...]}) or a .txt of ints. UserError if bad."""
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            values = data["actions"] if isinstance(data, dict) else data
        else:
            values = " ".join(line.split("#", 1)[0] for line in text.splitlines()).replace(",", " ").split()
        actions = [int(v) for v in values]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"bad actions file {path}: {exc}") from None
    if not actions or min(actions) < 0:
        raise UserError(f"bad actions file {path}: need at least one action, all >= 0")
    return actions


def _replay(actions: list[int]) -> Actor:
    import numpy as np

    def actor(obs: np.ndarray, episode: int, t: int) -> np.ndarray | None:
        # one game: the list replays identically, so a second game would only repeat the first
        return np.array([actions[t]], np.int64) if episode == 0 and t < len(actions) else None
    return actor


def collect(env_cfg: Any, actor: Actor, condition: Any, count: int, every: int, max_steps: int, seed: int) -> Any:
    """Play one ale-py env (whole games: evaluation=True) and save a state at each step where the
    condition becomes true (or, with `every` > 0, has held `every` steps since the last save in this
    episode). A step that ends its episode is never saved (the env has already reset). Returns a
    StateSet whose manifest holds the per-state records (the caller adds the rest). Raises UserError
    if fewer than `count` states were found."""
    import numpy as np

    from rlsuite.envs import make
    from rlsuite.envs.start_states import StateSet

    env = make(env_cfg, 1, seed, evaluation=True)
    game_env, ale = env.envs[0], env.envs[0].ale
    states, rams, screens, records = [], [], [], []
    episode, t, score, was_true, last_save = 0, 0, 0.0, False, 0
    try:
        obs, _ = env.reset()
        for _ in range(max_steps):
            actions = actor(obs, episode, t)
            if actions is None:
                break
            obs, reward, term, trunc, _ = env.step(actions)
            t, score = t + 1, score + float(reward[0])
            if term[0] or trunc[0]:
                episode, t, score, was_true = episode + 1, 0, 0.0, False
                continue
            info = {**game_env.last_info, "step": t, "score": score}
            holds = condition(info)
            if holds and (not was_true or (every > 0 and t - last_save >= every)):
                states.append(ale.cloneState().serialize())
                rams.append(ale.getRAM().copy())
                screens.append(ale.getScreenGrayscale().copy())
                records.append({"episode": episode, "step": t, "room": info.get("room"), "score": score,
                                "lives": int(info["lives"])})
                last_save = t
                if len(states) == count:
                    break
            was_true = holds
    finally:
        env.close()
    if len(states) < count:
        raise UserError(f"found {len(states)} of {count} states where '{condition.text}' holds "
                        f"({episode + 1} episode(s)); nothing written: raise --max-steps, use --every, "
                        f"or loosen --when")
    return StateSet({"states": records}, states, np.stack(rams), np.stack(screens))
