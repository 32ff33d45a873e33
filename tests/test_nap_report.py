"""experiments/nap_report.py: the NaP sequence study's prediction, checked on run folders whose switch
evaluations are chosen so that each arm's revisit / first visit and revisit / fresh are known by hand.

Tasks A (Breakout) and B (Asterix), 100 steps each, twice: phases 0..3 train A, B, A, B. Every phase
ends with an evaluation of both games; the game not being trained scores 1 (unused by both measures).

  arm | first-visit ends (A, B) | revisit ends (A, B) | fresh (A, B) | revisit / first (A, B) | revisit / fresh
  dqn | 10, 10                  | 5, 10               | 10, 10       | 0.5, 1.0 (mean 0.75)    | 0.5, 1.0 (0.75)
  nap | 10, 10                  | 10, 10              | 5, 5         | 1.0, 1.0 (mean 1.0)     | 2.0, 2.0 (2.0)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "nap_report.py"
A, B = "minatar:breakout", "minatar:asterix"
ARMS = {"dqn": ('"none"', "false", (10, 10), (5, 10), (10, 10)),
        "nap": ('"layer"', "true", (10, 10), (10, 10), (5, 5))}


def write_run(folder: Path, arm: str, seed: int, tasks: list[str], cycles: int, evals: list[dict]) -> None:
    """A finished dqn-minatar run as the study's sweeps lay it out."""
    norm, project = ARMS[arm][:2]
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        f'algo = "dqn"\n[agent.nap]\nnorm = {norm}\nproject = {project}\n[env]\nid = "{tasks[0]}"\n'
        f"[train]\nseed = {seed}\ntasks = {json.dumps(tasks)}\nsteps_per_task = 100\ncycles = {cycles}\n"
        f"total_steps = {100 * len(tasks) * cycles}\n")
    (folder / "eval.jsonl").write_text("".join(json.dumps({"median": e["mean"], **e}) + "\n" for e in evals))


@pytest.fixture
def study(tmp_path):
    for arm, (_, _, first, again, fresh) in ARMS.items():
        for seed in (1, 2):
            ends = [(first[0], 1), (1, first[1]), (again[0], 1), (1, again[1])]
            evals = [{"step": 100 * (k + 1), "mean": v, "task": t, "phase": k, "source": "switch"}
                     for k, scores in enumerate(ends) for t, v in zip((A, B), scores)]
            write_run(tmp_path / f"seq-{arm}" / f"s{seed}", arm, seed, [A, B], 2, evals)
            for task, value in zip((A, B), fresh):
                write_run(tmp_path / f"fresh-{arm}" / task / f"s{seed}", arm, seed, [task], 1,
                          [{"step": 100, "mean": value}])
    return tmp_path


def rows(out: str, measure: str) -> dict[str, list[str]]:
    section = out.split(f"## {measure}")[1].split("##")[0]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in section.splitlines() if line.startswith("| dqn") or line.startswith("| nap")}


def test_each_arm_against_its_own_fresh_runs_and_against_dqn(study):
    out = subprocess.run([sys.executable, str(SCRIPT), str(study)], capture_output=True, text=True, check=True).stdout
    first, fresh = rows(out, "revisit / first visit"), rows(out, "revisit / fresh")
    assert first["dqn"][:3] == ["2", "0.75 / 0.75", "0.75 [0.75, 0.75]"]
    assert first["nap"][1:5] == ["1.00 / 1.00", "1.00 [1.00, 1.00]", "+0.25 [0.25, 0.25]", "1.00 [1.00, 1.00]"]
    # nap normalized by its own fresh runs (5), not by dqn's (10): 10 / 5 = 2
    assert fresh["dqn"][2] == "0.75 [0.75, 0.75]" and fresh["nap"][2:4] == ["2.00 [2.00, 2.00]", "+1.25 [1.25, 1.25]"]

    only_a = subprocess.run([sys.executable, str(SCRIPT), str(study), "--tasks", A], capture_output=True, text=True,
                            check=True).stdout
    assert rows(only_a, "revisit / first visit")["dqn"][2] == "0.50 [0.50, 0.50]"
    assert rows(only_a, "revisit / fresh")["nap"][3] == "+1.50 [1.50, 1.50]"


def test_no_runs_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such run directory" in done.stderr


def test_references_alone_are_one_line_and_exit_2(study):
    done = subprocess.run([sys.executable, str(SCRIPT), str(study / "fresh-dqn")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no task-sequence runs" in done.stderr
