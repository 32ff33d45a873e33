"""Long learning runs started as soon as the session's tests are collected, so that they use the core
the serial suite leaves idle (the machine has two; nearly every test runs on one).

A `RunPool` runs its commands one at a time in the background; `wait()` (called by the fixture that
needs the results, once the suite reaches it) lets two run at once, since the suite then only waits.
The runs are the same commands the fixture used to start itself, with one torch thread each, so
their results do not depend on when they ran."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

RUN_LIMIT_S = 1200
"""A run that takes longer than this has hung (a run takes 1-4 minutes, more when it shares a core)."""


class RunPool:
    """Runs `jobs` ({key: (command, run_dir)}) in the background, `parallel` at a time."""

    def __init__(self, jobs: dict[object, tuple[list[str], Path]], parallel: int = 1) -> None:
        self.todo = list(jobs.items())
        self.parallel = parallel
        self.running: dict[object, tuple[subprocess.Popen, Path, float]] = {}
        self.finished: dict[object, tuple[int, Path, str]] = {}  # key: (return code, run dir, log tail)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (self.todo or self.running) and not self._stop.is_set():
            while self.todo and len(self.running) < self.parallel:
                key, (cmd, run_dir) = self.todo.pop(0)
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                log = run_dir.with_suffix(".log")
                with log.open("w") as out:
                    self.running[key] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT), run_dir,
                                         time.monotonic())
            for key, (proc, run_dir, started) in list(self.running.items()):
                if proc.poll() is not None:
                    tail = run_dir.with_suffix(".log").read_text()[-2000:]
                    self.finished[key] = (proc.returncode, run_dir, tail)
                    del self.running[key]
                elif time.monotonic() - started > RUN_LIMIT_S:
                    self.error = f"{key} took more than {RUN_LIMIT_S} s"
                    self.stop()
            time.sleep(0.5)

    def wait(self) -> dict[object, tuple[int, Path, str]]:
        """Every run's (return code, run dir, log tail), once all have finished; two at a time from now."""
        self.parallel = 2
        self._thread.join()
        assert self.error is None, self.error
        return self.finished

    def stop(self) -> None:
        """Kill what is running (the session ends, or a run hung)."""
        self._stop.set()
        for proc, _, _ in list(self.running.values()):
            proc.kill()
