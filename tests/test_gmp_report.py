"""experiments/gmp_report.py: the GMP study's two predictions, checked on run folders whose scores
are chosen so the IQMs, the probability of improvement and the ratios are known by hand."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "gmp_report.py"


def write_run(folder: Path, width: int, sparsity: float, seed: int, finals: list[float]) -> None:
    """A finished dqn run as the study's sweep lays it out, with the given evaluation means."""
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        f'algo = "dqn"\n[agent.encoder]\nkind = "impala"\nwidth = {width}\n[agent.gmp]\nsparsity = {sparsity}\n'
        f'[env]\nid = "minatar:breakout"\n[train]\nseed = {seed}\ntotal_steps = {100 * len(finals)}\n')
    (folder / "eval.jsonl").write_text("".join(
        json.dumps({"step": 100 * (i + 1), "mean": v, "episodes": 20, "game": None}) + "\n"
        for i, v in enumerate(finals)))


@pytest.fixture
def study(tmp_path):
    # dense x1 finals 1..4 (IQM = mean of the middle two = 2.5); pruned x1 = 2x dense (IQM 5, ratio 2);
    # dense x3 = dense x1 + 10 (IQM 12.5), pruned x3 = 3x dense x3 (IQM 37.5, ratio 3).
    dense = [1.0, 2.0, 3.0, 4.0]
    arms = {(1, 0.0): dense, (1, 0.95): [2 * v for v in dense],
            (3, 0.0): [v + 10 for v in dense], (3, 0.95): [3 * (v + 10) for v in dense]}
    for (width, sparsity), finals in arms.items():
        for seed, final in enumerate(finals, start=1):
            # six evaluations: the last five average to final (they are all final) after a first of 0
            write_run(tmp_path / f"encoder.width={width},gmp.sparsity={sparsity}" / f"s{seed}",
                      width, sparsity, seed, [0.0] + [final] * 5)
    return tmp_path


def test_report_states_both_predictions_from_their_definitions(study):
    out = subprocess.run([sys.executable, str(SCRIPT), str(study)], capture_output=True, text=True,
                         check=True).stdout
    final, steady = out.split("## Score: mean of the last five evaluations")
    for section in (final, steady):  # the last five evaluations all equal the final one here
        rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in section.splitlines() if line.startswith("| ×")}
        assert rows["×1"][0] == "4" and rows["×3"][0] == "4"  # seeds per width
        assert rows["×1"][3].startswith("2.5 ") and rows["×1"][4].startswith("5.0 ")
        assert rows["×3"][3].startswith("12.5 ") and rows["×3"][4].startswith("37.5 ")
        # P(X > Y) + P(X = Y)/2 over all pairs: x1, 2/4/6/8 against 1/2/3/4 wins 1.5 + 3.5 + 4 + 4 of
        # 16 pairs; x3, every pruned seed beats every dense seed, in every resample too
        assert rows["×1"][5].startswith(f"{13 / 16:.2f} ")
        assert rows["×3"][5] == "1.00 [1.00, 1.00]"
        assert rows["×1"][6].startswith("2.00 ") and rows["×3"][6].startswith("3.00 ")
        assert "ratio ×3 − ratio ×1 = 1.00 " in section


def test_a_folder_without_both_arms_is_one_line_and_exit_2(study, tmp_path):
    shutil.rmtree(study / "encoder.width=3,gmp.sparsity=0.95")  # x3 keeps only its dense arm
    for folder in (study, tmp_path / "missing"):
        done = subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: ")
