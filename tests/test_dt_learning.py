"""The Decision Transformer learns return-conditioned control offline.

Data: a real PPO CartPole-v1 teacher (tests/data/ppo-cartpole-60k.pt, greedy mean 434) plays 8 greedy
episodes and 32 episodes with epsilon 0.6 (mean return about 80): mixed-quality data, most of it
poor. A small DT trains on it for 400 updates and is evaluated with sampled actions (so the policy
it learned for each return is what plays, not just its argmax):

- conditioned on 500 it must average >= 150: uniformly random play averages about 22, an
  untrained or input-blind model about that, and the epsilon-0.6 data about 80;
- conditioned on 30 it must do clearly worse (by >= 80): the return it is asked for steers it.

Measured when written: 277 (target 500) and 25 (target 30).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from rlsuite.run import speed
from rlsuite.cli import main
from rlsuite.data import collect
from rlsuite.trained.policy import load_policy

TEACHER = Path(__file__).parent / "data" / "ppo-cartpole-60k.pt"
# The training run's own final evaluation is one episode: the test's two `rlsuite eval` calls are the
# measurement, and evaluation draws from its own streams, so this leaves training unchanged.
SETTINGS = ["agent.model.context=10", "agent.model.embed_dim=64", "agent.model.n_layer=2", "agent.model.n_head=2",
            "agent.model.max_timestep=512", "agent.encoder.hidden=64", "agent.batch_size=32", "agent.lr=1e-3",
            "agent.warmup_updates=50", "agent.eval_sample=true", "train.eval_episodes=1", "train.eval_num_envs=1",
            "train.torch_threads=2"]


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    """The expert and noisy datasets, collected once for both precisions."""
    tmp_path = tmp_path_factory.mktemp("dt-learning")
    policy = load_policy(TEACHER, num_envs=4)
    manifest = {"env_id": "CartPole-v1", "env": dataclasses.asdict(policy.cfg.env)}
    try:
        good = collect(policy.agent, policy.env, tmp_path / "expert", episodes=8, rng=np.random.default_rng(0),
                       seed=1, manifest=manifest)
        poor = collect(policy.agent, policy.env, tmp_path / "noisy", episodes=32, epsilon=0.6,
                       rng=np.random.default_rng(1), seed=2, manifest=manifest)
    finally:
        policy.env.close()
    assert good.stats()["return_mean"] > 300 and poor.stats()["return_mean"] < 150  # the mix is as described
    return f"{tmp_path / 'expert'},{tmp_path / 'noisy'}"


@pytest.mark.parametrize("precision, ffn", [("fp32", "dense"), ("bf16", "dense"), ("fp32", "lowrank"),
                                            ("fp32", "blockdiag"), ("fp32", "blockdense")])
def test_dt_learns_from_mixed_data_and_follows_the_target_return(mixed_data, tmp_path, capsys, monkeypatch, precision,
                                                                 ffn):
    """bf16 is the fast-mode check (the forward passes in bf16 autocast). It runs on any CPU: the
    test pretends the CPU has bf16 units (autocast emulates them where missing: slower, same numerics).
    The structured FFNs (agent.model.ffn, rlsuite.nn.structured: the second block's FFN, at rank
    embed_dim / 2 = 32, the paper's 63%-parameter setting (LowRank r = 384 at d = 768), and 4 blocks)
    must pass the same bar: they must not stop the DT learning. Measured when written (target 500,
    this seed): lowrank 330, blockdense 209; at the default rank embed_dim / 4 blockdense scored
    59 / 287 / 358 on seeds 1-3, a bottleneck of 4 dimensions per block that one seed in three does
    not learn through in 400 updates. At this size attention learns the task even without an FFN, so
    a wrong map is caught by the dense-matrix tests of tests/test_structured_ffn.py, not here."""
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})
    args = ["train", "dt", "--dataset", mixed_data, "--steps", "400", "--run-dir", str(tmp_path / "run"), "--no-progress",
            "--set", f"train.precision={precision}", "--set", f"agent.model.ffn={ffn}"]
    if ffn != "dense":
        args += ["--set", "agent.model.ffn_rank=32"]
    assert main(args + [x for s in SETTINGS for x in ("--set", s)]) == 0
    means = {}
    for target in ("500", "30"):
        assert main(["eval", str(tmp_path / "run"), "--target", target, "--episodes", "10", "--num-envs", "5"]) == 0
        record = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])
        means[target] = record["mean"]
    print(means)
    assert means["500"] >= 150, means
    assert means["500"] >= means["30"] + 80, means
