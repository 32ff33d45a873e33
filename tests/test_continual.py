"""Continual metrics in `rlsuite compare` (rlsuite/analysis/continual.py), checked on hand-written run directories.

The fixture: tasks A, B; N = 100 steps per task; 2 cycles, so phases 0..3 train A, B, A, B.
Fresh references: A ends at 8 and 12 (two seeds) -> R_A = 10; B ends at 20 -> R_B = 20.

  phase | trains | periodic eval (step: return) | switch evals at the phase's end: A, B  -> p_A, p_B
  0     | A      | 50: 4   (p 0.4)               | 8, 2                                  -> 0.8, 0.1
  1     | B      | 150: 10 (p 0.5)               | 6, 16                                 -> 0.6, 0.8
  2     | A      | 250: 5                        | 9, 12                                 -> 0.9, 0.6
  3     | B      | 350: 8                        | final_a (5 or 7), 18                  -> 0.5|0.7, 0.9
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlsuite.cli import main
from rlsuite.analysis.runs import load_run
from rlsuite.analysis.continual import (build_reference, bootstrap_ci, curve_mean, group_metrics, load_sequence,
                               run_metrics, task_mean)
from rlsuite.errors import UserError

A, B, C = "minatar:breakout", "minatar:asterix", "minatar:seaquest"


def _toml(value) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them are the same in TOML


def write_run(path: Path, train: dict, env_id: str, evals: list[dict], lr: float = 1e-4) -> Path:
    """A run directory as `rlsuite train` leaves it: config.toml (tomllib-readable) and eval.jsonl."""
    path.mkdir(parents=True)
    lines = ['algo = "dqn"', 'presets = ["dqn-minatar"]', "", "[agent]", f"lr = {lr}", "", "[env]",
             f"id = {_toml(env_id)}", "", "[train]", *[f"{k} = {_toml(v)}" for k, v in train.items()]]
    (path / "config.toml").write_text("\n".join(lines) + "\n")
    records = [{"median": e["mean"], "iqm": e["mean"], **e} for e in evals]
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sequence_run(path: Path, seed: int = 1, final_a: float = 5.0, cycles: int = 2, switch: bool = True,
                 tasks: tuple[str, str] = (A, B)) -> Path:
    periodic = {0: (50, 4.0), 1: (150, 10.0), 2: (250, 5.0), 3: (350, 8.0)}
    ends = {0: (8.0, 2.0), 1: (6.0, 16.0), 2: (9.0, 12.0), 3: (final_a, 18.0)}
    evals = []
    for k in range(2 * cycles):
        step, value = periodic[k]
        evals.append({"step": step, "mean": value, "task": tasks[k % 2], "phase": k, "source": "periodic"})
        if switch:
            evals += [{"step": 100 * (k + 1), "mean": v, "task": t, "phase": k, "source": "switch"}
                      for t, v in zip(tasks, ends[k])]
    train = {"seed": seed, "tasks": list(tasks), "steps_per_task": 100, "cycles": cycles, "eval_every": 50}
    return write_run(path, train, tasks[0], evals)


def fresh_run(path: Path, task: str, at50: float, at100: float, seed: int = 1) -> Path:
    evals = [{"step": 50, "mean": at50}, {"step": 100, "mean": at100}]
    return write_run(path, {"seed": seed, "total_steps": 100, "eval_every": 50}, task, evals)


@pytest.fixture
def runs(tmp_path):
    seq = [sequence_run(tmp_path / "seq" / "s1", 1, final_a=5.0), sequence_run(tmp_path / "seq" / "s2", 2, final_a=7.0)]
    ref = [fresh_run(tmp_path / "fresh" / "A-s1", A, 4, 8, 1), fresh_run(tmp_path / "fresh" / "A-s2", A, 6, 12, 2),
           fresh_run(tmp_path / "fresh" / "B-s1", B, 10, 20, 1)]
    return tmp_path, seq, ref


def test_curve_mean_is_the_trapezoid_mean_over_the_span():
    assert curve_mean([0, 1, 3], [0.0, 2.0, 2.0]) == pytest.approx((1 + 4) / 3)  # area 1 + 4 over 3 steps
    assert curve_mean([50, 100], [0.4, 0.8]) == pytest.approx(0.6)
    assert curve_mean([7], [3.0]) == 3.0


def test_each_metric_by_hand(runs):
    _, seq, ref_dirs = runs
    ref = build_reference([load_run(p) for p in ref_dirs], {A, B}, {100})
    assert ref.returns == pytest.approx({A: 10.0, B: 20.0}) and ref.notes == []
    # AUC_ref: A seeds (0.4, 0.8) -> 0.6 and (0.6, 1.2) -> 0.9, mean 0.75; B (0.5, 1.0) -> 0.75
    assert ref.aucs == pytest.approx({A: 0.75, B: 0.75})

    s1 = load_sequence(load_run(seq[0]))
    assert s1.end == 3 and s1.curve(A, 0) == ([50, 100], [4.0, 8.0])
    m = run_metrics(s1, ref)
    assert m["final"] == pytest.approx({A: 0.5, B: 0.9})
    assert task_mean(m["final"]) == pytest.approx(0.7)  # average performance
    assert m["forgetting"] == pytest.approx({A: 0.8 - 0.5, B: 0.8 - 0.9})  # first phase's end minus end
    assert task_mean(m["forgetting"]) == pytest.approx(0.1)
    # AUC_A over phase 0: (0.4, 0.8) -> 0.6; AUC_B over phase 1: (0.5, 0.8) -> 0.65; minus AUC_ref 0.75
    assert m["transfer"] == pytest.approx({A: -0.15, B: -0.1})
    assert task_mean(m["transfer"]) == pytest.approx(-0.125)
    assert m["revisit"] == pytest.approx({A: 0.9, B: 0.9})  # phase 2 (A) and phase 3 (B) ends
    assert m["relearn"] == pytest.approx({A: 0.9 / 0.8, B: 0.9 / 0.8})  # over each first visit's 0.8

    # The group: seed 2 ends A at 7 (p 0.7): average 0.8, forgetting 0. With two runs every bootstrap
    # resample's mean is one of a, (a+b)/2, b, so the 95% interval is exactly [min, max].
    g = group_metrics("all", [s1, load_sequence(load_run(seq[1]))], ref)
    assert g.runs == 2
    assert g.summary["final"] == pytest.approx((0.75, 0.7, 0.8))
    assert g.summary["forgetting"] == pytest.approx((0.05, 0.0, 0.1))
    assert g.summary["transfer"] == pytest.approx((-0.125, -0.125, -0.125))
    assert g.summary["revisit"] == pytest.approx((0.9, 0.9, 0.9))
    assert g.per_task[A]["final"] == pytest.approx((0.6, 0.5, 0.7))
    assert g.per_task[A]["forgetting"] == pytest.approx((0.2, 0.1, 0.3))


def test_bootstrap_ci_single_value_and_nans():
    assert bootstrap_ci([0.3]) == pytest.approx((0.3, 0.3, 0.3))
    assert bootstrap_ci([0.3, np.nan]) == pytest.approx((0.3, 0.3, 0.3))
    assert all(np.isnan(bootstrap_ci([np.nan])))


def test_cli_writes_table_and_plot(runs, capsys):
    tmp, _, _ = runs
    out = tmp / "o"
    assert main(["compare", str(tmp / "seq"), "--reference", str(tmp / "fresh"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "compare.md").read_text()
    assert md.startswith("Continual metrics (p = eval return / fresh-network return") and "raw" not in md
    row = "| all | 2 | 0.75 [0.7, 0.8] | 0.05 [0, 0.1] | -0.125 [-0.125, -0.125] | 0.9 [0.9, 0.9] |"
    assert row in md and row in printed
    assert f"| all | {B} | 0.9 [0.9, 0.9] | -0.1 [-0.1, -0.1] | -0.1 [-0.1, -0.1] | 0.9 [0.9, 0.9] |" in md
    assert (out / "continual.png").stat().st_size > 10_000
    assert not (out / "curves.png").exists()


def test_cli_as_a_module(runs):
    tmp, _, _ = runs
    done = subprocess.run([sys.executable, "-m", "rlsuite.cli", "compare", str(tmp / "seq" / "s1"), "--reference",
                           str(tmp / "fresh"), "--out", str(tmp / "o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp / "o" / "compare.md").is_file() and (tmp / "o" / "continual.png").is_file()


def test_groups_follow_the_config(tmp_path, capsys):
    sequence_run(tmp_path / "seq" / "s1", 1)
    other = sequence_run(tmp_path / "seq" / "s2", 2)
    config = other / "config.toml"
    config.write_text(config.read_text().replace("lr = 0.0001", "lr = 0.001"))
    assert main(["compare", str(tmp_path / "seq"), "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "compare.md").read_text()
    assert "| lr=0.0001 | 1 |" in md and "| lr=0.001 | 1 |" in md
    assert f"raw eval return (no reference) for {A}, {B}" in md and "no --reference runs" in md


def test_sequence_without_switch_evaluations_is_a_user_error(tmp_path, capsys):
    sequence_run(tmp_path / "seq", switch=False)
    fresh_run(tmp_path / "fresh", A, 4, 8)
    assert main(["compare", str(tmp_path / "seq"), "--reference", str(tmp_path / "fresh")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without switch evaluations" in err
    with pytest.raises(UserError, match="switch"):
        load_sequence(load_run(tmp_path / "seq"))


def test_reference_on_another_task_is_ignored_with_a_note(tmp_path, capsys):
    """One cycle; a reference for A and one for C (not in the sequence), none for B."""
    sequence_run(tmp_path / "seq", cycles=1)
    fresh_run(tmp_path / "fresh" / "A", A, 4, 8)  # R_A = 8: p_A = 8/8 = 1 after phase 0, 6/8 at the end
    fresh_run(tmp_path / "fresh" / "C", C, 1, 2)
    assert main(["compare", str(tmp_path / "seq"), "--reference", str(tmp_path / "fresh"),
                 "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "compare.md").read_text()
    assert f"on {C}: task not in any sequence; ignored" in md and f"on {C}" in capsys.readouterr().out
    assert md.splitlines()[0].endswith(f"raw eval return (no reference) for {B}, left out of the group means; "
                                       "mean over seeds [95% bootstrap CI])")
    # final: p_A = 0.75, B raw 16; forgetting: A 1 - 0.75, B 0 (its first phase is the last);
    # transfer: A only, AUC (0.5, 1.0) -> 0.75 minus the reference's own 0.75 = 0; no revisits
    assert f"| all | {A} | 0.75 [0.75, 0.75] | 0.25 [0.25, 0.25] | 0 [0, 0] | n/a |" in md
    assert f"| all | {B} | 16 [16, 16] | 0 [0, 0] | n/a | n/a |" in md
    assert "| all | 1 | 0.75 [0.75, 0.75] | 0.25 [0.25, 0.25] | 0 [0, 0] | n/a |" in md  # means over A only


def test_mixed_or_missing_sequence_runs_are_user_errors(tmp_path, capsys):
    sequence_run(tmp_path / "seq")
    fresh_run(tmp_path / "fresh", A, 4, 8)
    assert main(["compare", str(tmp_path / "seq"), str(tmp_path / "fresh")]) == 2
    assert "pass fresh single-task runs with --reference" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "fresh"), "--reference", str(tmp_path / "fresh")]) == 2
    assert "needs task-sequence runs" in capsys.readouterr().err
    sequence_run(tmp_path / "seq2")
    assert main(["compare", str(tmp_path / "seq"), "--reference", str(tmp_path / "seq2")]) == 2
    assert "trains a task sequence; --reference takes single-task runs" in capsys.readouterr().err
    # a folder holding both kinds works when the fresh ones are also given as --reference
    assert main(["compare", str(tmp_path / "seq"), str(tmp_path / "fresh"), "--reference", str(tmp_path / "fresh"),
                 "--out", str(tmp_path / "o")]) == 0


def test_single_task_compare_is_unchanged(tmp_path, capsys):
    fresh_run(tmp_path / "r" / "s1", A, 4, 8, 1)
    fresh_run(tmp_path / "r" / "s2", A, 6, 12, 2)
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "compare.md").read_text().startswith("Final performance (final eval return")
    assert (tmp_path / "o" / "curves.png").is_file() and not (tmp_path / "o" / "continual.png").exists()


def test_a_one_task_sequence_serves_as_a_reference(tmp_path):
    """`rlsuite train --tasks A --steps-per-task 100` is a fresh run on A: its periodic and switch evals."""
    evals = [{"step": 50, "mean": 4.0, "task": A, "phase": 0, "source": "periodic"},
             {"step": 100, "mean": 8.0, "task": A, "phase": 0, "source": "switch"}]
    one = write_run(tmp_path / "one", {"seed": 1, "tasks": [A], "steps_per_task": 100, "cycles": 1}, A, evals)
    ref = build_reference([load_run(one)], {A, B}, {100})
    assert ref.returns == {A: 8.0} and ref.aucs == pytest.approx({A: 0.75})


def test_tasks_match_across_spellings(tmp_path):
    """A reference on 'MinAtar/Breakout-v1' is one for the sequence's 'minatar:breakout', and a sequence
    spelled 'MinAtar/Breakout-v1', 'MinAtar/Asterix-v1' is scored against references on A and B."""
    seq = load_sequence(load_run(sequence_run(tmp_path / "seq", tasks=("MinAtar/Breakout-v1", "MinAtar/Asterix-v1"))))
    assert seq.tasks == [A, B] and seq.curve(A, 0) == ([50, 100], [4.0, 8.0])
    refs = [load_run(fresh_run(tmp_path / "fresh" / "A", "MinAtar/Breakout-v1", 4, 8)),
            load_run(fresh_run(tmp_path / "fresh" / "B", B, 10, 20))]
    ref = build_reference(refs, set(seq.tasks), {100})
    assert ref.returns == pytest.approx({A: 8.0, B: 20.0}) and ref.notes == []
    # as test_each_metric_by_hand with R_A = 8: end of phase 3, A 5 / 8 and B 18 / 20
    assert run_metrics(seq, ref)["final"] == pytest.approx({A: 5 / 8, B: 0.9})


def test_each_arm_is_normalized_by_its_own_fresh_runs(tmp_path, capsys):
    """Two arms (lr 1e-4, 1e-3) with the same switch returns (final A 5, B 18). Arm 1e-4's fresh runs end
    at A 10, B 20 (average performance (0.5 + 0.9) / 2 = 0.7); arm 1e-3's at A 20, B 40 ((0.25 + 0.45) / 2
    = 0.35). Without arm 1e-3's fresh runs both arms are measured against arm 1e-4's, pooled."""
    sequence_run(tmp_path / "seq-slow" / "s1", 1)
    sequence_run(tmp_path / "seq-fast" / "s1", 1)
    fast = tmp_path / "seq-fast" / "s1" / "config.toml"
    fast.write_text(fast.read_text().replace("lr = 0.0001", "lr = 0.001"))
    fresh_run(tmp_path / "fresh-slow" / "A", A, 5, 10)
    fresh_run(tmp_path / "fresh-slow" / "B", B, 10, 20)
    seqs = [str(tmp_path / "seq-slow"), str(tmp_path / "seq-fast")]
    assert main(["compare", *seqs, "--reference", str(tmp_path / "fresh-slow"), "--out", str(tmp_path / "o1")]) == 0
    md = (tmp_path / "o1" / "compare.md").read_text()
    assert "| lr=0.0001 | 1 | 0.7 [0.7, 0.7] |" in md and "| lr=0.001 | 1 | 0.7 [0.7, 0.7] |" in md
    assert "no reference run has the settings of lr=0.001: every group is normalized by all 2" in md

    for task, end in ((A, 20), (B, 40)):
        run = fresh_run(tmp_path / "fresh-fast" / task.split(":")[1], task, end / 2, end)
        (run / "config.toml").write_text((run / "config.toml").read_text().replace("lr = 0.0001", "lr = 0.001"))
    refs = [str(tmp_path / "fresh-slow"), str(tmp_path / "fresh-fast")]
    assert main(["compare", *seqs, "--reference", *refs, "--out", str(tmp_path / "o2")]) == 0
    md = (tmp_path / "o2" / "compare.md").read_text()
    assert "| lr=0.0001 | 1 | 0.7 [0.7, 0.7] |" in md and "| lr=0.001 | 1 | 0.35 [0.35, 0.35] |" in md
    assert f"| lr=0.001 | {B} | 0.45 [0.45, 0.45] |" in md
    assert "each group is normalized by its own fresh runs (those with its agent.lr)" in md
