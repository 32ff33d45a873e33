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
