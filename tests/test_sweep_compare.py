"""`rlsuite sweep` runs a real grid in parallel; `rlsuite compare` aggregates it with rliable."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest

from rlsuite.cli import main
from rlsuite.analysis.runs import load_run
from rlsuite.launch.sweep import arm_name, parse_grid
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

    from rlsuite.analysis.figures import label_env_steps

    fig, ax = plt.subplots()
    label_env_steps(ax)
    short = ax.xaxis.get_major_formatter()
    assert [short(x, 0) for x in (0, 500, 50_000, 150_000, 1_500_000)] == ["0", "500", "50k", "150k", "1.5M"]
    plt.close(fig)


# ----------------------------------------------------------------------------- tasks and scores, on written runs


def fake_run(path, env_id: str, evals: list[tuple[int, float]], seed: int = 1, eval_every: int = 100,
             returns: list[tuple[int, float]] = ()):
    """A finished run directory as `rlsuite train` leaves it: config.toml, eval.jsonl and, when
    `returns` is given, real TensorBoard events with one charts/episodic_return per (step, return)."""
    path.mkdir(parents=True)
    (path / "config.toml").write_text(f'algo = "dqn"\n\n[env]\nid = "{env_id}"\n\n[train]\nseed = {seed}\n'
                                      f"total_steps = {evals[-1][0]}\neval_every = {eval_every}\n")
    records = [{"step": step, "mean": mean, "epsilon": 0.001} for step, mean in evals]
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if returns:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(path))
        for step, value in returns:
            writer.add_scalar("charts/episodic_return", value, step)
        writer.close()
    return path


def table_row(text: str) -> list[str]:
    """The cells of the table's one group row."""
    return [c.strip() for c in next(l for l in text.splitlines() if l.startswith("| all |")).split("|")[1:-1]]


def point(cell: str) -> str:
    """A table cell's point estimate as printed (3 significant digits)."""
    return cell.split()[0]


def test_spellings_of_one_game_are_one_task(tmp_path, capsys):
    """'pong' and 'ALE/Pong-v5' are both Atari Pong: one task, two runs, human-normalized with Pong's
    random -20.7 / human 14.6, so finals -20.7 and 14.6 score 0 and 1, mean 0.5."""
    fake_run(tmp_path / "r" / "a", "pong", [(100, -20.7)], seed=1)
    fake_run(tmp_path / "r" / "b", "ALE/Pong-v5", [(100, 14.6)], seed=2)
    assert {load_run(tmp_path / "r" / s).task for s in "ab"} == {"atari:Pong"}
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Final performance (human-normalized final eval return (ε=0.001);")
    group, runs, tasks, iqm_cell, mean_cell, _ = table_row(text)
    assert (runs, tasks) == ("2", "1")
    assert point(mean_cell) == "0.5"


def test_pong_and_montezuma_are_both_normalized(tmp_path, capsys):
    """Pong at its human 14.6 -> 1; 'montezuma' (MontezumaRevenge, random 0 / human 4753.3) at 2376.65 -> 0.5."""
    fake_run(tmp_path / "r" / "pong", "pong", [(100, 14.6)])
    fake_run(tmp_path / "r" / "mr", "montezuma", [(100, 4753.3 / 2)])
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Final performance (human-normalized final eval return")
    _, runs, tasks, _, mean_cell, _ = table_row(text)
    assert (runs, tasks) == ("1", "2") and point(mean_cell) == "0.75"


def test_minatar_breakout_is_not_atari_breakout(tmp_path, capsys):
    """MinAtar's Breakout has no human score: its return 10 stays raw, and the header says why."""
    fake_run(tmp_path / "r", "MinAtar/Breakout-v1", [(100, 10.0)])
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Final performance (final eval return (ε=0.001), raw, not human-normalized: "
                           "no Atari human score for minatar:breakout;")
    assert point(table_row(text)[4]) == "10"


# Training games (end step, return) of two seeds, iterations of 100 steps: (0,100] (100,200] (200,300].
GAMES_S1 = [(30, 1.0), (100, 3.0), (150, 5.0), (200, 7.0), (250, 10.0), (290, 20.0)]
GAMES_S2 = [(60, 2.0), (180, 4.0), (210, 30.0), (300, 50.0)]


@pytest.fixture
def trained(tmp_path):
    evals = [(100, 500.0), (200, 500.0), (300, 500.0)]  # far from every training return
    fake_run(tmp_path / "r" / "s1", "CartPole-v1", evals, seed=1, returns=GAMES_S1)
    fake_run(tmp_path / "r" / "s2", "CartPole-v1", evals, seed=2, returns=GAMES_S2)
    return tmp_path


def test_training_score_is_the_last_iterations_mean(trained, capsys):
    from rlsuite.analysis.training_score import training_curve

    s1 = load_run(trained / "r" / "s1")
    # per iteration: (1+3)/2, (5+7)/2, (10+20)/2; a game at 100 or 200 ends the iteration it closes
    assert training_curve(s1) == ([(100, 2.0), (200, 6.0), (300, 15.0)], 100)
    # iterations of 150: (1+3+5)/3, (7+10+20)/3; of 200: one complete, (1+3+5+7)/4, the rest is partial
    assert training_curve(s1, 150) == ([(150, 3.0), (300, pytest.approx(37 / 3))], 150)
    assert training_curve(s1, 200) == ([(200, 4.0)], 200)

    assert main(["compare", str(trained / "r"), "--score", "train", "--out", str(trained / "o")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Final performance (final training return, mean of games ending in the last "
                           "iteration of 100 steps, raw")
    _, runs, _, _, mean_cell, _ = table_row(text)
    assert runs == "2" and point(mean_cell) == f"{(15.0 + (30.0 + 50.0) / 2) / 2:.3g}"
    assert (trained / "o" / "curves.png").stat().st_size > 10_000

    assert main(["compare", str(trained / "r"), "--score", "train", "--iteration-steps", "150",
                 "--out", str(trained / "o")]) == 0
    text = capsys.readouterr().out  # seed 2 over (150, 300]: (4+30+50)/3
    assert "last iteration of 150 steps" in text
    assert point(table_row(text)[4]) == f"{(37 / 3 + 84 / 3) / 2:.3g}"

    assert main(["compare", str(trained / "r"), "--out", str(trained / "o")]) == 0  # the default: eval
    text = capsys.readouterr().out
    assert text.startswith("Final performance (final eval return (ε=0.001)")
    assert point(table_row(text)[4]) == "500"


def test_bad_score_inputs(trained, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(trained / "r"), "--score", "foo"])
    assert exit_.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err
    fake_run(trained / "untrained", "CartPole-v1", [(100, 9.0)])  # eval.jsonl, no TensorBoard events
    assert main(["compare", str(trained / "untrained"), "--score", "train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no training returns (TensorBoard tag charts/episodic_return)" in err
    assert main(["compare", str(trained / "r"), "--score", "train", "--iteration-steps", "400"]) == 2
    assert "less than one iteration of 400" in capsys.readouterr().err


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid`, from /proc (field 4 of /proc/<id>/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_a_run_stopped_by_sigterm_is_interrupted_not_done(tmp_path, capsys):
    """SIGTERM makes `rlsuite train` save a checkpoint and exit 0; the sweep must not call that done."""
    out = tmp_path / "sweep"
    shared = [a for item in TINY + ["train.checkpoint_every=200"] for a in ("--set", item)]
    argv = ["sweep", "dqn-classic", "--env", "CartPole-v1", "--grid", "agent.gmp.sparsity=0", "--seeds", "1",
            "--steps", "1500", "--jobs", "1", "--out", str(out), *shared]
    codes = []
    sweep = threading.Thread(target=lambda: codes.append(main(argv)))
    sweep.start()
    checkpoints = out / "gmp.sparsity=0" / "s1" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.is_dir() and any(checkpoints.glob("ckpt_*.pt"))) and time.time() < deadline:
        time.sleep(0.2)
    for pid in children_of(os.getpid()):
        os.kill(pid, signal.SIGTERM)
    sweep.join(timeout=120)
    printed = capsys.readouterr().out
    assert codes == [1], printed
    assert "INTERRUPTED (re-run the sweep to resume) gmp.sparsity=0 s1" in printed
    assert "0 ok, 0 failed, 1 interrupted" in printed
    # the run directory is intact: the same command resumes it from its checkpoint
    assert main(argv) == 0
    assert "start gmp.sparsity=0 s1 (resume)" in capsys.readouterr().out
    assert load_run(out / "gmp.sparsity=0" / "s1").evals[-1]["step"] == 1500
