"""The presets shipped with the package: `agents/<name>.toml` recipes and `envs/<name>.toml` env
settings under rlsuite/presets, found by kind and name."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def preset_path(kind: str, name: str) -> Path | None:
    """Path of `agents/<name>.toml` or `envs/<name>.toml` shipped with the package."""
    candidate = resources.files("rlsuite.presets") / kind / f"{name}.toml"
    path = Path(str(candidate))
    return path if path.is_file() else None


def preset_names(kind: str) -> list[str]:
    """The names of the presets of one kind ('agents' or 'envs'), sorted."""
    folder = Path(str(resources.files("rlsuite.presets") / kind))
    return sorted(p.stem for p in folder.glob("*.toml"))
