"""Recorded behaviour of PPO and the Decision Transformer, to the bit: short runs whose every
minibatch loss and final weights are kept in tests/data/agent_reference.json, one entry per
platform (the platform key of tests/data/dqn_reference.py: torch, numpy, ATen capability and a
probe of the float kernels' bits). tests/test_agent_reference.py replays them. They were recorded
before the package was reorganised into subpackages, so a move that changes any arithmetic or
random stream of these agents fails.

Cases: PPO on CartPole (MLP, 3 rollouts of 4 envs x 64 steps), PPO with its LSTM core (2 rollouts),
and the DT on two CartPole datasets collected from the committed PPO teacher (40 updates, with
an evaluation). Record a platform with `python tests/data/agent_reference.py [provenance]`.

PPO samples its actions from the policy, so a last-bit difference of a probability can change an
action; on a platform without its own entry only the first minibatch's losses and the number of
updates are compared, within TOLERANCE.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import dqn_reference as platforms  # noqa: E402  (platform(), platform_key(), nearest(), weight_stats())

REFERENCE_FILE = HERE / "agent_reference.json"
TEACHER = HERE / "ppo-cartpole-60k.pt"
TOLERANCE = {"loss_rtol": 1e-3}
COMMON = ["train.torch_threads=1", "train.progress=false", "train.diagnostics_every=0"]

CASES = {
    "ppo-cartpole": ("ppo-classic", "CartPole-v1", [
        "train.num_envs=4", "agent.num_steps=64", "train.total_steps=768", "agent.num_minibatches=4",
        "agent.update_epochs=2", "train.eval_every=0", "train.eval_episodes=2"]),
    "ppo-lstm-cartpole": ("ppo-classic", "CartPole-v1", [
        "train.num_envs=4", "agent.num_steps=32", "train.total_steps=256", "agent.num_minibatches=2",
        "agent.update_epochs=2", "agent.core=lstm", "agent.lstm_hidden=16", "train.eval_every=0",
        "train.eval_episodes=2"]),
    "dt-cartpole": ("dt", None, [
        "agent.model.context=5", "agent.model.embed_dim=32", "agent.model.n_layer=1", "agent.model.n_head=2",
        "agent.model.max_timestep=512", "agent.batch_size=8", "agent.warmup_updates=2", "agent.encoder.hidden=16",
        "train.total_steps=40", "train.eval_every=20", "train.eval_episodes=2", "train.eval_num_envs=1"]),
}


def collect_cartpole_data(root: Path) -> list[Path]:
    """The conftest's two CartPole datasets (2 greedy and 4 epsilon-0.5 episodes of the teacher)."""
    import numpy as np

    from rlsuite.data import collect
    from rlsuite.trained.policy import load_policy

    policy = load_policy(TEACHER, num_envs=2)
    manifest = {"env_id": "CartPole-v1", "env": dataclasses.asdict(policy.cfg.env)}
    try:
        collect(policy.agent, policy.env, root / "expert", episodes=2, rng=np.random.default_rng(0), seed=1,
                manifest=manifest)
        collect(policy.agent, policy.env, root / "noisy", episodes=4, epsilon=0.5, rng=np.random.default_rng(1),
                seed=2, manifest=manifest)
    finally:
        policy.env.close()
    return [root / "expert", root / "noisy"]


def _recording(cls, method: str, losses: list[list[float]]):
    """Wrap `cls.method` so that each call's losses/* metrics are appended (sorted by key)."""
    original = getattr(cls, method)

    def wrapped(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        losses.append([float(out[k]) for k in sorted(out) if k.startswith("losses/") and k != "losses/grad_norm"])
        return out

    setattr(cls, method, wrapped)
    return original


def run_case(name: str, run_dir: Path) -> dict:
    import torch

    from rlsuite import cli, config
    preset, env, overrides = CASES[name]
    losses: list[list[float]] = []
    if preset == "dt":
        from rlsuite.agents.dt import DT as cls

        method, data = "update", collect_cartpole_data(run_dir.parent / f"{name}-data")
        args = ["train", preset, "--dataset", ",".join(map(str, data)), "--run-dir", str(run_dir), "--no-progress"]
        for item in overrides + COMMON:
            args += ["--set", item]
        original = _recording(cls, method, losses)
        try:
            assert cli.main(args) == 0
        finally:
            setattr(cls, method, original)
    else:
        from rlsuite.agents.ppo import PPO as cls
        from rlsuite.loops.train import train

        method = "_minibatch_step"
        cfg = config.build_run_config(preset, env, overrides + COMMON)
        original = _recording(cls, method, losses)
        try:
            train(cfg, run_dir)
        finally:
            setattr(cls, method, original)
    ckpt = torch.load(sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))[-1], weights_only=False)
    weights = ckpt["agent"]["model" if preset == "dt" else "online"]
    digest = hashlib.sha256()
    for key, value in sorted(weights.items()):
        digest.update(key.encode())
        digest.update(value.cpu().contiguous().numpy().tobytes())
    eval_log = (run_dir / "eval.jsonl").read_text().splitlines()
    return {"losses": [[float.hex(x) for x in row] for row in losses], "weights_sha256": digest.hexdigest(),
            "weight_stats": platforms.weight_stats(weights), "final_eval_mean": json.loads(eval_log[-1])["mean"]}


def compare_tolerant(got: dict, want: dict) -> list[str]:
    """Another platform's record: the same number of updates and the first update's losses within TOLERANCE."""
    if len(got["losses"]) != len(want["losses"]):
        return [f"{len(got['losses'])} updates, recorded {len(want['losses'])}"]
    for a, b in zip(map(float.fromhex, got["losses"][0]), map(float.fromhex, want["losses"][0])):
        if abs(a - b) > TOLERANCE["loss_rtol"] * max(abs(b), 1e-8):
            return [f"first update: loss {a!r} vs recorded {b!r}"]
    return []


def load(path: Path = REFERENCE_FILE) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"references": {}}


def record(provenance: str) -> dict:
    entry = {"platform": platforms.platform(), "provenance": provenance, "cases": {}}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            entry["cases"][name] = run_case(name, Path(tmp) / name)
        print(name, len(entry["cases"][name]["losses"]), "updates", entry["cases"][name]["weights_sha256"][:16],
              file=sys.stderr)
    return entry


if __name__ == "__main__":
    data = load()
    note = " ".join(sys.argv[1:]) or "recorded with python tests/data/agent_reference.py"
    data["references"][platforms.platform_key(platforms.platform())] = record(note)
    REFERENCE_FILE.write_text(json.dumps(data, indent=1) + "\n")
