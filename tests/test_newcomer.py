"""What a newcomer meets first: a clone that is self-contained, errors that say what to do, and
default run names that do not collide."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    files = []
    for name in out.stdout.splitlines():
        path = ROOT / name
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images, the compiled extension)
        files.append(path)
    return files


def test_no_tracked_file_points_outside_the_repo():
    this = Path(__file__).resolve()
    offenders = []
    for path in _tracked_text_files():
        if path.resolve() == this:
            continue
        text = path.read_text(errors="replace")
        if path.relative_to(ROOT).as_posix() == "docs/DESIGN.md":
            text = text.split("## History")[0]  # the history note may say where it came from
        for needle in ("../shared", "shared/papers"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders


@pytest.mark.parametrize("doc", ["README.md", "docs/DESIGN.md"])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    text = path.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert doc != "README.md" or "docs/DESIGN.md" in targets
    missing = []
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, missing


def test_readme_installs_from_the_checkout():
    text = (ROOT / "README.md").read_text()
    assert "pip install 'rlsuite[" not in text
    assert "pip install -e '.[bench]'" in text


def test_image_preset_on_a_vector_env_suggests_the_preset_that_fits(capsys, tmp_path):
    from rlsuite.cli import main

    code = main(["train", "dqn", "--env", "CartPole-v1", "--run-dir", str(tmp_path / "run"),
                 "--set", "train.progress=false"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "dqn-classic" in lines[0] and "agent.encoder.kind=mlp" in lines[0]
    assert "Traceback" not in err + out


# ----------------------------------------------------------------------------- default run names

def _train(*argv: str) -> int:
    from rlsuite.cli import main
    from tests.conftest import TINY

    sets = [arg for item in TINY for arg in ("--set", item)]
    return main(["train", *argv, "--steps", "300", "--set", "train.eval_episodes=1", *sets])


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_default_run_dirs_are_named_by_preset_and_never_collide(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train("dqn-classic", "--env", "CartPole-v1") == 0
    assert _train("dqn-zoo", "--env", "CartPole-v1") == 0
    capsys.readouterr()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["dqn-classic-CartPole-v1-s1", "dqn-zoo-CartPole-v1-s1"]

    first = tmp_path / "runs" / "dqn-classic-CartPole-v1-s1"
    before = _snapshot(first)
    assert _train("dqn-classic", "--env", "CartPole-v1") == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "already holds a run" in lines[0] and "--resume" in lines[0] and "--run-dir" in lines[0]
    assert _snapshot(first) == before  # not even a lock file was written
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs  # no suffixed sibling

    # a --config relaunch with a new seed is named after the config's preset
    assert _train("--config", str(first / "config.toml"), "--seed", "2") == 0
    assert (tmp_path / "runs" / "dqn-classic-CartPole-v1-s2" / "config.toml").is_file()


def _train_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.strip().startswith("rlsuite train ") and "--resume" not in line and "--config" not in line]


def _default_dir(command: str) -> str:
    import shlex

    from rlsuite import config
    from rlsuite.cli import build_parser, default_run_dir, train_overrides

    args = build_parser().parse_args(shlex.split(command)[1:])
    if args.tasks and not args.env:
        args.env = args.tasks.split(",")[0].strip()
    cfg = config.build_run_config(args.agent, args.env, train_overrides(args), args.config)
    return default_run_dir(cfg).as_posix()


@pytest.mark.parametrize("source", ["help", "docs/cli.md"])
def test_example_run_paths_are_the_ones_train_produces(source):
    """The run directories the examples name (in --help, and the command-line page's first block)
    are the ones `rlsuite train` makes for the commands beside them."""
    from rlsuite.cli import EXAMPLES

    text = EXAMPLES if source == "help" else (ROOT / source).read_text().split("## At a glance")[1].split("```")[1]
    produced = {_default_dir(cmd) for cmd in _train_lines(text)}
    assert "runs/dqn-pong-s1" in produced
    used = set(re.findall(r"runs/dqn[\w.:-]*-s\d+", text))
    assert used, "the examples name no run directory"
    assert used <= produced, used - produced
