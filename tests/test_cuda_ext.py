"""CUDA side of the native kernels: compile checks where nvcc exists (also with a CPU-only torch),
and each CUDA operator against its pure-torch reference when a GPU is present."""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils import cpp_extension

from rlsuite import native
from rlsuite.replay import ops

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "cuda_ext").glob("*.cu"))
NVCC = shutil.which("nvcc") or (cpp_extension.CUDA_HOME and shutil.which(str(Path(cpp_extension.CUDA_HOME) / "bin" / "nvcc")))


def test_every_kernel_family_has_cuda_sources():
    """The compile check below globs cuda_ext/*.cu: make sure it really sees each family."""
    assert {p.name for p in SOURCES} >= {"gather_cuda.cu", "trees_cuda.cu", "storage_cuda.cu"}


def test_sources_have_distinct_object_names():
    """BuildExtension names each object after its source's stem: gather.cpp and gather.cu would
    both become gather.o, and ninja refuses the CUDA build (seen on the first GPU build)."""
    stems = [p.stem for p in (ROOT / "cuda_ext").iterdir() if p.suffix in (".cpp", ".cu")]
    assert len(stems) == len(set(stems)), sorted(stems)


@pytest.mark.skipif(not NVCC, reason="nvcc not found")
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_cu_sources_compile(source, tmp_path):
    """Device code includes no torch header, so it compiles against the CUDA toolkit alone."""
    cmd = [NVCC, "-std=c++17", "-O1", "-c", str(source), "-o", str(tmp_path / "x.o"), f"-I{ROOT / 'cuda_ext'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]


def _cuda_include() -> Path | None:
    if not NVCC:
        return None
    # nvcc may be a wrapper script: ask it where its toolkit is (the TOP of `nvcc -v`).
    probe = subprocess.run([NVCC, "-v", "-E", "-x", "cu", "/dev/null", "-o", "/dev/null"],
                           capture_output=True, text=True).stderr
    tops = [line.split("=", 1)[1] for line in probe.splitlines() if line.startswith("#$ TOP=")]
    home = Path(tops[0]).resolve() if tops else Path(NVCC).resolve().parents[1]
    for inc in (home / "include", home / "targets" / "x86_64-linux" / "include"):
        if (inc / "cuda_runtime.h").exists():
            return inc
    return None


@pytest.mark.skipif(_cuda_include() is None or not shutil.which("g++"), reason="no CUDA headers or g++")
def test_cuda_glue_compiles(tmp_path):
    """The torch glue of the CUDA kernels, syntax-checked with g++. A CPU-only torch lacks the one
    generated header c10/cuda/impl/cuda_cmake_macros.h; an empty stand-in is enough for a check."""
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
    includes = [f"-I{p}" for p in [tmp_path, *cpp_extension.include_paths(), _cuda_include()]]
    cmd = ["g++", "-std=c++17", "-fsyntax-only", "-DRLSUITE_WITH_CUDA", *includes, str(ROOT / "cuda_ext" / "cuda_glue.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]


gpu = pytest.mark.skipif(not (torch.cuda.is_available() and native.has_cuda_kernels()),
                         reason="needs a GPU and rlsuite._C built with CUDA")
N = torch.ops.rlsuite


@gpu
@pytest.mark.parametrize("seed", range(5))
def test_cuda_trees_match_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    values = torch.tensor(rng.random(n) * (rng.random(n) > 0.3))
    size = ops.tree_size(n)
    s, m = torch.zeros(size, dtype=torch.float64), torch.full((size,), math.inf, dtype=torch.float64)
    idx = torch.tensor(rng.integers(0, n, 3 * n))  # many duplicates: the last one wins
    vals = torch.tensor(rng.random(3 * n))
    ops.sum_tree_update(s, idx, vals)
    ops.min_tree_update(m, idx, vals)
    sg, mg = torch.zeros(size, dtype=torch.float64, device="cuda"), torch.full((size,), math.inf, dtype=torch.float64, device="cuda")
    N.tree_update_(sg, idx.cuda(), vals.cuda(), False)
    N.tree_update_(mg, idx.cuda(), vals.cuda(), True)
    torch.testing.assert_close(sg.cpu(), s, rtol=1e-12, atol=1e-12)
    assert torch.equal(mg.cpu(), m)
    prefix = torch.tensor(rng.random(256)) * s[0]
    assert torch.equal(N.tree_search(sg, prefix.cuda()).cpu(), ops.sum_tree_search(sg.cpu(), prefix))
    u = torch.tensor(rng.random(256))
    i, w = N.per_sample(sg, mg, u.cuda(), 0.5)
    i_ref, w_ref = ops.per_sample(sg.cpu(), mg.cpu(), u, 0.5)
    assert torch.equal(i.cpu(), i_ref)
    torch.testing.assert_close(w.cpu(), w_ref, rtol=1e-6, atol=0)


def _priority_trees(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum- and min-trees over `values` as the buffer keeps them (+inf min leaves where 0)."""
    size, idx = ops.tree_size(len(values)), torch.arange(len(values))
    s, m = torch.zeros(size, dtype=torch.float64), torch.full((size,), math.inf, dtype=torch.float64)
    ops.sum_tree_update(s, idx, torch.tensor(values))
    ops.min_tree_update(m, idx, torch.tensor(np.where(values > 0, values, math.inf)))
    return s, m


@gpu
@pytest.mark.parametrize("alpha", [0.5, 0.6, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_cuda_per_update_matches_reference(seed, alpha):
    """per_update_ on CUDA: many duplicate slots (the last call wins), zero TD errors, zero
    (unsampleable) leaves, and calls to slots that are no longer valid."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = rng.random(n) * (rng.random(n) > 0.3)  # zero priorities where no transition starts
    valid = torch.tensor(values > 0) & torch.tensor(rng.random(n) > 0.2)
    calls = int(rng.integers(1, 3 * n + 2))
    idx = torch.tensor(rng.integers(0, n, calls))
    td = torch.tensor(rng.normal(size=calls) * (rng.random(calls) > 0.2), dtype=torch.float32)
    s, m = _priority_trees(values)
    runs = []
    for _ in range(2):  # parallel writes, yet every run gives the same trees bit for bit
        sg, mg = (t.cuda() for t in _priority_trees(values))
        best = N.per_update_(sg, mg, idx.cuda(), td.cuda(), valid.cuda(), alpha, 1e-6)
        runs.append((sg.cpu(), mg.cpu(), best))
    best_ref = ops.per_update(s, m, idx, td, valid, alpha, 1e-6)
    sg, mg, best = runs[0]
    assert best == pytest.approx(best_ref, rel=1e-12) or best == best_ref == -math.inf
    torch.testing.assert_close(sg, s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mg, m, rtol=1e-12, atol=0)  # torch's CPU pow/sqrt may differ by an ulp
    assert torch.equal(runs[1][0], sg) and torch.equal(runs[1][1], mg) and runs[1][2] == best


@gpu
def test_cuda_per_update_rejects_bad_slots_and_changes_nothing():
    s = torch.zeros(ops.tree_size(40), dtype=torch.float64, device="cuda")
    m = torch.full_like(s, math.inf)
    valid = torch.ones(40, dtype=torch.bool, device="cuda")
    for bad in (40, -1):
        with pytest.raises(RuntimeError, match="out of range"):
            N.per_update_(s, m, torch.tensor([3, bad], device="cuda"), torch.ones(2, device="cuda"), valid, 0.5, 1e-6)
        assert not s.any() and bool(torch.isinf(m).all())
    assert N.per_update_(s, m, torch.zeros(0, dtype=torch.int64, device="cuda"), torch.zeros(0, device="cuda"), valid,
                         0.5, 1e-6) == -math.inf


@gpu
@pytest.mark.parametrize("seed", range(4))
def test_cuda_stream_add_matches_reference_storage(seed):
    """stream_add on CUDA tensors (write + validity refresh + priority follow-up) against the
    numpy reference storage, through wrap-around and episode ends."""
    from rlsuite.replay.storage import StreamStorage
    from rlsuite.replay.sumtree import PrioritySampler

    rng = np.random.default_rng(seed)
    envs, stack, n = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    slots, p_end = stack + n + 3 + int(rng.integers(0, 12)), [0.0, 0.1, 0.5][seed % 3]
    spec = {"x": ((2, 3), torch.uint8), "y": ((), torch.int64)}
    with native.use_native(False):
        ref, prio = StreamStorage(spec, envs, slots, stack, n), PrioritySampler(envs * slots, 0.5, 1e-6)
    frames = {k: torch.zeros(envs, slots, *shape, dtype=dtype, device="cuda") for k, (shape, dtype) in spec.items()}
    fields = {name: torch.zeros(envs, slots, dtype=getattr(ref, name).dtype, device="cuda")
              for name in ("action", "reward", "first", "terminated", "truncated", "final", "valid")}
    cursor = torch.zeros(envs, dtype=torch.int64, device="cuda")
    new_episode = torch.ones(envs, dtype=torch.bool, device="cuda")
    num_valid = torch.zeros(1, dtype=torch.int64, device="cuda")
    s, m = prio.sum_tree.cuda(), prio.min_tree.cuda()
    for step in range(int(rng.integers(1, 120))):
        obs = {"x": rng.integers(0, 255, (envs, 2, 3), dtype=np.uint8), "y": rng.integers(-9, 9, envs)}
        final = {"x": rng.integers(0, 255, (envs, 2, 3), dtype=np.uint8), "y": rng.integers(-9, 9, envs)}
        term, trunc = rng.random(envs) < p_end / 2, rng.random(envs) < p_end / 2
        action, reward = rng.integers(0, 5, envs), rng.normal(size=envs).astype(np.float32)
        prio.max_priority = 1.0 + step  # new slots must take the current max
        with native.use_native(False):
            ref.write(obs, action, reward, term, trunc, final, prio)
        f = fields
        N.stream_add(list(frames.values()), [torch.from_numpy(obs[k]) for k in spec],
                     [torch.from_numpy(final[k]) for k in spec], f["action"], f["reward"], f["first"], f["terminated"],
                     f["truncated"], f["final"], f["valid"], cursor, new_episode, num_valid, torch.from_numpy(action),
                     torch.from_numpy(reward), torch.from_numpy(term), torch.from_numpy(trunc), stack, n, s, m,
                     prio.max_priority)
    for key in spec:
        assert torch.equal(frames[key].cpu(), ref.frames[key]), key
    for name, value in fields.items():
        assert torch.equal(value.cpu(), getattr(ref, name)), name
    assert cursor.tolist() == ref.cursor.tolist() and new_episode.tolist() == ref.new_episode.tolist()
    assert int(num_valid) == ref.num_valid
    torch.testing.assert_close(s.cpu(), prio.sum_tree, rtol=1e-12, atol=1e-12)
    assert torch.equal(m.cpu(), prio.min_tree)


@gpu
@pytest.mark.parametrize("seed", range(5))
def test_cuda_gathers_match_reference(seed):
    rng = np.random.default_rng(seed)
    envs, slots, stack, n = 3, int(rng.integers(8, 40)), 4, int(rng.integers(1, 4))
    frames = torch.tensor(rng.integers(0, 255, (envs, slots, 84, 84)), dtype=torch.uint8)
    first, ended, final = (torch.tensor(rng.random((envs, slots)) < 0.15) for _ in range(3))
    reward = torch.tensor(rng.normal(size=(envs, slots)), dtype=torch.float32)
    t, env = torch.tensor(rng.integers(0, slots, 64)), torch.tensor(rng.integers(0, envs, 64))
    g = [x.cuda() for x in (frames, first, t, env)]
    out = torch.empty(64, stack + n, 84, 84, dtype=torch.uint8, device="cuda")
    N.frame_window_gather(*g, stack, n, out)
    assert torch.equal(out.cpu(), ops.frame_window_gather(frames, first, t, env, stack, n))
    got = N.nstep_returns(reward.cuda(), ended.cuda(), final.cuda(), t.cuda(), env.cuda(), n, 0.99)
    want = ops.nstep_returns(reward, ended, final, t, env, n, 0.99)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-6)
    action, step = torch.tensor(rng.integers(0, 9, (envs, slots))), torch.tensor(rng.integers(0, 99, (envs, slots)))
    obs = torch.empty(64, 6, 84, 84, dtype=torch.uint8, device="cuda")
    got = (obs, *N.sequence_gather(frames.cuda(), action.cuda(), reward.cuda(), step.cuda(), ended.cuda(), final.cuda(),
                                   t.cuda(), env.cuda(), 6, obs))
    for a, b in zip(got, ops.sequence_gather(frames, action, reward, step, ended, final, t, env, 6)):
        assert torch.equal(a.cpu(), b)


@gpu
@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_cuda_fused_sample_ops_match_reference(prioritized, seed):
    """sample_uniform / sample_per on CUDA tensors against their references run on the same CUDA
    tensors and generator seed; gather_transitions on CUDA against the CPU reference."""
    from tests.test_replay import Sim, make_buffer

    with native.use_native(False):
        buf = make_buffer(stack=4, n=1 + seed % 2, envs=3, slots=40, seed=seed, prioritized=prioritized)
        Sim(buf, seed=seed, p_term=0.05, p_trunc=0.05).step(90)
    frames = [f.cuda() for f in buf._storage._frame_list]
    state = [s.cuda() for s in buf._state]
    results = []
    for fn in ((N.sample_per, ops.sample_per) if prioritized else (N.sample_uniform, ops.sample_uniform)):
        out = [t.cuda() for t in buf._out_buffers(64)[0]]
        gen = torch.Generator(device="cuda").manual_seed(seed)
        fn(frames, state, out, gen, *((0.5,) if prioritized else ()), buf.frame_stack, buf.n_step, buf.gamma, buf._window)
        results.append([t.cpu() for t in out])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    gidx = results[0][3]
    cpu = [torch.zeros_like(t) for t in results[0]]
    keys = len(frames)
    ops.gather_transitions(buf._storage._frame_list, *buf._state[:5], gidx, buf.frame_stack, buf.n_step, buf.gamma,
                           buf._window, cpu[5:5 + keys], cpu[5 + keys:], cpu[0], cpu[1], cpu[2])
    for got, want in zip(results[0][:3] + results[0][5:], cpu[:3] + cpu[5:]):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@gpu
@pytest.mark.parametrize("prioritized", [False, True])
def test_gpu_resident_buffer_matches_host(prioritized):
    """storage_device="cuda": frames, fields and trees in GPU memory; each sampled batch equals
    the host buffer's gather of the same indices, and priorities follow the host trees."""
    from tests.test_replay import Sim, _resident_pair

    host, dev = _resident_pair(prioritized, 4, 1, 3, 30, False, 0, storage_device="cuda")
    sims = [Sim(b, seed=3, p_term=0.05, p_trunc=0.05) for b in (host, dev)]
    for _ in range(5):
        for sim in sims:
            sim.step(25)
        b = dev.sample(64, beta=0.5)
        assert b.obs.is_cuda and b.indices.is_cuda
        idx = b.indices.cpu()
        assert bool(host._storage.valid.view(-1)[idx].all())
        st = host._storage
        want = [torch.zeros(64, 5, *b.obs.shape[2:], dtype=torch.uint8), torch.zeros(64, dtype=torch.int64),
                torch.zeros(64), torch.zeros(64)]
        ops.gather_transitions(st._frame_list, st.first, st.action, st.reward, st.terminated, st.truncated, idx, 4, 1,
                               0.9, True, [want[0]], [], want[1], want[2], want[3])
        assert torch.equal(b.obs.cpu(), want[0][:, :4]) and torch.equal(b.next_obs.cpu(), want[0][:, 1:])
        assert torch.equal(b.action.cpu(), want[1])
        torch.testing.assert_close(b.reward.cpu(), want[2])
        if prioritized:
            td = torch.rand(64, dtype=torch.float64)
            dev.update_priorities(b.indices, td.cuda())
            host.update_priorities(idx, td)
            torch.testing.assert_close(dev._resident.sum_tree.cpu(), host._priority.sum_tree, rtol=1e-9, atol=1e-9)


@gpu
def test_gpu_resident_sampling_rate():
    """The GPU target: >= 1M samples/s at batch 256 from a 1M-transition buffer in GPU memory."""
    import time

    from gymnasium import spaces

    from rlsuite.replay import ReplayBuffer, ReplayConfig

    space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buf = ReplayBuffer(ReplayConfig(capacity=1_000_000), space, 8, frame_stack=4, storage_device="cuda")
    obs = np.random.default_rng(0).integers(0, 255, (8, 4, 84, 84), dtype=np.uint8)
    zeros = np.zeros(8, bool)
    for _ in range(1_000_000 // 8 + 100):  # fill and wrap the ring
        buf.add(obs, np.zeros(8, np.int64), np.zeros(8, np.float32), zeros, zeros)
    for _ in range(10):
        buf.sample(256)
    torch.cuda.synchronize()
    start, calls = time.perf_counter(), 200
    for _ in range(calls):
        buf.sample(256)
    torch.cuda.synchronize()
    rate = calls * 256 / (time.perf_counter() - start)
    print(f"GPU-resident uniform sample, batch 256: {rate / 1e3:.0f}k samples/s")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("prioritized", [False, True])
def test_dqn_trains_from_a_gpu_resident_buffer(tmp_path, prioritized):
    """The whole buffer in GPU memory feeds a CUDA learner; losses stay finite and learn."""
    from rlsuite import config
    from rlsuite.loops.online import advance, build_session

    overrides = ["train.device=cuda", "replay.on_device=true", f"replay.prioritized={str(prioritized).lower()}",
                 "agent.learning_starts=200", "replay.capacity=5000", "train.progress=false"]
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", overrides)
    session = build_session(cfg, tmp_path)
    session.obs, _ = session.env.reset(seed=0)
    losses = []
    while session.step < 3000:
        result = advance(session)
        if result.metrics is not None:
            losses.append(float(result.metrics["losses/td"]))
    batch = session.buffer.sample(32)
    assert batch.obs.device.type == "cuda" and batch.reward.device.type == "cuda"
    assert len(losses) > 1000 and all(map(np.isfinite, losses))
