"""User-facing errors.

A `UserError` is a mistake the user can fix (unknown env, bad override, wrong checkpoint,
missing optional dependency...). The CLI prints its message on one line and exits with code 2;
nothing else in the library should catch it.
"""
from __future__ import annotations


class UserError(Exception):
    """A one-line, actionable message for the user; the CLI exits with code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def require(module: str, extra: str | None = None, hint: str | None = None):
    """Import an optional dependency, or raise a UserError saying how to install it: the rlsuite
    extra that has it (`pip install -e '.[extra]'` from the checkout), else `hint`, else pip."""
    import importlib

    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # absent, or broken (e.g. a shared library it needs)
        how = f"pip install -e '.[{extra}]' (from the rlsuite checkout)" if extra else hint or f"pip install {module}"
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UserError(f"optional dependency '{module}' is missing ({reason}); install it with: {how}") from None


class TrainingDiverged(Exception):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def brief_space(space: object) -> str:
    """A gym space (or its repr, as a checkpoint's signature stores it) for a one-line message: each
    Box as its shape and dtype, without its bounds' arrays ('Box(shape (4,), float32)')."""
    import re

    text = " ".join(str(space).split())
    return re.sub(r"Box\([^()]*?(\([0-9, ]*\)), (\w+)\)", r"Box(shape \1, \2)", text)
