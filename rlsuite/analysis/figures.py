"""Figure helpers the `rlsuite compare` reports share: a short env-step axis and writing a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def label_env_steps(ax: Any) -> None:
    """Write an env-step x axis as 50k / 1.5M: full numbers run into each other on a narrow subplot."""
    from matplotlib.ticker import FuncFormatter

    def short(x: float, _pos: int) -> str:
        return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(short))
    ax.set_xlabel("env steps")


def save_png(fig: Any, path: Path) -> Path:
    """Lay out, write (120 dpi) and close a matplotlib figure; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
