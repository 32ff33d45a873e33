"""Native kernels (torch.ops.rlsuite, CPU) against their pure-torch references (rlsuite.replay.ops).

Property-based: random shapes, capacities, wrap-around, episode boundaries, duplicate indices,
zero priorities. Also: the add kernel against the numpy reference storage, identical batches
from both backends, and the replay suite re-run with RLSUITE_NATIVE=0.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsuite import native
from rlsuite.replay import ops
from rlsuite.replay.storage import StreamStorage
from rlsuite.replay.sumtree import PrioritySampler

try:
    import rlsuite._C  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the build
    if os.environ.get("CI"):  # `make test` builds the extension; in CI its absence is a failure, not a skip
        raise
    pytest.skip(f"rlsuite._C not built ({exc})", allow_module_level=True)

N = torch.ops.rlsuite

from tests.test_replay import Sim, make_buffer  # noqa: E402  (after the skip: needs the extension)


def trees(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    size = ops.tree_size(len(values))
    s, m = torch.zeros(size, dtype=torch.float64), torch.full((size,), math.inf, dtype=torch.float64)
    ops.sum_tree_update(s, torch.arange(len(values)), torch.tensor(values))
    ops.min_tree_update(m, torch.arange(len(values)), torch.tensor(values))
    return s, m


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), seed=st.integers(0, 2**16), zeros=st.floats(0, 0.9), updates=st.integers(0, 300))
def test_trees_match_reference(n, seed, zeros, updates):
    rng = np.random.default_rng(seed)
    values = rng.random(n) * (rng.random(n) > zeros)
    s_ref, m_ref = trees(values)
    s_nat, m_nat = s_ref.clone(), m_ref.clone()
    idx = torch.tensor(rng.integers(0, n, updates))  # duplicates likely: the last one wins
    new = torch.tensor(rng.random(updates) * (rng.random(updates) > zeros))
    ops.sum_tree_update(s_ref, idx, new)
    ops.min_tree_update(m_ref, idx, new)
    N.tree_update_(s_nat, idx, new, False)
    N.tree_update_(m_nat, idx, new, True)
    torch.testing.assert_close(s_nat, s_ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(m_nat, m_ref)
    rebuilt = s_nat.clone()
    rebuilt[: s_nat.numel() - (s_nat.numel() * 15 + 1) // 16] = -1
    N.tree_rebuild_(rebuilt, False)
    torch.testing.assert_close(rebuilt, s_nat, rtol=1e-12, atol=1e-12)
    if s_nat[0] > 0:
        prefix = torch.tensor(rng.random(64)) * s_nat[0] * 1.01  # some past the top end
        assert torch.equal(N.tree_search(s_nat, prefix), ops.sum_tree_search(s_nat, prefix))
        u = torch.tensor(rng.random(33))
        i_nat, w_nat = N.per_sample(s_nat, m_nat, u, 0.4)
        i_ref, w_ref = ops.per_sample(s_nat, m_nat, u, 0.4)
        assert torch.equal(i_nat, i_ref)
        torch.testing.assert_close(w_nat, w_ref, rtol=1e-6, atol=0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**16), alpha=st.sampled_from([0.5, 0.6, 1.0]))
def test_per_update_matches_reference(n, seed, alpha):
    rng = np.random.default_rng(seed)
    s_ref, m_ref = trees(rng.random(n) + 0.1)
    s_nat, m_nat = s_ref.clone(), m_ref.clone()
    idx = torch.tensor(rng.integers(0, n, 40))
    td = torch.tensor(rng.normal(size=40) * (rng.random(40) > 0.2))  # zero TD errors included
    valid = torch.tensor(rng.random(n) > 0.3)
    best_ref = ops.per_update(s_ref, m_ref, idx, td, valid, alpha, 1e-6)
    best_nat = N.per_update_(s_nat, m_nat, idx, td, valid, alpha, 1e-6)
    assert best_nat == pytest.approx(best_ref, rel=1e-12)
    torch.testing.assert_close(s_nat, s_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m_nat, m_ref, rtol=1e-12, atol=0)


def stream(rng, envs: int, slots: int, frame: tuple, dtype: torch.dtype, p_first: float):
    frames = torch.tensor(rng.integers(1, 120, (envs, slots, *frame))).to(dtype)
    first = torch.tensor(rng.random((envs, slots)) < p_first)
    t, env = torch.tensor(rng.integers(0, slots, 24)), torch.tensor(rng.integers(0, envs, 24))
    return frames, first, t, env


shapes = st.sampled_from([(), (3,), (2, 5), (4, 3, 2)])
dtypes = st.sampled_from([torch.uint8, torch.int64, torch.float32])


@settings(max_examples=40, deadline=None)
@given(envs=st.integers(1, 4), slots=st.integers(6, 20), stack=st.integers(1, 5), n=st.integers(1, 4),
       frame=shapes, dtype=dtypes, p_first=st.sampled_from([0.0, 0.2, 0.6]), seed=st.integers(0, 2**16))
def test_frame_gathers_match_reference(envs, slots, stack, n, frame, dtype, p_first, seed):
    frames, first, t, env = stream(np.random.default_rng(seed), envs, slots, frame, dtype, p_first)
    out = torch.full((24, stack, *frame), 77).to(dtype)  # garbage the kernel must overwrite
    N.frame_stack_gather(frames, first, t, env, stack, out)
    assert torch.equal(out, ops.frame_stack_gather(frames, first, t, env, stack))
    window = torch.full((24, stack + n, *frame), 77).to(dtype)
    N.frame_window_gather(frames, first, t, env, stack, n, window)
    assert torch.equal(window, ops.frame_window_gather(frames, first, t, env, stack, n))


@settings(max_examples=40, deadline=None)
@given(envs=st.integers(1, 4), slots=st.integers(3, 15), n=st.integers(1, 6), p_end=st.sampled_from([0.0, 0.2, 0.5]),
       gamma=st.sampled_from([0.0, 0.9, 0.99, 1.0]), seed=st.integers(0, 2**16))
def test_nstep_returns_match_reference(envs, slots, n, p_end, gamma, seed):
    rng = np.random.default_rng(seed)
    rewards = torch.tensor(rng.normal(size=(envs, slots)), dtype=torch.float32)
    term, trunc = (torch.tensor(rng.random((envs, slots)) < p_end / 2) for _ in range(2))
    t, env = torch.tensor(rng.integers(0, slots, 32)), torch.tensor(rng.integers(0, envs, 32))
    got, want = N.nstep_returns(rewards, term, trunc, t, env, n, gamma), ops.nstep_returns(rewards, term, trunc, t, env, n, gamma)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=0)
    assert torch.equal(got[2], want[2])


@settings(max_examples=30, deadline=None)
@given(envs=st.integers(1, 3), slots=st.integers(4, 30), length=st.integers(1, 12), frame=shapes,
       p_end=st.sampled_from([0.0, 0.1, 0.4]), seed=st.integers(0, 2**16))
def test_sequence_gather_matches_reference(envs, slots, length, frame, p_end, seed):
    rng = np.random.default_rng(seed)
    frames, _, t, env = stream(rng, envs, slots, frame, torch.uint8, 0.0)
    action = torch.tensor(rng.integers(1, 9, (envs, slots)))
    rtg = torch.tensor(rng.normal(size=(envs, slots)), dtype=torch.float32)
    step = torch.tensor(rng.integers(0, 500, (envs, slots)))
    ended, final = torch.tensor(rng.random((envs, slots)) < p_end), torch.tensor(rng.random((envs, slots)) < p_end)
    obs = torch.full((24, length, *frame), 9, dtype=torch.uint8)
    got = (obs, *N.sequence_gather(frames, action, rtg, step, ended, final, t, env, length, obs))
    want = ops.sequence_gather(frames, action, rtg, step, ended, final, t, env, length)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@settings(max_examples=30, deadline=None)
@given(envs=st.integers(1, 3), slots=st.integers(8, 20), stack=st.integers(1, 4), n=st.integers(1, 3),
       window=st.booleans(), seed=st.integers(0, 2**16))
def test_gather_transitions_matches_reference(envs, slots, stack, n, window, seed):
    rng = np.random.default_rng(seed)
    frames, first, _, _ = stream(rng, envs, slots, (2, 3), torch.uint8, 0.2)
    action = torch.tensor(rng.integers(0, 9, (envs, slots)))
    reward = torch.tensor(rng.normal(size=(envs, slots)), dtype=torch.float32)
    term, trunc = (torch.tensor(rng.random((envs, slots)) < 0.1) for _ in range(2))
    gidx = torch.tensor(rng.integers(0, envs * slots, 16))
    outs = []
    for fn in (N.gather_transitions, ops.gather_transitions):
        obs = [torch.zeros(16, stack + (n if window else 0), 2, 3, dtype=torch.uint8)]
        nxt = [] if window else [torch.zeros(16, stack, 2, 3, dtype=torch.uint8)]
        rest = [torch.zeros(16, dtype=torch.int64), torch.zeros(16), torch.zeros(16)]
        fn([frames], first, action, reward, term, trunc, gidx, stack, n, 0.9, window, obs, nxt, *rest)
        outs.append(obs + nxt + rest)
    for g, w in zip(*outs):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(envs=st.integers(1, 4), slots=st.integers(3, 30), seed=st.integers(0, 2**16), need=st.integers(1, 50))
def test_uniform_pick_matches_reference(envs, slots, seed, need):
    rng = np.random.default_rng(seed)
    valid = torch.tensor(rng.random(envs * slots) < 0.7)
    width = int(rng.integers(1, slots + 1))
    draws = torch.tensor(rng.integers(0, envs * width, 80))
    assert torch.equal(N.uniform_pick(valid, draws, width, slots, need), ops.uniform_pick(valid, draws, width, slots, need))


@settings(max_examples=25, deadline=None)
@given(envs=st.integers(1, 4), stack=st.integers(1, 4), n=st.integers(1, 3), extra=st.integers(0, 12),
       p_end=st.sampled_from([0.0, 0.1, 0.5]), steps=st.integers(1, 80), seed=st.integers(0, 2**16))
def test_stream_add_matches_reference_storage(envs, stack, n, extra, p_end, steps, seed):
    """The add kernel (write + validity refresh + priority follow-up) vs the numpy reference."""
    rng, slots = np.random.default_rng(seed), stack + n + 3 + extra
    spec = {"x": ((2,), torch.uint8), "y": ((), torch.int64)}
    pair = []
    for flag in (True, False):
        with native.use_native(flag):
            pair.append((StreamStorage(spec, envs, slots, stack, n), PrioritySampler(envs * slots, 0.5, 1e-6)))
    for step in range(steps):
        frames = {"x": rng.integers(0, 255, (envs, 2), dtype=np.uint8), "y": rng.integers(-9, 9, envs)}
        final = {"x": rng.integers(0, 255, (envs, 2), dtype=np.uint8), "y": rng.integers(-9, 9, envs)}
        term, trunc = rng.random(envs) < p_end / 2, rng.random(envs) < p_end / 2
        action, reward = rng.integers(0, 5, envs), rng.normal(size=envs).astype(np.float32)
        for (storage, prio), flag in zip(pair, (True, False)):
            prio.max_priority = 1.0 + step  # new slots must take the current max
            with native.use_native(flag):
                storage.write(frames, action, reward, term, trunc, final, prio)
    (a, pa), (b, pb) = pair
    for name, value in a.fields().items():
        assert torch.equal(value, b.fields()[name]), name
    assert a.state_dict() == b.state_dict()
    torch.testing.assert_close(pa.sum_tree, pb.sum_tree, rtol=1e-12, atol=1e-12)
    assert torch.equal(pa.min_tree, pb.min_tree)


def test_backends_give_identical_uniform_batches():
    from tests.test_replay import Sim, make_buffer

    batches = []
    for flag in (True, False):
        with native.use_native(flag):
            buf = make_buffer(stack=4, n=1, envs=3, slots=30, seed=4)
            Sim(buf, seed=2, p_term=0.05, p_trunc=0.05).step(70)
            b = buf.sample(64)
            batches.append([b.obs.clone(), b.next_obs.clone(), b.action.clone(), b.reward.clone(), b.discount.clone()])
    for x, y in zip(*batches):
        assert torch.equal(x, y)


def test_backend_description_and_switch():
    assert native.enabled() == (os.environ.get("RLSUITE_NATIVE", "1") != "0")
    with native.use_native(False):
        assert not native.enabled() and native.backend_description().startswith("reference")
    if native.enabled():
        assert native.backend_description().startswith("native")


@pytest.mark.skipif(os.environ.get("RLSUITE_NATIVE") == "0", reason="already running on the reference")
def test_replay_suite_passes_with_reference_backend():
    """The replay tests again with RLSUITE_NATIVE=0 (the default run uses the native kernels)."""
    env = dict(os.environ, RLSUITE_NATIVE="0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_replay.py",
           "tests/test_replay_ops.py", "tests/test_resident.py"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _filled_buffer(prioritized: bool, stack: int, n: int, envs: int, slots: int, seed: int, steps: int, dict_obs: bool):
    buf = make_buffer(stack=stack, n=n, envs=envs, slots=slots, seed=seed, prioritized=prioritized, dict_obs=dict_obs)
    Sim(buf, seed=seed + 1, p_term=0.08, p_trunc=0.05, dict_obs=dict_obs).step(steps)
    return buf


@settings(max_examples=25, deadline=None)
@given(prioritized=st.booleans(), stack=st.integers(1, 4), n=st.integers(1, 3), envs=st.integers(1, 4),
       extra=st.integers(0, 20), steps=st.integers(5, 90), batch=st.integers(1, 70), seed=st.integers(0, 2**16),
       beta=st.sampled_from([0.0, 0.4, 0.5, 1.0]), dict_obs=st.booleans())
def test_fused_sample_ops_match_reference(prioritized, stack, n, envs, extra, steps, batch, seed, beta, dict_obs):
    """sample_uniform / sample_per (draw + pick/search + gather in one call) against their references,
    from one generator state: same draws, same batch, same generator state afterwards."""
    slots = stack + n + 3 + extra
    with native.use_native(False):
        buf = _filled_buffer(prioritized, stack, n, envs, slots, seed, steps, dict_obs)
    if len(buf) == 0:
        return
    if prioritized:  # non-uniform priorities, some tiny
        rng = np.random.default_rng(seed)
        valid = buf._storage.valid.view(-1).nonzero().view(-1)
        buf.update_priorities(valid, torch.tensor(rng.random(valid.numel()) * (rng.random(valid.numel()) > 0.3)))
    frames, state, window = buf._storage._frame_list, buf._state, buf._window
    results = []
    for fn in ((N.sample_per, ops.sample_per) if prioritized else (N.sample_uniform, ops.sample_uniform)):
        out = [t.clone().fill_(7) if t.dtype != torch.bool else t.clone() for t in buf._out_buffers(batch)[0]]
        gen = torch.Generator().manual_seed(seed)
        extra_args = (beta,) if prioritized else ()
        fn(frames, state, out, gen, *extra_args, stack, n, buf.gamma, window)
        results.append((out, gen.get_state()))
    (got, g_state), (want, w_state) = results
    assert torch.equal(g_state, w_state)
    assert torch.equal(got[3], want[3])  # indices
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    assert bool(buf._storage.valid.view(-1)[got[3]].all())
