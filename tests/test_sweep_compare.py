"""`rlsuite sweep` runs a real grid in parallel; `rlsuite compare` aggregates it with rliable."""
from __future__ import annotations

import shutil

import pytest

from rlsuite.cli import main
from rlsuite.sweep import arm_name, parse_grid
from tests.conftest import TINY


def test_grid_parsing_and_arm_names():
    grid = parse_grid(["agent.gmp.sparsity=0,0.9", "agent.encoder.width=1,3"])
    assert len(grid) == 4 and grid[3] == ["agent.gmp.sparsity=0.9", "agent.encoder.width=3"]
    assert arm_name(grid[3]) == "gmp.sparsity=0.9,encoder.width=3"


def test_sweep_then_compare_on_cartpole(tmp_path, capsys):
    out = tmp_path / "sweep"
    shared = [a for item in TINY + ["train.eval_every=400", "agent.gmp.update_freq=50"] for a in ("--set", item)]
    argv = ["sweep", "dqn-classic", "--env", "CartPole-v1", "--grid", "agent.gmp.sparsity=0,0.5", "--seeds", "1,2",
            "--steps", "800", "--jobs", "2", "--out", str(out), *shared]
    assert main(argv) == 0
    runs = {p.parent.relative_to(out).as_posix() for p in out.rglob("config.toml")}
    assert runs == {"gmp.sparsity=0/s1", "gmp.sparsity=0/s2", "gmp.sparsity=0.5/s1", "gmp.sparsity=0.5/s2"}
    capsys.readouterr()
    assert main(argv) == 0  # a second run skips finished runs
    assert capsys.readouterr().out.count("skip") == 4

    # a run written before a config key existed groups with runs that state that key's default
    # (here a dense run whose config has no gmp.sparsity line)
    old_run = out / "gmp.sparsity=0" / "s2" / "config.toml"
    lines = old_run.read_text().splitlines(keepends=True)
    old_run.write_text("".join(line for line in lines if not line.startswith("sparsity =")))
    assert main(["compare", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| sparsity=0.0 | 2 | 1 |" in table and "| sparsity=0.5 | 2 | 1 |" in table and "IQM" in table
    assert (out / "compare" / "curves.png").stat().st_size > 10_000
    assert (out / "compare" / "compare.md").read_text().startswith("Final performance")

    # a sweep still running: a run without evaluations is left out with a note, not an error
    waiting = out / "gmp.sparsity=0.9" / "s1"
    waiting.mkdir(parents=True)
    (waiting / "config.toml").write_text((out / "gmp.sparsity=0.5" / "s1" / "config.toml").read_text())
    (waiting / "eval.jsonl").write_text('{"step": 400, "mean": 9.0}\n')  # halfway: its last eval is not final
    assert main(["compare", str(out)]) == 0
    assert "1 run(s) have not finished" in capsys.readouterr().err
    shutil.rmtree(waiting.parent)

    # the mechanistic signatures: final TensorBoard values per group
    assert main(["compare", str(out), "--tags", "plasticity/param_norm,sparsity/overall"]) == 0
    logged = capsys.readouterr().out.split("Final logged values")[1]
    rows = [line for line in logged.splitlines() if line.startswith("| sparsity=")]
    dense_row = next(r for r in rows if "sparsity=0.0" in r)
    pruned_row = next(r for r in rows if "sparsity=0.5" in r)
    assert dense_row.endswith("| n/a |")  # a dense run logs no sparsity
    assert 0.4 < float(pruned_row.split("|")[-2].split()[0]) <= 0.5  # the last logged achieved sparsity


def test_bad_sweep_inputs_are_user_errors(tmp_path, capsys):
    for argv, message in [(["--grid", "agent.lrr=1,2"], "unknown config key"), (["--grid", "nogrid"], "bad --grid"),
                          (["--seeds", "a,b"], "--seeds must be")]:
        code = main(["sweep", "dqn-classic", "--env", "CartPole-v1", "--out", str(tmp_path / "s"), *argv])
        assert code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare"])
    assert main(["compare", str(tmp_path / "nothing")]) == 2


def test_a_sweep_of_task_sequences_knows_when_runs_are_done(tmp_path, capsys):
    """Without --steps a sequence run's length comes from its tasks; a re-run still skips it."""
    out = tmp_path / "fresh"
    shared = [a for item in TINY + ["train.steps_per_task=300", "env.pad_channels=6", "env.max_episode_steps=100",
                                    "agent.encoder.kind=minatar"] for a in ("--set", item)]
    argv = ["sweep", "dqn-minatar", "--env", "minatar:breakout", "--grid",
            "train.tasks=minatar:breakout,minatar:space_invaders", "--seeds", "1", "--jobs", "2", "--out", str(out),
            *shared]
    assert main(argv) == 0
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("config.toml"))
    assert runs == ["train.tasks=minatar:breakout/s1", "train.tasks=minatar:space_invaders/s1"]
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("skip") == 2


def test_env_step_axis_reads_50k_and_1_5M():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlsuite.compare import label_env_steps

    fig, ax = plt.subplots()
    label_env_steps(ax)
    short = ax.xaxis.get_major_formatter()
    assert [short(x, 0) for x in (0, 500, 50_000, 150_000, 1_500_000)] == ["0", "500", "50k", "150k", "1.5M"]
    plt.close(fig)
