"""DT-Mem's training burn-in (rlsuite.data.sequences burn-in stretches, rlsuite.agents.dt.burn_in
.burn_in_memory): the memory a training window starts from has absorbed earlier steps of its own
episode, as evaluation's carried memory has.

Expected values come from the definitions: the hand datasets store (episode, step, reward) as the
observation, so every burn-in step can be checked against the episode and step it must be; the
evaluation's write count at step t is max(0, t - K + 1) (the steps that have left a K-step window);
the expected memory is recomputed by writing the dataset's own steps one by one.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsuite.agents.dt import DT, DTConfig
from rlsuite.agents.dt.burn_in import burn_in_memory
from rlsuite.cli import main
from rlsuite.data.sequences import SequenceSampler
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.memory import MemoryConfig
from rlsuite.nn.transformer import TransformerConfig
from tests.test_dt import BOX, hand_dataset, model_state, train_dt


def _episodes(seed: int, count: int, longest: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, 3, int(rng.integers(1, longest + 1))).astype(float)) for _ in range(count)]


def _agent(k: int, burn_in: int, placement: str = "model", variant: str = "causal") -> DT:
    cfg = DTConfig(model=TransformerConfig(context=k, embed_dim=16, n_layer=1, n_head=2, dropout=0.0, max_timestep=64),
                   memory=MemoryConfig(placement=placement, slots=4, burn_in=burn_in, variant=variant),
                   encoder=EncoderConfig(kind="mlp", hidden=(8,)), warmup_updates=0)
    return DT(cfg, BOX, gym.spaces.Discrete(4))


def test_stretches_are_the_steps_just_before_the_window_in_its_own_episode(tmp_path):
    a, b = hand_dataset(tmp_path / "a", _episodes(0, 30, 25)), hand_dataset(tmp_path / "b", _episodes(1, 10, 25))
    sampler = SequenceSampler([a, b])
    cap, k = 10, 4
    batch = sampler.sample_sequences(3000, k, np.random.default_rng(5), burn_in=cap)
    plain = sampler.sample_sequences(3000, k, np.random.default_rng(5))
    assert torch.equal(batch.obs, plain.obs) and plain.burn_in is None  # the windows do not change
    burn, lengths_seen = batch.burn_in, {}
    for row in range(3000):
        episode, start = batch.obs[row, 0, :2].tolist()
        n = int(burn.mask[row].sum())
        assert n <= min(start, cap) and burn.mask[row, :n].all()  # real steps first, none before the episode
        steps = burn.obs[row, :n]
        assert (steps[:, 0] == episode).all()  # the window's own episode
        assert steps[:, 1].tolist() == list(range(int(start) - n, int(start)))  # just before it, in order
        assert burn.timesteps[row, :n].tolist() == steps[:, 1].long().tolist()
        assert (burn.obs[row, n:] == 0).all() and not burn.mask[row, n:].any()  # nothing of the window itself
        lengths_seen.setdefault(min(int(start), cap), set()).add(n)
    assert lengths_seen[cap] == set(range(cap + 1))  # every length 0..cap is drawn
    halves = [sampler.sample_sequences(3000, k, np.random.default_rng(5), r, 2, burn_in=cap) for r in (0, 1)]
    counts = torch.cat([h.burn_in.mask.sum(1) for h in halves])
    assert torch.equal(counts, burn.mask.sum(1))  # ranks draw the global batch's stretches
    with pytest.raises(ValueError, match="earlier episode"):
        sampler.gather_preceding(np.array([0]), np.array([0]), np.array([1]))


@pytest.mark.parametrize("placement", ["model", "block"])
def test_training_write_counts_span_what_evaluation_sees(tmp_path, placement):
    """The writes a training window's memory holds before the window (counted by the memory the
    training forward receives, each burn-in write adding 1) cover 0..cap, as evaluation's max(0, t - K + 1) do; without a burn-in they are all 0
    (the mismatch this fixes)."""
    k, cap, length = 4, 12, 30
    sampler = SequenceSampler([hand_dataset(tmp_path / "d", [[1.0] * length] * 6)])
    evaluation = {min(max(0, t - k + 1), cap) for t in range(length)}
    assert evaluation == set(range(cap + 1))
    for burn_in, expected in ((cap, evaluation), (0, {0})):
        agent = _agent(k, burn_in, placement)
        memory = agent.model.memory_modules()[0]
        real_write = memory.write

        def counting(state, tokens, keep=None):  # the burn-in's writes add 1; the window's are real
            if torch.is_grad_enabled():
                return real_write(state, tokens, keep)
            return state + 1 if keep is None else torch.where(keep.view(-1, 1, 1), state + 1, state)

        memory.write, seen = counting, {}

        def net(*args, memory=None):  # what the training forward starts from
            seen["memory"] = memory
            return agent.model(*args, memory=memory)

        batch = sampler.sample_sequences(400, k, np.random.default_rng(1), burn_in=agent.burn_in_steps)
        agent.losses(batch, net=net)
        if seen["memory"] is None:
            counts = torch.zeros(400, dtype=torch.long)
        else:
            start = agent.model.initial_memory(400)
            counts = (seen["memory"] - start).flatten(1)[:, 0].round().long()
            assert torch.equal(counts, batch.burn_in.mask.sum(1))
        assert set(counts.tolist()) == expected


def test_burn_in_memory_is_the_prefix_memory_and_no_gradient_reaches_it(tmp_path):
    episodes = _episodes(2, 8, 20)
    ds = hand_dataset(tmp_path / "d", episodes)
    agent = _agent(3, 6)
    model = agent.model
    batch = SequenceSampler([ds]).sample_sequences(16, 3, np.random.default_rng(4), burn_in=6)
    state = burn_in_memory(model, batch.burn_in)
    for row in range(16):
        episode, start = (int(x) for x in batch.obs[row, 0, :2].tolist())
        n = int(batch.burn_in.mask[row].sum())
        expected = model.memory.initial_state(1)
        if n:  # the dataset's steps start-n .. start-1 of that episode, written one by one
            rewards = episodes[episode]
            t = np.arange(start - n, start)
            obs = torch.tensor([[episode, s, rewards[s]] for s in t], dtype=torch.float32)[None]
            rtg = torch.tensor([sum(rewards[s:]) for s in t], dtype=torch.float32)[None]
            tokens = model.tokens(obs, torch.as_tensor(t % 4)[None], rtg, torch.as_tensor(t)[None])
            with torch.no_grad():
                _, expected = model.memory(tokens.view(1, n, 3, -1))
        torch.testing.assert_close(state[row:row + 1], expected, atol=1e-5, rtol=0)
    batch.burn_in.obs.requires_grad_(True)
    with_burn = agent.losses(batch)["action_ce"]
    with_burn.backward()
    assert batch.burn_in.obs.grad is None  # written under no_grad
    assert all(p.grad is not None for p in model.memory.parameters())  # the window still trains the memory
    batch.burn_in = None
    assert abs(float(agent.losses(batch)["action_ce"].detach()) - float(with_burn.detach())) > 1e-6  # the memory is used


def test_plain_dt_and_released_memory_draw_no_burn_in():
    for placement, variant in (("none", "causal"), ("model", "released")):
        assert _agent(3, 50, placement, variant).burn_in_steps == 0
    assert _agent(3, 50, "block").burn_in_steps == 50


@pytest.fixture
def cartpole_data(cartpole_datasets):
    return f"{cartpole_datasets / 'expert'},{cartpole_datasets / 'noisy'}"


def test_dt_mem_with_burn_in_resumes_exactly_and_rejects_a_bad_cap(cartpole_data, tmp_path, capsys):
    mem = ["agent.memory.placement=model", "agent.memory.slots=4", "agent.memory.burn_in=30"]
    assert train_dt(cartpole_data, tmp_path / "straight", 8, *mem) == 0
    assert train_dt(cartpole_data, tmp_path / "half", 4, *mem) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "8", "--no-progress"]) == 0
    a, b = model_state(tmp_path / "straight"), model_state(tmp_path / "half")
    assert all(torch.equal(a[key], b[key]) for key in a)
    capsys.readouterr()
    assert train_dt(cartpole_data, tmp_path / "bad", 2, *mem, "agent.memory.burn_in=-1") == 2
    err = capsys.readouterr().err.strip()
    assert "agent.memory.burn_in" in err and len(err.splitlines()) == 1, err
