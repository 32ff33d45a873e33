"""`rlsuite eval`: evaluate a run or checkpoint on whole games."""
from __future__ import annotations

import argparse
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
                   help="override an env key for evaluation, e.g. --set env.sticky_action_prob=0")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rlsuite.evaluate import append_jsonl, evaluate, format_table
    from rlsuite.monitor import log_record
    from rlsuite.policy import load_policy

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:  # also refuses nan
        raise UserError(f"--epsilon is a probability: it must be between 0 and 1, got {args.epsilon}")
    if args.num_envs < 1:
        raise UserError(f"--num-envs must be at least 1, got {args.num_envs}")
    policy = load_policy(args.target, env_id=args.env, overrides=args.overrides, num_envs=args.num_envs)
    epsilon = policy.cfg.agent.eval_epsilon if args.epsilon is None else args.epsilon
    result = evaluate(policy.agent, policy.env, args.episodes, epsilon, seed=args.seed)
    summary = result.summary()
    if hasattr(policy.agent, "online"):  # pruned checkpoints report how sparse they are
        from rlsuite.nn.pruning import model_sparsity

        sparsity = model_sparsity(policy.agent.online)
        if sparsity["sparsity"] > 0.01:
            summary.update(sparsity)
    rows = [{"metric": k, "value": f"{v:.3f}" if isinstance(v, float) else str(v)}
            for k, v in summary.items() if v is not None]
    print(format_table(rows, f"{policy.cfg.algo} on {policy.env.game}, step {policy.step:,}, epsilon {epsilon}"))
    if policy.run_dir is not None:
        append_jsonl(policy.run_dir / "eval.jsonl",
                     log_record(policy.step, {**summary, "source": "rlsuite eval", "checkpoint": str(policy.path)}))
    return 0
