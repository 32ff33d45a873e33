"""The forgetting effect of Wołczyk et al. (ICML 2024) on closefar:chain, over 3 seeds, with
thresholds a broken method fails: a PPO teacher that opens the FAR lock every time is fine-tuned
from CLOSE starts; vanilla fine-tuning loses the FAR skill on the way (its minimum FAR success drops
well below the teacher's), BC and KS keep it.

Measured when this test was written (60k fine-tuning steps, FAR success every 5k steps, 20 games):
vanilla's minimum FAR success 0.0 / 0.2 / 0.0 (seeds 1-3), BC and KS 1.0 in every evaluation.
About 100 s on 2 cores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlsuite.cli import main

QUIET = ["--no-progress", "--set", "train.status_every=0"]
STEPS = 60_000


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """Pre-trained from FAR starts to convergence (300k steps; success 1.0 from about 50k on)."""
    run = tmp_path_factory.mktemp("teacher") / "far"
    assert main(["train", "ppo-closefar", "--env", "closefar:chain", "--set", "env.start=far", "--steps", "300000",
                 "--seed", "1", "--run-dir", str(run), "--set", "train.eval_every=0", *QUIET]) == 0
    return run


def far_success(teacher: Path, root: Path, method: str, seed: int) -> list[float]:
    run = root / f"{method}-s{seed}"
    assert main(["finetune", "--from", str(teacher), "--env", "closefar:chain", "--retention", method, "--seed",
                 str(seed), "--steps", str(STEPS), "--run-dir", str(run), "--set", "finetune.far_eval_every=5000",
                 "--set", "train.eval_every=0", *QUIET]) == 0
    return [json.loads(line)["success_mean"] for line in (run / "far.jsonl").read_text().splitlines()]


def test_vanilla_fine_tuning_forgets_far_skill_and_bc_ks_keep_it(teacher, tmp_path) -> None:
    curves = {(m, s): far_success(teacher, tmp_path, m, s) for m in ("none", "bc", "ks") for s in (1, 2, 3)}
    assert all(curve[0] == 1.0 for curve in curves.values())  # step 0: the teacher's own FAR success
    assert all(len(curve) == STEPS // 5000 + 1 for curve in curves.values())
    vanilla_min = [min(curves["none", s]) for s in (1, 2, 3)]
    assert sum(m <= 0.5 for m in vanilla_min) >= 2, vanilla_min  # forgetting: at most half the teacher's skill
    for method in ("bc", "ks"):
        kept = [min(curves[method, s]) for s in (1, 2, 3)]
        assert all(m >= 0.8 for m in kept), (method, kept)
