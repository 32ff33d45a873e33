"""The modes `rlsuite bench dqn | ppo | dt` run rlsuite in, and the machine a measurement ran on.

Each of those benches measures rlsuite in two modes beside its peer, all interleaved in fresh
processes (rlsuite-fp32, peer, rlsuite-fast, rlsuite-fp32, peer, ...):

- `fp32`: the run config's defaults (train.precision=fp32, memory_format=contiguous, no compile,
  no CUDA graphs): what every earlier bench measured;
- `fast`: the same run with the `--fast` config keys on top. Default `DEFAULT_FAST`
  (train.precision=auto, train.memory_format=auto), plus `CUDA_FAST` (train.compile=true,
  train.cudagraphs=true) with `--device cuda`. `--fast none` measures the fp32 mode only.

The peer always runs as its library ships it (fp32, eager). Every record names its
implementation and mode, the four speed settings (`precision`, `memory_format`, `compile`,
`cudagraphs`: what ran, 'auto' resolved where train() wrote its pick to <run>/speed.json;
`requested`: the config's values), and the machine (`machine`, one function for all benches):
device, torch threads, CPU model, the CPU's bf16-relevant flags, the GPU on CUDA.

Keys are checked before anything runs (`validate`: unknown keys, bad values and CUDA graphs
without CUDA are one line, exit 2). `rlsuite bench dt` calls the model directly, not train(), so
its fast mode is `direct_plan`, handed to the DT agent's own `accelerate` (rlsuite.run.speed), as
train() would.
"""
from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any, Callable

from rlsuite.errors import UserError
from rlsuite.run.speed import bf16_problem, cpu_flags

DEFAULT_FAST = ("train.precision=auto", "train.memory_format=auto")
CUDA_FAST = ("train.compile=true", "train.cudagraphs=true")
SPEED_FIELDS = {"precision": "fp32", "memory_format": "contiguous", "compile": False, "cudagraphs": False}
"""The train.* keys of a fast mode, and their fp32-mode (default) values: what a peer runs as."""
RECORD_FIELDS = ("impl", "mode", *SPEED_FIELDS, "requested", "device", "torch_threads", "cpu", "cpu_bf16_flags", "gpu")
"""What every record of `rlsuite bench dqn | ppo | dt` names about its measurement."""
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
"""/proc/cpuinfo flags that say whether a CPU has bf16 dot-product / matrix units."""
_KEY = re.compile(r"^\s*[A-Za-z_][\w.]*\s*=")


# ----------------------------------------------------------------------------- modes


def parse_fast(text: str | None, device: str = "cpu") -> tuple[str, ...]:
    """The fast mode's config assignments from `--fast`: None = the default for `device`, 'none' =
    no fast mode (empty), else 'key=value,key=value' (a value may hold commas: a piece without
    '=' continues the previous value, e.g. agent.encoder.hidden=64,64)."""
    if text is None:
        return DEFAULT_FAST + (CUDA_FAST if device == "cuda" else ())
    if text.strip().lower() == "none":
        return ()
    parts: list[str] = []
    for piece in text.split(","):
        if _KEY.match(piece):
            parts.append(piece.strip())
        elif parts and piece.strip():
            parts[-1] += "," + piece.strip()
        elif piece.strip() or not parts:
            raise UserError(f"bad --fast {text!r}: expected key=value[,key=value...] "
                            "(e.g. --fast train.precision=bf16,train.compile=true) or --fast none")
    return tuple(parts)


def modes(fast: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Mode name -> its extra config assignments: fp32 always, fast when `fast` has any."""
    return {"fp32": (), "fast": tuple(fast)} if fast else {"fp32": ()}


def order(peer: str, fast: tuple[str, ...]) -> list[tuple[str, str]]:
    """One repeat's (impl, mode) measurements, in the interleaved order."""
    return [("rlsuite", "fp32"), (peer, "fp32")] + ([("rlsuite", "fast")] if fast else [])


def validate(fast: tuple[str, ...], build: Callable[[tuple[str, ...]], Any], device: str = "cpu") -> None:
    """Refuse, before anything runs, fast keys the config does not accept (one line, exit 2):
    `build(fast)` builds the bench's rlsuite RunConfig with them (unknown keys, bad values raise)."""
    if not fast:
        return
    try:
        cfg = build(fast)
    except UserError as exc:
        raise UserError(f"bad --fast: {exc}") from None
    if getattr(cfg.train, "cudagraphs", False) and device != "cuda":
        raise UserError("bad --fast: train.cudagraphs=true needs --device cuda")


def peer_speed() -> dict[str, Any]:
    """A peer's speed fields in a worker's result: fp32, contiguous, eager, as its library ships."""
    return {**SPEED_FIELDS, "requested": dict(SPEED_FIELDS), "speed_reason": ""}


def speed_fields(train_cfg: Any) -> dict[str, Any]:
    """The four speed settings of a TrainConfig (their defaults where a key does not exist)."""
    return {key: getattr(train_cfg, key, default) for key, default in SPEED_FIELDS.items()}


# ----------------------------------------------------------------------------- benches that call a model


def direct_plan(fast: tuple[str, ...], build: Callable[[tuple[str, ...]], Any], device: str, bench: str
                ) -> dict[str, Any] | None:
    """The fast mode of a bench that calls rlsuite's model itself instead of train() (None: no fast
    mode), from the `--fast` keys; `build(keys)` is the bench's RunConfig with them. Only the four
    train.* speed keys apply; 'auto' is resolved in the worker by rlsuite.run.speed, exactly as train()
    resolves it (measured on the agent's own network), and the record says what it picked."""
    import dataclasses

    if not fast:
        return None
    validate(fast, build, device)
    cfg, base = build(fast), build(())

    def rest(c: Any) -> dict[str, Any]:
        d = dataclasses.asdict(c)
        d["train"] = {k: v for k, v in d["train"].items() if k not in SPEED_FIELDS}
        return d

    if rest(cfg) != rest(base):
        raise UserError(f"bad --fast: {bench} maps only train.precision, train.memory_format, train.compile and "
                        "train.cudagraphs (it calls the model, not train()); other keys do not apply")
    asked = speed_fields(cfg.train)
    problem = bf16_problem(torch_device(device))
    if asked["precision"] == "bf16" and problem is not None:
        raise UserError(f"bad --fast: train.precision=bf16: {problem} (use auto or fp32)")
    return {"precision": asked["precision"], "memory_format": asked["memory_format"],
            "compile": bool(asked["compile"] or asked["cudagraphs"]), "cudagraphs": bool(asked["cudagraphs"]),
            "requested": asked, "speed_reason": ""}


def torch_device(device: str) -> Any:
    import torch

    return torch.device(device)


# ----------------------------------------------------------------------------- the machine


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def machine(device: str = "cpu") -> dict[str, Any]:
    """What a measurement ran on: device, torch threads, CPU model and its bf16-relevant flags
    (`BF16_FLAGS` present in /proc/cpuinfo, empty when none), GPU name on CUDA (else None)."""
    import torch

    info = _cpuinfo()
    cpu = info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else None
    return {"device": device, "torch_threads": torch.get_num_threads(), "cpu": cpu,
            "cpu_bf16_flags": machine_flags(), "gpu": gpu}


def machine_flags() -> list[str]:
    """`BF16_FLAGS` this CPU reports (rlsuite.run.speed.cpu_flags: /proc/cpuinfo); [] when none."""
    flags = cpu_flags()
    return [f for f in BF16_FLAGS if f in flags]


# ----------------------------------------------------------------------------- records


def merged(runs: list[dict[str, Any]], key: str) -> Any:
    """A field over a record's runs: the value when all agree, else the sorted distinct values."""
    values = []
    for r in runs:
        if r.get(key) not in values:
            values.append(r.get(key))
    return values[0] if len(values) == 1 else sorted(values, key=str)


def add_ratios(records: list[dict[str, Any]], peer: str, key: str, ratio: str) -> None:
    """Each rlsuite record's median `key` against the peer's (`ratio`), and the fast mode's against
    rlsuite-fp32 (`ratio_vs_fp32`); records of one group (task, allocator...) only."""
    by = {(r["impl"], r["mode"]): r for r in records}
    base, ours32 = by.get((peer, "fp32")), by.get(("rlsuite", "fp32"))
    for r in records:
        if r["impl"] != "rlsuite" or not r.get(key):
            continue
        if base and base.get(key):
            r[ratio] = round(r[key]["median"] / base[key]["median"], 3)
        if r["mode"] != "fp32" and ours32 and ours32.get(key):
            r["ratio_vs_fp32"] = round(r[key]["median"] / ours32[key]["median"], 3)


def describe_speed(r: dict[str, Any]) -> str:
    """'fp32 contiguous eager', 'bf16(auto) contiguous(auto) compiled graphs': what ran, '(auto)'
    where it was asked for as auto; a value that varied over the runs as a|b."""
    asked = r.get("requested") if isinstance(r.get("requested"), dict) else {}

    def text(key: str) -> str:
        v = r.get(key)
        return ("|".join(str(x) for x in v) if isinstance(v, list) else str(v)) + (
            "(auto)" if asked.get(key) == "auto" else "")
    return " ".join([text("precision"), text("memory_format"), "compiled" if r.get("compile") else "eager"]
                    + (["graphs"] if r.get("cudagraphs") else []))


def format_table(records: list[dict[str, Any]], bench: str, peer: str) -> str:
    """dqn / ppo records as a readable table: one row per task x allocator x impl-mode, with each
    rlsuite mode's ratio to the peer (and the fast mode's to rlsuite-fp32)."""
    first = next((r for r in records if r.get("cpu")), records[0])
    flags = ", ".join(first.get("cpu_bf16_flags") or []) or "no bf16 flags"
    head = (f"bench {bench}: {first.get('device', 'cpu')}, {first.get('torch_threads')} torch threads; CPU "
            f"{first.get('cpu')} ({flags})" + (f"; GPU {first['gpu']}" if first.get("gpu") else ""))
    lines = [head, f"{'task':<17} {'allocator':<13} {'impl-mode':<14} {'speed settings':<34} "
                   f"{'steps/s median':>14} {'(min - max)':>19} {'ratio vs ' + peer:>12} {'vs fp32':>8}"]
    for r in records:
        label = f"{r['impl']}-{r['mode']}"
        rate = r.get("steps_per_s")
        if not rate:
            lines.append(f"{r['task']:<17} {r['allocator']:<13} {label:<14} failed: {r.get('error')}")
            continue
        span = f"({rate['min']:,.0f} - {rate['max']:,.0f})"
        lines.append(f"{r['task']:<17} {r['allocator']:<13} {label:<14} {describe_speed(r):<34} "
                     f"{rate['median']:>14,.0f} {span:>19} {r.get('ratio_vs_' + peer, ''):>12} "
                     f"{r.get('ratio_vs_fp32', ''):>8}")
    return "\n".join(lines)

