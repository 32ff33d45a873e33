"""`rlsuite collect` (run a policy, store its experience as a dataset) and `rlsuite dataset info`."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError

COLLECT_EXAMPLES = """\
examples:
  rlsuite collect --from runs/dqn-pong-s1 --episodes 50 --out data/pong-expert
  rlsuite collect --from runs/dqn-pong-s1/checkpoints/step_1000000.pt --steps 200000 --epsilon 0.1 --out data/pong-eps01
  rlsuite collect --from runs/ppo-mr --set env.start_states=states/far --episodes 20 --out data/mr-far
  rlsuite dataset info data/pong-expert
"""


def add(sub: Any) -> None:
    p = sub.add_parser(
        "collect", help="run a policy and store its experience as an offline dataset",
        description="Play a trained policy (a run directory's latest checkpoint, or a checkpoint file) on evaluation "
                    "envs (whole games, raw unclipped rewards) and store every step on disk: observations, actions, "
                    "rewards, terminated/truncated flags, episode boundaries and each episode's true final "
                    "observation, in memory-mappable .npy chunks, with a manifest naming the checkpoint, env config, "
                    "epsilon and seed and the return statistics. Behaviour cloning, EWC Fisher data, EM transitions "
                    "and the Decision Transformer read this format (rlsuite.data.Dataset). --episodes stores exactly "
                    "N whole episodes; --steps stores exactly N steps (the episodes cut by the budget are kept, "
                    "marked incomplete).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COLLECT_EXAMPLES)
    p.add_argument("--from", dest="source", required=True, metavar="RUN_OR_CKPT",
                   help="run directory (its latest checkpoint) or checkpoint file")
    p.add_argument("--env", help="play another env id (must have the same observation and action spaces)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the env played, e.g. --set env.start_states=states/far")
    p.add_argument("--episodes", type=int, help="store exactly N whole episodes (split over the envs in advance)")
    p.add_argument("--steps", type=int, help="store exactly N steps")
    p.add_argument("--out", required=True, metavar="DIR", help="new (or empty) directory for the dataset")
    p.add_argument("--epsilon", type=float, help="exploration epsilon (default: the agent's eval_epsilon)")
    p.add_argument("--seed", type=int, default=12345, help="env seed and exploration seed (default 12345)")
    p.add_argument("--num-envs", type=int, default=4, help="parallel envs (default 4)")
    p.add_argument("--sample", action="store_true",
                   help="actor-critic agents (ppo): sample actions from the policy instead of taking the most likely")
    p.add_argument("--chunk-size", type=int, default=None, metavar="STEPS",
                   help="steps per chunk folder (default 65536)")
    p.set_defaults(func=cmd_collect)

    d = sub.add_parser("dataset", help="inspect offline datasets made by 'rlsuite collect'",
                       description="Inspect offline datasets made by 'rlsuite collect'.")
    d.set_defaults(func=lambda _: d.print_help() or 0)
    actions = d.add_subparsers(metavar="action", parser_class=type(d))
    info = actions.add_parser("info", help="episodes, transitions, returns, size on disk, where it came from",
                              description="Show a dataset's episodes, transitions, return statistics, size on disk "
                                          "and its manifest's source, env, checkpoint and epsilon.")
    info.add_argument("path", help="dataset directory")
    info.set_defaults(func=cmd_info)


def _check(args: argparse.Namespace) -> None:
    if (args.episodes is None) == (args.steps is None):
        raise UserError("give exactly one of --episodes N or --steps N")
    checks = [(args.episodes is None or args.episodes >= 1, f"--episodes must be at least 1, got {args.episodes}"),
              (args.steps is None or args.steps >= 1, f"--steps must be at least 1, got {args.steps}"),
              (args.num_envs >= 1, f"--num-envs must be at least 1, got {args.num_envs}"),
              (args.chunk_size is None or args.chunk_size >= 1,
               f"--chunk-size must be at least 1, got {args.chunk_size}"),
              (args.epsilon is None or 0.0 <= args.epsilon <= 1.0,
               f"--epsilon is a probability: it must be between 0 and 1, got {args.epsilon}")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} is {'a file' if not out.is_dir() else 'a non-empty directory'}; "
                        "choose a new directory")


def cmd_collect(args: argparse.Namespace) -> int:
    import numpy as np

    from rlsuite.data import DEFAULT_CHUNK_SIZE, collect
    from rlsuite.policy import load_policy
    from rlsuite.seeding import stream

    _check(args)
    policy = load_policy(args.source, env_id=args.env, overrides=args.overrides, num_envs=args.num_envs,
                         seed=args.seed)
    try:
        if args.sample:
            if not hasattr(policy.cfg.agent, "eval_sample"):
                raise UserError(f"--sample: agent '{policy.cfg.algo}' has no policy distribution to sample from "
                                "(use --epsilon for random actions)")
            policy.agent.cfg.eval_sample = True
        epsilon = float(getattr(policy.cfg.agent, "eval_epsilon", 0.0) if args.epsilon is None else args.epsilon)
        manifest = {"source": "rlsuite collect", "checkpoint": str(policy.path), "checkpoint_step": policy.step,
                    "run_dir": str(policy.run_dir) if policy.run_dir is not None else None,
                    "algo": policy.cfg.algo, "env_id": policy.cfg.env.id, "game": getattr(policy.env, "game", None),
                    "env": dataclasses.asdict(policy.cfg.env), "env_overrides": list(args.overrides),
                    "evaluation_env": True, "seed": args.seed, "sample": bool(args.sample)}
        rng = np.random.default_rng(stream(args.seed, "eval_exploration"))
        dataset = collect(policy.agent, policy.env, args.out, steps=args.steps, episodes=args.episodes,
                          epsilon=epsilon, rng=rng, seed=args.seed, manifest=manifest,
                          chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE)
    finally:
        policy.env.close()
    stats = dataset.stats()
    print(f"collected {dataset.path}: {stats['episodes']} whole episode(s)"
          + (f" + {stats['incomplete_episodes']} cut short" if stats["incomplete_episodes"] else "")
          + f", {len(dataset):,} transitions, return mean {_num(stats['return_mean'])}"
          f" (min {_num(stats['return_min'])}, max {_num(stats['return_max'])}), {_size(dataset.size_bytes())}")
    print(f"  {policy.cfg.algo} step {policy.step:,} from {policy.path}; env {policy.cfg.env.id}, epsilon {epsilon}, "
          f"seed {args.seed}{', sampled actions' if args.sample else ''}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rlsuite.data import Dataset
    from rlsuite.evaluate import format_table

    ds = Dataset(args.path)
    m, stats = ds.manifest, ds.stats()
    rows: list[tuple[str, Any]] = [
        ("episodes", stats.get("episodes")), ("incomplete episodes", stats.get("incomplete_episodes")),
        ("transitions", len(ds)), ("return mean", stats.get("return_mean")), ("return std", stats.get("return_std")),
        ("return min", stats.get("return_min")), ("return max", stats.get("return_max")),
        ("length mean", stats.get("length_mean"))]
    rows += [(k.replace("_", " "), v) for k, v in stats.items() if k.endswith("_mean") and k not in
             ("return_mean", "length_mean")]
    rows += [("size on disk", _size(ds.size_bytes())), ("chunks", len(m.get("chunks", []))),
             ("source", m.get("source")), ("env", m.get("env_id") or (m.get("env") or {}).get("id")),
             ("checkpoint", m.get("checkpoint")), ("checkpoint step", m.get("checkpoint_step")),
             ("algo", m.get("algo")), ("epsilon", m.get("epsilon")),
             ("seed", None if m.get("seed") is None else str(m.get("seed"))),
             ("created", m.get("created"))]
    print(format_table([{"field": k, "value": v if isinstance(v, str) else _num(v)} for k, v in rows
                        if v is not None], f"dataset {ds.path}"))
    return 0


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
