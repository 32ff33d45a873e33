"""The documentation: the MkDocs site builds with --strict (a broken link or anchor, a page missing
from the navigation, or a docstring reference that does not resolve fails it); every CLI command
and every preset is named on a hand-written page; the generated references cover every config key
and every module; the README stays short; and no internal tracker number is left in the repository.

One `mkdocs build` per session (about 10 s here), shared by the tests that read the built site.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "rlsuite"
README_MAX_LINES = 250


def hand_written_pages() -> dict[str, str]:
    """The Markdown sources under docs/ (the generated references exist only inside a build)."""
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with --strict into a temporary folder."""
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocs_gen_files  # noqa: F401
        import mkdocs_literate_nav  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the documentation tools are missing ({exc}): pip install -e '.[docs]' (make install has them)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                    if line.startswith(("WARNING", "ERROR")) or "Error" in line or "Aborted" in line]
        pytest.fail("mkdocs build --strict failed:\n" + "\n".join(problems or (proc.stdout + proc.stderr).splitlines()[-40:]))
    return out


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "configuration" / "index.html").is_file()
    assert (site / "api" / "index.html").is_file()


# ----------------------------------------------------------------------------- CLI commands


def cli_commands() -> list[tuple[str, ...]]:
    """Every command path of `rlsuite`: subcommands, their sub-actions (`dataset info`,
    `states collect`), and the choices of a command's positional argument (`bench networks`)."""
    from rlsuite.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield prefix + (name,)
                    yield from walk(sub, prefix + (name,))
            elif prefix and not action.option_strings and action.choices:
                for choice in action.choices:
                    yield prefix + (str(choice),)

    return sorted(set(walk(build_parser(), ())))


def test_the_command_walk_finds_the_commands() -> None:
    commands = cli_commands()
    for expected in [("train",), ("eval",), ("dataset", "info"), ("states", "collect"), ("bench", "networks")]:
        assert expected in commands


def test_every_cli_command_is_named_on_a_page() -> None:
    text = "\n".join(hand_written_pages().values())
    missing = []
    for words in cli_commands():
        pattern = r"\brlsuite\s+" + r"\s+".join(re.escape(w) for w in words) + r"(?![\w-])"
        if not re.search(pattern, text):
            missing.append("rlsuite " + " ".join(words))
    assert not missing, f"commands no page under docs/ names (write them where they belong): {missing}"


# ----------------------------------------------------------------------------- presets


def preset_names() -> dict[str, list[str]]:
    folder = next(p for p in sorted(PACKAGE.rglob("presets")) if (p / "agents").is_dir() and (p / "envs").is_dir())
    return {kind: sorted(p.stem for p in (folder / kind).glob("*.toml")) for kind in ("agents", "envs")}


def test_every_preset_is_named_on_a_page(site: Path) -> None:
    text = "\n".join(hand_written_pages().values())
    reference = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    names = preset_names()
    assert names["agents"] and names["envs"]
    missing, unlisted = [], []
    for kind, presets in names.items():
        for name in presets:
            in_code = f"`{name}`" in text
            in_command = re.search(rf"rlsuite [^\n]*(?<![\w./:-]){re.escape(name)}(?![\w./:-])", text)
            if not (in_code or in_command):
                missing.append(f"{kind}/{name}")
            if f">{name}<" not in reference:
                unlisted.append(f"{kind}/{name}")
    assert not missing, f"presets no page under docs/ names: {missing}"
    assert not unlisted, f"presets missing from the configuration reference: {unlisted}"


# ----------------------------------------------------------------------------- generated references


def help_keys() -> list[str]:
    """The configuration keys `rlsuite train --help` lists."""
    from rlsuite.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    epilog = sub.choices["train"].epilog or ""
    return re.findall(r"^ {4}([a-z_][\w.]*) = ", epilog, flags=re.M)


def test_the_configuration_reference_has_every_key_help_shows(site: Path) -> None:
    keys = help_keys()
    assert len(keys) > 50 and "train.seed" in keys and "agent.gamma" in keys
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    missing = [key for key in keys if f">{key}<" not in page]
    assert not missing, f"keys `rlsuite train --help` shows but the configuration reference lacks: {missing}"


def public_modules() -> list[tuple[str, ...]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(part.startswith("_") for part in parts[:-1]):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif parts[-1].startswith("_"):
            continue
        if parts[:-1] and not (ROOT.joinpath(*parts[:-1]) / "__init__.py").is_file():
            continue
        found.add(parts)
    return sorted(found)


def test_the_api_reference_has_a_rendered_page_per_module(site: Path) -> None:
    modules = public_modules()
    assert ("rlsuite",) in modules and ("rlsuite", "agents", "dqn") in modules
    missing, empty = [], []
    for parts in modules:
        page = site.joinpath("api", *parts, "index.html")
        if not page.is_file():
            missing.append(".".join(parts))
        elif "doc-module" not in page.read_text(encoding="utf-8"):
            empty.append(".".join(parts))
    assert not missing, f"modules without an API page: {missing}"
    assert not empty, f"API pages mkdocstrings did not render: {empty}"


def module_exists(parts: list[str]) -> bool:
    base = ROOT.joinpath(*parts)
    return (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
            or any(base.parent.glob(base.name + ".*.so")))


def test_the_modules_and_paths_the_pages_name_exist() -> None:
    """A page that names `rlsuite/x/y.py` or `rlsuite.x.y` follows a module that moves. DESIGN.md is
    left to its author; the pages name concepts rather than top-level modules, which move."""
    pages = hand_written_pages()
    pages.pop("docs/DESIGN.md", None)
    pages["README.md"] = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = []
    for page, text in pages.items():
        for match in re.finditer(r"(?<![\w/.-])rlsuite/[\w/]*\w(?:\.py)?/?(?![\w-])", text):
            if not (ROOT / match.group(0)).exists():
                stale.append(f"{page}: {match.group(0)}")
        for match in re.finditer(r"(?<![\w/.-])rlsuite(?:\.\w+)+", text):
            parts = match.group(0).split(".")
            if not module_exists(parts[:2]):  # rlsuite.x must exist; deeper parts may be attributes
                stale.append(f"{page}: {match.group(0)}")
    assert not stale, f"pages name modules or paths that do not exist: {stale}"


# ----------------------------------------------------------------------------- README


def test_the_readme_is_short_and_links_into_the_docs() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "README.md is for a first look: move detail into docs/"
    for target in re.findall(r"\]\((docs/[^)#\s]+)", text):
        assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"


# ----------------------------------------------------------------------------- tracker numbers


TRACKER = re.compile(r"\b[Ii]ssues?\s+#?\d+|(?<![\w/&#.-])#\d+\b|\b[Rr]ound\s+\d+\b"
                     r"|\b(?:[Ff]inding|[Tt]icket|PR)\s+#?\d+\b")

# Another project's tracker is fine (Ray's "issue #291"), as (file name, matched text).
KNOWN = {
    ("test_sweep_launchers.py", "issue #291"),  # Ray's tracker
}


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked archive): its text files
        names = [str(p.relative_to(ROOT)) for folder in ("rlsuite", "tests", "docs", "experiments")
                 for p in (ROOT / folder).rglob("*") if "__pycache__" not in p.parts]
        names += ["README.md", "Makefile", "mkdocs.yml", "pyproject.toml"]
    files = []
    for name in names:
        path = ROOT / name
        if name and path.is_file() and not path.is_symlink() and path != Path(__file__).resolve():
            files.append(path)
    return files


def test_no_internal_tracker_numbers() -> None:
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary: figures, checkpoints
        for number, line in enumerate(text.splitlines(), 1):
            for match in TRACKER.finditer(line):
                if (path.name, match.group(0)) not in KNOWN:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "say what the work is, not its tracker number:\n" + "\n".join(found)
