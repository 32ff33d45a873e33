"""`rlsuite bench plasticity`: the CLI smoke run and NaP's constant layer norms."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sklearn")

from rlsuite.bench.plasticity import PlasticityConfig, build_arm, load_data, train_task  # noqa: E402


def test_quick_benchmark_through_the_cli(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "plasticity", "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["arm"] for s in summary] == ["plain", "ln", "nap", "ln_wd"]
    assert all(0.0 <= s["last_task_acc"] <= 1.0 and s["final_param_norm"] > 0 for s in summary)
    for name in ("accuracy.png", "param_norm.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "summary.md").read_text()
    assert "| arm | first-task acc | last-task acc | last/first | final param norm |" in table
    assert "| nap |" in table and "| nap |" in proc.stderr  # the table is also printed
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 * PlasticityConfig.quick().tasks


def test_missing_scikit_learn_is_a_user_error(tmp_path):
    code = ("import sys; sys.modules['sklearn'] = None; from rlsuite.cli import main; "
            f"sys.exit(main(['bench', 'plasticity', '--quick', '--out', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install scikit-learn" in proc.stderr and "Traceback" not in proc.stderr


def test_nap_keeps_projected_norms_at_init_while_plain_norms_grow():
    torch.set_num_threads(1)
    cfg = PlasticityConfig(tasks=3, steps=150, hidden=(64, 64))
    x = load_data()
    # NaP projects both hidden linears and the first norm; the head and the norm feeding it stay free.
    nap, nap_opt, projector = build_arm("nap", cfg, seed=0, x=x)
    assert len(projector.groups) == 3
    plain, plain_opt, _ = build_arm("plain", cfg, seed=0, x=x)
    plain_hidden = [m for m in plain.modules() if isinstance(m, torch.nn.Linear)][:-1]

    nap_init, plain_norms = _group_norms(projector.groups), [_weight_norms(plain_hidden)]
    labels, batches = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    for _ in range(cfg.tasks):
        y = torch.randint(cfg.classes, (len(x),), generator=labels)
        train_task(nap, nap_opt, projector, x, y, cfg, batches)
        train_task(plain, plain_opt, None, x, y, cfg, batches)
        torch.testing.assert_close(_group_norms(projector.groups), nap_init, rtol=1e-5, atol=1e-6)
        plain_norms.append(_weight_norms(plain_hidden))
    growth = torch.stack(plain_norms)  # (tasks + 1, hidden layers)
    assert (growth[1:] > growth[:-1]).all() and (growth[-1] > 1.1 * growth[0]).all(), growth


def _group_norms(groups) -> torch.Tensor:
    return torch.stack([torch.cat([p.detach().flatten() for p in ps]).norm() for ps in groups.values()])


def _weight_norms(layers) -> torch.Tensor:
    return torch.stack([m.weight.detach().norm() for m in layers])


def test_cm_arms_are_their_base_arm_with_adam_cm_and_run_through_the_cli(tmp_path, capsys):
    from rlsuite.nn.adam_cm import AdamCM

    cfg = PlasticityConfig(tasks=1, steps=5, hidden=(16,))
    x = load_data()
    base, base_opt, _ = build_arm("ln", cfg, seed=4, x=x)
    cm, cm_opt, _ = build_arm("ln_cm", cfg, seed=4, x=x)
    assert type(base_opt) is torch.optim.AdamW and isinstance(cm_opt, AdamCM)
    assert cm_opt.defaults["lr"] == base_opt.defaults["lr"] and cm_opt.defaults["weight_decay"] == 0.0
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), cm.parameters()))  # same init per seed
    from rlsuite.cli import main

    argv = ["bench", "plasticity", "--quick", "--arms", "plain_cm", "--out", str(tmp_path / "bench")]
    assert main(argv) == 0
    assert [json.loads(line)["arm"] for line in capsys.readouterr().out.splitlines()] == ["plain_cm"]
    assert main(argv[:-4] + ["--arms", "plain,sgd", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "unknown plasticity arm" in err and "Traceback" not in err and not (tmp_path / "bad").exists()
