"""Writes the API reference at build time (mkdocs-gen-files): one page per public module of the
`rlsuite` package, found by walking the package's folders, so a module that moves or appears gets
its page without anyone editing the docs. Private modules (`_name`), `__main__` and compiled
extensions are skipped. The navigation is written to api/SUMMARY.md, which mkdocs-literate-nav
reads.
"""
from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlsuite"


def public_modules(package: Path) -> list[tuple[str, ...]]:
    """Dotted-name parts of every public Python module and package below `package`, sorted."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = rel.parts
        if any(part.startswith("_") for part in parts[:-1]):
            continue  # inside a private package
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif parts[-1].startswith("_"):
            continue  # private module, __main__
        if not all(part.isidentifier() for part in parts):
            continue
        if parts[:-1] and not (package.parent.joinpath(*parts[:-1]) / "__init__.py").is_file():
            continue  # a folder of scripts, not a subpackage
        found.append(parts)
    return sorted(set(found))


def page_path(parts: tuple[str, ...], packages: set[tuple[str, ...]]) -> Path:
    """api/rlsuite/index.md for a package, api/rlsuite/agents/dqn.md for a module."""
    if parts in packages:
        return Path("api", *parts, "index.md")
    return Path("api", *parts).with_suffix(".md")


def main() -> None:
    modules = public_modules(PACKAGE)
    packages = {parts for parts in modules
                if (PACKAGE.parent.joinpath(*parts) / "__init__.py").is_file()}
    nav = mkdocs_gen_files.Nav()
    with mkdocs_gen_files.open("api/index.md", "w") as fh:
        fh.write("# API reference\n\n"
                 "Generated from the docstrings of the `rlsuite` package at every build: one page per "
                 "public module, found by walking the package, in the navigation on the left. "
                 "Configuration keys have their own page, the "
                 "[configuration reference](../configuration.md).\n\n")
        fh.write(f"{len(modules)} modules and packages.\n")
    nav["Overview"] = "index.md"
    for parts in modules:
        path = page_path(parts, packages)
        name = ".".join(parts)
        with mkdocs_gen_files.open(path, "w") as fh:
            fh.write(f"# `{name}`\n\n::: {name}\n")
        nav[parts] = path.relative_to("api").as_posix()
    with mkdocs_gen_files.open("api/SUMMARY.md", "w") as fh:
        fh.writelines(nav.build_literate_nav())


main()
