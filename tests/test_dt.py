"""Decision Transformer: sequence sampling from datasets, causality, the offline loop's exact resume,
data-parallel training under torchrun (gloo), and bad input.

Expected values come from the definitions: returns-to-go are suffix sums of the rewards written into
a dataset here by hand, windows are checked against the dataset's own episode table, causality
against perturbed inputs, DDP against a single process with the same global batch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsuite import native

from rlsuite.run import checkpoint
from rlsuite.cli import main
from rlsuite.data import Dataset, DatasetWriter, collect
from rlsuite.data.sequences import SequenceSampler
from rlsuite.nn.encoders import EncoderConfig, make_encoder
from rlsuite.nn.transformer import DecisionTransformer, TransformerConfig

TEACHER = Path(__file__).parent / "data" / "ppo-cartpole-60k.pt"
"""A real PPO CartPole-v1 checkpoint: `rlsuite train ppo-classic --env CartPole-v1 --steps 60000 --seed 1`
(greedy evaluation: mean 434 over 10 games)."""

BOX = gym.spaces.Box(-10, 10, (3,), np.float32)


def hand_dataset(path: Path, episodes: list[list[float]], space: gym.Space = BOX, n_actions: int = 4) -> Dataset:
    """One env playing episodes with the given rewards; obs = (episode, step, reward), action = step % n."""
    writer = DatasetWriter(path, space, gym.spaces.Discrete(n_actions), {"source": "test", "game": path.name})
    for e, rewards in enumerate(episodes):
        for t, r in enumerate(rewards):
            obs = np.array([[e, t, r]], np.float32)
            end = t == len(rewards) - 1
            writer.add(obs, np.array([t % n_actions]), np.array([r]), np.array([end]), np.array([False]),
                       obs + 100 if end else None)
    writer.close()
    return Dataset(path)


# ----------------------------------------------------------------------------- sequences


@pytest.mark.parametrize("use_native", [True, False])
def test_returns_to_go_timesteps_and_padding_by_hand(tmp_path, use_native):
    ds = hand_dataset(tmp_path / "d", [[1.0, 2.0, 3.0], [0.5, 0.0, 1.0, 4.0]])
    sampler = SequenceSampler([ds])
    with native.use_native(use_native):
        b = sampler.gather(np.array([0, 0, 0]), np.array([0, 2, 3]), 4)
    assert b.returns_to_go.tolist() == [[6, 5, 3, 0], [3, 0, 0, 0], [5.5, 5, 5, 4]]
    assert b.rewards.tolist() == [[1, 2, 3, 0], [3, 0, 0, 0], [0.5, 0, 1, 4]]
    assert b.timesteps.tolist() == [[0, 1, 2, 0], [2, 0, 0, 0], [0, 1, 2, 3]]
    assert b.mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert b.actions.tolist() == [[0, 1, 2, 0], [2, 0, 0, 0], [0, 1, 2, 3]]
    assert b.obs[2, :, :2].tolist() == [[1, 0], [1, 1], [1, 2], [1, 3]]  # episode 1, steps 0..3
    assert (b.obs[0, 3] == 0).all() and (b.obs[1, 1:] == 0).all()  # padding is zeros


def test_collect_dataset_sequences_round_trip(tmp_path):
    """A real CartPole dataset (collected by the teacher): every window's returns-to-go equal the sum of
    its episode's remaining rewards, its observations are the dataset's, in order."""
    from rlsuite.trained.policy import load_policy

    policy = load_policy(TEACHER, num_envs=2)
    ds = collect(policy.agent, policy.env, tmp_path / "d", episodes=3, epsilon=0.3, rng=np.random.default_rng(0), seed=5)
    policy.env.close()
    sampler = SequenceSampler([ds])
    b = sampler.sample_sequences(64, 12, np.random.default_rng(1))
    rewards, starts = ds.rewards, np.asarray(ds.episode_table["start"])
    lengths = np.asarray(ds.episode_table["length"])
    for row in range(64):
        n = int(b.mask[row].sum())
        first_step = int(np.flatnonzero((b.obs[row, 0].numpy() == ds.observations(np.arange(len(ds)))).all(1))[0])
        episode = int(ds.episode_index[first_step])
        end = starts[episode] + lengths[episode]
        assert n == min(12, end - first_step)
        for i in range(n):
            assert b.returns_to_go[row, i].item() == pytest.approx(rewards[first_step + i:end].sum())
            assert b.timesteps[row, i].item() == first_step + i - starts[episode]
        assert np.array_equal(b.obs[row, :n].numpy(), ds.observations(np.arange(first_step, first_step + n)))


def test_no_window_crosses_an_episode_end_and_ranks_split_the_global_batch(tmp_path):
    rng = np.random.default_rng(3)
    episodes = [list(rng.random(int(rng.integers(1, 15)))) for _ in range(40)]
    a = hand_dataset(tmp_path / "a", episodes)
    b = hand_dataset(tmp_path / "b", episodes[:10])
    sampler = SequenceSampler([a, b], weights=[3, 1])
    batch = sampler.sample_sequences(4000, 8, np.random.default_rng(7))
    for row in range(4000):
        m = batch.mask[row]
        assert m[0] and not (m[1:] & ~m[:-1]).any()  # real steps first, then padding only
        episode_ids = batch.obs[row, m, 0]
        assert (episode_ids == episode_ids[0]).all()  # one episode per window
        assert (batch.timesteps[row, m].diff() == 1).all()
    assert abs(float((batch.game == 0).float().mean()) - 0.75) < 0.03
    assert batch.valid_steps == int(batch.mask.sum())
    whole = sampler.sample_sequences(8, 6, np.random.default_rng(11))
    halves = [sampler.sample_sequences(8, 6, np.random.default_rng(11), rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([h.obs for h in halves]), whole.obs)
    assert all(h.valid_steps == whole.valid_steps for h in halves)


def test_datasets_with_different_spaces_are_refused(tmp_path):
    a = hand_dataset(tmp_path / "a", [[1.0]])
    b = hand_dataset(tmp_path / "b", [[1.0]], n_actions=6)
    with pytest.raises(Exception, match="differ in observation or action space"):
        SequenceSampler([a, b])


# ----------------------------------------------------------------------------- the network


@pytest.mark.parametrize("returns", ["continuous", "bins"])
def test_causality(returns):
    """Changing any token of a step t' > t leaves every output at steps <= t unchanged (1e-6); the
    action logits at t do not see a_t, and the return logits at t see neither R_t nor a_t."""
    torch.manual_seed(0)
    cfg = TransformerConfig(context=6, embed_dim=32, n_layer=2, n_head=4, dropout=0.0, max_timestep=50,
                            returns=returns, return_min=-5, return_max=20)
    model = DecisionTransformer(cfg, make_encoder(EncoderConfig(kind="mlp", hidden=(16,)), BOX), 4).eval()
    obs, actions = torch.randn(2, 6, 3), torch.randint(0, 4, (2, 6))
    rtg, steps = torch.randint(-5, 20, (2, 6)).float(), torch.arange(6).repeat(2, 1)
    base = model(obs, actions, rtg, steps)
    for t_change in range(6):
        for name in ("obs", "actions", "rtg"):
            o, a, r = obs.clone(), actions.clone(), rtg.clone()
            if name == "obs":
                o[:, t_change] += 1.0
            elif name == "actions":
                a[:, t_change] = (a[:, t_change] + 1) % 4
            else:
                r[:, t_change] += 3.0
            out = model(o, a, r, steps)
            # a_t never reaches step t; R_t reaches the action at t but not the return head at t
            keep = t_change + 1 if name == "actions" else t_change
            torch.testing.assert_close(out["action"][:, :keep], base["action"][:, :keep], atol=1e-6, rtol=0)
            if returns == "bins":
                keep_r = t_change + 1 if name in ("actions", "rtg") else t_change
                torch.testing.assert_close(out["return"][:, :keep_r], base["return"][:, :keep_r], atol=1e-6, rtol=0)
            changed = (out["action"][:, keep:] - base["action"][:, keep:]).abs().max() if keep < 6 else None
            assert changed is None or changed > 1e-6  # the change does reach later steps (the test can fail)


# ----------------------------------------------------------------------------- the offline loop

TINY_DT = ["agent.model.context=5", "agent.model.embed_dim=32", "agent.model.n_layer=1", "agent.model.n_head=2",
           "agent.model.max_timestep=512", "agent.batch_size=8", "agent.warmup_updates=2",
           "agent.encoder.hidden=16", "train.eval_episodes=1", "train.eval_num_envs=1", "train.log_every=1",
           "train.torch_threads=1"]


@pytest.fixture
def cartpole_data(cartpole_datasets):
    """The shared CartPole datasets (conftest.py) as a --dataset list."""
    return f"{cartpole_datasets / 'expert'},{cartpole_datasets / 'noisy'}"


def train_dt(data: str, run_dir: Path, steps: int, *extra: str) -> int:
    args = ["train", "dt", "--dataset", data, "--steps", str(steps), "--run-dir", str(run_dir), "--no-progress"]
    for item in TINY_DT + list(extra):
        args += ["--set", item]
    return main(args)


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.find(run_dir))["agent"]["model"]


def test_exact_resume_and_eval_cli(cartpole_data, tmp_path, capsys):
    assert train_dt(cartpole_data, tmp_path / "straight", 12, "train.eval_every=6") == 0
    assert train_dt(cartpole_data, tmp_path / "half", 6, "train.eval_every=6") == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "12", "--no-progress"]) == 0
    a, b = model_state(tmp_path / "straight"), model_state(tmp_path / "half")
    assert all(torch.equal(a[k], b[k]) for k in a)  # dropout, sampler and AdamW resumed exactly
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "straight"), "--target", "200", "--episodes", "2", "--num-envs", "1"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1" in out and "200" in out
    records = (tmp_path / "straight" / "eval.jsonl").read_text().splitlines()
    assert len(records) == 3 and '"target": 200.0' in records[-1]  # 2 training evaluations + rlsuite eval


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", str(nproc), "-m", "rlsuite", *args],
                          capture_output=True, text=True, env=env, timeout=240)


def test_two_process_ddp_equals_one_process_and_resumes_under_another_world_size(cartpole_data, tmp_path):
    common = ["--dataset", cartpole_data, "--no-progress"] + [x for s in TINY_DT + ["agent.model.dropout=0"]
                                                              for x in ("--set", s)]
    one = _torchrun(1, ["train", "dt", "--steps", "8", "--run-dir", str(tmp_path / "one"), *common])
    two = _torchrun(2, ["train", "dt", "--steps", "8", "--run-dir", str(tmp_path / "two"), *common])
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    assert "2 processes" in two.stdout
    a, b = model_state(tmp_path / "one"), model_state(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    half = _torchrun(1, ["train", "dt", "--steps", "4", "--run-dir", str(tmp_path / "mixed"), *common])
    resumed = _torchrun(2, ["train", "--resume", str(tmp_path / "mixed"), "--steps", "8", "--no-progress"])
    assert half.returncode == 0 and resumed.returncode == 0, resumed.stderr[-2000:]
    c = model_state(tmp_path / "mixed")
    for k in a:
        torch.testing.assert_close(c[k], a[k], atol=1e-5, rtol=1e-4)


def test_bad_input_is_one_line_and_exit_2(cartpole_data, tmp_path, capsys):
    cases = [
        (["train", "dt", "--env", "CartPole-v1", "--steps", "2"], "learns from datasets"),
        (["train", "dt", "--dataset", str(tmp_path / "nope"), "--env", "CartPole-v1"], "not a dataset directory"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "agent.eval_target=expert"], "needs agent.model.returns=bins"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "agent.eval_target=best"], "agent.eval_target"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "offline.weights=1,2,3"], "offline.weights has 3"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "agent.model.embed_dim=30"], "multiple of"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "agent.expert_samples=0"], "agent.expert_samples"),
        (["train", "dt", "--dataset", cartpole_data, "--set", "agent.return_temperature=0"], "agent.return_temperature"),
    ]
    for args, message in cases:
        run_dir = tmp_path / f"bad{len(message)}"
        assert main(args + ["--run-dir", str(run_dir), "--no-progress"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize("use_native", [True, False])
def test_replay_buffer_sequences(use_native):
    """ReplayBuffer.sample_sequences after the ring wrapped: windows stay in one episode, returns-to-go
    are the episode's remaining rewards (up to the newest step for the episode still running)."""
    from rlsuite.replay import ReplayBuffer, ReplayConfig

    rng = np.random.default_rng(0)
    with native.use_native(use_native):
        buffer = ReplayBuffer(ReplayConfig(capacity=60), BOX, num_envs=2)
        episodes: dict[tuple[int, int], list[float]] = {}  # (env, episode) -> rewards so far
        counters, steps = [0, 0], [0, 0]
        for _ in range(70):
            obs = np.array([[e, steps[e], counters[e]] for e in range(2)], np.float32)  # env, step, episode
            reward = rng.integers(0, 5, size=2).astype(np.float32)
            end = rng.random(2) < 0.15
            for e in range(2):
                episodes.setdefault((e, counters[e]), []).append(float(reward[e]))
            buffer.add(obs, np.array([1, 2]), reward, end, np.zeros(2, bool), obs + 0.5)
            for e in range(2):
                steps[e] = 0 if end[e] else steps[e] + 1
                counters[e] += int(end[e])
        batch = buffer.sample_sequences(300, 6, np.random.default_rng(1))
    checked = 0
    for row in range(300):
        m = batch.mask[row]
        assert m[0] and not (m[1:] & ~m[:-1]).any()
        ids = batch.obs[row, m][:, [0, 2]]
        assert (ids == ids[0]).all()
        env, episode = int(ids[0, 0]), int(ids[0, 1])
        true_step = int(batch.obs[row, 0, 1])
        assert (batch.obs[row, m, 1] == torch.arange(true_step, true_step + int(m.sum()))).all()
        rewards = episodes[(env, episode)]
        assert batch.rewards[row, 0].item() == rewards[true_step]
        assert batch.returns_to_go[row, 0].item() == pytest.approx(sum(rewards[true_step:]))
        if batch.timesteps[row, 0] == true_step:
            checked += 1
        else:  # the episode's first steps were overwritten: timesteps count from the oldest one kept
            assert batch.timesteps[row, 0] < true_step
    assert checked > 200


def test_gmp_and_nap_hooks_on_the_decision_transformer(tmp_path):
    """GMP reaches its sparsity over the run's updates and NaP keeps every projected group at its
    initial norm, on the DT as on the other agents (post-step hooks)."""
    from rlsuite.agents.dt import DT, DTConfig
    from rlsuite.nn.nap import NaPConfig
    from rlsuite.nn.pruning import GMPConfig, model_sparsity

    ds = hand_dataset(tmp_path / "d", [list(np.random.default_rng(0).random(12)) for _ in range(10)])
    sampler = SequenceSampler([ds])
    model = TransformerConfig(context=4, embed_dim=16, n_layer=1, n_head=2, max_timestep=32)
    cfg = DTConfig(model=model, encoder=EncoderConfig(kind="mlp", hidden=(16,)), batch_size=8, warmup_updates=0,
                   gmp=GMPConfig(sparsity=0.6, start=0.0, end=0.8, update_freq=2), nap=NaPConfig(project=True))
    agent = DT(cfg, BOX, gym.spaces.Discrete(4))
    agent.plan(20)
    radii = agent.projector.radii.clone()
    rng = np.random.default_rng(1)
    for _ in range(20):
        agent.update(sampler.sample_sequences(8, 4, rng))
    pruned = {name: p for name, p in agent.pruner.params.items()}
    zeros = sum(int((p == 0).sum()) for p in pruned.values()) / sum(p.numel() for p in pruned.values())
    assert zeros == pytest.approx(0.6, abs=0.02)
    assert model_sparsity(agent.model)["sparsity"] > 0.3
    torch.testing.assert_close(agent.projector._group_norms(), radii, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- MGDT's expert target, DDP options


@pytest.mark.parametrize("kappa", [0.0, 10.0])
def test_expert_target_is_the_best_of_128_draws_at_temperature_075(kappa):
    """eval_target=expert (MGDT's colab, optimal_action): with the return logits fixed by a stubbed
    forward, the target is the max of 128 draws from softmax(0.75 (logits + kappa linspace(0, 1))),
    whose CDF is F(r)^128; the empirical CDF and mean match it, and sit far above one draw's."""
    from rlsuite.agents.dt import DT, DTConfig

    bins = np.arange(31)
    logits = -0.4 * bins  # most mass at low returns, a tail up to 30
    model = TransformerConfig(context=3, embed_dim=16, n_layer=1, n_head=2, max_timestep=32, returns="bins",
                              return_min=0, return_max=30)
    agent = DT(DTConfig(model=model, encoder=EncoderConfig(kind="mlp", hidden=(8,)), eval_target="expert",
                        expert_kappa=kappa), BOX, gym.spaces.Discrete(4))
    n = 4000
    agent._forward = lambda width: {"return": torch.tensor(logits, dtype=torch.float32).expand(n, width, 31),
                                    "action": torch.zeros(n, width, 4)}
    agent.act(np.zeros((n, 3), np.float32), 0.0, np.random.default_rng(0))
    drawn = agent._ctx["rtg"][:, 0].numpy()
    p = np.exp(0.75 * (logits + kappa * bins / 30.0))
    p /= p.sum()
    cdf_max = np.cumsum(p) ** 128
    pmf = np.diff(np.concatenate([[0.0], cdf_max]))
    mean = float((bins * pmf).sum())
    sd = float(np.sqrt((bins ** 2 * pmf).sum() - mean ** 2))
    assert abs(drawn.mean() - mean) < 4 * sd / np.sqrt(n)
    empirical = np.array([(drawn <= r).mean() for r in bins])
    assert np.abs(empirical - cdf_max).max() < 0.03
    assert mean - float((bins * p).sum()) > 2.0  # one draw (the old rule) would fail the mean check


@pytest.mark.parametrize("placement,variant", [("none", "causal"), ("model", "causal"), ("model", "released")])
def test_ddp_searches_for_unused_parameters_only_when_some_are_unused(tmp_path, placement, variant):
    """ddp_options asks DDP for find_unused_parameters exactly when a training forward (with the
    burn-in, if any) leaves a trainable parameter without gradient: the released memory's `initial`."""
    from rlsuite.loops import offline
    from rlsuite.agents.dt import DT, DTConfig
    from rlsuite.nn.memory import MemoryConfig

    cfg = DTConfig(model=TransformerConfig(context=3, embed_dim=16, n_layer=1, n_head=2, max_timestep=32, dropout=0.0),
                   memory=MemoryConfig(placement=placement, slots=4, variant=variant, burn_in=5),
                   encoder=EncoderConfig(kind="mlp", hidden=(8,)))
    agent = DT(cfg, BOX, gym.spaces.Discrete(4))
    sampler = SequenceSampler([hand_dataset(tmp_path / "d", [[1.0] * 12] * 3)])
    batch = sampler.sample_sequences(8, 3, np.random.default_rng(0), burn_in=agent.burn_in_steps)
    agent.losses(batch)["action_ce"].backward()
    unused = [n for n, p in agent.model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == (["memory.initial"] if variant == "released" else [])
    assert offline.ddp_options(agent) == {"find_unused_parameters": bool(unused)}


def test_process_group_waits_through_long_evaluations(monkeypatch):
    import datetime

    from rlsuite.loops import offline
    calls = {}
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: calls.update(backend=backend, **kw))
    offline._init_distributed(torch.device("cpu"))
    assert calls["backend"] == "gloo" and calls["timeout"] >= datetime.timedelta(hours=2)  # torch's default: 30 min
