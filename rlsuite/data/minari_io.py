"""Minari interchange: `export_minari` (an rlsuite dataset as a Farama Minari dataset) and `import_minari`.

Minari (https://minari.farama.org, the `minari` package) stores one record per episode: T actions,
rewards, terminations and truncations, and T + 1 observations, the reset observation first and the
observation after the last step last (minari.DataCollector: `reset` starts an EpisodeBuffer with the
reset observation, every `step` appends the next one; minari.dataset.episode_data.EpisodeData). So
rlsuite's T step observations are Minari's first T and rlsuite's final_obs is Minari's last, exactly;
actions, rewards and the two flags map one to one.

Departures, both sides documented:

* Unfinished episodes. rlsuite keeps an episode cut by a step budget with complete=False and no end
  flag. Minari has no such state: its DataCollector ends an episode that is cut (by `reset` or by
  `create_dataset`) with truncations[-1] = True, and so does `export_minari`, which a learner reading
  the Minari data treats rightly (bootstrap from the last observation). Each exported episode carries
  episode metadata `rlsuite_complete` and `rlsuite_env`; `import_minari` restores complete=False and
  the stream index from them. Other Minari datasets: an episode ending with neither flag is imported
  complete=False, any other complete.
* Spaces. rlsuite stores Discrete actions only: a Minari dataset with another action space is refused
  (UserError). Observations: Box, Discrete, or a Dict of Box (rlsuite.data.format).
* Images: Minari may JPEG-encode image observations (lossy); the export writes raw arrays.

Where: Minari finds datasets by id under a root directory (MINARI_DATASETS_PATH, else
~/.minari/datasets; minari.storage.datasets_root_dir). Here the root is an argument (`dataset_dir`,
`root`), set for the duration of the call only; nothing is ever downloaded.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from rlsuite.data.dataset import Dataset
from rlsuite.data.format import DEFAULT_CHUNK_SIZE
from rlsuite.data.writer import DatasetWriter
from rlsuite.errors import UserError, require

ROOT_VARIABLE = "MINARI_DATASETS_PATH"
BATCH_STEPS = 100_000  # episodes are handed to Minari in batches of about this many steps (memory)


def default_root() -> Path:
    """Minari's own default root: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    return Path(os.environ.get(ROOT_VARIABLE) or Path.home() / ".minari" / "datasets")


@contextlib.contextmanager
def _root(root: str | Path | None) -> Iterator[Path]:
    """Minari's functions read the root from the environment: set it for the duration of the block."""
    path = (Path(root).expanduser() if root is not None else default_root()).absolute()  # minari joins relative paths twice
    old = os.environ.get(ROOT_VARIABLE)
    os.environ[ROOT_VARIABLE] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(ROOT_VARIABLE, None)
        else:
            os.environ[ROOT_VARIABLE] = old


def _minari(data_format: str = "hdf5") -> Any:
    """The minari package, with the storage backend `data_format` needs (minari makes both optional)."""
    minari = require("minari", "all")
    backend = {"hdf5": "h5py", "arrow": "pyarrow"}.get(data_format)
    if backend is None:
        raise UserError(f"unknown Minari data format {data_format!r}; use hdf5 or arrow")
    try:
        __import__(backend)
    except ImportError:
        raise UserError(f"Minari's {data_format} storage needs '{backend}': pip install 'minari[{data_format}]'") from None
    return minari


def _check_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise UserError(f"Minari dataset id {dataset_id!r} is malformed: it must be [namespace/]name-vN, "
                        "e.g. rlsuite/pong-expert-v0") from None


# --------------------------------------------------------------------------------------------
# export


def _episode_buffers(dataset: Dataset, batch_steps: int) -> Iterator[list[Any]]:
    """rlsuite episodes as Minari EpisodeBuffers (T + 1 observations), in batches of ~batch_steps steps."""
    from minari.data_collector import EpisodeBuffer

    batch: list[Any] = []
    steps = 0
    for start, length, _, complete in dataset.episodes:
        idx = np.arange(start, start + length)
        obs, final = dataset.observations(idx), dataset.next_observations(idx[-1:])
        if isinstance(obs, dict):
            observations: Any = {k: np.concatenate([obs[k], final[k]]) for k in obs}
        else:
            observations = np.concatenate([obs, final])
        truncations = np.array(dataset.truncated[idx], bool)
        if not complete:
            truncations[-1] = True  # Minari's DataCollector marks an episode it cuts this way
        batch.append(EpisodeBuffer(observations=observations, actions=np.array(dataset.actions[idx]),
                                   rewards=np.array(dataset.rewards[idx]),
                                   terminations=np.array(dataset.terminated[idx], bool), truncations=truncations))
        steps += length
        if steps >= batch_steps:
            yield batch
            batch, steps = [], 0
    if batch:
        yield batch


def export_minari(dataset: Dataset, dataset_id: str, *, dataset_dir: str | Path | None = None,
                  data_format: str = "hdf5", author: str | None = None, author_email: str | None = None,
                  code_permalink: str | None = None, description: str | None = None,
                  batch_steps: int = BATCH_STEPS) -> Path:
    """Write `dataset` as the Minari dataset `dataset_id` ([namespace/]name-vN) under the root
    `dataset_dir` (default Minari's own root); returns its directory. Loads with
    `minari.load_dataset(dataset_id)` when that root is MINARI_DATASETS_PATH. Mapping and departures:
    the module docstring. UserError for a malformed or taken id, or a missing storage backend; a
    failed export leaves nothing behind."""
    minari = _minari(data_format)
    _check_id(dataset_id)
    if not isinstance(dataset.action_space, gym.spaces.Discrete):
        raise UserError(f"dataset {dataset.path} has action space {dataset.action_space}; expected Discrete")
    m = dataset.manifest
    options: dict[str, Any] = {}
    if "jpeg_encoding" in inspect.signature(minari.create_dataset_from_buffers).parameters:
        options["jpeg_encoding"] = False  # lossless: the data must come back as it went
    with _root(dataset_dir) as root, warnings.catch_warnings():
        target = root / dataset_id
        if target.exists():
            raise UserError(f"Minari dataset {dataset_id} already exists in {root}; choose another id or version")
        # minari advises author, permalink, eval env... for publishing; an export need not have them
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari(\.|$)")
        try:
            out = minari.create_dataset_from_buffers(
                dataset_id, [], observation_space=dataset.observation_space, action_space=dataset.action_space,
                algorithm_name=str(m.get("algo") or m.get("source") or "rlsuite"), author=author,
                author_email=author_email, code_permalink=code_permalink,
                description=description or f"rlsuite dataset {dataset.path} (source: {m.get('source')})",
                data_format=data_format, **options)
            for batch in _episode_buffers(dataset, batch_steps):
                out.update_dataset_from_buffer(batch)
            table = dataset.episode_table
            out.storage.update_episode_metadata(
                [{"rlsuite_complete": bool(c), "rlsuite_env": int(e)} for c, e in zip(table["complete"], table["env"])],
                range(dataset.num_episodes))
            origin = {k: v for k, v in m.items() if k not in ("chunks", "observation_space", "action_space")}
            out.storage.update_metadata({"rlsuite_manifest": origin, "rlsuite_incomplete_episodes":
                                         int(dataset.num_episodes - int(np.sum(table["complete"])))})
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # it did not exist before: leave no half-written dataset
            raise
    return target


# --------------------------------------------------------------------------------------------
# import


def _open(minari: Any, source: str | Path, root: str | Path | None) -> Any:
    """A MinariDataset from a directory (the dataset's, or its data/) or an id under the root."""
    path = Path(source).expanduser()
    if path.is_dir():
        data = path / "data" if (path / "data" / "metadata.json").is_file() else path
        if not (data / "metadata.json").is_file():
            raise UserError(f"{path} is not a Minari dataset directory (no data/metadata.json)")
        return minari.MinariDataset(data)
    _check_id(str(source))
    with _root(root) as where:
        try:
            return minari.load_dataset(str(source), download=False)
        except FileNotFoundError:
            raise UserError(f"Minari dataset {source} is not in {where} (give --root, or a dataset directory; "
                            "nothing is downloaded)") from None


def _take(obs: Any, index: Any, space: gym.Space) -> Any:
    """obs[index] (rows or one row) in the space's dtype, per key for a Dict space."""
    if isinstance(space, gym.spaces.Dict):
        return {k: np.asarray(obs[k][index]).astype(space[k].dtype, copy=False) for k in space.spaces}
    return np.asarray(obs[index]).astype(space.dtype, copy=False)


def import_minari(dataset_id_or_path: str | Path, out: str | Path, *, root: str | Path | None = None,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> Dataset:
    """Write a Minari dataset (an id under `root`, default Minari's own root, or a dataset directory)
    as a new rlsuite dataset at `out`; returns it opened. Mapping and departures: the module docstring.
    UserError for a dataset that is not there, a non-Discrete action space or malformed episodes."""
    minari = require("minari", "all")
    try:
        source = _open(minari, dataset_id_or_path, root)
    except ImportError as exc:  # the dataset's storage backend (h5py, pyarrow) is not installed
        raise UserError(f"cannot read Minari dataset {dataset_id_or_path}: {exc}") from None
    except ValueError as exc:  # minari's own message: unsupported version, no data in a directory
        raise UserError(f"cannot read Minari dataset {dataset_id_or_path}: {exc}") from None
    obs_space, action_space = source.observation_space, source.action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise UserError(f"Minari dataset {source.id} has action space {action_space}; rlsuite datasets store "
                        "Discrete actions only")
    spec, origin = source.env_spec, source.storage.metadata.get("rlsuite_manifest")
    manifest = {"source": "minari", "minari_id": source.id, "minari_path": str(source.storage.data_path),
                "minari_version": source.minari_version, "origin": origin,  # rlsuite's manifest, if it exported it
                "env_id": spec.id if spec is not None else (origin or {}).get("env_id")}
    try:
        writer = DatasetWriter(out, obs_space, action_space, manifest, chunk_size)
    except TypeError as exc:  # a space the format cannot describe (Tuple, Text, ...)
        raise UserError(f"Minari dataset {source.id}: observation space {obs_space} cannot be stored ({exc})") from None
    metadata = list(source.storage.get_episode_metadata(source.episode_indices))  # small: read before the episodes
    for episode, meta in zip(source.iterate_episodes(), metadata):
        n = len(episode.rewards)
        if n == 0:
            continue
        obs = episode.observations
        count = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        terminated, truncated = np.array(episode.terminations, bool), np.array(episode.truncations, bool)
        if count != n + 1 or len(episode.actions) != n or len(terminated) != n or len(truncated) != n:
            raise UserError(f"Minari dataset {source.id}, episode {episode.id}: {count} observations and "
                            f"{len(episode.actions)} actions for {n} rewards; expected T + 1, T and T")
        if (terminated | truncated)[:-1].any():
            raise UserError(f"Minari dataset {source.id}, episode {episode.id}: an end flag before its last step")
        complete = bool(terminated[-1] or truncated[-1]) and bool(meta.get("rlsuite_complete", True))
        if not complete:  # exported unfinished by rlsuite (or never ended): no end flag
            terminated[-1] = truncated[-1] = False
        writer.add_episode(_take(obs, slice(0, n), obs_space), np.asarray(episode.actions, np.int64), episode.rewards,
                           terminated, truncated, _take(obs, n, obs_space), complete=complete,
                           env=int(meta.get("rlsuite_env", 0)))
    writer.close()
    return Dataset(out)
