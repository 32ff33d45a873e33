"""The forgetting probe of offline fine-tuning (offline.eval_parent_games; DT-Mem's sequential claim,
the project spec DTMEM_RETENTION.md §1.10 (c)): a DT trained on MinAtar Breakout, fine-tuned on
Asterix, keeps evaluating Breakout, marked `earlier`, outside the run's mean, from update 0 (the
parent) to the end, across a resume and in `rlsuite eval`.

Real parts: a DQN trained for a few hundred steps plays real MinAtar games (the 6-action set,
observations padded to 6 channels, so both games share one model) to collect the two datasets."""
from __future__ import annotations

import json

import pytest

from rlsuite.cli import main

SHARED = ["env.full_action_space=true", "env.pad_channels=6"]
TINY = ["agent.model.context=4", "agent.model.embed_dim=16", "agent.model.n_layer=1", "agent.model.n_head=2",
        "agent.batch_size=8", "agent.warmup_updates=0", "agent.memory.slots=4", "train.eval_episodes=2",
        "train.eval_num_envs=2", "train.torch_threads=1"]


def _sets(items):
    return [x for s in items for x in ("--set", s)]


@pytest.fixture(scope="module")
def minatar_data(tmp_path_factory):
    """Two random-policy datasets (epsilon 1) of Breakout and Asterix on one observation/action space."""
    root = tmp_path_factory.mktemp("minatar-data")
    assert main(["train", "dqn-minatar", "--env", "minatar:breakout", "--steps", "200", "--run-dir",
                 str(root / "player"), "--no-progress", *_sets(SHARED + ["train.eval_every=0", "train.eval_episodes=1"])]) == 0
    for game in ("breakout", "asterix"):
        assert main(["collect", "--from", str(root / "player"), "--env", f"minatar:{game}", "--steps", "400",
                     "--epsilon", "1", "--num-envs", "2", "--seed", "3", "--out", str(root / game)]) == 0
    return root


def _evals(run):
    return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]


def test_finetune_evaluates_the_parents_games_as_earlier(minatar_data, tmp_path, capsys):
    parent, child = tmp_path / "parent", tmp_path / "child"
    assert main(["train", "dtmem-minatar", "--dataset", str(minatar_data / "breakout"), "--steps", "3",
                 "--run-dir", str(parent), "--no-progress", *_sets(TINY)]) == 0
    assert main(["finetune", "--from", str(parent), "--dataset", str(minatar_data / "asterix"), "--steps", "3",
                 "--run-dir", str(child), "--no-progress", "--set", "train.eval_every=2"]) == 0
    out = capsys.readouterr().out
    assert "breakout (earlier)" in out
    records = _evals(child)
    assert [r["step"] for r in records] == [0, 2, 3]  # update 0 is the parent's own score
    for r in records:
        games = r["games"]
        assert set(games) == {"asterix", "breakout"} and games["breakout"]["earlier"] is True
        assert "earlier" not in games["asterix"]
        assert r["mean"] == games["asterix"]["mean"]  # the mean is over the run's own games only
    # A resumed run keeps probing the parent's games (from its checkpoint, the parent not needed).
    assert main(["train", "--resume", str(child), "--steps", "4", "--no-progress"]) == 0
    assert set(_evals(child)[-1]["games"]) == {"asterix", "breakout"}
    capsys.readouterr()
    assert main(["eval", str(child), "--episodes", "1", "--num-envs", "1"]) == 0
    assert "breakout" in capsys.readouterr().out


def test_probe_can_be_turned_off(minatar_data, tmp_path):
    parent, child = tmp_path / "parent", tmp_path / "child"
    assert main(["train", "dtmem-minatar", "--dataset", str(minatar_data / "breakout"), "--steps", "2",
                 "--run-dir", str(parent), "--no-progress", *_sets(TINY)]) == 0
    assert main(["finetune", "--from", str(parent), "--dataset", str(minatar_data / "asterix"), "--steps", "2",
                 "--run-dir", str(child), "--no-progress", "--set", "offline.eval_parent_games=false"]) == 0
    records = _evals(child)
    assert all(r.get("game") == "asterix" for r in records), records
