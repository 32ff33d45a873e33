"""What a running experiment shows: TensorBoard scalars, a progress bar, recent returns.

TensorBoard tags follow CleanRL's scheme: `charts/` (episodic_return, episodic_length, SPS,
epsilon, eval_*), `losses/` (td, q_values), and `perf/` for timings.
"""
from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class Monitor:
    """TensorBoard writer + tqdm progress bar + a window of the most recent episode returns."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, progress: bool, status_every: float = 0.0,
                 window: int = 20, unit: str = "step", resumed: bool = False) -> None:
        """`progress`: a tqdm bar on stderr; without one, a status line every `status_every` seconds
        (0 = never) so logs still show that the run is alive and how fast it goes. `unit`: what the
        loop counts ('step': env steps; 'update': gradient updates of an offline run).

        `resumed`: the run continues from its checkpoint at `start_step`, so what the stopped process
        logged after that step is superseded: TensorBoard's points from step start_step + 1 on are
        purged (SummaryWriter's purge_step; the points at start_step were logged before the
        checkpoint was written) and so are the eval.jsonl / far.jsonl records after start_step
        (rlsuite.run.rundir.forget_after). Otherwise those steps would carry two points each."""
        from torch.utils.tensorboard import SummaryWriter

        if resumed:
            from rlsuite.run.rundir import forget_after

            forget_after(run_dir, start_step)
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_step + 1 if resumed else None)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=window)
        self.episodes = 0
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit=unit, dynamic_ncols=True,
                             mininterval=1.0, file=sys.stderr, smoothing=0.1)
        self._sps_time, self._sps_step = time.perf_counter(), start_step
        self.sps = 0.0
        self.total_steps, self.status_every = total_steps, status_every
        self.unit = unit
        self._status_time = self._sps_time

    def episodes_done(self, step: int, episode: dict[str, np.ndarray]) -> None:
        """Log every game that ended on this vector step (raw game score)."""
        for i in np.flatnonzero(episode["done"]):
            ret = float(episode["return"][i])
            self.recent_returns.append(ret)
            self.episodes += 1
            self.writer.add_scalar("charts/episodic_return", ret, step)
            self.writer.add_scalar("charts/episodic_length", float(episode["length"][i]), step)
            for key in ("score", "depth", "xp", "rooms"):
                if key in episode:
                    self.writer.add_scalar(f"charts/episodic_{key}", float(episode[key][i]), step)

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def tick(self, step: int, advanced: int, status: str = "") -> None:
        """Advance the progress bar; refresh steps/s about once a second."""
        now = time.perf_counter()
        if now - self._sps_time >= 1.0:
            self.sps = (step - self._sps_step) / (now - self._sps_time)
            self._sps_time, self._sps_step = now, step
            self.writer.add_scalar("charts/SPS", self.sps, step)
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self.sps:,.0f} {self.unit}s/s  return {self.recent_return_text()}  {status}".rstrip(),
                                          refresh=False)
        if self._bar is not None:
            self._bar.update(advanced)
        elif self.status_every > 0 and now - self._status_time >= self.status_every:
            self._status_time = now
            self.write(self.status_line(step, status))

    def status_line(self, step: int, status: str = "") -> str:
        """'step 12,000/60,000 (20%)  1,234 steps/s  return 23.5  eps 0.050  ETA 00:00:39' (`status`:
        the agent's part, e.g. 'eps 0.050')."""
        left = (self.total_steps - step) / self.sps if self.sps > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "-"
        return (f"{self.unit} {step:,}/{self.total_steps:,} ({100 * step / max(self.total_steps, 1):.0f}%)  "
                f"{self.sps:,.0f} {self.unit}s/s  return {self.recent_return_text()}  " + (f"{status}  " if status else "")
                + f"ETA {eta}")

    def restart_rate(self, step: int) -> None:
        """Start a new steps/s window (after an evaluation: its time is not training time)."""
        self._sps_time, self._sps_step = time.perf_counter(), step

    def new_task(self, name: str) -> None:
        """A task sequence moved on: name the task on the bar and forget the old game's returns."""
        self.recent_returns.clear()
        if self._bar is not None:
            self._bar.set_description(name, refresh=False)

    def recent_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

    def recent_return_text(self) -> str:
        return f"{self.recent_return():.1f}" if self.recent_returns else "-"

    def write(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.writer.flush()
        self.writer.close()


def log_record(step: int, summary: dict[str, Any]) -> dict[str, Any]:
    """The eval.jsonl record for one evaluation."""
    return {"step": step, "time": time.time(), **summary}
