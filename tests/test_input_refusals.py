"""Bad input to the offline, fine-tuning, torchrun, start-state and eval paths: one line on stderr,
exit code 2 (130 for Ctrl-C), nothing written; and the legitimate neighbours of each case work."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsuite.cli import main
from rlsuite.errors import UserError

TINY = ["agent.model.context=5", "agent.model.embed_dim=16", "agent.model.n_layer=1", "agent.model.n_head=2",
        "agent.model.max_timestep=512", "agent.batch_size=4", "agent.warmup_updates=1", "agent.encoder.hidden=8",
        "train.eval_episodes=1", "train.eval_num_envs=1", "train.torch_threads=1"]


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def refused(capsys, args: list[str], message: str, run_dir: Path) -> None:
    capsys.readouterr()
    code = main(args + ["--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, (code, err)
    assert not run_dir.exists() and not run_dir.parent.exists()  # not even the folders above it


@pytest.fixture
def data(cartpole_datasets) -> dict[str, str]:
    return {"expert": str(cartpole_datasets / "expert"), "noisy": str(cartpole_datasets / "noisy")}


@pytest.fixture(scope="module")
def dt_parent(cartpole_datasets, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dt-parent") / "run"
    assert main(["train", "dt", "--dataset", str(cartpole_datasets / "expert"), "--steps", "2", "--run-dir",
                 str(run), "--no-progress", *sets(TINY)]) == 0
    return run


# ----------------------------------------------------------------------------- train dt / bc


@pytest.mark.parametrize("extra,message", [
    (["agent.model.context=400"], "set agent.model.context to at most 326"),
    (["agent.model.context=300", "agent.model.max_timestep=100"], "set agent.model.max_timestep=326"),
    (["agent.batch_size=0"], "agent.batch_size"),
])
def test_dt_sizes_are_checked_against_the_data(data, tmp_path, capsys, extra, message):
    refused(capsys, ["train", "dt", "--dataset", data["expert"], "--steps", "2", *sets(TINY + extra)], message,
            tmp_path / "out" / "run")


def test_timesteps_past_the_table_train_with_a_warning_line(data, tmp_path, capsys):
    code = main(["train", "dt", "--dataset", data["expert"], "--steps", "1", "--run-dir", str(tmp_path / "run"),
                 "--no-progress", *sets(TINY + ["agent.model.max_timestep=300"])])
    err = capsys.readouterr().err.strip()
    assert code == 0 and len(err.splitlines()) == 1, err
    # expert: episodes of 264 and 326 steps: 26 steps past a table of 300
    assert "warning: 26 of 590 steps" in err and "longest episode 326" in err and "max_timestep=326" in err


@pytest.mark.parametrize("agent", ["dt", "bc"])
def test_env_of_an_offline_run_comes_from_its_datasets(data, tmp_path, capsys, agent):
    refused(capsys, ["train", agent, "--dataset", data["expert"], "--env", "pong", "--steps", "1", *sets(TINY[-4:])],
            "leave --env out", tmp_path / "out" / "run")


@pytest.mark.parametrize("agent", ["dt", "bc"])
def test_env_naming_the_datasets_env_is_accepted(data, tmp_path, capsys, agent):
    extra = TINY if agent == "dt" else TINY[-4:]
    assert main(["train", agent, "--dataset", data["expert"], "--env", "CartPole-v1", "--steps", "1", "--run-dir",
                 str(tmp_path / "run"), "--no-progress", *sets(extra)]) == 0


def _spaces_variant(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["action_space"] = {**manifest["action_space"], "n": 3} if isinstance(manifest["action_space"], dict) \
        else manifest["action_space"]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return str(dst)


def test_dataset_lists_a_user_might_give(data, tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    cases = [
        ([str(tmp_path / "plain")], "is not a dataset"),
        ([data["expert"], str(tmp_path / "plain")], "is not a dataset"),
        ([","], "learns from datasets"),
        ([data["expert"], _spaces_variant(data["noisy"], tmp_path / "three")], "differ in observation or action space"),
    ]
    for i, (paths, message) in enumerate(cases):
        refused(capsys, ["train", "dt", "--env", "CartPole-v1", "--dataset", ",".join(paths), "--steps", "1",
                         *sets(TINY)], message, tmp_path / f"out{i}" / "run")


# ----------------------------------------------------------------------------- finetune


def test_finetune_refusals_of_an_offline_parent_write_nothing(dt_parent, data, tmp_path, capsys):
    base = ["finetune", "--from", str(dt_parent), "--steps", "1"]
    refused(capsys, base + ["--dataset", data["noisy"], "--retention", "bc"], "apply to online agents",
            tmp_path / "a" / "run")
    refused(capsys, base + ["--dataset", data["noisy"], "--set", "finetune.retention=ks"], "apply to online agents",
            tmp_path / "b" / "run")
    refused(capsys, base + ["--dataset", str(tmp_path / "missing")], "not a dataset directory", tmp_path / "c" / "run")
    refused(capsys, base + ["--dataset", data["noisy"], "--env", "pong"], "leave --env out", tmp_path / "d" / "run")


def test_finetune_data_of_another_env_is_refused(data, tmp_path, capsys):
    parent = tmp_path / "ppo"
    assert main(["train", "ppo-closefar", "--env", "closefar:chain", "--steps", "64", "--num-envs", "1",
                 "--run-dir", str(parent), "--no-progress", "--set", "agent.num_steps=64",
                 "--set", "train.eval_episodes=1", "--set", "train.eval_num_envs=1"]) == 0
    refused(capsys, ["finetune", "--from", str(parent), "--env", "closefar:chain", "--retention", "bc",
                     "--set", f"finetune.data={data['expert']}"], "finetune.data", tmp_path / "ft" / "run")


# ----------------------------------------------------------------------------- torchrun


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "rlsuite", *args],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["train", "dt", "--set", "agent.batch_size=7"], "must be a multiple of 2"),
    (["train", "bc", "--set", "agent.batch_size=1"], "must be a multiple of 2"),
    (["train", "dqn-classic", "--env", "CartPole-v1"], "online agent"),
])
def test_torchrun_refusals_are_said_once_and_every_rank_exits_2(data, tmp_path, args, message):
    if args[1] in ("dt", "bc"):
        args = args + ["--dataset", data["expert"]]
    result = _torchrun(args + ["--run-dir", str(tmp_path / "out" / "run"), "--no-progress"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("rlsuite: error:")]
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr[-3000:]
    assert "exitcode  : 2" in result.stderr  # the first rank to end ended with 2, not a traceback's 1
    assert "/rlsuite/" not in result.stderr.replace(sys.executable, "")  # no frame of ours
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- start states, optional packages


def test_truncated_start_states_and_start_states_on_minatar(tmp_path, capsys):
    from rlsuite.envs import EnvConfig, make
    from rlsuite.envs.start_states import load_state_set

    folder = tmp_path / "states"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / "states.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="states.npz is unreadable"):
        load_state_set(folder)
    with pytest.raises(UserError, match="remove env.start_states"):
        make(EnvConfig(id="minatar:breakout", start_states=str(folder)), 1, 0)
    refused(capsys, ["train", "dqn-minatar", "--env", "minatar:breakout", "--steps", "10",
                     "--set", f"env.start_states={folder}"], "remove env.start_states", tmp_path / "out" / "run")


@pytest.mark.parametrize("module,call,install", [
    ("minatar", lambda: __import__("rlsuite.envs", fromlist=["make"]).make(
        __import__("rlsuite.envs", fromlist=["EnvConfig"]).EnvConfig(id="minatar:breakout"), 1, 0),
     "pip install -e '.[minatar]'"),
    ("nle", lambda: __import__("rlsuite.envs", fromlist=["make"]).make(
        __import__("rlsuite.envs", fromlist=["EnvConfig"]).EnvConfig(id="nethack"), 1, 0),
     "pip install -e '.[nethack]'"),
    ("ale_py.roms", lambda: __import__("rlsuite.envs.config", fromlist=["x"]).resolve_env_id("pong"), "pip install -e ."),
    ("rliable.library", lambda: __import__("rlsuite.analysis.compare", fromlist=["x"]).aggregate({}), "pip install -e ."),
])
def test_a_missing_optional_package_is_one_line_naming_the_install(monkeypatch, module, call, install):
    from rlsuite.envs import config as env_config

    env_config._atari_roms.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as for an absent package
    try:
        with pytest.raises(UserError) as info:
            call()
    finally:
        env_config._atari_roms.cache_clear()
    assert install in str(info.value) and module in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- Ctrl-C in eval


def test_ctrl_c_in_eval_exits_130_and_records_nothing(dt_parent, monkeypatch, capsys):
    import rlsuite.loops.offline_games as games

    before = (dt_parent / "eval.jsonl").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(games, "evaluate", interrupted)
    capsys.readouterr()
    assert main(["eval", str(dt_parent), "--episodes", "1", "--num-envs", "1"]) == 130
    assert capsys.readouterr().err.strip() == "rlsuite: interrupted"
    assert (dt_parent / "eval.jsonl").read_text() == before


def test_sigint_during_eval_subprocess(dt_parent):
    before = (dt_parent / "eval.jsonl").read_text()
    proc = subprocess.Popen([sys.executable, "-m", "rlsuite", "eval", str(dt_parent), "--episodes", "100000",
                             "--num-envs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            # a child inherits an ignored SIGINT: start it with the default, as a shell does
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(15)  # evaluating by then (imports take 2-3 s warm, several times that in a fresh clone without .pyc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "rlsuite: interrupted", err
    assert (dt_parent / "eval.jsonl").read_text() == before


def test_eval_target_on_a_run_without_a_checkpoint_says_so(tmp_path, capsys):
    """A run that has not written its first checkpoint yet: the line names that, not 'online run'."""
    (tmp_path / "run").mkdir()
    assert main(["eval", str(tmp_path / "run"), "--target", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint" in err
