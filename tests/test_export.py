"""`rlsuite export --sparse` keeps only surviving weights, and the export evaluates the same."""
from __future__ import annotations

import json

from rlsuite.cli import main
from tests.conftest import TINY


def test_sparse_export_is_smaller_and_evaluates_to_the_same_scores(tmp_path, capsys):
    run = tmp_path / "pruned"
    sets = [a for item in TINY + ["agent.gmp.sparsity=0.9", "agent.gmp.update_freq=20", "agent.gmp.start=0",
                                  "agent.gmp.end=0.5", "agent.encoder.hidden=64,64"] for a in ("--set", item)]
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "1200", "--run-dir", str(run), *sets]) == 0
    capsys.readouterr()
    out = tmp_path / "sparse.pt"
    assert main(["export", str(run), "--sparse", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "saved" in printed and out.is_file()
    saved = float(printed.split("saved")[1].split("%")[0].split()[-1])
    assert saved > 60  # 90% of the kernels are gone; indices cost as much as values

    # The same seed on the original run and on the export: identical games, identical table.
    assert main(["eval", str(run), "--episodes", "4", "--num-envs", "2", "--seed", "5"]) == 0
    original_table = capsys.readouterr().out
    original = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert original["sparsity"] > 0.85  # eval reports how sparse the agent is
    assert main(["eval", str(out), "--episodes", "4", "--num-envs", "2", "--seed", "5"]) == 0
    export_table = capsys.readouterr().out
    assert export_table.splitlines()[2:] == original_table.splitlines()[2:]  # all rows below the title
