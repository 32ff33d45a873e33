"""`rlsuite sweep --launcher ray | slurm`: the same run directories as the local launcher, retries
of failed runs, skips of finished and locked runs, SLURM submission through submitit's local
executor (no cluster here), and one-line errors for a missing dependency or a bad option."""
from __future__ import annotations

import json
import os
import sys

import pytest

from rlsuite.run import rundir
from rlsuite.cli import main
from tests.conftest import TINY

SHARED = [a for item in TINY + ["train.eval_every=200"] for a in ("--set", item)]
BASE = ["sweep", "dqn-classic", "--env", "CartPole-v1", "--steps", "400", *SHARED]
GRID = ["--grid", "agent.batch_size=16,32", "--seeds", "1,2"]  # 2 arms x 2 seeds


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module: the launcher joins it instead of starting its own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def run_files(out) -> dict[str, tuple[str, list[int]]]:
    """{arm/sN: (config.toml text, evaluation steps)} of every run below `out`."""
    runs = {}
    for config in out.rglob("config.toml"):
        steps = [json.loads(line)["step"] for line in (config.parent / "eval.jsonl").read_text().splitlines()]
        runs[config.parent.relative_to(out).as_posix()] = (config.read_text(), steps)
    return runs


def attempts(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("=== rlsuite sweep: attempt")]


def test_ray_sweep_writes_what_local_writes_and_a_rerun_skips(tmp_path, ray_instance, capsys):
    assert main([*BASE, *GRID, "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
    ray_argv = [*BASE, *GRID, "--launcher", "ray", "--out", str(tmp_path / "ray")]
    assert main(ray_argv) == 0
    assert "sweep finished: 4 ok, 0 failed" in capsys.readouterr().out
    local, remote = run_files(tmp_path / "local"), run_files(tmp_path / "ray")
    assert sorted(remote) == [f"agent.batch_size={b}/s{s}" for b in (16, 32) for s in (1, 2)]
    assert remote == local  # same configs, same evaluation steps (200, 400)
    assert all(steps == [200, 400] for _, steps in remote.values())
    config = remote["agent.batch_size=32/s2"][0]
    assert "batch_size = 32" in config and "seed = 2" in config

    assert main(ray_argv) == 0  # finished runs are skipped, not run again
    assert capsys.readouterr().out.count("(done)") == 4  # reported as skipped...
    logs = sorted((tmp_path / "ray").rglob("s*.log"))
    assert len(logs) == 4 and all(len(attempts(log)) == 1 for log in logs)  # ...and never started twice


def test_ray_retries_a_failing_run_and_skips_a_locked_one(tmp_path, ray_instance, capsys):
    """cuda:99 passes the config check but fails in `rlsuite train`: 1 + 2 retries. The cpu run is
    locked by this process, as by a lone `rlsuite train`: skipped, its directory untouched."""
    out = tmp_path / "s"
    held = rundir.acquire(out / "train.device=cpu" / "s1")
    try:
        code = main([*BASE, "--grid", "train.device=cpu,cuda:99", "--seeds", "1", "--launcher", "ray",
                     "--retries", "2", "--out", str(out)])
    finally:
        rundir.release(held)
    text = capsys.readouterr().out
    assert code == 1 and "sweep finished: 0 ok, 1 failed, 1 skipped (in use)" in text
    assert "retry 1/2" in text and "retry 2/2" in text and "retry 3/2" not in text
    failing = out / "train.device=cuda:99"
    assert f"FAILED train.device=cuda:99 s1 (exit 2, see {failing / 's1.log'})" in text
    tries = attempts(failing / "s1.log")
    assert [t.split(" (")[0] for t in tries] == [f"=== rlsuite sweep: attempt {i}" for i in (1, 2, 3)]
    assert f"skip train.device=cpu s1 (in use by pid {os.getpid()} on " in text
    assert list((out / "train.device=cpu").iterdir()) == [out / "train.device=cpu" / "s1"]  # no log: never started
    assert list((out / "train.device=cpu" / "s1").iterdir()) == []  # the lock file is gone with our release


def test_slurm_submits_one_job_per_run_then_status(tmp_path, monkeypatch, capsys):
    import submitit

    given, jobs = [], []
    real_update, real_submit = submitit.AutoExecutor.update_parameters, submitit.AutoExecutor.submit

    def update(self, **kwargs):
        given.append(kwargs)
        return real_update(self, **kwargs)

    def submit(self, fn, *args, **kwargs):
        jobs.append(real_submit(self, fn, *args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(submitit.AutoExecutor, "update_parameters", update)
    monkeypatch.setattr(submitit.AutoExecutor, "submit", submit)
    out = tmp_path / "s"
    argv = [*BASE, "--grid", "agent.batch_size=16", "--seeds", "1,2", "--launcher", "slurm", "--slurm-executor",
            "local", "--slurm-time", "5", "--slurm-partition", "debug", "--slurm-mem", "2", "--cpus-per-run", "1",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert given == [{"timeout_min": 5, "cpus_per_task": 1, "gpus_per_node": 0, "name": "rlsuite-s",
                      "mem_gb": 2.0, "slurm_partition": "debug"}]
    ids = [job.job_id for job in jobs]
    assert len(ids) == 2 and f"submitted 2 job(s): {ids[0]} {ids[1]}" in text
    record = json.loads((out / "slurm_jobs.json").read_text())
    assert [(r["arm"], r["seed"], r["job_id"]) for r in record["jobs"]] == [("agent.batch_size=16", 1, ids[0]),
                                                                             ("agent.batch_size=16", 2, ids[1])]
    assert record["jobs"][0]["run_dir"] == str((out / "agent.batch_size=16" / "s1").resolve())
    assert main(["sweep", "--status", "--out", str(out)]) == 0  # while the jobs are running (or just finished)
    table = capsys.readouterr().out
    assert "slurm state" in table and table.count(ids[0]) == 1 and table.count(ids[1]) == 1

    outcomes = [job.result() for job in jobs]  # wait for submitit's local jobs
    assert [(o.code, o.note) for o in outcomes] == [(0, "done"), (0, "done")]
    run_dir = (out / "agent.batch_size=16" / "s1").resolve()
    [header] = attempts(out / "agent.batch_size=16" / "s1.log")
    assert (f"-m rlsuite.cli train dqn-classic --env CartPole-v1 --run-dir {run_dir} --steps 400" in header
            and "--set agent.batch_size=16 --set train.seed=1 --set train.torch_threads=1" in header)
    assert sorted(run_files(out)) == ["agent.batch_size=16/s1", "agent.batch_size=16/s2"]
    assert all(steps == [200, 400] for _, steps in run_files(out).values())

    assert main(["sweep", "--status", "--out", str(out)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("agent.batch_size=")]
    assert [row[:4] for row in rows] == [["agent.batch_size=16/s1", "done", ids[0], "FINISHED"],
                                         ["agent.batch_size=16/s2", "done", ids[1], "FINISHED"]]
    assert main(argv) == 0  # done runs are not submitted again; the record keeps their jobs
    assert "submitted 0 job(s)" in capsys.readouterr().out and len(jobs) == 2
    assert [r["job_id"] for r in json.loads((out / "slurm_jobs.json").read_text())["jobs"]] == ids


@pytest.mark.parametrize("launcher,module,extra", [("ray", "ray", "Ray"), ("slurm", "submitit", "submitit")])
def test_a_missing_launcher_dependency_is_one_line(tmp_path, monkeypatch, capsys, launcher, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import ray` now raises ImportError
    out = tmp_path / "s"
    assert main([*BASE, "--seeds", "1", "--launcher", launcher, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--launcher {launcher} needs {extra}: pip install 'rlsuite[{launcher}]'" in err
    assert not out.exists()


@pytest.mark.parametrize("extra,message", [
    (["--retries", "-1", "--launcher", "ray"], "--retries must be 0 or more"),
    (["--retries", "2"], "--retries applies to --launcher ray or slurm"),
    (["--cpus-per-run", "0", "--launcher", "ray"], "--cpus-per-run must be at least 1"),
    (["--gpus-per-run", "-1", "--launcher", "slurm"], "--gpus-per-run must be 0 or more"),
    (["--gpus-per-run", "0.5", "--launcher", "slurm"], "a SLURM job asks for whole GPUs"),
    (["--slurm-partition", "gpu"], "--slurm-partition applies to --launcher slurm, not --launcher local"),
    (["--slurm-time", "60", "--launcher", "ray"], "--slurm-time applies to --launcher slurm"),
    (["--ray-address", "auto", "--launcher", "slurm"], "--ray-address applies to --launcher ray"),
    (["--cpus-per-run", "2"], "--cpus-per-run applies to --launcher ray or slurm"),
    (["--jobs", "2", "--launcher", "slurm"], "--jobs sets how many runs share this machine"),
    (["--launcher", "slurm"], "sbatch, which is not on PATH"),
])
def test_bad_launcher_options_write_nothing(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch here, whatever the machine has
    out = tmp_path / "s"
    assert main([*BASE, "--seeds", "1", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


def test_status_needs_only_out(tmp_path, capsys):
    assert main(["sweep", "dqn-classic", "--status", "--out", str(tmp_path)]) == 2
    assert "--status takes only --out DIR" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path)]) == 2
    assert "needs an AGENT and --env" in capsys.readouterr().err
    assert main(["sweep", "--status", "--out", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--gpus-per-run", "1"], "--gpus-per-run 1: this machine has 0 GPUs, so no run could start; use --gpus-per-run 0"),
    (["--cpus-per-run", "100000"], "--cpus-per-run 100000: this machine has "),
])
def test_ray_resources_this_machine_lacks_are_refused_before_ray_starts(tmp_path, monkeypatch, capsys, extra, message):
    """A local Ray instance would queue such tasks forever: one line, exit 2, Ray never started."""
    import ray
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    out = tmp_path / "s"
    assert main([*BASE, "--seeds", "1", "--launcher", "ray", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_ray_resources_the_cluster_lacks_are_refused(tmp_path, ray_instance, capsys):
    out = tmp_path / "s"
    assert main([*BASE, "--seeds", "1", "--launcher", "ray", "--cpus-per-run", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "--cpus-per-run 3: the Ray cluster has 2 CPUs on its biggest machine, so no run could start" in err
    assert not out.exists()


def test_ray_and_slurm_get_absolute_paths(tmp_path, monkeypatch):
    """A relative --out and relative paths in the arms' overrides reach the workers absolute (ray
    issue #291: a worker's cwd is not the driver's); arm names keep the paths as the user gave them."""
    from rlsuite.launch import launchers
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "c"):
        (tmp_path / "data" / name).mkdir(parents=True)
    seen = {}

    def fake_run_ray(plan, agent, env, base, steps, **kw):
        seen.update(plan=plan, base=base)
        return [(job, 0) for job in plan]

    monkeypatch.setattr(launchers, "run_ray", fake_run_ray)
    assert main([*BASE, "--seeds", "1", "--launcher", "ray", "--grid", "finetune.data=data/a,data/b",
                 "--set", "offline.datasets=data/c,not-a-path", "--out", "rel"]) == 0
    plan = seen["plan"]
    assert [job.run_dir for job in plan] == [tmp_path / "rel" / f"finetune.data=data-{x}" / "s1" for x in "ab"]
    assert [job.overrides for job in plan] == [[f"finetune.data={tmp_path / 'data' / x}"] for x in "ab"]
    assert f"offline.datasets={tmp_path / 'data' / 'c'},not-a-path" in seen["base"]
