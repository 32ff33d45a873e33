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
    """The issue's GPU target: >= 1M samples/s at batch 256 from a 1M-transition buffer in GPU memory."""
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
    """Issue 3: the whole buffer in GPU memory feeds a CUDA learner; losses stay finite and learn."""
    from rlsuite import config
    from rlsuite.train import advance, build_session

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
