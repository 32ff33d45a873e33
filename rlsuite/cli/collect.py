"""`rlsuite collect` (run a policy, store its experience as a dataset) and `rlsuite dataset`: `info` (what a
dataset holds), `export` (a DQN run's saved replay buffer as a dataset), `import-dqn-replay` (DQN-Replay's
Dopamine checkpoints), `import-minari` and `export-minari` (Farama Minari datasets). The work is in
rlsuite.data (collect, export_replay, dqn_replay, minari_io); this module parses, checks and reports."""
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

DATASET_EXAMPLES = """\
examples:
  rlsuite dataset info data/pong-expert
  rlsuite dataset export runs/dqn-pong-s1 --out data/pong-replay        # a run trained with --save-replay
  rlsuite dataset import-dqn-replay dqn_replay/Pong/1 --game Pong --suffixes 49,50 --out data/pong-dqn-replay
  rlsuite dataset import-dqn-replay dqn_replay/Pong/1 --game Pong --max-steps 200000 --out data/pong-200k
  rlsuite dataset export-minari data/pong-expert --id rlsuite/pong-expert-v0 --root ~/.minari/datasets
  rlsuite dataset import-minari rlsuite/pong-expert-v0 --root ~/.minari/datasets --out data/pong-again
  rlsuite dataset import-minari ~/.minari/datasets/cartpole/random-v0 --out data/cartpole-random
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

    d = sub.add_parser("dataset", help="inspect, import and export offline datasets (DQN-Replay, Minari, a run's replay)",
                       description="Inspect offline datasets (made by 'rlsuite collect' or imported), turn a DQN run's "
                                   "saved replay buffer into one, import the DQN-Replay dataset (Dopamine's replay "
                                   "checkpoints) and import or export Farama Minari datasets. export and the imports "
                                   "write rlsuite's dataset format (rlsuite.data.format) to a new directory; "
                                   "export-minari writes a Minari dataset under a Minari root.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DATASET_EXAMPLES)
    d.set_defaults(func=lambda _: d.print_help() or 0)
    actions = d.add_subparsers(metavar="action", parser_class=type(d))
    info = actions.add_parser("info", help="episodes, transitions, returns, size on disk, where it came from",
                              description="Show a dataset's episodes, transitions, return statistics, size on disk "
                                          "and its manifest's source, env, checkpoint and epsilon.")
    info.add_argument("path", help="dataset directory")
    info.set_defaults(func=cmd_info)

    def command(name: str, help: str, description: str, example: str) -> Any:
        return actions.add_parser(name, help=help, description=description, epilog=f"example:\n  {example}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)

    exp = command("export", "a DQN run's saved replay buffer as a dataset",
                  "Write the replay buffer a DQN run saved (rlsuite train ... --save-replay, in RUN/replay) as a "
                  "dataset: one stream per training env, episodes whole and in order, frame stacks rebuilt as the "
                  "agent saw them, true final observations, truncation and termination kept. The episode the ring "
                  "had partly overwritten is dropped; each env's unfinished last episode is kept without its last "
                  "step (whose next observation the replay does not hold), marked incomplete. Rewards are the "
                  "training env's (clipped if env.clip_rewards; the manifest says).",
                  "rlsuite dataset export runs/dqn-pong-s1 --out data/pong-replay")
    exp.add_argument("run", metavar="RUN", help="run directory trained with --save-replay")
    exp.add_argument("--out", required=True, metavar="DIR", help="new (or empty) directory for the dataset")
    exp.add_argument("--chunk-size", type=int, default=None, metavar="STEPS", help="steps per chunk (default 65536)")
    exp.set_defaults(func=cmd_export)

    dqn = command("import-dqn-replay", "the DQN-Replay dataset (Dopamine replay checkpoints) as a dataset",
                  "Read DQN-Replay (Agarwal et al. 2020; Dopamine's $store$_*_ckpt.N.gz replay checkpoints of one game "
                  "and run) into a dataset: episodes split at Dopamine's terminal flags, observations as 4-frame "
                  "stacks (zeros before an episode's first frame), actions mapped from the game's minimal action set "
                  "to the full 18 ALE actions, rewards as Dopamine stored them (clipped to [-1, 1]). Consecutive "
                  "checkpoints join into one stream. A whole checkpoint is 1M transitions, about 28 GB as stacked "
                  "observations: --max-steps takes a prefix.",
                  "rlsuite dataset import-dqn-replay dqn_replay/Pong/1 --game Pong --suffixes 49,50 --out data/pong")
    dqn.add_argument("replay_dir", metavar="REPLAY_DIR", help="a run directory of DQN-Replay (e.g. Pong/1) or its "
                                                              "replay_logs")
    dqn.add_argument("--game", required=True, help="the Atari game of the data, for its minimal action set (Pong)")
    dqn.add_argument("--out", required=True, metavar="DIR", help="new (or empty) directory for the dataset")
    dqn.add_argument("--suffixes", metavar="N,N,...", help="checkpoints to read (default: every one in the directory)")
    dqn.add_argument("--max-steps", type=int, metavar="N", help="store at most N transitions")
    dqn.add_argument("--frame-stack", type=int, default=4, metavar="K", help="frames per observation (default 4)")
    dqn.add_argument("--chunk-size", type=int, default=None, metavar="STEPS", help="steps per chunk (default 65536)")
    dqn.set_defaults(func=cmd_import_dqn_replay)

    imp = command("import-minari", "a Minari dataset as a dataset",
                  "Read a Farama Minari dataset (by id under --root, or a dataset directory) into a dataset: its "
                  "T + 1 observations per episode become T observations and the final observation, flags as "
                  "Minari's terminations and truncations. Episodes that rlsuite exported unfinished come back "
                  "unfinished. Needs a Discrete action space; nothing is downloaded.",
                  "rlsuite dataset import-minari rlsuite/pong-expert-v0 --root ~/.minari/datasets --out data/pong")
    imp.add_argument("source", metavar="DATASET_ID_OR_PATH", help="a Minari dataset id (namespace/name-v0) or the "
                                                                  "path of a Minari dataset directory")
    imp.add_argument("--out", required=True, metavar="DIR", help="new (or empty) directory for the dataset")
    imp.add_argument("--root", metavar="DIR", help="Minari datasets root (default: $MINARI_DATASETS_PATH, else "
                                                   "~/.minari/datasets)")
    imp.add_argument("--chunk-size", type=int, default=None, metavar="STEPS", help="steps per chunk (default 65536)")
    imp.set_defaults(func=cmd_import_minari)

    mex = command("export-minari", "a dataset as a Minari dataset",
                  "Write a dataset as a Farama Minari dataset (lossless arrays, no JPEG) under --root: observations "
                  "with the final one appended (T + 1 per episode), actions, rewards, terminations, truncations. "
                  "Minari has no unfinished episodes: like its DataCollector, an unfinished episode ends with "
                  "truncation = True (the metadata lists them, so import-minari restores them).",
                  "rlsuite dataset export-minari data/pong-expert --id rlsuite/pong-expert-v0")
    mex.add_argument("dataset", metavar="DATASET", help="dataset directory")
    mex.add_argument("--id", required=True, dest="dataset_id", metavar="NAME",
                     help="Minari dataset id, [namespace/]name-vN")
    mex.add_argument("--root", metavar="DIR", help="Minari datasets root (default: $MINARI_DATASETS_PATH, else "
                                                   "~/.minari/datasets)")
    mex.add_argument("--format", default="hdf5", choices=("hdf5", "arrow"), help="Minari storage (default hdf5)")
    mex.set_defaults(func=cmd_export_minari)


def _check_out(out: Path, flag: str = "--out") -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{flag} {out} is {'a file' if not out.is_dir() else 'a non-empty directory'}; "
                        "choose a new directory")


def _check_chunk(args: argparse.Namespace) -> int:
    from rlsuite.data import DEFAULT_CHUNK_SIZE

    if args.chunk_size is not None and args.chunk_size < 1:
        raise UserError(f"--chunk-size must be at least 1, got {args.chunk_size}")
    return args.chunk_size or DEFAULT_CHUNK_SIZE


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
    _check_out(Path(args.out))


def cmd_collect(args: argparse.Namespace) -> int:
    import numpy as np

    from rlsuite.data import DEFAULT_CHUNK_SIZE, collect
    from rlsuite.trained.policy import load_policy
    from rlsuite.run.seeding import stream

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


def _report(verb: str, dataset: Any) -> None:
    stats = dataset.stats()
    print(f"{verb} {dataset.path}: {stats['episodes']} whole episode(s)"
          + (f" + {stats['incomplete_episodes']} cut short" if stats["incomplete_episodes"] else "")
          + f", {len(dataset):,} transitions, return mean {_num(stats['return_mean'])}"
          f" (min {_num(stats['return_min'])}, max {_num(stats['return_max'])}), {_size(dataset.size_bytes())}")


def cmd_export(args: argparse.Namespace) -> int:
    from rlsuite.data.export_replay import export_replay

    chunk = _check_chunk(args)
    _check_out(Path(args.out))
    dataset = export_replay(args.run, args.out, chunk_size=chunk)
    _report("exported", dataset)
    m = dataset.manifest
    print(f"  from {m['replay_dir']}: {m['algo']} on {m['env_id']}, {m['num_envs']} stream(s), "
          f"{m['replay_added']:,} steps added; rewards {m['reward']}")
    return 0


def _suffixes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--suffixes takes checkpoint numbers separated by commas (49,50), got {text!r}") from None
    if not values or min(values) < 0:
        raise UserError(f"--suffixes takes checkpoint numbers >= 0 separated by commas (49,50), got {text!r}")
    return values


def cmd_import_dqn_replay(args: argparse.Namespace) -> int:
    from rlsuite.data.dqn_replay import import_dqn_replay

    suffixes = _suffixes(args.suffixes)
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.frame_stack < 1:
        raise UserError(f"--frame-stack must be at least 1, got {args.frame_stack}")
    chunk = _check_chunk(args)
    _check_out(Path(args.out))
    dataset = import_dqn_replay(args.replay_dir, args.out, game=args.game, suffixes=suffixes,
                                max_steps=args.max_steps, frame_stack=args.frame_stack, chunk_size=chunk)
    _report("imported", dataset)
    m = dataset.manifest
    print(f"  dqn-replay {m['game']} checkpoint(s) {','.join(map(str, m['suffixes']))} from {m['replay_dir']}; "
          f"actions as the full 18, rewards {m['reward']}")
    return 0


def cmd_import_minari(args: argparse.Namespace) -> int:
    from rlsuite.data.minari_io import import_minari

    chunk = _check_chunk(args)
    _check_out(Path(args.out))
    dataset = import_minari(args.source, args.out, root=args.root, chunk_size=chunk)
    _report("imported", dataset)
    print(f"  minari dataset {dataset.manifest['minari_id']} from {dataset.manifest['minari_path']}")
    return 0


def cmd_export_minari(args: argparse.Namespace) -> int:
    from rlsuite.data import Dataset
    from rlsuite.data.minari_io import export_minari

    source = Dataset(args.dataset)
    path = export_minari(source, args.dataset_id, dataset_dir=args.root, data_format=args.format)
    stats = source.stats()
    print(f"exported {source.path} as minari dataset {args.dataset_id}: {source.num_episodes} episode(s)"
          + (f" ({stats['incomplete_episodes']} unfinished, ending truncated)" if stats.get("incomplete_episodes") else "")
          + f", {len(source):,} steps, in {path}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rlsuite.data import Dataset
    from rlsuite.run.evaluate import format_table

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
             ("algo", m.get("algo")), ("epsilon", m.get("epsilon")), ("rewards", m.get("reward")),
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
