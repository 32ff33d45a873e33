"""Where the time of the online loop goes: a phase timer (train.profile).

    timer = PhaseTimer(enabled=True, device=torch.device("cuda"))
    timer.start()                      # the timed loop begins
    with timer.phase("env"):
        env.step(actions)
    with timer.apart():                # evaluation: neither a phase nor loop time
        evaluate(...)
    timer.stop()
    timer.report()  # {"env": {"seconds", "fraction", "calls", "ms_per_call"}, ..., "other": {...}}

Phases may nest: a phase is charged its own time, its inner phases' time subtracted (the loop
charges an agent's `observe` to "learn", and DQN's add / sample / update inside it to themselves),
so the phases and "other" (loop time not in any phase) add up to the loop's wall time.

On CUDA, kernels run asynchronously: without a barrier, a phase that launches GPU work is charged
only the launch, and whoever next waits for the GPU (often a `.cpu()` in act) the rest. An
enabled timer on a CUDA device therefore calls `torch.cuda.synchronize()` at every phase boundary,
so each phase is charged the GPU work it launched. Those barriers remove the overlap of CPU and
GPU work that an unprofiled run gets, so a profiled GPU run is a little slower than an
unprofiled one: profiling is off by default. A disabled timer's `phase()` returns one shared
do-nothing context manager (no clock read, no allocation).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch

_NOTHING = contextlib.nullcontext()


class _Phase:
    """The context manager of one enabled phase (re-entered by every `with timer.phase(name)`)."""

    __slots__ = ("timer", "name", "count")

    def __init__(self, timer: "PhaseTimer", name: str, count: bool) -> None:
        self.timer, self.name, self.count = timer, name, count

    def __enter__(self) -> None:
        self.timer._enter(self.name)

    def __exit__(self, *exc: Any) -> None:
        self.timer._exit(self.count)


class PhaseTimer:
    """Accumulates wall seconds and calls per named phase of a timed loop.

    `device`: synchronise CUDA at phase boundaries when it is a CUDA device. `clock`: seconds as
    a float (time.perf_counter; tests pass a fake one)."""

    def __init__(self, enabled: bool = False, device: torch.device | str | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.enabled = bool(enabled)
        self._device = None if device is None else torch.device(device)
        self._sync = self.enabled and self._device is not None and self._device.type == "cuda"
        self._clock = clock
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._phases: dict[tuple[str, bool], _Phase] = {}
        self._stack: list[list[Any]] = []  # [name, start, seconds of inner phases]
        self.loop_seconds = 0.0  # between start() and stop(), time spent apart() removed
        self.apart_seconds = 0.0
        self._loop_start: float | None = None

    # ------------------------------------------------------------------ timing

    def phase(self, name: str, count: bool = True) -> Any:
        """A context manager charging its block to `name` (a shared no-op when disabled).
        `count=False`: add the time but not a call (work that belongs to the phase's calls, e.g.
        DQN's target sync to its gradient updates, so "update" calls = gradient steps)."""
        if not self.enabled:
            return _NOTHING
        ctx = self._phases.get((name, count))
        if ctx is None:
            ctx = self._phases[name, count] = _Phase(self, name, count)
        return ctx

    @contextlib.contextmanager
    def _apart(self) -> Any:
        self._barrier()
        began = self._clock()
        try:
            yield
        finally:
            self._barrier()
            spent = self._clock() - began
            self.apart_seconds += spent
            if self._loop_start is not None:  # not loop time: move the loop's start past it
                self._loop_start += spent

    def apart(self) -> Any:
        """A block that is not part of the timed loop (evaluation): its time is counted in
        `apart_seconds` and left out of the loop time the fractions are of."""
        return self._apart() if self.enabled else _NOTHING

    def start(self) -> None:
        """The timed loop begins (or resumes after `stop`)."""
        if self.enabled:
            self._barrier()
            self._loop_start = self._clock()

    def stop(self) -> None:
        """The timed loop ends; its wall time is added to `loop_seconds`."""
        if self.enabled and self._loop_start is not None:
            self._barrier()
            self.loop_seconds += self._clock() - self._loop_start
            self._loop_start = None

    def _barrier(self) -> None:
        if self._sync:
            torch.cuda.synchronize(self._device)

    def _enter(self, name: str) -> None:
        self._barrier()
        self._stack.append([name, self._clock(), 0.0])

    def _exit(self, count: bool = True) -> None:
        self._barrier()
        name, began, inner = self._stack.pop()
        elapsed = self._clock() - began
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
        self.calls[name] = self.calls.get(name, 0) + int(count)
        if self._stack:
            self._stack[-1][2] += elapsed

    # ------------------------------------------------------------------ results

    def report(self) -> dict[str, dict[str, Any]]:
        """phase -> {seconds, fraction (of the loop's wall time), calls, ms_per_call}, in order of
        seconds, then 'other': loop time in no phase (logging, progress, checkpoints, bookkeeping).
        The fractions, other's included, sum to 1. Empty when disabled."""
        if not self.enabled:
            return {}
        total = self.loop_seconds
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.seconds, key=lambda n: -self.seconds[n]):
            seconds, calls = self.seconds[name], self.calls[name]
            out[name] = {"seconds": seconds, "fraction": seconds / total if total > 0 else 0.0, "calls": calls,
                         "ms_per_call": 1000.0 * seconds / calls if calls else None}
        other = total - sum(self.seconds.values())
        out["other"] = {"seconds": other, "fraction": other / total if total > 0 else 0.0, "calls": 0,
                        "ms_per_call": None}
        return out

    def format_table(self, title: str = "where the time goes") -> str:
        """The report as a text table, with the loop time and the time spent apart below it."""
        from rlsuite.run.evaluate import format_table

        rows = [{"phase": name, "seconds": f"{r['seconds']:.2f}", "share": f"{100 * r['fraction']:.1f}%",
                 "calls": f"{r['calls']:,}" if r["calls"] else "-",
                 "ms/call": "-" if r["ms_per_call"] is None else f"{r['ms_per_call']:.3f}"}
                for name, r in self.report().items()]
        sync = ", CUDA synchronised at phase boundaries" if self._sync else ""
        note = f"timed loop {self.loop_seconds:.1f} s; evaluation apart {self.apart_seconds:.1f} s{sync}"
        return format_table(rows, title) + "\n" + note
