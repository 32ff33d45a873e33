"""`rlsuite compare` of fine-tuning runs: the knowledge-retention table (rlsuite/analysis/compare_finetune.py)
on real runs, checked against numbers recomputed here from their jsonl files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlsuite.cli import main
from rlsuite.analysis.compare_finetune import far_metrics

QUIET = ["--no-progress", "--set", "train.torch_threads=1"]
FT = ["--steps", "20000", "--set", "finetune.far_eval_every=5000", "--set", "train.eval_every=5000"]


def success_record(step: int, wins: list[int]) -> dict:
    """A far.jsonl record of games won (1) or lost (0), as rlsuite finetune writes it."""
    return {"step": step, "success_mean": float(np.mean(wins)), "episode_success": list(wins), "episodes": len(wins),
            "mean": float(np.mean(wins)), "far_kl": 0.0}


def test_forgetting_of_a_stationary_policy_is_zero_within_its_noise_floor() -> None:
    """A policy that never changes (true FAR success p = 0.8), 20 games x 21 evaluations, many runs:
    forgetting = FAR(0) - final FAR averages 0 (to 4 standard errors of the mean over runs), where the
    old FAR(0) - min FAR averages about 0.18; and the reported SE is calibrated: it matches the spread
    of the forgetting over runs, sqrt(2 p (1 - p) / 20) = 0.126."""
    p, games, evals, runs = 0.8, 20, 21, 3000
    rng = np.random.default_rng(12345)
    wins = (rng.random((runs, evals, games)) < p).astype(int)
    metrics = [far_metrics([success_record(5000 * k, w[k]) for k in range(evals)], "success_mean") for w in wins]
    forgetting = np.array([m["forgetting"] for m in metrics])
    sd = np.sqrt(2 * p * (1 - p) / games)  # the difference of two independent binomial means
    assert abs(forgetting.mean()) < 4 * sd / np.sqrt(runs)
    assert forgetting.std() == pytest.approx(sd, rel=0.05)
    assert np.mean([m["forgetting_se"] for m in metrics]) == pytest.approx(sd, rel=0.05)
    rates = wins.mean(axis=2)
    old = (rates[:, 0] - rates.min(axis=1)).mean()  # the old definition, recomputed here
    assert 0.15 < old < 0.21 and forgetting.mean() < old / 10


def test_forgetting_and_its_se_on_hand_built_curves() -> None:
    wins = {0: [1] * 20, 5000: [1] * 10 + [0] * 10, 10000: [1] * 16 + [0] * 4}
    m = far_metrics([success_record(s, w) for s, w in wins.items()], "success_mean")
    assert m["forgetting"] == pytest.approx(1.0 - 0.8)  # not FAR(0) - min = 0.5
    assert m["far_min"] == 0.5
    assert m["forgetting_se"] == pytest.approx(np.sqrt(0 / 20 + 0.8 * 0.2 / 20))
    first = {"step": 0, "mean": 3.0, "episode_returns": [2.0, 4.0], "episodes": 2}
    last = {"step": 100, "mean": 5.0, "episode_returns": [1.0, 5.0, 9.0], "episodes": 3}
    m = far_metrics([first, last], "mean")
    assert m["forgetting"] == pytest.approx(-2.0)  # improved
    assert m["forgetting_se"] == pytest.approx(np.sqrt(2.0 / 2 + 16.0 / 3))  # sample variances 2 and 16
    legacy = [{k: v for k, v in r.items() if k != "episode_returns"} | {"std": s} for r, s in
              ((first, 1.0), (last, np.sqrt(32 / 3)))]  # population std, as summarize stores it
    assert far_metrics(legacy, "mean")["forgetting_se"] == pytest.approx(np.sqrt(2.0 / 2 + 16.0 / 3))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A pre-trained chain agent, 2 seeds x {bc, vanilla} fine-tunes and one scratch run, in runs/."""
    root = tmp_path_factory.mktemp("ft")
    pre = root / "pre"
    assert main(["train", "ppo-closefar", "--env", "closefar:chain", "--set", "env.start=far", "--steps", "60000",
                 "--run-dir", str(pre), *QUIET]) == 0
    for method in ("bc", "none"):
        for seed in (1, 2):
            assert main(["finetune", "--from", str(pre), "--env", "closefar:chain", "--retention", method,
                         "--seed", str(seed), "--run-dir", str(root / "runs" / f"{method}-s{seed}"), *FT, *QUIET]) == 0
    assert main(["train", "ppo-closefar", "--env", "closefar:chain", "--steps", "20000", "--set",
                 "train.eval_every=5000", "--run-dir", str(root / "runs" / "scratch-s1"), *QUIET]) == 0
    return root


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected(run: Path, metric: str = "success_mean") -> dict[str, float]:
    """The module docstring's definitions, recomputed independently."""
    far = records(run / "far.jsonl")
    steps = [r["step"] for r in far]
    values = [r[metric] for r in far]
    area = sum((values[i] + values[i + 1]) / 2 * (steps[i + 1] - steps[i]) for i in range(len(far) - 1))
    assert steps[0] == 0 and steps == sorted(steps)
    if metric == "success_mean":  # binomial variance of one game's success
        var = [r[metric] * (1 - r[metric]) / len(r["episode_success"]) for r in (far[0], far[-1])]
    else:  # sample variance of the games' returns
        var = [np.var(r["episode_returns"], ddof=1) / len(r["episode_returns"]) for r in (far[0], far[-1])]
    return {"final return": records(run / "eval.jsonl")[-1]["mean"], "FAR(0)": values[0], "min FAR": min(values),
            "final FAR": values[-1], "FAR AUC": area / (steps[-1] - steps[0]), "forgetting": values[0] - values[-1],
            "forgetting SE": (var[0] + var[1]) ** 0.5, "final far_kl": far[-1]["far_kl"]}


def parse(table: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(title, {method: {column: cell}}) of the markdown table."""
    lines = table.splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    rows = {}
    for line in lines[4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return lines[0], rows


def point(cell: str) -> tuple[float, float, float]:
    value, ci = cell.split(" [")
    lo, hi = ci.rstrip("]").split(", ")
    return float(value), float(lo), float(hi)


def check_rows(rows: dict[str, dict[str, str]], root: Path, metric: str) -> None:
    for method, prefix in (("bc", "bc"), ("vanilla", "none")):
        row = rows[method]
        assert row["runs"] == "2"
        per_seed = [expected(root / f"{prefix}-s{s}", metric) for s in (1, 2)]
        for column in per_seed[0]:
            want = np.mean([e[column] for e in per_seed])
            got, lo, hi = point(row[column])
            assert got == pytest.approx(want, rel=5e-3, abs=1e-6), (method, column)
            assert lo - 1e-9 <= got <= hi + 1e-9, (method, column, row[column])


def test_table_matches_the_definitions(runs, capsys):
    out = runs / "cmp"
    assert main(["compare", str(runs / "runs"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    title, rows = parse(printed)
    assert "success rate (success_mean)" in title and "stratified-bootstrap" in title
    assert set(rows) == {"bc", "vanilla", "scratch"}
    check_rows(rows, runs / "runs", "success_mean")
    scratch = rows["scratch"]
    assert scratch["runs"] == "1"
    final = records(runs / "runs/scratch-s1/eval.jsonl")[-1]["mean"]
    assert point(scratch["final return"])[0] == pytest.approx(final, rel=5e-3)
    far_columns = ("FAR(0)", "min FAR", "final FAR", "FAR AUC", "forgetting", "forgetting SE", "final far_kl")
    assert [scratch[c] for c in far_columns] == ["-"] * len(far_columns)
    assert (out / "compare.md").read_text().strip() == printed.split("\n\nwritten:")[0].strip()
    assert f"written: {out / 'compare.md'}, {out / 'finetune.png'}" in printed


def test_figure_is_a_png_with_two_panels(runs, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image
    from matplotlib.figure import Figure

    panels = []
    save = Figure.savefig

    def counting(fig, *args, **kwargs):
        panels.append([(ax.get_title(), ax.get_ylabel(), len(ax.get_lines())) for ax in fig.axes])
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counting)
    out = runs / "fig"
    assert main(["compare", str(runs / "runs"), "--out", str(out)]) == 0
    path = out / "finetune.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > height > 200
    (axes,) = panels
    assert len(axes) == 2
    (ret_title, ret_label, ret_lines), (far_title, far_label, far_lines) = axes
    assert "normal start" in ret_title and "FAR" in far_title
    assert "95% percentile-bootstrap" in ret_label and "FAR success rate" in far_label
    assert ret_lines == 3 and far_lines == 2  # bc, vanilla, scratch; scratch has no FAR curve


def test_return_is_the_far_metric_without_success(runs, tmp_path, capsys):
    """FAR records without success_mean: FAR is the return, and the title says so."""
    for name in ("bc-s1", "bc-s2", "none-s1", "none-s2"):
        src, dst = runs / "runs" / name, tmp_path / name
        dst.mkdir()
        for f in ("config.toml", "eval.jsonl"):
            shutil.copy(src / f, dst / f)
        far = [{k: v for k, v in r.items() if k != "success_mean"} for r in records(src / "far.jsonl")]
        (dst / "far.jsonl").write_text("".join(json.dumps(r) + "\n" for r in far))
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "cmp")]) == 0
    title, rows = parse(capsys.readouterr().out)
    assert "return (mean)" in title
    assert set(rows) == {"bc", "vanilla"}
    check_rows(rows, tmp_path, "mean")


def test_score_train_is_refused_for_finetune_runs(runs, capsys):
    assert main(["compare", str(runs / "runs"), "--score", "train", "--out", str(runs / "x")]) == 2
    assert "far.jsonl" in capsys.readouterr().err
