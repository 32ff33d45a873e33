"""`rlsuite merge`: merge the networks of two or more trained runs into one run directory.

The algorithms are in rlsuite.trained.merge (and the matching maths in rlsuite.trained.alignment);
this module checks the runs, gathers the states the activation statistics are taken on, and writes
the merged agent as an ordinary run directory (config.toml, checkpoints/, merge.json) that
`rlsuite eval`, `rlsuite export` and `rlsuite finetune --from` accept.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite.errors import UserError

DESCRIPTION = """\
Merge the networks of two or more runs of one architecture (same agent, same network config, same
observation and action spaces) into a single network, written as a run directory that
`rlsuite eval`, `rlsuite export` and `rlsuite finetune --from` take like any trained run.

methods (Horoi et al., "Harmony in Diversity: Merging Neural Networks with Canonical Correlation
Analysis", ICML 2024, arXiv 2407.05385):
  average  the mean of the parameters, unit by unit. Right when the runs share their units: fine-tunes
           of one parent (e.g. a teacher and its fine-tuned student). Needs no states.
  permute  first match every hidden unit of a run to one unit of the reference (the pairing with the
           largest summed activation correlation, Hungarian algorithm), then average. For runs
           trained from different initialisations, whose units are the same features in another order.
  cca      align linear combinations of units instead (canonical correlation analysis of the two runs'
           activations, regularised by --gamma), then average. The paper's method, for features
           spread over several units; the paper finds it ahead of permutation methods, most of all
           when merging more than two runs. The command prints each merge point's mean canonical
           correlation: values far below 1 at the default gamma mean the activations are small next
           to gamma (common in small RL networks); try --gamma 0.01 or 0.001 and evaluate.
The runs are aligned pairwise to a reference (--ref) and averaged with weight 1/N. permute and cca take
activation statistics at every hidden activation on --states observations: sampled from the runs' saved
replay buffers (train.save_replay) when they have one, else played by the reference policy in each
run's env (seeded from the runs' seeds).
Supported networks: chains of Linear/Conv2d layers with ReLU/Tanh (MLP and plain CNN torsos, DQN and
PPO heads; NaP's norms with average and permute). Not supported: Decision Transformers, LSTM cores,
residual (Impala) encoders.
"""

EPILOG = """\
examples:
  rlsuite merge runs/dqn-cartpole-s1 runs/dqn-cartpole-s2 --method cca --out runs/merged-cca
  rlsuite merge runs/a runs/b runs/c --method permute --ref best --states 4096 --out runs/merged-perm
  rlsuite merge runs/teacher runs/student --method average --out runs/teacher-student-avg
  rlsuite eval runs/merged-cca --episodes 20
"""

DEFAULT_STATES = 2048


def add(sub: Any) -> None:
    p = sub.add_parser("merge", help="merge trained runs of one architecture (average, permutation or CCA alignment)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (their latest checkpoints) or checkpoint files")
    p.add_argument("--method", choices=("average", "permute", "cca"), required=True,
                   help="average: parameters as they are; permute: one-to-one unit matching; cca: CCA alignment")
    p.add_argument("--gamma", type=float, default=None, metavar="G",
                   help="cca: the ridge added to both activation covariances (default 0.1, the official code's; "
                        "the paper tunes it per setting on a log grid 1e-6 ... 1e7; 0 only for full-rank activations)")
    p.add_argument("--ref", choices=("first", "best"), default="first",
                   help="the reference run the others are aligned to: the first given, or the one with the best "
                        "last evaluation return in its eval.jsonl (default first)")
    p.add_argument("--states", type=int, default=DEFAULT_STATES, metavar="N",
                   help=f"permute, cca: observations for the activation statistics (default {DEFAULT_STATES})")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged run directory (must not exist or be empty)")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from rlsuite.trained.merge import DEFAULT_GAMMA

    gamma = DEFAULT_GAMMA if args.gamma is None else args.gamma
    check_arguments(args, gamma)
    sources = [read_run(run) for run in args.runs]
    check_same_architecture(sources)
    order = reference_order(sources, args.ref)
    sources = [sources[i] for i in order]
    report = merge_runs(sources, args.method, gamma, args.states, Path(args.out), args.ref)
    print(f"merged {len(sources)} {sources[0]['data']['algo']} runs with {args.method}"
          + (f" (gamma {gamma:g})" if args.method == "cca" else "") + f", reference {sources[0]['path']}, into {args.out}")
    for source, quality in zip(sources[1:], report["correlation"]):
        values = ", ".join(f"{point} {value:.3f}" for point, value in quality.items())
        print(f"  {source['path']}: mean correlation per merge point: {values}")
    return 0


def check_arguments(args: argparse.Namespace, gamma: float) -> None:
    """The refusals that need no checkpoint: too few runs, gamma < 0, --states, an occupied --out."""
    if len(args.runs) < 2:
        raise UserError(f"merge needs at least two runs, got {len(args.runs)}")
    if not gamma >= 0:  # also refuses nan
        raise UserError(f"--gamma must be >= 0, got {gamma}")
    if args.gamma is not None and args.method != "cca":
        raise UserError(f"--gamma applies to --method cca only, not {args.method}")
    if args.states < 2:
        raise UserError(f"--states must be at least 2, got {args.states}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty directory; choose a new one")


def read_run(target: str) -> dict[str, Any]:
    """A run's latest checkpoint (or a checkpoint file): {path, run_dir, data}; refuses offline agents."""
    from rlsuite.agents import agent_classes
    from rlsuite.run import checkpoint

    path = checkpoint.find(target)
    data = checkpoint.load(path)
    algo = str(data.get("algo", ""))
    if getattr(agent_classes(algo)[0], "offline", False):
        what = "a Decision Transformer" if algo == "dt" else f"an offline '{algo}' agent"
        raise UserError(f"{target} holds {what}; merge does not support transformers (their residual stream, "
                        "attention heads and LayerNorms need transforms it does not provide) or offline agents: "
                        "it merges DQN and PPO agents")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return {"target": target, "path": path, "run_dir": run_dir, "data": data}


NETWORK_KEYS = ("encoder", "dueling", "shared_trunk", "core", "lstm_hidden", "nap.norm", "rnd.enabled")
"""The agent config keys that shape its network: runs to merge must agree on all of them."""


def _network_config(data: dict[str, Any]) -> dict[str, Any]:
    agent = data.get("config", {}).get("agent", {})
    found = {}
    for key in NETWORK_KEYS:
        value: Any = agent
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[key] = value
    return found


def check_same_architecture(sources: list[dict[str, Any]]) -> None:
    """Refuse runs of different agents, spaces, network configs or parameter shapes."""
    first = sources[0]
    for other in sources[1:]:
        a, b = first["data"], other["data"]
        if a.get("algo") != b.get("algo"):
            raise UserError(f"cannot merge a '{a.get('algo')}' agent ({first['target']}) with a '{b.get('algo')}' "
                            f"agent ({other['target']}): runs to merge must be of one agent")
        for key in ("observation_space", "action_space"):
            if a.get("signature", {}).get(key) != b.get("signature", {}).get(key):
                raise UserError(f"cannot merge {first['target']} and {other['target']}: their {key.replace('_', ' ')}s "
                                "differ")
        na, nb = _network_config(a), _network_config(b)
        for key in NETWORK_KEYS:
            if na[key] != nb[key]:
                raise UserError(f"cannot merge {first['target']} and {other['target']}: different networks "
                                f"(agent.{key} is {na[key]!r} and {nb[key]!r})")


def reference_order(sources: list[dict[str, Any]], ref: str) -> list[int]:
    """The runs' order with the reference first: as given, or the best last evaluation mean first."""
    if ref == "first":
        return list(range(len(sources)))
    from rlsuite.run.rundir import last_eval_mean

    means = []
    for source in sources:
        mean = last_eval_mean(source["run_dir"]) if source["run_dir"] is not None else None
        if mean is None:
            raise UserError(f"--ref best reads each run's eval.jsonl, and {source['target']} has no evaluation; "
                            "run `rlsuite eval` on it or use --ref first")
        means.append(mean)
    best = int(np.argmax(means))
    return [best] + [i for i in range(len(sources)) if i != best]


def merge_seed(sources: list[dict[str, Any]]) -> np.random.SeedSequence:
    """The merge's own SeedSequence, derived from the runs' train.seed values (never a global RNG)."""
    seeds = [int(s["data"].get("config", {}).get("train", {}).get("seed", 0)) for s in sources]
    return np.random.SeedSequence([zlib.crc32(b"rlsuite merge"), *seeds])


def gather_states(sources: list[dict[str, Any]], policies: list[Any], n: int, seq: np.random.SeedSequence
                  ) -> tuple[torch.Tensor, str]:
    """`n` observations: sampled uniformly from the runs' saved replay buffers when any has one,
    else played by the reference policy in each distinct env of the runs (n split evenly)."""
    replay_seq, play_seq, env_seq = seq.spawn(3)
    rng_replay, rng_play = np.random.default_rng(replay_seq), np.random.default_rng(play_seq)
    with_replay = [s for s in sources if s["run_dir"] is not None and (s["run_dir"] / "replay" / "meta.json").is_file()]
    if with_replay:
        from rlsuite.data.export_replay import export_replay

        parts = []
        with tempfile.TemporaryDirectory(prefix="rlsuite-merge-") as tmp:
            for i, source in enumerate(with_replay):
                dataset = export_replay(source["run_dir"], Path(tmp) / f"replay{i}")
                share = n // len(with_replay) + (i < n % len(with_replay))
                parts.append(np.asarray(dataset.observations(dataset.sample(share, rng_replay))))
        return torch.as_tensor(np.concatenate(parts)), f"replay buffers of {len(with_replay)} run(s)"
    reference = policies[0].agent
    if hasattr(reference.cfg, "eval_sample"):  # actor-critic: the policy's own action distribution
        reference.cfg.eval_sample = True
    epsilon = max(float(getattr(reference.cfg, "eval_epsilon", 0.0)), 0.05)
    envs, seen = [], set()
    for policy in policies:  # one per distinct env config (e.g. a teacher's FAR starts and a student's CLOSE)
        key = json.dumps(vars(policy.cfg.env), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            envs.append(policy.env)
    parts = []
    for i, (env, env_seed) in enumerate(zip(envs, env_seq.spawn(len(envs)))):
        share = n // len(envs) + (i < n % len(envs))
        seed = int(env_seed.generate_state(1)[0] & 0x7FFF_FFFF)
        obs, _ = env.reset(seed=seed)
        if hasattr(reference, "eval_reset"):
            reference.eval_reset(env.num_envs)
        got = []
        while sum(len(o) for o in got) < share:
            got.append(np.asarray(obs))
            obs = env.step(reference.act(obs, epsilon, rng=rng_play))[0]
        parts.append(np.concatenate(got)[:share])
    return torch.as_tensor(np.concatenate(parts)), f"{n} steps of the reference policy in {len(envs)} env(s)"


def merge_runs(sources: list[dict[str, Any]], method: str, gamma: float, states: int, out: Path,
               ref: str = "first") -> dict[str, Any]:
    """Merge the runs (reference first; `ref`: how it was chosen, for the record) and write the merged
    run directory `out`: config.toml (the reference's, [finetune] reset), checkpoints/ (the merged
    network as the agent's weights, the reference's step, no optimizer state) and merge.json (the
    report). Returns the report."""
    from rlsuite import config
    from rlsuite.agents import agent_classes
    from rlsuite.run import checkpoint
    from rlsuite.run.rundir import removed_on_failure
    from rlsuite.trained.merge import merge_networks
    from rlsuite.trained.policy import load_policy

    import gymnasium as gym

    load_seq, states_seq = merge_seed(sources).spawn(2)
    load_seed = int(load_seq.generate_state(1)[0] & 0x7FFF_FFFF)  # the envs' construction seed; play reseeds them
    policies = []
    try:
        for source in sources:
            policies.append(load_policy(source["path"], num_envs=4, seed=load_seed))
        networks = [p.agent.acting_network() for p in policies]
        if method != "average" and not isinstance(policies[0].env.single_observation_space, gym.spaces.Box):
            raise UserError(f"--method {method} aligns networks that read one observation array; these runs' "
                            "observations are a dict (NetHack); use --method average")
        observations, origin = (None, "none (average needs no states)") if method == "average" else \
            gather_states(sources, policies, states, states_seq)
        if observations is not None:
            observations = observations.to(policies[0].agent.device)
        merged, report = merge_networks(networks, observations, method, gamma)
        reference, data = policies[0], sources[0]["data"]
        cfg = config.empty_run_config(reference.cfg.algo)
        config.apply_file(cfg, {k: v for k, v in data["config"].items() if k in config.SECTIONS}, str(sources[0]["path"]))
        cfg.finetune = config.empty_run_config(reference.cfg.algo).finetune  # the merge is not a fine-tune in progress
        space, actions = reference.env.single_observation_space, reference.env.single_action_space
        agent = agent_classes(cfg.algo)[0](cfg.agent, space, actions, "cpu", seed=cfg.train.seed)
        agent.load_exported(merged)
        step = int(data.get("step", 0))
    finally:
        for p in policies:
            p.env.close()
    report.update(runs=[str(s["path"]) for s in sources], ref=ref, states=origin if method != "average" else None)
    payload = {"algo": cfg.algo, "signature": data["signature"], "config": config.to_dict(cfg), "step": step,
               "agent": agent.state_dict(), "merge": report}
    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.save(out, step, payload)
        checkpoint.atomic_write_bytes(out / "config.toml", lambda fh: fh.write(config.dumps_toml(cfg).encode()))
        checkpoint.atomic_write_bytes(out / "merge.json", lambda fh: fh.write(json.dumps(report, indent=1).encode()))
    return report
