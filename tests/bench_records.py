"""What the `rlsuite bench dqn | ppo | dt` tests check in every record (shared by their test files)."""
from __future__ import annotations

from rlsuite.bench import modes


def cpuinfo_bf16_flags() -> list[str]:
    """The test's own reading of /proc/cpuinfo's bf16 flags (what the records must name)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.split(":")[0].strip() in ("flags", "Features")), "")
    flags = line.partition(":")[2].split()
    return [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def assert_names_its_measurement(r, impl, mode, device="cpu"):
    """Every record names implementation and mode, the four speed settings and the machine."""
    assert set(modes.RECORD_FIELDS) <= set(r), set(modes.RECORD_FIELDS) - set(r)
    assert (r["impl"], r["mode"], r["device"]) == (impl, mode, device)
    assert r["precision"] in ("fp32", "bf16") or r["requested"]["precision"] == r["precision"] == "auto"
    assert r["memory_format"] in ("contiguous", "channels_last", "auto")
    assert isinstance(r["compile"], bool) and isinstance(r["cudagraphs"], bool)
    assert r["torch_threads"] == r["settings"]["threads"] and r["cpu"]
    assert r["cpu_bf16_flags"] == cpuinfo_bf16_flags() and r["gpu"] is None
    if mode == "fp32":
        assert r["requested"] == modes.SPEED_FIELDS and r["precision"] == "fp32" and not r["compile"]
