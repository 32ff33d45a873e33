"""`agent.optimizer = adam | adam_cm` and the `agent.cm.*` keys, for every agent: the optimizer each agent
builds carries the agent's own hyperparameters, a run resumes exactly (the buffer, its keys and the
critical_test stream are in the checkpoint), the accept/reject counters reach TensorBoard, GMP masks
the buffered momenta, and bad values are one line with exit code 2."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlsuite import config
from rlsuite.agents import agent_classes
from rlsuite.cli import main
from rlsuite.nn.adam_cm import AdamCM
from rlsuite.nn.pruning import GMPConfig, MagnitudePruner
from rlsuite.run import checkpoint

CARTPOLE = gym.make("CartPole-v1")
CM = ["agent.optimizer=adam_cm", "agent.cm.top_c=3", "agent.cm.decay=0.9", "agent.cm.critical_test=0.25"]


@pytest.mark.parametrize("preset, adam, expected", [
    ("dqn-classic", torch.optim.Adam, dict(eps="adam_eps", weight_decay=None)),
    ("ppo-classic", torch.optim.Adam, dict(eps="adam_eps", weight_decay=None)),
    ("dt", torch.optim.AdamW, dict(betas="betas", weight_decay="weight_decay")),
    ("bc", torch.optim.AdamW, dict(weight_decay="weight_decay")),
])
def test_each_agent_builds_adam_cm_with_its_own_hyperparameters(preset, adam, expected):
    plain = _agent(preset, [])
    cm = _agent(preset, CM)
    assert type(plain.optimizer) is adam and isinstance(cm.optimizer, AdamCM)
    # Same groups (the DT's decayed / undecayed split included), same tensors, same rate.
    assert [len(g["params"]) for g in cm.optimizer.param_groups] == [len(g["params"]) for g in plain.optimizer.param_groups]
    for g_cm, g_plain in zip(cm.optimizer.param_groups, plain.optimizer.param_groups):
        assert g_cm["lr"] == g_plain["lr"] == cm.cfg.lr
        assert (g_cm["top_c"], g_cm["decay"], g_cm["critical_test"], g_cm["synced"]) == (3, 0.9, 0.25, True)
        for key, field in expected.items():
            if field is None:  # Adam without decay: AdamCM's decoupled decay stays off
                assert g_cm[key] == 0.0
            elif key == "weight_decay":  # per group, as AdamW's (the DT decays only weights)
                assert g_cm[key] == g_plain[key]
            else:
                value = getattr(cm.cfg, field)
                assert g_cm[key] == (tuple(value) if isinstance(value, (list, tuple)) else value)


def _agent(preset: str, overrides: list[str]):
    cfg = config.build_run_config(preset, "CartPole-v1", overrides)
    agent_cls, _ = agent_classes(cfg.algo)
    return agent_cls(cfg.agent, CARTPOLE.observation_space, CARTPOLE.action_space, seed=3)


def _latest(run_dir: Path) -> dict:
    return checkpoint.load(checkpoint.find(run_dir))


def _dqn(run_dir: Path, steps: int, *extra: str) -> int:
    args = ["train", "dqn-classic", "--env", "CartPole-v1", "--steps", str(steps), "--run-dir", str(run_dir),
            "--no-progress"]
    for item in [*CM, "agent.learning_starts=50", "agent.train_freq=1", "train.eval_episodes=1",
                 "train.checkpoint_every=150", "train.save_replay=true", "train.log_every=50",
                 "train.torch_threads=1", *extra]:
        args += ["--set", item]
    return main(args)


def test_dqn_resumes_exactly_and_logs_the_buffer_decisions(tmp_path):
    assert _dqn(tmp_path / "straight", 300) == 0
    assert _dqn(tmp_path / "half", 150) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "300", "--no-progress"]) == 0
    a, b = _latest(tmp_path / "straight")["agent"], _latest(tmp_path / "half")["agent"]
    for key in a["online"]:
        assert torch.equal(a["online"][key], b["online"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    for i in state_a:
        for key in ("cm_buffer", "cm_filled", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state_a[i][key], state_b[i][key]), key
    assert torch.equal(a["optimizer"]["cm_generator"], b["optimizer"]["cm_generator"])
    owner = state_a[0]  # synced: one decision stream, held by the group's first tensor
    assert owner["cm_accepted"] + owner["cm_rejected"] == 250  # one keep/drop decision per update (after steps 51..300)
    assert owner["cm_size"] == 3 and owner["cm_accepted"] >= 3

    events = EventAccumulator(str(tmp_path / "straight")).Reload()
    accepted = events.Scalars("cm/accepted")
    rejected = events.Scalars("cm/rejected")
    assert accepted and rejected
    last = accepted[-1].value + rejected[-1].value
    assert 0 < last <= 250 and accepted[-1].value >= 3


def test_dt_resumes_exactly_with_adam_cm(cartpole_datasets, tmp_path):
    data = f"{cartpole_datasets / 'expert'},{cartpole_datasets / 'noisy'}"
    tiny = ["agent.model.context=5", "agent.model.embed_dim=32", "agent.model.n_layer=1", "agent.model.n_head=2",
            "agent.model.max_timestep=512", "agent.batch_size=8", "agent.warmup_updates=2", "agent.encoder.hidden=16",
            "train.eval_episodes=1", "train.eval_num_envs=1", "train.torch_threads=1", "train.eval_every=6",
            "agent.cm.synced=false", "agent.cm.buffer_dtype=bf16", *CM]

    def train(run_dir: Path, steps: int) -> int:
        args = ["train", "dt", "--dataset", data, "--steps", str(steps), "--run-dir", str(run_dir), "--no-progress"]
        for item in tiny:
            args += ["--set", item]
        return main(args)

    assert train(tmp_path / "straight", 12) == 0
    assert train(tmp_path / "half", 6) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "12", "--no-progress"]) == 0
    a, b = _latest(tmp_path / "straight")["agent"], _latest(tmp_path / "half")["agent"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    buffers = [s["cm_buffer"] for s in a["optimizer"]["state"].values()]
    assert buffers and all(buf.dtype == torch.bfloat16 for buf in buffers)
    # Unsynced: every tensor decides for itself, so every tensor holds its own counters.
    assert all(s["cm_accepted"] + s["cm_rejected"] == 12 for s in a["optimizer"]["state"].values())


def test_gmp_masks_the_buffered_momenta_of_pruned_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = AdamCM(net.parameters(), lr=1e-2, top_c=2)
    gmp = GMPConfig(sparsity=0.5, start=0.0, end=0.0, update_freq=1, mask_gradients=True)  # one-shot, at step 1
    pruner = MagnitudePruner(gmp, net, 10, optimizer)
    for _ in range(4):
        optimizer.zero_grad()
        net(torch.randn(16, 6)).pow(2).mean().backward()
        optimizer.step()
        pruner()
    for name, param in pruner.params.items():
        mask = pruner.masks[name]
        assert (mask == 0).any()
        buffer = optimizer.state[param]["cm_buffer"]
        assert torch.all(buffer[:, mask == 0] == 0) and torch.all(param[mask == 0] == 0)


@pytest.mark.parametrize("setting, message", [
    ("agent.optimizer=sgd", "agent.optimizer"),
    ("agent.cm.decay=1.5", "agent.cm.decay"),
    ("agent.cm.top_c=-1", "agent.cm.top_c"),
    ("agent.cm.critical_test=2", "agent.cm.critical_test"),
    ("agent.cm.buffer_dtype=int8", "agent.cm.buffer_dtype"),
])
def test_bad_values_are_one_line_and_exit_2_and_write_nothing(setting, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "100", "--run-dir", str(run_dir),
                 "--set", setting])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not run_dir.exists()
