"""Short DQN runs whose every loss is recorded, to the bit: the reference that keeps DQN's
behaviour fixed through refactors of the online loop (tests/test_dqn_reference.py).

`python tests/data/dqn_reference.py` rewrites dqn_reference.json. It was generated before the
loop became agent-agnostic (the agent owning its replay buffer); regenerate it only when DQN's
behaviour is meant to change, and say so in the commit.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

CASES = {
    # preset, env, overrides: CartPole with n-step, prioritized replay, double DQN, 4 envs
    "cartpole": ("dqn-classic", "CartPole-v1", ["train.total_steps=2400", "train.num_envs=4", "agent.learning_starts=400",
                                                "agent.n_step=3", "agent.double=true", "replay.prioritized=true",
                                                "train.eval_every=1200", "train.eval_episodes=2"]),
    # MinAtar with GMP pruning, NaP norms + projection, a task switch (replay reset, exploration restart)
    "minatar-seq": ("dqn-minatar", "minatar:breakout", [
        "train.tasks=minatar:breakout,minatar:space_invaders", "train.steps_per_task=1200", "agent.learning_starts=300",
        "agent.gmp.sparsity=0.8", "agent.gmp.update_freq=50", "nap.norm=layer", "nap.project=true",
        "train.eval_episodes=2"]),
}


def run_case(name: str, run_dir: Path) -> dict:
    from rlsuite import config
    from rlsuite.agents.dqn import DQN
    from rlsuite.train import train

    preset, env, overrides = CASES[name]
    cfg = config.build_run_config(preset, env, overrides + ["train.torch_threads=1", "train.progress=false",
                                                            "train.diagnostics_every=0"])
    losses: list[float] = []
    original = DQN.update

    def recording(self, batch, buffer=None):
        metrics = original(self, batch, buffer)
        losses.append(float(metrics["losses/td"]))
        return metrics

    DQN.update = recording
    try:
        train(cfg, run_dir)
    finally:
        DQN.update = original
    ckpt = torch.load(next((run_dir / "checkpoints").glob("ckpt_*.pt")), weights_only=False)
    digest = hashlib.sha256()
    for key, value in sorted(ckpt["agent"]["online"].items()):
        digest.update(key.encode())
        digest.update(value.cpu().contiguous().numpy().tobytes())
    return {"losses": [float.hex(x) for x in losses], "online_sha256": digest.hexdigest()}


def platform() -> dict:
    """What the bits depend on besides the code: float kernels differ across CPU ISAs and builds."""
    import numpy
    import torch

    return {"torch": torch.__version__, "numpy": numpy.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


if __name__ == "__main__":
    out: dict = {"platform": platform()}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out[name] = run_case(name, Path(tmp) / name)
            print(name, len(out[name]["losses"]), "updates", out[name]["online_sha256"][:16], file=sys.stderr)
    (Path(__file__).parent / "dqn_reference.json").write_text(json.dumps(out, indent=1) + "\n")
