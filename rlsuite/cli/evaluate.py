"""`rlsuite eval`: evaluate a run or checkpoint on whole games."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError


def add(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a run or checkpoint (raw game score, whole games)",
                       description="Evaluate a checkpoint on separate envs with epsilon-greedy acting. Reports "
                                   "mean, median, IQM with a 95% bootstrap CI, min/max, human-normalized score "
                                   "for Atari, NetHack score/depth/xp, Montezuma rooms. Appends to <run>/eval.jsonl.")
    p.add_argument("target", help="run directory (its latest checkpoint) or checkpoint file")
    p.add_argument("--env", help="evaluate on another env id (must have the same observation and action spaces)")
    p.add_argument("--episodes", type=int, default=10, help="whole games to play (default 10)")
    p.add_argument("--epsilon", type=float, help="exploration epsilon (default: the agent's eval_epsilon)")
    p.add_argument("--num-envs", type=int, default=4, help="parallel eval envs (default 4)")
    p.add_argument("--seed", type=int, default=12345, help="eval env seed (default 12345)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an env key for evaluation, e.g. --set env.sticky_action_prob=0; offline runs "
                        "(dt, bc): an evaluation key of the agent, e.g. --set agent.expert_kappa=0")
    p.add_argument("--sample", action="store_true",
                   help="actor-critic agents (ppo): sample actions from the policy instead of taking its most "
                        "likely action")
    p.add_argument("--target", dest="target_return", metavar="RETURN",
                   help="return-conditioned agents (dt): the return to condition on: a number, data-best (the best "
                        "episode of the game's dataset) or expert (MGDT's sampling; binned-return models) "
                        "(default: the run's agent.eval_target)")
    p.add_argument("--game", help="multi-game offline runs (dt, bc): evaluate only this game (default: every game)")
    p.add_argument("--video", metavar="DIR",
                   help="also record games as MP4 of the real screen (NetHack: tty text) into DIR, played by the "
                        "same policy, epsilon and seed on one rendering env (the in-process gymnasium backend); "
                        "needs pip install -e '.[video]'")
    p.add_argument("--video-episodes", type=int, default=1, metavar="N", help="games to record with --video (default 1)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rlsuite.run.evaluate import append_jsonl, evaluate, format_table
    from rlsuite.run.monitor import log_record
    from rlsuite.trained.policy import load_policy

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:  # also refuses nan
        raise UserError(f"--epsilon is a probability: it must be between 0 and 1, got {args.epsilon}")
    if args.num_envs < 1:
        raise UserError(f"--num-envs must be at least 1, got {args.num_envs}")
    if args.video_episodes < 1:
        raise UserError(f"--video-episodes must be at least 1, got {args.video_episodes}")
    if _is_offline_run(args.target):
        return eval_offline(args)
    if args.target_return is not None or args.game is not None:
        from rlsuite.run import checkpoint
        checkpoint.find(args.target)  # no checkpoint (yet): say that, not that the run is online
        raise UserError("--target and --game apply to offline runs (dt, bc) only")
    policy = load_policy(args.target, env_id=args.env, overrides=args.overrides, num_envs=args.num_envs)
    if args.sample:
        if not hasattr(policy.cfg.agent, "eval_sample"):
            policy.env.close()
            raise UserError(f"--sample: agent '{policy.cfg.algo}' has no policy distribution to sample from "
                            "(use --epsilon for random actions)")
        policy.agent.cfg.eval_sample = True
    epsilon = getattr(policy.cfg.agent, "eval_epsilon", 0.0) if args.epsilon is None else args.epsilon
    result = evaluate(policy.agent, policy.env, args.episodes, epsilon, seed=args.seed)
    summary = result.summary()
    if hasattr(policy.agent, "acting_network"):  # pruned checkpoints report how sparse they are
        from rlsuite.nn.pruning import model_sparsity

        sparsity = model_sparsity(policy.agent.acting_network())
        if sparsity["sparsity"] > 0.01:
            summary.update(sparsity)
    rows = [{"metric": k, "value": f"{v:.3f}" if isinstance(v, float) else str(v)}
            for k, v in summary.items() if v is not None]
    print(format_table(rows, f"{policy.cfg.algo} on {policy.env.game}, step {policy.step:,}, epsilon {epsilon}"))
    if args.video:
        record_video(policy, args, epsilon)
    if policy.run_dir is not None:  # everything needed to repeat this evaluation, and every game's result
        append_jsonl(policy.run_dir / "eval.jsonl", {
            **log_record(policy.step, summary), **result.per_episode(), "source": "rlsuite eval",
            "checkpoint": str(policy.path), "env": policy.cfg.env.id, "env_overrides": list(args.overrides),
            "seed": args.seed, "num_envs": args.num_envs, "sample": bool(args.sample)})
    return 0


def _is_offline_run(target: str) -> bool:
    from rlsuite.run import checkpoint
    from rlsuite.loops.offline import is_offline

    try:
        return is_offline(str(checkpoint.load(checkpoint.find(target)).get("algo", "")))
    except UserError:
        return False  # load_policy reports the problem in its own words


def eval_offline(args: argparse.Namespace) -> int:
    """`rlsuite eval` of an offline run (dt, bc): each game of its datasets (the DT return-conditioned)."""
    from rlsuite.run.evaluate import append_jsonl, format_table
    from rlsuite.run.monitor import log_record
    from rlsuite.loops.offline_games import evaluate_checkpoint

    if args.env or args.video:
        raise UserError("--env and --video do not apply to offline (dt, bc) runs: they are evaluated on the "
                        "games of their datasets (choose one with --game)")
    data, results = evaluate_checkpoint(args.target, args.episodes, args.num_envs, args.seed, args.epsilon,
                                        args.target_return, args.game, args.sample, tuple(args.overrides))
    rows = [{"game": r["game"], **({"target": r["target"]} if r["target"] is not None else {}), "episodes": r["episodes"], "mean": r["mean"], "iqm": r["iqm"],
             "iqm_ci_lo": r["iqm_ci_lo"], "iqm_ci_hi": r["iqm_ci_hi"], "min": r["min"], "max": r["max"]}
            for r in results]
    print(format_table(rows, f"{data['algo']}, update {int(data['step']):,}"))
    run_dir = Path(args.target) if Path(args.target).is_dir() else None
    if run_dir is not None:
        for r in results:
            append_jsonl(run_dir / "eval.jsonl", {**log_record(int(data["step"]), r), "source": "rlsuite eval",
                                                  "seed": args.seed, "num_envs": args.num_envs,
                                                  "sample": bool(args.sample), "overrides": list(args.overrides)})
    return 0


def record_video(policy: Any, args: argparse.Namespace, epsilon: float) -> None:
    """`--video DIR`: record games of the loaded policy (rlsuite.trained.video) and say where they are."""
    from rlsuite.trained.video import record_episodes

    out = Path(args.video)
    files = record_episodes(policy.agent, policy.cfg.env, out, args.video_episodes, epsilon, seed=args.seed)
    print(f"recorded {len(files)} game(s): {', '.join(str(f) for f in files)} (returns in {out / 'episodes.json'})")
