"""Short DQN runs whose every loss is recorded, to the bit, per platform: the reference that keeps
DQN's behaviour fixed through refactors of the online loop (tests/test_dqn_reference.py).

The bits depend on the float kernels as well as on the code: torch's ATen kernels (chosen by
`torch.backends.cpu.get_cpu_capability()`, overridable with ATEN_CPU_CAPABILITY), and MKL's GEMM
code path, which MKL picks from the CPU's vendor and ISA (overridable with MKL_CBWR): the AVX512
machine of db944f4 and an AMD EPYC AVX512 machine, same torch and numpy, give different bits. So
dqn_reference.json holds one entry per platform key (`platform_key()`: torch, numpy, ATen
capability and a hash of what the float kernels give on fixed inputs, `kernel_probe()`), each
recorded at a commit known not to change DQN's arithmetic, and the test compares exactly when its platform has an entry and with tolerances
(`TOLERANCE`) against the nearest entry otherwise.

    python tests/data/dqn_reference.py            # record this platform into dqn_reference.json
    python tests/data/dqn_reference.py --merge    # merge dqn_reference.pending.json (written by
                                                  # the test on an unknown platform) into it

Record or merge only at a commit known not to change DQN's behaviour, and say so in the commit.
To record a second platform on one machine, force other kernels in a fresh process, e.g.
`ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE python tests/data/dqn_reference.py`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
REFERENCE_FILE = HERE / "dqn_reference.json"
PENDING_FILE = HERE / "dqn_reference.pending.json"

CASES = {
    # preset, env, overrides: CartPole with n-step, prioritized replay, double DQN, 4 envs. Chaotic
    # across float kernels: epsilon is still 0.77 at the end, so a last-bit difference in Q flips a
    # greedy action, and the trajectories part after ~30 updates (measured: the AMD and Intel
    # AVX512 entries differ by 1e-2 at update 33 and by O(1) later). Exact check only.
    "cartpole": ("dqn-classic", "CartPole-v1", ["train.total_steps=2400", "train.num_envs=4", "agent.learning_starts=400",
                                                "agent.n_step=3", "agent.double=true", "replay.prioritized=true",
                                                "train.eval_every=1200", "train.eval_episodes=2"]),
    # MinAtar with GMP pruning, NaP norms + projection, a task switch (replay reset, exploration restart).
    # Epsilon stays near 1 (it decays over 100k steps), so the data do not depend on Q: stable.
    "minatar-seq": ("dqn-minatar", "minatar:breakout", [
        "train.tasks=minatar:breakout,minatar:space_invaders", "train.steps_per_task=1200", "agent.learning_starts=300",
        "agent.gmp.sparsity=0.8", "agent.gmp.update_freq=50", "nap.norm=layer", "nap.project=true",
        "train.eval_episodes=2"]),
    # The CartPole case's n-step double DQN arithmetic with exploration pinned at epsilon 1 and
    # uniform replay: neither the actions nor the sampled indices depend on float values, which
    # makes the run stable under float-kernel noise and comparable with tolerances across
    # platforms. (With prioritized replay it is not: the sum tree picks another index once a
    # priority moves by a last bit, and the runs part after ~30 updates, measured.)
    "cartpole-explore": ("dqn-classic", "CartPole-v1", [
        "train.total_steps=2400", "train.num_envs=4", "agent.learning_starts=400", "agent.n_step=3",
        "agent.double=true", "replay.prioritized=false", "agent.epsilon_start=1.0", "agent.epsilon_end=1.0",
        "train.eval_every=0", "train.eval_episodes=1"]),
}
CHAOTIC = {"cartpole"}  # compared exactly only; under tolerance, only their first update and length

# Tolerances for a platform without an entry of its own (see the test module for the numbers
# they were set from): float-kernel noise between recorded platforms stays below 1e-4 relative
# on every loss of the stable cases; a 1e-3 change of one hyperparameter moves them by far more.
TOLERANCE = {"loss_rtol": 1e-3, "weight_rtol": 1e-3}


def run_case(name: str, run_dir: Path) -> dict:
    import torch

    from rlsuite import config
    from rlsuite.agents.dqn import DQN
    from rlsuite.loops.train import train

    preset, env, overrides = CASES[name]
    cfg = config.build_run_config(preset, env, overrides + ["train.torch_threads=1", "train.progress=false",
                                                            "train.diagnostics_every=0"])
    losses: list[float] = []
    original = DQN.update

    def recording(self, batch, buffer=None):
        metrics = original(self, batch, buffer)
        losses.append(float(metrics["losses/td"]))
        return metrics

    DQN.update = recording
    try:
        train(cfg, run_dir)
    finally:
        DQN.update = original
    ckpt = torch.load(next((run_dir / "checkpoints").glob("ckpt_*.pt")), weights_only=False)
    online = ckpt["agent"]["online"]
    digest = hashlib.sha256()
    for key, value in sorted(online.items()):
        digest.update(key.encode())
        digest.update(value.cpu().contiguous().numpy().tobytes())
    return {"losses": [float.hex(x) for x in losses], "online_sha256": digest.hexdigest(),
            "online_stats": weight_stats(online)}


def weight_stats(state: dict) -> dict:
    """Per-tensor fingerprints for a tolerance comparison of the final weights: the L2 norm and the
    projections on two fixed random directions (numpy's PCG64 stream, the same on every platform),
    in float64. Two states with ||a - b|| = d differ by at most d in each projection."""
    import numpy as np

    out = {}
    for key, value in sorted(state.items()):
        if not hasattr(value, "dtype") or not value.dtype.is_floating_point:
            continue
        w = value.detach().cpu().double().reshape(-1).numpy()
        directions = np.random.default_rng(0).standard_normal((2, w.size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        out[key] = [float(np.linalg.norm(w)), *map(float, directions @ w)]
    return out


def platform() -> dict:
    """What the bits depend on besides the code (see the module docstring)."""
    import numpy
    import torch

    info = {"torch": torch.__version__, "numpy": numpy.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "kernels": kernel_probe(),
            "cpu_vendor": cpu_vendor()}
    if os.environ.get("MKL_CBWR"):
        info["mkl_cbwr"] = os.environ["MKL_CBWR"]
    return info


def kernel_probe() -> str:
    """A hash of the bits that this process's float kernels give on fixed inputs, single-threaded
    as the cases run: the ops DQN's networks use (linear layers through MKL's sgemm, a conv
    through oneDNN, row sums, layer norm). MKL picks its GEMM code path from the CPU's vendor and
    ISA, which `get_cpu_capability()` does not show: on one AMD EPYC with torch 2.13.0+cpu the
    hash is the same under ATen AVX512 and AVX2 (and the cases' bits are too), and changes under
    ATEN_CPU_CAPABILITY=default or MKL_CBWR=COMPATIBLE (as the cases' bits do)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)

        def t(*shape):
            return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

        x, w1, w2 = t(64, 4), t(256, 4), t(256, 256)
        h = F.linear(torch.relu(F.linear(x, w1, t(256))), w2, t(256))
        c = F.conv2d(t(32, 4, 10, 10), t(16, 4, 3, 3), t(16))
        digest = hashlib.sha256()
        for out in (h, h.sum(1), F.layer_norm(h, (256,)), c, c.sum((1, 2, 3)), h.t() @ h):
            digest.update(out.contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]
    finally:
        torch.set_num_threads(threads)


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD), else the machine name (for the record only)."""
    import platform as _platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine() or "unknown"


def platform_key(info: dict) -> str:
    """torch, numpy, ATen capability and the kernel probe: what selects an exact entry."""
    return "_".join([f"torch-{info['torch']}", f"numpy-{info['numpy']}", info["cpu_capability"],
                     f"kernels-{info.get('kernels') or 'unrecorded'}"])


def load(path: Path = REFERENCE_FILE) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"references": {}}


def nearest(references: dict, info: dict) -> tuple[str, dict]:
    """The recorded entry sharing the most of `info`'s fields (torch first), preferring entries
    that hold every case and weight fingerprints."""
    order = ["torch", "numpy", "kernels", "cpu_capability", "cpu_vendor"]

    def score(item):
        got = item[1]["platform"]
        same = tuple(got.get(f) == info.get(f) for f in order)
        complete = all("online_stats" in got_case for got_case in item[1]["cases"].values())
        return (*same, len(item[1]["cases"]), complete)

    return max(references.items(), key=score)


def compare_tolerant(name: str, got: dict, want: dict) -> list[str]:
    """Problems found comparing a run with another platform's record of it within TOLERANCE."""
    problems = []
    g = [float.fromhex(x) for x in got["losses"]]
    w = [float.fromhex(x) for x in want["losses"]]
    if len(g) != len(w):
        return [f"{len(g)} updates, recorded {len(w)}"]
    compared = g[:1] if name in CHAOTIC else g
    for i, (a, b) in enumerate(zip(compared, w)):
        if not math.isfinite(a) or abs(a - b) > TOLERANCE["loss_rtol"] * abs(b):
            problems.append(f"update {i}: loss {a!r} vs recorded {b!r} (relative {abs(a - b) / abs(b):.2e}, "
                            f"tolerance {TOLERANCE['loss_rtol']:g})")
            break
    if name not in CHAOTIC and "online_stats" in want and "online_stats" in got:
        for key, ref in want["online_stats"].items():
            now = got["online_stats"].get(key)
            scale = TOLERANCE["weight_rtol"] * ref[0]
            if now is None or any(abs(a - b) > scale for a, b in zip(now, ref)):
                problems.append(f"final weights {key}: (norm, projections) {now} vs recorded {ref} "
                                f"(tolerance {TOLERANCE['weight_rtol']:g} x norm)")
                break
    return problems


def max_relative_loss_difference(got: dict, want: dict) -> float:
    g = [float.fromhex(x) for x in got["losses"]]
    w = [float.fromhex(x) for x in want["losses"]]
    return max(abs(a - b) / abs(b) for a, b in zip(g, w))


def record(provenance: str) -> dict:
    info = platform()
    entry = {"platform": info, "provenance": provenance, "cases": {}}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            entry["cases"][name] = run_case(name, Path(tmp) / name)
        print(name, len(entry["cases"][name]["losses"]), "updates",
              entry["cases"][name]["online_sha256"][:16], file=sys.stderr)
    return entry


def save(data: dict, path: Path = REFERENCE_FILE) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    data = load()
    if sys.argv[1:] == ["--merge"]:
        pending = load(PENDING_FILE)["references"]
        data["references"].update(pending)
        print("merged", ", ".join(pending), file=sys.stderr)
    else:
        note = " ".join(sys.argv[1:]) or "recorded with python tests/data/dqn_reference.py"
        data["references"][platform_key(platform())] = record(note)
    save(data)
