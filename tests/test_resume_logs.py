"""A resumed run supersedes what the stopped process logged after its last checkpoint: TensorBoard
purges those points (one point per step and tag, so games are not counted twice) and eval.jsonl
drops those records (rlsuite.run.rundir.forget_after)."""
from __future__ import annotations

import collections
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlsuite.run import checkpoint
from rlsuite.cli import main
from rlsuite.run.rundir import forget_after
from tests.conftest import TINY

SETS = [a for item in TINY + ["train.eval_every=200", "train.checkpoint_every=200", "train.keep_checkpoints=5"]
        for a in ("--set", item)]


def points(run) -> dict[str, list[int]]:
    """{tag: steps of its points} as TensorBoard shows them (purges applied)."""
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_resume_after_a_kill_keeps_one_point_per_step(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "600", *SETS, "--run-dir", str(run)]) == 0
    before = points(run)
    assert max(before["charts/episodic_return"]) > 400
    # The kill: the process got to step 600, but its last checkpoint is the one at step 200.
    folder = run / "checkpoints"
    for path in folder.glob("ckpt_*.pt"):
        if checkpoint.load(path)["step"] > 200:
            path.unlink()
    (folder / checkpoint.LATEST).write_text(checkpoint.find(folder).name)
    assert checkpoint.load(checkpoint.find(run))["step"] == 200

    assert main(["train", "--resume", str(run)]) == 0
    after = points(run)
    for tag, steps in after.items():
        repeated = [s for s, n in collections.Counter(steps).items() if n > 1]
        assert not repeated, f"{tag}: two points at steps {repeated}"
    games = after["charts/episodic_return"]
    assert [s for s in games if s <= 200] == [s for s in before["charts/episodic_return"] if s <= 200]
    assert max(games) > 400  # the resumed process logged its own games after step 200
    evals = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert evals == [200, 400, 600]


def test_forget_after_drops_later_records_and_cut_lines(tmp_path):
    lines = [json.dumps({"step": s, "mean": 1.0}) for s in (100, 200, 300)]
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + '\n{"step": 4')  # the last one cut mid-write
    (tmp_path / "far.jsonl").write_text(lines[0] + "\n")
    assert forget_after(tmp_path, 200) == ["eval.jsonl"]  # far.jsonl had nothing to drop: not rewritten
    assert (tmp_path / "eval.jsonl").read_text() == lines[0] + "\n" + lines[1] + "\n"
    assert (tmp_path / "far.jsonl").read_text() == lines[0] + "\n"
    assert forget_after(tmp_path / "nothing", 200) == []
