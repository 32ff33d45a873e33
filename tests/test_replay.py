"""Replay buffer: brute-force reference of every transition, PER, persistence, resume (ops: test_replay_ops.py).

The reference (`Sim`) drives a buffer with random episodes in several env streams and keeps its
own log of every transition (stacked obs with zeros before the episode start, n-step return,
discount, next stacked obs). Actions carry a unique transition id, so each sampled item is
checked against the reference transition it claims to be.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rlsuite.errors import UserError
from rlsuite.replay import Batch, ReplayBuffer, ReplayConfig, ops, persist

FRAME = (3, 4)


def frame_of(fid: int, env: int) -> np.ndarray:
    """A frame whose bytes spell its id, so a misplaced or zeroed frame is visible."""
    f = (fid * 7 + np.arange(12)) % 251
    f[:3] = [fid & 255, (fid >> 8) & 255, (fid >> 16) & 255]
    f[3], f[11] = env, 255  # never an all-zero frame
    return f.astype(np.uint8).reshape(FRAME)


def space_for(stack: int, dict_obs: bool) -> spaces.Space:
    lead = (stack,) if stack > 1 else ()
    if not dict_obs:
        return spaces.Box(0, 255, lead + FRAME, np.uint8)
    return spaces.Dict({
        "chars": spaces.Box(0, 255, lead + FRAME, np.uint8),
        "blstats": spaces.Box(-(2**31), 2**31 - 1, lead + (2,), np.int64),
    })


class Sim:
    """Random episodes in `num_envs` streams, fed to a buffer and logged independently."""

    def __init__(self, buf: ReplayBuffer, seed: int, p_term: float, p_trunc: float, dict_obs: bool = False):
        self.buf, self.rng = buf, np.random.default_rng(seed)
        self.p_term, self.p_trunc, self.dict_obs = p_term, p_trunc, dict_obs
        self.stack, self.n, self.gamma = buf.frame_stack, buf.n_step, buf.gamma
        self.next_fid, self.next_id = 1, 0
        self.cursor = [0] * buf.num_envs  # absolute slot count per stream, as documented
        self.episodes: list[list[dict]] = [[self._new_episode(e)] for e in range(buf.num_envs)]

    def _new_episode(self, env: int) -> dict:
        return {"env": env, "start": self.cursor[env], "frames": [], "rewards": [], "ids": [], "end": None}

    def _frame(self, env: int) -> dict[str, np.ndarray]:
        fid, self.next_fid = self.next_fid, self.next_fid + 1
        return {"chars": frame_of(fid, env), "blstats": np.array([fid, -env - 1], np.int64)}

    def stacked(self, frames: list[dict], j: int) -> dict[str, np.ndarray]:
        """Stack of frames j-stack+1 .. j of one episode, zeros before its start."""
        out = {}
        for key in frames[0]:
            parts = [frames[i][key] if i >= 0 else np.zeros_like(frames[0][key]) for i in range(j - self.stack + 1, j + 1)]
            out[key] = np.stack(parts) if self.stack > 1 else parts[0]
        return out

    def _as_obs(self, per_env: list[dict]):
        obs = {k: np.stack([o[k] for o in per_env]) for k in per_env[0]}
        return obs if self.dict_obs else obs["chars"]

    def step(self, steps: int = 1) -> None:
        for _ in range(steps):
            E = self.buf.num_envs
            obs, final, ids = [], [], []
            rewards = self.rng.integers(-3, 4, E).astype(np.float32)
            term = self.rng.random(E) < self.p_term
            trunc = self.rng.random(E) < self.p_trunc
            for e in range(E):
                ep = self.episodes[e][-1]
                ep["frames"].append(self._frame(e))
                ep["rewards"].append(float(rewards[e]))
                ep["ids"].append(self.next_id)
                ids.append(self.next_id)
                self.next_id += 1
                obs.append(self.stacked(ep["frames"], len(ep["frames"]) - 1))
                final.append({k: np.zeros_like(v) for k, v in obs[-1].items()})
                self.cursor[e] += 1
                if term[e] or trunc[e]:
                    ep["end"] = "term" if term[e] else "trunc"
                    ep["frames"].append(self._frame(e))  # the true final observation
                    final[-1] = self.stacked(ep["frames"], len(ep["frames"]) - 1)
                    self.cursor[e] += 1
                    self.episodes[e].append(self._new_episode(e))
            self.buf.add(self._as_obs(obs), np.array(ids), rewards, term, trunc, self._as_obs(final))

    def expected(self) -> dict[int, dict]:
        """Every transition the buffer may return now, by id, with its expected contents."""
        out, L = {}, self.buf.slots
        for e, episodes in enumerate(self.episodes):
            oldest = self.cursor[e] - L  # absolute slots below this were overwritten
            for ep in episodes:
                steps = len(ep["rewards"])
                for i in range(steps):
                    k = min(self.n, steps - i) if ep["end"] else self.n
                    if i + k >= len(ep["frames"]):
                        continue  # the bootstrap observation is not written yet
                    if max(ep["start"] + i - self.stack + 1, 0) < oldest:
                        continue  # a stack frame is gone (documented conservative rule)
                    ended_inside = ep["end"] is not None and i + k == steps
                    out[ep["ids"][i]] = {
                        "obs": self.stacked(ep["frames"], i),
                        "next_obs": self.stacked(ep["frames"], i + k),
                        "reward": sum(self.gamma**j * ep["rewards"][i + j] for j in range(k)),
                        "discount": 0.0 if ended_inside and ep["end"] == "term" else self.gamma**k,
                    }
        return out


def obs_item(x, b: int) -> dict[str, np.ndarray]:
    return {k: v[b].numpy() for k, v in x.items()} if isinstance(x, dict) else {"chars": x[b].numpy()}


def check_batch(sim: Sim, batch: Batch, expected: dict[int, dict]) -> None:
    checked = set()
    for b, tid in enumerate(batch.action.tolist()):
        assert tid in expected, f"sampled transition {tid} must not be sampleable"
        if tid in checked:  # copies of one transition are gathered alike; keep the test fast
            continue
        checked.add(tid)
        ref = expected[tid]
        for which in ("obs", "next_obs"):
            got = obs_item(getattr(batch, which), b)
            for key, value in got.items():
                np.testing.assert_array_equal(value, ref[which][key], err_msg=f"{which}[{key}] of {tid}")
        assert batch.reward[b].item() == pytest.approx(ref["reward"], rel=1e-5, abs=1e-5)
        assert batch.discount[b].item() == pytest.approx(ref["discount"], rel=1e-6)


def make_buffer(stack=1, n=1, envs=2, slots=20, prioritized=False, dict_obs=False, seed=0, gamma=0.9) -> ReplayBuffer:
    cfg = ReplayConfig(capacity=envs * slots, prioritized=prioritized)
    return ReplayBuffer(cfg, space_for(stack, dict_obs), envs, frame_stack=stack, n_step=n, gamma=gamma, seed=seed)


# ----------------------------------------------------------------------------- reference


@settings(max_examples=40, deadline=None)
@given(
    envs=st.integers(1, 3),
    stack=st.sampled_from([1, 2, 4]),
    n=st.sampled_from([1, 2, 3]),
    extra_slots=st.integers(0, 25),
    steps=st.integers(1, 90),
    p_end=st.sampled_from([0.0, 0.05, 0.3, 0.7]),
    prioritized=st.booleans(),
    dict_obs=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_samples_match_bruteforce_reference(envs, stack, n, extra_slots, steps, p_end, prioritized, dict_obs, seed):
    slots = stack + n + 3 + extra_slots
    buf = make_buffer(stack, n, envs, slots, prioritized, dict_obs, seed)
    sim = Sim(buf, seed, p_term=p_end / 2, p_trunc=p_end / 2, dict_obs=dict_obs)
    for _ in range(3):  # check mid-fill, and again after (likely) wrapping around
        sim.step(steps)
        expected = sim.expected()
        assert len(buf) == len(expected)
        assert buf.num_added == sim.next_id
        if not expected:
            with pytest.raises(RuntimeError):
                buf.sample(4)
            continue
        batch = buf.sample(20 * len(expected) + 50, beta=0.5)
        check_batch(sim, batch, expected)
        # Every sampleable transition is reachable (with this many draws, w.h.p. all appear).
        assert set(batch.action.tolist()) == set(expected)
        if prioritized:
            buf.update_priorities(batch.indices, 1 + 2 * torch.rand(batch.indices.numel()))


def test_long_run_wraps_many_times_and_stays_exact():
    buf = make_buffer(stack=4, n=3, envs=3, slots=17)
    sim = Sim(buf, seed=3, p_term=0.08, p_trunc=0.04)
    for _ in range(12):
        sim.step(25)
        expected = sim.expected()
        assert len(buf) == len(expected) > 0
        check_batch(sim, buf.sample(64), expected)


def test_uniform_sampling_is_uniform():
    buf = make_buffer(stack=2, n=2, envs=3, slots=16, seed=1)
    sim = Sim(buf, seed=1, p_term=0.1, p_trunc=0.05)
    sim.step(40)
    ids = sorted(sim.expected())
    counts = np.zeros(len(ids))
    pos = {tid: i for i, tid in enumerate(ids)}
    for _ in range(40):
        for tid in buf.sample(256).action.tolist():
            counts[pos[tid]] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sampling_is_deterministic_per_seed():
    draws = []
    for seed in (5, 5, 6):
        buf = make_buffer(stack=2, n=3, seed=seed)
        Sim(buf, seed=0, p_term=0.1, p_trunc=0.1).step(30)
        draws.append(buf.sample(32).action.clone())
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_batch_dtypes_and_shapes():
    buf = make_buffer(stack=4, n=3, envs=2, slots=30, dict_obs=True)
    Sim(buf, seed=0, p_term=0.1, p_trunc=0.0, dict_obs=True).step(20)
    b = buf.sample(8)
    assert b.obs["chars"].shape == (8, 4, *FRAME) and b.obs["chars"].dtype == torch.uint8
    assert b.next_obs["blstats"].shape == (8, 4, 2) and b.next_obs["blstats"].dtype == torch.int64
    assert b.action.dtype == b.indices.dtype == torch.int64
    assert b.reward.dtype == b.discount.dtype == b.weights.dtype == torch.float32
    assert torch.equal(b.weights, torch.ones(8))


def test_nethack_dict_observation_without_stack():
    space = spaces.Dict({
        "chars": spaces.Box(0, 255, (21, 79), np.uint8),
        "colors": spaces.Box(0, 15, (21, 79), np.uint8),
        "blstats": spaces.Box(-(2**31), 2**31 - 1, (27,), np.int64),
    })
    buf = ReplayBuffer(ReplayConfig(capacity=64), space, 2, n_step=1)
    rng = np.random.default_rng(0)
    seen = {}
    for step in range(10):
        obs = {k: rng.integers(0, 15, (2, *s.shape)).astype(s.dtype) for k, s in space.spaces.items()}
        obs["blstats"][:, 0] = np.arange(2) + 2 * step  # id of this observation
        for e in range(2):
            seen[int(obs["blstats"][e, 0])] = {k: v[e] for k, v in obs.items()}
        buf.add(obs, obs["blstats"][:, 0], np.zeros(2), np.zeros(2, bool), np.zeros(2, bool))
    b = buf.sample(32)
    for i, tid in enumerate(b.action.tolist()):
        for key in space.spaces:
            np.testing.assert_array_equal(b.obs[key][i].numpy(), seen[tid][key])
            np.testing.assert_array_equal(b.next_obs[key][i].numpy(), seen[tid + 2][key])


# ----------------------------------------------------------------------------- PER


def per_buffer_with_known_priorities(alpha: float = 0.5):
    """38 transitions (2 streams x 19, no episode end) with priorities set to known values."""
    cfg = ReplayConfig(capacity=64, prioritized=True, alpha=alpha)
    buf = ReplayBuffer(cfg, space_for(1, False), 2, seed=0)
    sim = Sim(buf, seed=0, p_term=0.0, p_trunc=0.0)
    sim.step(20)
    b = buf.sample(2000)
    index_of = dict(zip(b.action.tolist(), b.indices.tolist()))
    assert len(index_of) == len(buf) == 38
    ids = sorted(index_of)
    td = torch.tensor(np.random.default_rng(1).uniform(0.05, 4.0, len(ids)))
    buf.update_priorities(torch.tensor([index_of[i] for i in ids]), td)
    return buf, ids, td, sim


def test_per_frequencies_follow_priorities():
    buf, ids, td, _ = per_buffer_with_known_priorities(alpha=0.6)
    pos = {tid: i for i, tid in enumerate(ids)}
    counts = np.zeros(len(ids))
    for _ in range(100):
        for tid in buf.sample(200).action.tolist():
            counts[pos[tid]] += 1
    expected = (td.numpy() + 1e-6) ** 0.6
    expected = expected / expected.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    wrong = (td.numpy() + 1e-6) ** 1.0  # the test has the power to see a wrong alpha
    assert stats.chisquare(counts, wrong / wrong.sum() * counts.sum()).pvalue < 1e-6


def test_per_importance_weights_match_formula():
    buf, ids, td, _ = per_buffer_with_known_priorities(alpha=0.5)
    p = {tid: (t + 1e-6) ** 0.5 for tid, t in zip(ids, td.tolist())}
    total, n = sum(p.values()), len(buf)
    max_w = (n * min(p.values()) / total) ** -0.7
    b = buf.sample(64, beta=0.7)
    want = [(n * p[tid] / total) ** -0.7 / max_w for tid in b.action.tolist()]
    np.testing.assert_allclose(b.weights.numpy(), want, rtol=1e-5)
    assert b.weights.max() <= 1.0 + 1e-6


def test_new_items_get_max_priority():
    buf, ids, td, sim = per_buffer_with_known_priorities()
    before = set(sim.expected())
    sim.step(3)  # 6 new transitions
    new = set(sim.expected()) - before
    assert len(new) == 6
    p_max = (td.max().item() + 1e-6) ** 0.5
    p_min = (td.min().item() + 1e-6) ** 0.5
    b = buf.sample(4000, beta=1.0)
    got = {tid: w for tid, w in zip(b.action.tolist(), b.weights.tolist())}
    assert new <= set(got)
    for tid in new:  # beta = 1: w = p_min / p_i
        assert got[tid] == pytest.approx(p_min / p_max, rel=1e-5)


def test_update_priorities_keeps_last_duplicate_and_ignores_uniform():
    buf, ids, td, _ = per_buffer_with_known_priorities()
    b = buf.sample(8)
    idx = b.indices[:1].repeat(2)
    buf.update_priorities(idx, torch.tensor([100.0, 0.0]))  # last write wins: priority ~0
    assert all(tid != b.action[0].item() for tid in buf.sample(2000).action.tolist())
    uniform = make_buffer()
    Sim(uniform, 0, 0.1, 0.1).step(10)
    uniform.update_priorities(torch.tensor([0]), torch.tensor([1.0]))  # a no-op, not an error


def test_update_priorities_never_revives_unsampleable_slots():
    buf = ReplayBuffer(ReplayConfig(capacity=16, prioritized=True), space_for(1, False), 1, seed=0)
    no = np.zeros(1, bool)
    for i in range(5):  # slots 0 1 2(terminal) 3(final obs) 4 5; slot 5 still lacks its next obs
        obs = np.full((1, *FRAME), 10 + i, np.uint8)
        buf.add(obs, [i], [1.0], [i == 2], no, np.full((1, *FRAME), 99, np.uint8))
    assert len(buf) == 4
    buf.update_priorities(torch.tensor([3, 5]), torch.tensor([1000.0, 1000.0]))
    counts = np.bincount(buf.sample(1000).indices.numpy(), minlength=6)
    assert counts[3] == counts[5] == 0 and counts.max() < 400  # still uniform over 0, 1, 2, 4


# ----------------------------------------------------------------------------- persistence


def filled(prioritized: bool, seed: int = 0) -> tuple[ReplayBuffer, Sim]:
    buf = make_buffer(stack=4, n=3, envs=3, slots=24, prioritized=prioritized, dict_obs=True, seed=seed)
    sim = Sim(buf, seed, p_term=0.06, p_trunc=0.04, dict_obs=True)
    sim.step(50)  # wraps around
    if prioritized:
        b = buf.sample(32)
        buf.update_priorities(b.indices, torch.rand(32) * 5)
    return buf, sim


def assert_same_batches(a: ReplayBuffer, b: ReplayBuffer, count: int = 3) -> None:
    for _ in range(count):
        x, y = a.sample(16, beta=0.6), b.sample(16, beta=0.6)
        for name in ("action", "reward", "discount", "weights", "indices"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
        for key in x.obs:
            assert torch.equal(x.obs[key], y.obs[key]) and torch.equal(x.next_obs[key], y.next_obs[key])


@pytest.mark.parametrize("prioritized", [False, True])
def test_save_load_round_trip(tmp_path, monkeypatch, prioritized):
    monkeypatch.setattr(persist, "CHUNK_BYTES", 500)  # force many chunks per field
    buf, sim = filled(prioritized)
    buf.sample(8)
    buf.save(tmp_path / "replay")
    assert len(list((tmp_path / "replay").glob("frames.chars-*.npy"))) > 1
    other = make_buffer(stack=4, n=3, envs=3, slots=24, prioritized=prioritized, dict_obs=True, seed=99)
    other.load(tmp_path / "replay")
    assert other.state_dict() == buf.state_dict() and len(other) == len(buf)
    for name, t in buf._persisted().items():
        assert torch.equal(t, other._persisted()[name]), name
    assert_same_batches(buf, other)
    # Both keep working identically after the load, including wrap-around.
    sim.buf = other
    sim.step(30)
    check_batch(sim, other.sample(64), sim.expected())


def test_sampling_rng_from_another_device_kind_is_reseeded_with_a_warning(tmp_path):
    """CPU and CUDA generators keep different states: a replay saved by a host buffer and loaded
    into a GPU-held one keeps every transition and warns that its draws start over."""
    buf, _ = filled(False)
    buf.save(tmp_path / "replay")
    state = buf.state_dict()
    assert state["rng_device"] == "cpu"
    other, _ = filled(False, seed=1)
    other.load(tmp_path / "replay")
    with pytest.warns(UserWarning, match="not bit-exact"):
        other.load_state_dict({**state, "rng_device": "cuda"})
    assert len(other) == len(buf)
    other.sample(8)  # still samples


def test_save_is_atomic_and_overwrites(tmp_path):
    buf, _ = filled(False)
    buf.save(tmp_path / "replay")
    buf.sample(4)
    buf.save(tmp_path / "replay")  # replaces the previous copy
    assert sorted(os.listdir(tmp_path)) == ["replay"]  # no temp or old dirs left behind
    other, _ = filled(False, seed=1)
    other.load(tmp_path / "replay")
    assert other.state_dict() == buf.state_dict()


def test_load_errors_are_user_errors(tmp_path):
    buf, _ = filled(False)
    buf.save(tmp_path / "replay")
    for wrong in (
        make_buffer(stack=4, n=3, envs=3, slots=25, dict_obs=True),  # capacity
        make_buffer(stack=4, n=2, envs=3, slots=24, dict_obs=True),  # n-step
        make_buffer(stack=4, n=3, envs=3, slots=24, dict_obs=False),  # observation space
        make_buffer(stack=4, n=3, envs=3, slots=24, dict_obs=True, prioritized=True),
    ):
        with pytest.raises(UserError, match="different shape") as err:
            wrong.load(tmp_path / "replay")
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="not a replay directory"):
        buf.load(tmp_path)
    chunk = next((tmp_path / "replay").glob("reward-*.npy"))
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupt"):
        buf.load(tmp_path / "replay")


def test_state_dict_resumes_rng_exactly():
    buf, _ = filled(True)
    state = buf.state_dict()
    first = [buf.sample(16, beta=0.5).action.clone() for _ in range(3)]
    buf.load_state_dict(state)
    again = [buf.sample(16, beta=0.5).action.clone() for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])


# ----------------------------------------------------------------------------- sizes, errors


def test_projected_bytes_fit_dopamine_atari():
    atari = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert ReplayBuffer.projected_bytes(1_000_000, atari, 4) <= 7.5e9
    assert ReplayBuffer.projected_bytes(1_000_000, atari, 4) >= 1_000_000 * 84 * 84
    buf = ReplayBuffer(ReplayConfig(capacity=4096, prioritized=True), atari, 8, frame_stack=4)
    assert buf.memory_bytes() == ReplayBuffer.projected_bytes(4096, atari, 4)
    assert make_buffer().memory_bytes() < make_buffer(prioritized=True).memory_bytes()


def test_bad_inputs():
    with pytest.raises(UserError, match="too small"):
        make_buffer(stack=4, n=3, slots=9)
    with pytest.raises(UserError, match="leading axis"):
        ReplayBuffer(ReplayConfig(capacity=100), spaces.Box(0, 255, (84, 84, 4), np.uint8), 1, frame_stack=4)
    with pytest.raises(UserError, match="priority_eps"):
        ReplayBuffer(ReplayConfig(capacity=100, prioritized=True, priority_eps=0.0), space_for(1, False), 1)
    buf = make_buffer()
    with pytest.raises(RuntimeError, match="no complete transition"):
        buf.sample(2)
    obs = np.ones((2, *FRAME), np.uint8)
    with pytest.raises(ValueError, match="final_obs"):
        buf.add(obs, [0, 0], [0, 0], [True, False], [False, False])


# ----------------------------------------------------------------------------- device-resident storage


def _resident_pair(prioritized, stack, n, envs, slots, dict_obs, seed, storage_device="cpu"):
    cfg = ReplayConfig(capacity=envs * slots, prioritized=prioritized)
    space = space_for(stack, dict_obs)
    host = ReplayBuffer(cfg, space, envs, frame_stack=stack, n_step=n, gamma=0.9, seed=seed)
    dev = ReplayBuffer(cfg, space, envs, frame_stack=stack, n_step=n, gamma=0.9, seed=seed, storage_device=storage_device)
    return host, dev


def _batch_tensors(b) -> list[torch.Tensor]:
    parts = []
    for x in (b.obs, b.next_obs):
        parts += [x[k] for k in sorted(x)] if isinstance(x, dict) else [x]
    return [t.cpu().clone() for t in (*parts, b.action, b.reward, b.discount, b.weights, b.indices)]


def host_batch_at(host: ReplayBuffer, indices: torch.Tensor, beta: float) -> Batch:
    """The host buffer's batch at given transition ids: what its sample() returns when it draws them."""
    idx = indices.cpu()
    assert bool(host._storage.valid.reshape(-1)[idx].all()), "a sampled transition is not sampleable"
    out, fields = host._out_buffers(idx.numel())
    out[3].copy_(idx)
    ops._gather_into(host._frame_list, host._state, out, host.frame_stack, host.n_step, host.gamma, host._window)
    if host.cfg.prioritized:
        out[4].copy_(ops.per_weights(host._priority.sum_tree, host._priority.min_tree, idx, beta))
    return Batch(**fields)


def sample_both(host: ReplayBuffer, dev: ReplayBuffer, batch: int = 17) -> tuple[Batch, Batch]:
    """One batch from each buffer at the same generator state; they must be equal.

    A CUDA generator draws other numbers than a CPU one at the same seed, so a CUDA buffer's
    batch is checked against the host buffer's data at the transitions the device drew."""
    if dev.device.type == "cuda":
        bd = dev.sample(batch, beta=0.5)
        bh = host_batch_at(host, bd.indices, beta=0.5)
    else:
        bh, bd = host.sample(batch, beta=0.5), dev.sample(batch, beta=0.5)
    for a, b in zip(_batch_tensors(bh), _batch_tensors(bd)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    return bh, bd


@settings(max_examples=20, deadline=None)
@given(prioritized=st.booleans(), stack=st.sampled_from([1, 2, 4]), n=st.sampled_from([1, 3]), envs=st.integers(1, 3),
       extra=st.integers(0, 10), dict_obs=st.booleans(), seed=st.integers(0, 2**16))
def test_device_storage_matches_host_storage(prioritized, stack, n, envs, extra, dict_obs, seed):
    """storage_device keeps frames, mirrored fields and trees in device tensors; on the CPU
    "device" it must give exactly the host buffer's batches (same seed) through wrap-around,
    episode ends and priority updates."""
    slots = stack + n + 3 + extra
    host, dev = _resident_pair(prioritized, stack, n, envs, slots, dict_obs, seed)
    sims = [Sim(b, seed=seed, p_term=0.1, p_trunc=0.05, dict_obs=dict_obs) for b in (host, dev)]
    rng = np.random.default_rng(seed)
    for round_ in range(6):
        k = int(rng.integers(1, 2 * slots))
        for sim in sims:
            sim.step(k)
        assert len(host) == len(dev)
        if len(host) == 0:
            continue
        bh, bd = sample_both(host, dev)
        if prioritized:
            td = torch.tensor(rng.random(17) * 3)
            host.update_priorities(bh.indices, td)
            dev.update_priorities(bd.indices, td)
            torch.testing.assert_close(dev._resident.sum_tree.cpu(), host._priority.sum_tree, rtol=1e-9, atol=1e-9)
            assert torch.equal(dev._resident.min_tree.cpu(), host._priority.min_tree)
