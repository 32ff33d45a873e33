"""`rlsuite bench replay`: the records it prints, and the GPU-resident mode (`--device cuda`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from rlsuite.bench.replay import bench_replay

OPS = [("add", False, None), ("sample", False, 32), ("sample", False, 256),
       ("add", True, None), ("sample+update", True, 32), ("sample+update", True, 256)]


def _check_rows(rows: list[dict], device: str, capacity: int) -> None:
    assert [(r["op"], r["prioritized"], r["batch_size"]) for r in rows] == OPS
    for r in rows:
        assert r["storage_device"] == device and r["capacity"] == capacity and r["rate"] > 0
        # frames stored once: a transition costs about one 84x84 frame plus its fields
        assert 84 * 84 <= r["bytes_per_transition"] < 2 * 84 * 84


def test_cpu_records_through_the_cli():
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "replay", "--quick", "--capacity", "2000", "--seconds", "0.2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    native, reference = rows[: len(OPS)], rows[len(OPS):]
    assert {r["impl"] for r in reference} == {"rlsuite-reference"}
    _check_rows(native, "cpu", 2000)
    _check_rows(reference, "cpu", 2000)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error():
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "replay", "--device", "cuda"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a GPU" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_resident_records():
    rows = bench_replay(capacity=20_000, seconds=0.2, backends=("native",), device="cuda")
    assert {r["impl"] for r in rows} == {"rlsuite-native-cuda"}
    _check_rows(rows, "cuda", 20_000)


@pytest.mark.parametrize("what, flag", [("dqn", ["--device", "cuda"]), ("envs", ["--capacity", "1000"])])
def test_replay_only_options_on_other_benches_are_a_one_line_error(what, flag):
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", what, "--quick", *flag]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "apply to `rlsuite bench replay` only" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
