"""DT-Mem's working memory (rlsuite.nn.memory): causality, carried state, distinct slots, and the
released code's leak, each shown by a test rather than a sentence."""
from __future__ import annotations

import pytest
import torch

from rlsuite.nn.memory import MemoryConfig, WorkingMemory, released_slots_identical

B, K, T, D = 2, 6, 3, 16


def _memory(variant: str = "causal", iterations: int = 2) -> WorkingMemory:
    torch.manual_seed(0)
    return WorkingMemory(D, MemoryConfig(slots=8, write_iterations=iterations, variant=variant)).eval()


def test_reads_are_causal():
    """Changing a token of step t' leaves every read at steps < t', and the reads of step t''s other
    tokens, unchanged (a step reads memory written from earlier steps only), and does change a later
    read (so the test can fail)."""
    mem = _memory()
    steps = torch.randn(B, K, T, D)
    base, _ = mem(steps)
    for t_changed in range(K):
        for token in range(T):
            changed = steps.clone()
            changed[:, t_changed, token] += 1.0
            out, _ = mem(changed)
            torch.testing.assert_close(out[:, :t_changed], base[:, :t_changed], atol=1e-6, rtol=0)
            others = [j for j in range(T) if j != token]  # the same step's other tokens: no write yet
            torch.testing.assert_close(out[:, t_changed, others], base[:, t_changed, others], atol=1e-6, rtol=0)
            if t_changed < K - 1:
                assert (out[:, t_changed + 1:] - base[:, t_changed + 1:]).abs().max() > 1e-6


def test_carried_state_equals_the_whole_prefix_and_padding_writes_nothing():
    mem = _memory()
    steps, mask = torch.randn(B, K, T, D), torch.ones(B, K, dtype=torch.bool)
    whole, final = mem(steps, mask)
    state, reads = None, []
    for t in range(K):  # evaluation: one step at a time, the memory carried across calls
        out, state = mem(steps[:, t:t + 1], mask[:, t:t + 1], state)
        reads.append(out)
    torch.testing.assert_close(torch.cat(reads, 1), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(state, final, atol=1e-6, rtol=0)
    mask[:, 3:] = False  # padded steps leave the memory as it was
    _, after_three = mem(steps, mask)
    _, three = mem(steps[:, :3])
    torch.testing.assert_close(after_three, three, atol=1e-6, rtol=0)


def test_slots_start_distinct_and_stay_distinct_after_training():
    mem = _memory()
    assert mem.slot_spread() > 0.5  # orthonormal rows: sqrt(2) apart
    optimizer = torch.optim.Adam(mem.parameters(), lr=1e-2)
    torch.manual_seed(1)
    for _ in range(50):  # recall the first step's tokens at the last step
        steps = torch.randn(8, K, T, D)
        out, _ = mem(steps)
        loss = (out[:, -1] - steps[:, 0]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert mem.slot_spread() > 1e-3
    state = mem.initial_state(1)
    assert not released_slots_identical(mem.write(state, torch.randn(1, T, D)))


def test_the_released_variant_leaks_the_future_and_collapses_its_slots():
    """The released code's memory (identical random slots, the window written before any read):
    the read at step 0 moves when a token at the last step changes, and all slots stay equal."""
    mem = _memory("released", iterations=1)
    steps = torch.randn(B, K, T, D)
    torch.manual_seed(5)
    base, memory = mem(steps)
    changed = steps.clone()
    changed[:, K - 1, 2] += 1.0
    torch.manual_seed(5)  # the same random initial memory, so only the future token differs
    out, _ = mem(changed)
    assert (out[:, 0] - base[:, 0]).abs().max() > 1e-4  # step 0 saw step K-1
    assert released_slots_identical(memory)
    torch.manual_seed(6)
    other, _ = mem(steps)
    assert (other - base).abs().max() > 1e-4  # and its outputs depend on the random draw


def _dt_mem_agent(context: int = 3, placement: str = "model"):
    import gymnasium as gym
    import numpy as np

    from rlsuite.agents.dt import DT, DTConfig
    from rlsuite.nn.encoders import EncoderConfig
    from rlsuite.nn.transformer import TransformerConfig

    space = gym.spaces.Box(-5, 5, (4,), np.float32)
    cfg = DTConfig(model=TransformerConfig(context=context, embed_dim=16, n_layer=1, n_head=2, dropout=0.0,
                                           max_timestep=64),
                   memory=MemoryConfig(placement=placement, slots=4), encoder=EncoderConfig(kind="mlp", hidden=(8,)))
    return DT(cfg, space, gym.spaces.Discrete(3))


@pytest.mark.parametrize("placement", ["model", "block"])
def test_dt_mem_is_causal_through_memory_and_attention(placement):
    agent = _dt_mem_agent(context=5, placement=placement)
    model = agent.model.eval()
    torch.manual_seed(2)
    obs, actions = torch.randn(2, 5, 4), torch.randint(0, 3, (2, 5))
    rtg, steps = torch.randn(2, 5), torch.arange(5).repeat(2, 1)
    base = model(obs, actions, rtg, steps)["action"]
    for t in range(5):
        o, a = obs.clone(), actions.clone()
        o[:, t] += 1.0
        a[:, t] = (a[:, t] + 1) % 3
        out = model(o, a, rtg, steps)["action"]
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-6, rtol=0)


def test_evaluation_carries_the_memory_of_the_whole_prefix():
    """Acting step by step with a 3-step window over a 9-step game, the memory the agent carries
    equals the memory written from every step that has left the window, recomputed in one pass."""
    import numpy as np

    agent = _dt_mem_agent(context=3)
    agent.set_eval_game(10.0, clip_rewards=False)
    agent.eval_reset(1)
    rng = np.random.default_rng(0)
    history = {"obs": [], "actions": [], "rtg": [], "steps": []}
    rtg = 10.0
    for t in range(9):
        obs = rng.normal(size=(1, 4)).astype(np.float32)
        action = agent.act(obs, 0.0, rng)
        reward = float(rng.integers(0, 3))
        history["obs"].append(obs[0]), history["actions"].append(int(action[0]))
        history["rtg"].append(rtg), history["steps"].append(t)
        agent.eval_rewards(np.array([reward]))
        rtg -= reward
    # after act at step 8 the window holds steps 6..8: steps 0..5 were written into the memory
    gone = 6
    tokens = agent.model.tokens(torch.tensor(np.array(history["obs"][:gone]))[None],
                                torch.tensor(history["actions"][:gone])[None],
                                torch.tensor(history["rtg"][:gone], dtype=torch.float32)[None],
                                torch.tensor(history["steps"][:gone])[None])
    with torch.no_grad():
        _, expected = agent.model.memory(tokens.view(1, gone, 3, -1))
    torch.testing.assert_close(agent._ctx["memory"], expected, atol=1e-5, rtol=0)
    agent.eval_episode_starts(np.array([True]))
    torch.testing.assert_close(agent._ctx["memory"], agent.model.memory.initial_state(1), atol=0, rtol=0)


def test_per_block_memories_are_carried_at_evaluation():
    """memory.placement=block: one memory per block; acting past the window writes the steps that
    leave it into every block's memory (and an episode start resets them all)."""
    import numpy as np

    agent = _dt_mem_agent(context=2, placement="block")
    assert len(agent.model.memory_modules()) == 1  # n_layer = 1 in this tiny model
    agent.set_eval_game(5.0, clip_rewards=False)
    agent.eval_reset(2)
    start = agent._ctx["memory"].clone()
    rng = np.random.default_rng(0)
    for _ in range(2):  # the window is full, nothing has left it yet
        agent.act(rng.normal(size=(2, 4)).astype(np.float32), 0.0, rng)
        agent.eval_rewards(np.ones(2))
    torch.testing.assert_close(agent._ctx["memory"], start, atol=0, rtol=0)
    agent.act(rng.normal(size=(2, 4)).astype(np.float32), 0.0, rng)  # step 0 leaves the window
    assert (agent._ctx["memory"] - start).abs().max() > 1e-6
    agent.eval_episode_starts(np.array([True, False]))
    torch.testing.assert_close(agent._ctx["memory"][0], start[0], atol=0, rtol=0)
