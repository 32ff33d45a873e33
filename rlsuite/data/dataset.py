"""`Dataset`: reads the dataset format of `rlsuite.data.format` (memory-mapped chunks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlsuite.data.format import FORMAT, MANIFEST, STEP_ARRAYS, VERSION, Obs, obs_files, space_from_json
from rlsuite.errors import UserError


class Dataset:
    """A dataset directory, memory-mapped (`np.load(mmap_mode="r")`); layout: rlsuite.data.format.

    Step arrays (`actions`, `rewards`, `terminated`, `truncated`, `episode_index`) are concatenated
    on first use (8 bytes a step or less); observations are only ever gathered by index."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.is_dir():
            raise UserError(f"{self.path} is not a dataset directory (no such directory)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{manifest_path} is missing: {self.path} is not a dataset, or its collection "
                            "did not finish") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{manifest_path} is unreadable or corrupt ({exc})") from None
        try:
            if self.manifest.get("format") != FORMAT:
                raise ValueError(f"format is {self.manifest.get('format')!r}, not {FORMAT!r}")
            if int(self.manifest["version"]) > VERSION:
                raise ValueError(f"version {self.manifest['version']} is newer than this rlsuite reads ({VERSION})")
            self.observation_space = space_from_json(self.manifest["observation_space"])
            self.action_space = space_from_json(self.manifest["action_space"])
            self.keys: list[str] | None = self.manifest["obs_keys"]
            chunks = self.manifest["chunks"]
            self._chunk_names = [str(c["name"]) for c in chunks]
            sizes = np.array([int(c["steps"]) for c in chunks], np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{manifest_path} is corrupt ({exc})") from None
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._length = int(self._offsets[-1])
        self._cache: dict[str, Any] = {}
        try:
            self.episode_table: np.ndarray = np.load(self.path / "episodes.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path / 'episodes.npy'} is missing or corrupt ({exc})") from None

    # -- files ----------------------------------------------------------------------------
    def _load(self, chunk: int, file: str) -> np.ndarray:
        key = f"{chunk}/{file}"
        if key not in self._cache:
            path = self.path / self._chunk_names[chunk] / file
            try:
                self._cache[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserError(f"{path} is missing or corrupt ({exc})") from None
        return self._cache[key]

    def _concat(self, name: str) -> np.ndarray:
        if name not in self._cache:
            parts = [np.asarray(self._load(c, f"{name}.npy")) for c in range(len(self._chunk_names))]
            self._cache[name] = np.concatenate(parts) if parts else np.zeros(0, STEP_ARRAYS[name])
        return self._cache[name]

    def _gather(self, prefix: str, chunks: np.ndarray, rows: np.ndarray) -> Obs:
        out: dict[str | None, np.ndarray] = {}
        for key, file in obs_files(prefix, self.keys).items():
            space = self.observation_space if key is None else self.observation_space[key]
            result = np.empty((len(rows), *space.shape), space.dtype)
            for c in np.unique(chunks):
                sel = chunks == c
                result[sel] = self._load(int(c), file)[rows[sel]]
            out[key] = result
        return out[None] if self.keys is None else out

    def _indices(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._length):
            raise IndexError(f"step index out of range [0, {self._length})")
        return idx

    # -- public ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._length

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_table))

    @property
    def episodes(self) -> list[tuple[int, int, float, bool]]:
        """(start, length, return, complete) per stored episode, in storage order."""
        t = self.episode_table
        return [(int(s), int(n), float(r), bool(c)) for s, n, r, c in
                zip(t["start"], t["length"], t["return"], t["complete"])]

    @property
    def actions(self) -> np.ndarray:
        return self._concat("actions")

    @property
    def rewards(self) -> np.ndarray:
        return self._concat("rewards")

    @property
    def terminated(self) -> np.ndarray:
        return self._concat("terminated")

    @property
    def truncated(self) -> np.ndarray:
        return self._concat("truncated")

    @property
    def episode_index(self) -> np.ndarray:
        """The episode (row of `episode_table`) of every step."""
        return self._concat("episode")

    def observations(self, indices: Any) -> Obs:
        """The observations the steps at `indices` acted in (array, or dict of arrays)."""
        idx = self._indices(indices)
        chunks = np.searchsorted(self._offsets, idx, side="right") - 1
        return self._gather("obs", chunks, idx - self._offsets[chunks])

    def episode_ends(self, indices: Any) -> np.ndarray:
        """True where a step is the last stored step of its episode."""
        idx = self._indices(indices)
        t = self.episode_table
        ep = self.episode_index[idx]
        return idx == (np.asarray(t["start"])[ep] + np.asarray(t["length"])[ep] - 1)

    def next_observations(self, indices: Any) -> Obs:
        """The observation after each step: obs[t + 1] inside an episode, the stored final observation
        at an episode's last step (the true last frame of an ended episode; for an unfinished one, the
        observation the env returned after it)."""
        idx = self._indices(indices)
        ends = self.episode_ends(idx)
        nxt = np.where(ends, 0, idx + 1)
        inner = self.observations(nxt)
        if not ends.any():
            return inner
        final_steps = self._final_steps()
        pos = np.searchsorted(final_steps["step"], idx[ends])
        final = self._gather("final_obs", final_steps["chunk"][pos], final_steps["row"][pos])
        if self.keys is None:
            inner[ends] = final
        else:
            for k in self.keys:
                inner[k][ends] = final[k]
        return inner

    def _final_steps(self) -> dict[str, np.ndarray]:
        if "_finals" not in self._cache:
            steps, chunks, rows = [], [], []
            for c in range(len(self._chunk_names)):
                s = np.asarray(self._load(c, "final_step.npy"))
                steps.append(s)
                chunks.append(np.full(len(s), c, np.int64))
                rows.append(np.arange(len(s), dtype=np.int64))
            cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
            self._cache["_finals"] = {"step": cat(steps), "chunk": cat(chunks), "row": cat(rows)}
        return self._cache["_finals"]

    def sample(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        """`batch` step indices, uniform over all stored transitions (with replacement)."""
        if self._length == 0:
            raise ValueError("cannot sample from an empty dataset")
        return rng.integers(0, self._length, size=batch, dtype=np.int64)

    def sample_windows(self, batch: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """(batch, k) step indices of windows of k consecutive steps inside one episode each, uniform
        over all such windows (episodes shorter than k give none)."""
        t = self.episode_table
        counts = np.maximum(np.asarray(t["length"]) - k + 1, 0)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(f"no episode has {k} steps")
        flat = rng.integers(0, total, size=batch)
        cum = np.cumsum(counts)
        ep = np.searchsorted(cum, flat, side="right")
        offset = flat - (cum[ep] - counts[ep])
        starts = np.asarray(t["start"])[ep] + offset
        return starts[:, None] + np.arange(k)[None, :]

    def size_bytes(self) -> int:
        """Bytes of every file in the dataset directory."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def stats(self) -> dict[str, Any]:
        return dict(self.manifest.get("stats", {}))
