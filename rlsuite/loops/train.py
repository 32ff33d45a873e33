"""The entry point of every training run: `train(cfg, run_dir)` starts a run and
`train(cfg, run_dir, resume=True)` continues it from its latest checkpoint. It picks the kind of
run from the agent (an offline agent such as the Decision Transformer learns from datasets,
rlsuite.loops.offline; every other agent from envs, rlsuite.loops.online) and hands it to the one
lifecycle (rlsuite.run.lifecycle), which documents what a run guarantees."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rlsuite import config
from rlsuite.loops.offline import is_offline, train_offline
from rlsuite.loops.online import OnlineRun
from rlsuite.run import lifecycle


def train(cfg: config.RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir`; returns the final evaluation summary and rates
    (rlsuite.run.lifecycle.run: errors, outcomes)."""
    if is_offline(cfg.algo):
        return train_offline(cfg, Path(run_dir), resume)
    return lifecycle.run(OnlineRun(), cfg, Path(run_dir), resume)
