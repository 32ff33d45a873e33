"""A study's finished runs kept without checkpoints (experiments/records.py) count as finished:
a sweep skips them, a resume does nothing, `rlsuite runs` and `rlsuite compare` read them."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from rlsuite.cli import main
from tests.conftest import TINY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import records  # noqa: E402  (experiments/records.py is a script, not part of the package)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_records_survive_a_new_machine(tmp_path, capsys):
    study = tmp_path / "study"
    sets = [a for item in TINY + ["train.eval_every=300", "train.save_replay=true"] for a in ("--set", item)]
    sweep = ["sweep", "dqn-classic", "--env", "CartPole-v1", "--seeds", "1,2", "--steps", "600", "--jobs", "2",
             *sets]
    assert main([*sweep, "--out", str(study)]) == 0
    finished, cut = study / "base" / "s1", study / "base" / "s2"  # a sweep without --grid: one arm, 'base'
    # s2 looks interrupted after its first evaluation: the final one is not recorded
    first = (cut / "eval.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["step"] < 600
    (cut / "eval.jsonl").write_text(first + "\n")

    kept = tmp_path / "records"
    assert records.save(study, kept) == [kept / finished.relative_to(study)]  # the interrupted run is not kept
    record = kept / finished.relative_to(study)
    names = {p.name for p in record.iterdir()}
    assert {"config.toml", "eval.jsonl"} <= names and any(n.startswith("events.out.tfevents") for n in names)
    assert (finished / "replay").is_dir()  # the saved replay buffer, as the studies' runs keep it
    assert "checkpoints" not in names and "replay" not in names and ".lock" not in names
    described = json.loads((record / "record.json").read_text())
    # the MLP 4-32-32-2 of agent.encoder.hidden=32,32: (4+1)*32 + (32+1)*32 + (32+1)*2 weights and biases
    assert described == {"checkpoint": "ckpt_000000000600.pt", "step": 600, "parameters": 1282,
                         "lora_parameters": 0}
    assert records.save(study, kept) == []  # already kept

    # a new machine: an empty runs folder, the records restored
    fresh = tmp_path / "fresh"
    restored = fresh / finished.relative_to(study)
    assert records.restore(kept, fresh) == [restored]
    before = snapshot(fresh)
    capsys.readouterr()

    assert main(["train", "--resume", str(restored), "--no-progress"]) == 0
    assert "is finished" in capsys.readouterr().out
    assert main([*sweep, "--seeds", "1", "--out", str(fresh)]) == 0
    assert "skip" in capsys.readouterr().out and snapshot(fresh) == before  # nothing trained, nothing written

    assert main(["runs", str(fresh)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if str(restored) in line)
    assert "600 / 600" in row and "finished (checkpoints removed)" in row
    assert main(["compare", str(fresh)]) == 0 and "IQM" in capsys.readouterr().out

    # it cannot be extended: one line, exit 2
    assert main(["train", "--resume", str(restored), "--steps", "900", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]

    # a run that exists is never overwritten by a restore
    shutil.rmtree(fresh / "compare", ignore_errors=True)
    assert records.restore(kept, fresh) == []
