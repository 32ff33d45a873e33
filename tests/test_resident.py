"""Device-resident replay storage (``replay.on_device``, rlsuite/replay/resident.py): both write
paths against the host buffer, and save/load of a buffer held on a device.

On a machine without a GPU the CPU plays the device. The fused write path (one native
``stream_add`` on the device tensors, the default on CUDA) is forced on the CPU device here, where
it runs the CPU kernel, so everything but the CUDA kernel itself is exercised; the CUDA variants
skip without a GPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsuite.replay import ReplayBuffer, ReplayConfig, persist
from rlsuite.replay.resident import MIRRORED
from tests.test_replay import Sim, assert_same_batches, check_batch, sample_both, space_for

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def buffer(prioritized: bool, stack: int, n: int, envs: int, slots: int, dict_obs: bool, seed: int,
           device: str | None = None, fused: bool | None = None) -> ReplayBuffer:
    """A host buffer (device None) or one held on `device`, with its write path forced by `fused`."""
    cfg = ReplayConfig(capacity=envs * slots, prioritized=prioritized)
    buf = ReplayBuffer(cfg, space_for(stack, dict_obs), envs, frame_stack=stack, n_step=n, gamma=0.9, seed=seed,
                       storage_device=device)
    if fused is not None:
        buf._resident.fused = fused
    return buf


class Tee:
    """Feeds one Sim's steps to several buffers (Sim reads its shape from the first)."""

    def __init__(self, *buffers: ReplayBuffer) -> None:
        self.buffers = buffers

    def __getattr__(self, name):
        return getattr(self.buffers[0], name)

    def add(self, *args) -> None:
        for b in self.buffers:
            b.add(*args)


def assert_mirrors_host(dev: ReplayBuffer, host: ReplayBuffer) -> None:
    """Every device tensor equals the host buffer's: frames, per-slot fields, trees."""
    res, st_ = dev._resident, host._storage
    for key, frames in res.frames.items():
        assert torch.equal(frames.cpu(), st_.frames[key]), key
    for name in MIRRORED:
        assert torch.equal(res.fields[name].cpu(), getattr(st_, name)), name
    if host.cfg.prioritized:
        torch.testing.assert_close(res.sum_tree.cpu(), host._priority.sum_tree, rtol=1e-12, atol=1e-12)
        assert torch.equal(res.min_tree.cpu(), host._priority.min_tree)
        assert res.max_priority == host._priority.max_priority


def fused_available(device: str) -> bool:
    probe = torch.empty(0, dtype=torch.bool, device=device)
    from rlsuite.replay import kernels

    return kernels.has_native(probe, "stream_add")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False])
@settings(max_examples=15, deadline=None)
@given(prioritized=st.booleans(), stack=st.sampled_from([1, 2, 4]), n=st.sampled_from([1, 3]), envs=st.integers(1, 3),
       extra=st.integers(0, 10), dict_obs=st.booleans(), seed=st.integers(0, 2**16))
def test_write_paths_mirror_the_host_buffer(device, fused, prioritized, stack, n, envs, extra, dict_obs, seed):
    """Fused (one stream_add on the device tensors) and mirrored writes leave every device tensor
    equal to the host buffer's, through wrap-around, episode ends and priority updates."""
    slots = stack + n + 3 + extra
    host = buffer(prioritized, stack, n, envs, slots, dict_obs, seed)
    dev = buffer(prioritized, stack, n, envs, slots, dict_obs, seed, device=device, fused=fused)
    sim = Sim(Tee(host, dev), seed=seed, p_term=0.1, p_trunc=0.05, dict_obs=dict_obs)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        sim.step(int(rng.integers(1, 2 * slots)))
        assert_mirrors_host(dev, host)
        assert len(dev) == len(host)
        if fused and fused_available(device):  # the kernel's own count agrees with the host's
            assert int(dev._resident._num_valid) == len(host)
        if len(host) == 0:
            continue
        bh, bd = sample_both(host, dev)
        if prioritized:
            td = torch.tensor(rng.random(17) * 3 * (rng.random(17) > 0.3))  # zero TD errors too
            host.update_priorities(bh.indices, td)
            dev.update_priorities(bd.indices, td.to(device))


def test_fused_path_is_the_default_only_on_cuda():
    assert not buffer(False, 1, 1, 2, 10, False, 0, device="cpu")._resident.fused
    if torch.cuda.is_available():
        assert buffer(False, 1, 1, 2, 10, False, 0, device="cuda")._resident.fused


# ----------------------------------------------------------------------------- save / load


def filled_pair(prioritized: bool, device: str, fused: bool, seed: int = 0):
    """A host buffer and a device buffer fed the same episodes (wrapped around), sampled alike
    and given the same priorities, so their states are equal."""
    shape = dict(stack=4, n=3, envs=3, slots=24, dict_obs=True, seed=seed)
    host = buffer(prioritized, **shape)
    dev = buffer(prioritized, **shape, device=device, fused=fused)
    sim = Sim(Tee(host, dev), seed, p_term=0.06, p_trunc=0.04, dict_obs=True)
    sim.step(50)
    batch = host.sample(32, beta=0.5)
    dev.sample(32, beta=0.5)  # keeps the generators in step (a CUDA one draws other indices)
    if prioritized:  # the host's draws for both, so the trees agree on any device
        td = torch.arange(32.0) % 5
        host.update_priorities(batch.indices, td)
        dev.update_priorities(batch.indices.to(dev.device), td.to(dev.device))
    return host, dev, sim, shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("prioritized", [False, True])
def test_device_buffer_save_load_round_trip(tmp_path, monkeypatch, device, fused, prioritized):
    """Fill, save, load into a fresh device buffer: same state, same tensors, same batches at the
    same generator state, and both keep working identically afterwards."""
    monkeypatch.setattr(persist, "CHUNK_BYTES", 500)  # force many chunks per field
    _, dev, sim, shape = filled_pair(prioritized, device, fused)
    dev.save(tmp_path / "replay")
    assert len(list((tmp_path / "replay").glob("frames.chars-*.npy"))) > 1
    other = buffer(prioritized, **{**shape, "seed": 99}, device=device, fused=fused)
    other.load(tmp_path / "replay")
    assert other.state_dict() == dev.state_dict() and len(other) == len(dev)
    for name, t in dev._persisted().items():
        assert torch.equal(t.cpu(), other._persisted()[name].cpu()), name
    for name in MIRRORED:
        assert torch.equal(other._resident.fields[name], dev._resident.fields[name]), name
    if prioritized:  # rebuilt from the leaves, node for node
        assert torch.equal(other._resident.sum_tree, dev._resident.sum_tree)
        assert torch.equal(other._resident.min_tree, dev._resident.min_tree)
        assert other._resident.max_priority == dev._resident.max_priority
    assert_same_batches(dev, other)
    sim.buf = Tee(dev, other)
    sim.step(30)  # wraps around again, episode ends, new max-priority slots
    assert_same_batches(dev, other)
    check_batch(sim, _on_host(other.sample(64)), sim.expected())


def _on_host(batch):
    for name, value in vars(batch).items():
        setattr(batch, name, {k: v.cpu() for k, v in value.items()} if isinstance(value, dict) else value.cpu())
    return batch


def _saved(directory) -> dict:
    files = {p.name: np.load(p) for p in sorted(directory.glob("*.npy"))}
    return {"meta": json.loads((directory / "meta.json").read_text()), "files": files}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("prioritized", [False, True])
def test_device_and_host_buffers_save_the_same_replay(tmp_path, fused, prioritized):
    """One on-disk format: a device buffer writes exactly the host buffer's files (CPU device, so
    the sampling generators match too), and each loads the other's save."""
    host, dev, _, shape = filled_pair(prioritized, "cpu", fused)
    host.save(tmp_path / "host")
    dev.save(tmp_path / "dev")
    a, b = _saved(tmp_path / "host"), _saved(tmp_path / "dev")
    assert a["meta"] == b["meta"] and a["files"].keys() == b["files"].keys()
    for name, x in a["files"].items():
        assert x.dtype == b["files"][name].dtype and np.array_equal(x, b["files"][name]), name
    dev_from_host = buffer(prioritized, **{**shape, "seed": 7}, device="cpu", fused=fused)
    dev_from_host.load(tmp_path / "host")
    host_from_dev = buffer(prioritized, **{**shape, "seed": 8})
    host_from_dev.load(tmp_path / "dev")
    assert_mirrors_host(dev_from_host, host)
    assert_same_batches(host, dev_from_host)
    assert_same_batches(dev, host_from_dev)


def test_device_buffer_load_errors_are_user_errors(tmp_path):
    from rlsuite.errors import UserError

    _, dev, _, shape = filled_pair(False, "cpu", True)
    dev.save(tmp_path / "replay")
    wrong = buffer(False, **{**shape, "slots": 25}, device="cpu")
    with pytest.raises(UserError, match="different shape"):
        wrong.load(tmp_path / "replay")
    chunk = next((tmp_path / "replay").glob("frames.chars-*.npy"))
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupt"):
        dev.load(tmp_path / "replay")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("prioritized", [False, True])
def test_cuda_buffer_saves_the_host_buffers_tensors(tmp_path, prioritized):
    """A buffer in GPU memory saves the same files as the host buffer fed alike; only the
    sampling generator's state differs (a CUDA generator's is not a CPU one's)."""
    host, dev, _, _ = filled_pair(prioritized, "cuda", True)
    host.save(tmp_path / "host")
    dev.save(tmp_path / "dev")
    a, b = _saved(tmp_path / "host"), _saved(tmp_path / "dev")
    assert a["files"].keys() == b["files"].keys()
    for name, x in a["files"].items():
        assert np.array_equal(x, b["files"][name]), name
    assert a["meta"]["layout"] == b["meta"]["layout"]
    for key in ("storage", "max_priority"):
        assert a["meta"]["state"][key] == b["meta"]["state"][key], key
