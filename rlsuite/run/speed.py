"""Fast modes of a run: bf16 autocast, channels_last, torch.compile and CUDA graphs.

A run's `train.precision`, `train.memory_format`, `train.compile` and `train.cudagraphs` resolve
once, at the start, to a `SpeedPlan`; each agent then calls its networks through
`plan.wrap(module)` (an `Accelerated` callable) wherever it runs them forward for an update or for
acting. What stays fp32 is decided by construction, not by inspection:

- autocast (not `.to(bfloat16)`): weights, gradients and optimizer state stay fp32, and so does
  every checkpointed tensor;
- `Accelerated` casts every floating output back to fp32, so losses, TD targets, GAE, returns-to-go,
  retention terms (computed by the agents from those outputs) are fp32 arithmetic;
- hooks that run outside a forward (NaP's projection, GMP's masks and ranking, EWC's Fisher) never
  see autocast;
- a recurrent core opts out inside its own forward (`fp32_region`): PyTorch's CPU autocast has no
  bf16 LSTM kernels worth having, and a recurrent state drifts under repeated rounding.

`auto` choices are measured, not assumed: one forward + backward of the agent's own network on a
batch of its training size, fp32 against bf16 (and NCHW against NHWC for conv encoders), the modes
taking turns for up to 9 rounds (3 once the probe has taken 2 s) and each keeping its fastest, on
copies of the network (the real one, and every random stream, are untouched).
bf16 is picked only when it is at least `AUTO_MARGIN` faster. The pick is printed in the start
line and written to `<run>/speed.json`; a resume reuses it, so a run never changes precision
half-way because the machine was busier when it restarted.

Sources: PyTorch AMP (`torch.autocast`, CPU bf16 and CUDA), `torch.compile` (Inductor; mode
'reduce-overhead' = CUDA graph trees), oneDNN's channels_last convolutions.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from rlsuite.run.checkpoint import atomic_write_bytes
from rlsuite.errors import UserError

AUTO_MARGIN = 1.25  # 'auto' switches only for a clear win: timing noise must not flip a run's numerics
PROBE_ROUNDS = 9
PROBE_MIN_ROUNDS, PROBE_BUDGET_S = 3, 2.0  # rounds stop after 3 once the probe has taken 2 s
SPEED_FILE = "speed.json"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo flags of bf16 matrix/dot units
BF16_ARM_FEATURES = ("bf16",)  # aarch64 'Features' (ARMv8.6 BFDOT/BFMMLA)


# ----------------------------------------------------------------------------- hardware


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 'flags', aarch64 'Features'); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def bf16_problem(device: torch.device, flags: set[str] | None = None) -> str | None:
    """Why bf16 compute would not be fast on `device`, or None when it has bf16 units.

    CPU: needs AVX512-BF16 or AMX-BF16 (x86) or the bf16 extension (ARM); without them PyTorch
    emulates bf16 matmuls and an update runs many times slower than fp32. CUDA: the device must
    report bf16 support (compute capability 8.0+)."""
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{torch.cuda.get_device_name(device)} has no native bf16"
        return None
    flags = cpu_flags() if flags is None else flags
    if flags & set(BF16_CPU_FLAGS + BF16_ARM_FEATURES):
        return None
    return "this CPU has no bf16 units (no avx512_bf16 or amx_bf16 flag in /proc/cpuinfo)"


def check(train: Any, device: torch.device) -> None:
    """Refuse, in one line (UserError, exit 2), fast modes this hardware cannot run.

    Called before anything is written. `train` is a TrainConfig; `device` the run's device."""
    if train.cudagraphs and device.type != "cuda":
        raise UserError(f"train.cudagraphs needs a CUDA device (train.device resolves to {device.type}); "
                        "drop it, or use train.compile=true on the CPU")
    if train.precision == "bf16":
        problem = bf16_problem(device)
        if problem is not None:
            raise UserError(f"train.precision=bf16: {problem}; it would run many times slower than fp32. "
                            "Use train.precision=fp32 (or auto, which measures)")


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved fast modes of a run (see the module docstring)."""

    precision: str = "fp32"
    """'fp32' or 'bf16' (never 'auto': resolved)."""
    memory_format: str = "contiguous"
    """'contiguous' or 'channels_last' (conv encoders only)."""
    compile: bool = False
    cudagraphs: bool = False
    device_type: str = "cpu"
    reason: str = ""
    """Why the auto choices came out as they did (the measurement), '' when nothing was auto."""

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this plan's device, or a no-op context in fp32."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def wrap(self, module: nn.Module) -> Callable[..., Any]:
        """`module` called under this plan (see `Accelerated`); the module itself when the plan
        changes nothing (fp32, eager), so the default acting and update paths pay no wrapper."""
        if not (self.bf16 or self.compile or self.cudagraphs):
            return module
        return Accelerated(module, self)

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put a network's conv weights in this plan's memory format (in place; a no-op without convs)."""
        if self.memory_format == "channels_last" and has_conv(module):
            module.to(memory_format=torch.channels_last)
        return module

    def describe(self) -> str:
        """The start line's text, e.g. 'bf16 · channels_last · eager · no graphs (auto, ...)'."""
        parts = [self.precision] + (["channels_last"] if self.memory_format == "channels_last" else []) + [
                 "compiled" if self.compile else "eager", "CUDA graphs" if self.cudagraphs else "no graphs"]
        return " · ".join(parts) + (f" ({self.reason})" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Accelerated:
    """Call a network under a SpeedPlan: optionally compiled (and CUDA-graphed), inside bf16
    autocast when the plan says so, every floating output returned as fp32.

    Calls with a batch of a new size compile once more with a dynamic batch dimension
    (torch.compile's automatic dynamic shapes), so an evaluation batch or a short last minibatch
    never recompiles on every call. Under CUDA graphs each call starts a new graph step and its
    outputs are cloned out of the graph pool, so no output is overwritten by a later replay (the
    silent failure of graph capture)."""

    def __init__(self, module: nn.Module, plan: SpeedPlan) -> None:
        self.module, self.plan = module, plan
        self._call: Callable[..., Any] = module
        if plan.compile or plan.cudagraphs:
            self._call = torch.compile(module, mode="reduce-overhead" if plan.cudagraphs else None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.plan.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.plan.autocast():
            out = self._call(*args, **kwargs)
        return to_fp32(out, clone=self.plan.cudagraphs)


def to_fp32(out: Any, clone: bool = False) -> Any:
    """Floating tensors of `out` (a tensor, or tuples/lists/dicts of them) as fp32; others as they are."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point() and out.dtype != torch.float32:
            return out.float()
        return out.clone() if clone else out
    if isinstance(out, dict):
        return {k: to_fp32(v, clone) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(to_fp32(v, clone) for v in out)
    return out


@contextlib.contextmanager
def fp32_region(x: torch.Tensor) -> Iterator[None]:
    """Leave autocast inside a forward (a recurrent core): ops in the block run in fp32."""
    with torch.autocast(x.device.type, enabled=False):
        yield


def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


# ----------------------------------------------------------------------------- resolution


Probe = tuple[nn.Module, tuple[Any, ...]]  # a network and the args of one training forward


def resolve(train: Any, device: torch.device, probe: Callable[[], Probe] | None = None,
            previous: dict[str, Any] | None = None, caution: str | None = None) -> SpeedPlan:
    """The run's SpeedPlan from its TrainConfig. 'auto' fields are measured with `probe()` (the
    agent's network and a training-size batch), or taken from `previous` (a resumed run's
    speed.json) so a resume keeps its numerics. `caution` (the agent's `bf16_caution`): a
    measured learning cost of bf16 for this agent, so 'auto' keeps fp32."""
    check(train, device)
    precision, memory_format, reasons = train.precision, train.memory_format, []
    if precision == "auto" and caution is not None and previous is None:
        precision = "fp32"
        reasons.append("auto keeps fp32: " + caution)
    if previous is not None:
        precision = previous["precision"] if precision == "auto" else precision
        memory_format = previous["memory_format"] if memory_format == "auto" else memory_format
        reasons.append("auto picks kept from the run's speed.json" if "auto" in (train.precision, train.memory_format)
                       else "")
    if "auto" in (precision, memory_format):
        precision, memory_format, why = _measure_choices(precision, memory_format, device, probe)
        reasons.append(why)
    return SpeedPlan(precision, memory_format, bool(train.compile or train.cudagraphs), bool(train.cudagraphs),
                     device.type, "; ".join(r for r in reasons if r))


def _measure_choices(precision: str, memory_format: str, device: torch.device,
                     probe: Callable[[], Probe] | None) -> tuple[str, str, str]:
    """Settle 'auto' precision / memory format: time the probe's forward + backward in every
    allowed combination and take the fastest, unless it beats the baseline (fp32, NCHW, or the
    fixed value) by less than AUTO_MARGIN."""
    precisions = ["fp32", "bf16"] if precision == "auto" else [precision]
    if precision == "auto" and bf16_problem(device) is not None:
        precisions = ["fp32"]
    module, args = probe() if probe is not None else (None, ())
    formats = ["contiguous", "channels_last"] if memory_format == "auto" and module is not None and has_conv(module) \
        else ["contiguous" if memory_format == "auto" else memory_format]
    baseline = (precisions[0], formats[0])
    if module is None:
        return baseline[0], baseline[1], "auto: no network to measure"
    if len(precisions) * len(formats) == 1:
        return baseline[0], baseline[1], "auto: " + ("no bf16 units" if precision == "auto" else "no convolutions")
    seconds = time_updates(module, args, device, [(p, f) for p in precisions for f in formats])
    best = fastest(seconds, baseline)
    measured = ", ".join(f"{p}{'+channels_last' if f == 'channels_last' else ''} {seconds[baseline] / t:.2f}x"
                         for (p, f), t in seconds.items() if (p, f) != baseline)
    return best[0], best[1], f"auto, update speed against {baseline[0]} measured: {measured}"


def fastest(seconds: dict[tuple[str, str], float], baseline: tuple[str, str]) -> tuple[str, str]:
    """The (precision, memory format) with the least time, unless it beats `baseline` by less than
    AUTO_MARGIN (then the baseline): what 'auto' picks from a measurement."""
    best = min(seconds, key=seconds.get)
    return best if seconds[baseline] / seconds[best] >= AUTO_MARGIN else baseline


def time_updates(module: nn.Module, args: tuple[Any, ...], device: torch.device, modes: list[Any],
                 rounds: int = PROBE_ROUNDS, budget_s: float | None = PROBE_BUDGET_S) -> dict[Any, float]:
    """Seconds of one forward + backward of a copy of `module` on `args` for each mode in `modes`
    (a (precision, memory format) pair, or a whole SpeedPlan): the modes take turns, round after
    round, and each keeps its fastest round, so load from other processes (which only ever adds
    time) biases no mode against another; past `budget_s` seconds (None: no limit) it stops after
    PROBE_MIN_ROUNDS rounds. The global RNG state is restored afterwards (dropout
    draws from a fork); `module` is untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        runners = {}
        for mode in modes:
            plan = mode if isinstance(mode, SpeedPlan) else SpeedPlan(*mode, device_type=device.type)
            net = plan.prepare(copy.deepcopy(module)).train()
            runners[mode] = (net, plan.wrap(net))
        best = {mode: math.inf for mode in modes}
        started = time.perf_counter()
        for i in range(rounds + 1):  # a warm-up round: first-call allocations, oneDNN primitive caches
            for mode, (net, wrapped) in runners.items():
                seconds = _time_once(net, wrapped, args, device)
                if i >= 1:
                    best[mode] = min(best[mode], seconds)
            if budget_s is not None and i >= PROBE_MIN_ROUNDS and time.perf_counter() - started > budget_s:
                break  # a large network: enough rounds to compare, without a long start
    return best


def _time_once(net: nn.Module, wrapped: Any, args: tuple[Any, ...], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    _floats_sum(wrapped(*args)).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    net.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def _floats_sum(out: Any) -> torch.Tensor:
    """A scalar depending on every floating output that has a gradient (for backward)."""
    if isinstance(out, torch.Tensor):
        return out.sum() if out.requires_grad else torch.zeros((), device=out.device)
    parts = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    total = None
    for part in parts:
        s = _floats_sum(part)
        total = s if total is None else total + s
    return total if total is not None else torch.zeros(())


# ----------------------------------------------------------------------------- the run directory


def load(run_dir: Path) -> dict[str, Any] | None:
    """A run's recorded plan (speed.json), or None."""
    try:
        return json.loads((Path(run_dir) / SPEED_FILE).read_text())
    except (OSError, ValueError):
        return None


def apply(agent: Any, train: Any, device: torch.device, run_dir: Path, resume: bool) -> SpeedPlan:
    """Resolve the run's plan (a resume keeps the auto picks of its speed.json; nothing is written
    here) and hand it to the agent (`agent.accelerate(plan)`); returns it."""
    previous = load(run_dir) if resume else None
    plan = resolve(train, device, getattr(agent, "speed_probe", None), previous, getattr(agent, "bf16_caution", None))
    agent.accelerate(plan)
    return plan


def evaluation_plan(run_dir: Path | None, device: torch.device) -> SpeedPlan:
    """The plan `rlsuite eval` (and other loaders of a checkpoint) acts with: the run's recorded
    precision and memory format, so an evaluation computes what the run's own evaluations did;
    never compiled (one evaluation does not repay a compile), and fp32 where this device has no
    bf16 units (the weights are fp32 either way)."""
    recorded = load(run_dir) if run_dir is not None else None
    if recorded is None:
        return SpeedPlan(device_type=device.type)
    precision = recorded.get("precision", "fp32")
    if precision == "bf16" and bf16_problem(device) is not None:
        precision = "fp32"
    return SpeedPlan(precision, recorded.get("memory_format", "contiguous"), device_type=device.type)


def save(run_dir: Path, plan: SpeedPlan) -> None:
    """Write the plan to <run>/speed.json (atomically)."""
    atomic_write_bytes(Path(run_dir) / SPEED_FILE, lambda fh: fh.write(json.dumps(plan.to_dict(), indent=1).encode()))
