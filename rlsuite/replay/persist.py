"""Chunked, atomic on-disk format of a replay buffer.

A replay directory holds ``meta.json`` (shapes, dtypes, chunk counts, the buffer's small state)
and one ``<field>-<chunk>.npy`` per ~64 MiB of each stored tensor (flattened over env x slot
rows), so saving a 7 GB buffer never builds a giant pickle in memory. The directory is written
under a temporary name and renamed into place, so a crash never leaves a half-written replay.

Fields may live on any device (a buffer held on the GPU, ``replay.on_device``): saving copies
them to the host one chunk at a time, loading copies each chunk onto the field's device, so
the format does not depend on where the buffer was held and host memory stays at one chunk.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rlsuite.errors import UserError
from rlsuite.run.checkpoint import fsync_path

FORMAT_VERSION = 1
CHUNK_BYTES = 64 << 20


def _rows(tensor: Tensor) -> Tensor:
    """View a (E, L, ...) tensor as (E*L, ...) rows; storage tensors are contiguous."""
    return tensor.reshape(tensor.shape[0] * tensor.shape[1], *tensor.shape[2:])


def save_fields(directory: str | os.PathLike, fields: dict[str, Tensor], meta: dict) -> None:
    """Write ``fields`` in chunks plus ``meta.json`` to ``directory``, atomically."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    layout = {}
    for name, tensor in fields.items():
        rows = _rows(tensor)
        per_chunk = max(1, CHUNK_BYTES // max(1, rows[0].numel() * rows.element_size()))
        chunks = 0
        for chunk, start in enumerate(range(0, rows.shape[0], per_chunk)):
            path = tmp / f"{name}-{chunk:05d}.npy"
            np.save(path, rows[start : start + per_chunk].cpu().numpy())  # no copy for host tensors
            fsync_path(path)
            chunks += 1
        layout[name] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype), "chunks": chunks}
    with open(tmp / "meta.json", "w") as f:
        json.dump({"format": FORMAT_VERSION, **meta, "fields": layout}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_path(tmp)
    # A directory cannot be renamed over a non-empty one: move the old copy aside first.
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "meta.json"
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{directory} is not a replay directory (no meta.json); "
                        "pass the directory written by ReplayBuffer.save") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}); the replay directory is corrupt, "
                        "delete it or save it again") from None
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"{directory} has replay format {meta.get('format')}, "
                        f"this rlsuite reads format {FORMAT_VERSION}")
    return meta


def load_fields(directory: str | os.PathLike, meta: dict, fields: dict[str, Tensor]) -> None:
    """Fill the preallocated ``fields`` from the chunks listed in ``meta`` (shapes checked)."""
    layout = meta["fields"]
    for name, tensor in fields.items():
        entry = layout.get(name)
        want = {"shape": list(tensor.shape), "dtype": str(tensor.dtype)}
        if entry is None or {k: entry[k] for k in want} != want:
            got = None if entry is None else {k: entry[k] for k in want}
            raise UserError(f"replay {directory} does not match this buffer: field '{name}' is {got}, "
                            f"expected {want}; use the same capacity, num_envs, observation space, "
                            "frame_stack and n_step")
        rows, start = _rows(tensor), 0
        for chunk in range(entry["chunks"]):
            path = Path(directory) / f"{name}-{chunk:05d}.npy"
            try:
                data = torch.from_numpy(np.load(path))
                rows[start : start + data.shape[0]] = data  # onto the field's device
            except (OSError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot read {path} ({type(exc).__name__}); the replay directory is "
                                "corrupt, delete it or save it again") from None
            start += data.shape[0]
        if start != rows.shape[0]:
            raise UserError(f"replay {directory} is incomplete: field '{name}' has {start} of "
                            f"{rows.shape[0]} rows; save it again")
