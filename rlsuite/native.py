"""Loads the native replay operators (``rlsuite._C``) and says which replay backend is active.

``import rlsuite._C`` registers the ``torch.ops.rlsuite.*`` operators (C++ kernels for CPU,
CUDA kernels when the extension was built with CUDA). When the extension is missing or fails to
load, the replay buffer runs the pure-torch reference operators of :mod:`rlsuite.replay.ops`
and one warning names the cause. ``RLSUITE_NATIVE=0`` forces the reference (tests run the
replay suite both ways).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

import torch

_loaded: tuple[bool, str] | None = None  # (extension usable, why not / what it is)
_override: bool | None = None  # set by use_native() in tests and benchmarks
_warned = False


def _load() -> tuple[bool, str]:
    if os.environ.get("RLSUITE_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False, "disabled by RLSUITE_NATIVE=0"
    try:
        import rlsuite._C  # noqa: F401  (registers torch.ops.rlsuite)
    except ImportError as exc:
        return False, (f"rlsuite._C could not be imported ({exc}); rebuild it with "
                       "`pip install --no-build-isolation -e .` (needs a C++ compiler)")
    return True, "rlsuite._C"


def _state() -> tuple[bool, str]:
    global _loaded, _warned
    if _loaded is None:
        _loaded = _load()
        if not _loaded[0] and not _loaded[1].startswith("disabled") and not _warned:
            _warned = True
            warnings.warn(f"native replay kernels unavailable, using the pure-torch reference: {_loaded[1]}",
                          RuntimeWarning, stacklevel=3)
    return _loaded


def enabled() -> bool:
    """True when replay operators dispatch to ``torch.ops.rlsuite`` (the extension loaded and
    neither RLSUITE_NATIVE=0 nor use_native(False) says otherwise)."""
    if _override is not None:
        return _override and _state()[0]
    return _state()[0]


def has_cuda_kernels() -> bool:
    """True when the loaded extension has CUDA kernels (built against a CUDA torch)."""
    return _state()[0] and torch._C._dispatch_has_kernel_for_dispatch_key("rlsuite::tree_search", "CUDA")


def backend_description() -> str:
    """One line for `rlsuite list` / `rlsuite bench`: the active replay backend and why."""
    ok, why = _state()
    if not ok:
        return f"reference (pure torch): {why}"
    if _override is False:
        return "reference (pure torch): native kernels switched off by use_native(False)"
    devices = "CPU + CUDA" if has_cuda_kernels() else "CPU (built without CUDA)"
    threads = torch.get_num_threads()
    return f"native (rlsuite._C, {devices} kernels, {threads} intra-op threads)"


@contextlib.contextmanager
def use_native(flag: bool) -> Iterator[None]:
    """Temporarily force the native kernels on (if loadable) or off, e.g. to compare backends."""
    global _override
    previous, _override = _override, flag
    try:
        yield
    finally:
        _override = previous
