"""Typed run configuration: presets (TOML recipes), `--set` overrides, the resolved dump.

A run is described by one `RunConfig`: which agent, its config dataclass, the environment,
the replay buffer and the training loop. Values come, in order of precedence, from
`--set` overrides, then the agent preset (`agents/<name>.toml`), then the env preset
(`envs/<name>.toml`), then the dataclass defaults. The resolved config is written to
`runs/<run>/config.toml`, and `rlsuite train --config that/file` relaunches the run.

Field documentation lives where the field is declared, as a string literal on the line after
it (attribute docstrings, as tyro reads them); `field_docs` recovers them with `ast` so
`--help` and the docs never drift apart.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import operator
import re
import textwrap
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError
from rlsuite.config.fields import checked, choice, field_check, matching, ranged
from rlsuite.retention.config import FinetuneConfig
from rlsuite.data.config import OfflineConfig

def _env_ids(value: str) -> str | None:
    """train.tasks' check: None for an env id `resolve_env_id` accepts, else its reason."""
    from rlsuite.envs.config import env_id_problem  # imported late: that module imports this one

    return env_id_problem(value)


@dataclass
class TrainConfig:
    """How long to train, how often to evaluate, log and checkpoint."""

    total_steps: int = ranged(10_000_000, ge=1)
    """Environment steps to train for, summed over all parallel envs (Dopamine: 10M agent steps = 40M frames)."""
    num_envs: int = ranged(1, ge=1)
    """Parallel training environments stepped as one vector."""
    seed: int = ranged(1, ge=0)
    """The run's seed: the root of a numpy SeedSequence from which every random stream is derived (each train and eval env, exploration, replay sampling, network init, each task phase; rlsuite.run.seeding), so runs with different seeds share no stream."""
    device: str = matching("auto", r"auto|cpu|cuda(:[0-9]+)?", "cpu, cuda, auto, cuda:N")
    """'cpu', 'cuda', 'cuda:N' (GPU number N) or 'auto' (cuda when available)."""
    torch_threads: int = ranged(2, ge=1)
    """Threads torch may use for CPU math (intra-op)."""
    eval_every: int = ranged(0, ge=0)
    """Evaluate every this many env steps during training (0 = only at the end)."""
    eval_episodes: int = ranged(10, ge=1)
    """Whole games per evaluation."""
    eval_num_envs: int = ranged(4, ge=1)
    """Parallel evaluation environments (separate from the training envs)."""
    checkpoint_every: int = ranged(0, ge=0)
    """Write a checkpoint every this many env steps (0 = only at the end and on interrupt)."""
    keep_checkpoints: int = ranged(3, ge=1)
    """How many most recent checkpoints to keep on disk."""
    save_replay: bool = False
    """Also save the replay buffer with each checkpoint so a resume is exact (large for Atari)."""
    log_every: int = ranged(1_000, ge=1)
    """Write scalar metrics to TensorBoard every this many env steps."""
    diagnostics_batch: int = ranged(1_024, ge=1)
    """States sampled uniformly from the replay (on their own random stream) for the dormant-unit and srank diagnostics; srank can never exceed this."""
    diagnostics_every: int = ranged(5_000, ge=0)
    """Log plasticity/ (per-layer weight norm, gradient norm, effective learning rate; dormant units, srank) and sparsity/ every this many env steps (0 = never)."""
    tasks: tuple[str, ...] = checked((), _env_ids, "env ids of one family")
    """Task sequence for continual RL: env ids trained one after another, e.g. minatar:breakout,minatar:asterix,minatar:freeway (empty = env.id alone). One family (MinAtar or Atari); channels are padded and the full action set used so one network serves all."""
    steps_per_task: int = ranged(0, ge=0)
    """Env steps spent on each task of the sequence; total_steps becomes len(tasks) x steps_per_task x cycles."""
    cycles: int = ranged(1, ge=1)
    """How many times the whole task sequence is played."""
    reset_optimizer: bool = False
    """Task sequences: clear the optimizer's moments at every task switch."""
    reset_replay: bool = True
    """Task sequences: empty the replay buffer at every task switch (updates pause until learning_starts new transitions)."""
    reset_exploration: bool = True
    """Task sequences: restart the epsilon schedule at every switch, so each task is explored as a fresh agent would."""
    progress: bool = True
    """Show a progress bar with steps/s and the recent return."""
    status_every: float = ranged(60.0, ge=0.0)
    """Without a progress bar (--no-progress, sweep logs): print a one-line status (step, steps/s, recent return, ETA) every this many seconds (0 = never)."""
    precision: str = choice("fp32", "fp32", "bf16", "auto")
    """Compute precision of the networks' forward passes (and so their backward): 'fp32'; 'bf16' = bfloat16 autocast on CUDA or on a CPU with bf16 matrix units (AVX512-BF16 or AMX-BF16), while weights, optimizer state, losses, TD targets, advantages, returns-to-go, retention terms, NaP radii, GMP masks, the LSTM core and every checkpointed tensor stay fp32; 'auto' = bf16 only where a start-up measurement of this network's update on this device finds it faster, else fp32 (the pick and its timing are printed, written to <run>/speed.json and kept on resume). bf16 without bf16 hardware is refused (it would run many times slower)."""
    memory_format: str = choice("contiguous", "contiguous", "channels_last", "auto")
    """Layout of conv encoders' weights and activations: 'contiguous' (NCHW), 'channels_last' (NHWC: faster oneDNN/cuDNN convolutions for the Nature CNN), or 'auto' = channels_last only where the start-up measurement finds it faster. Networks without convolutions ignore it."""
    compile: bool = False
    """torch.compile each agent's networks as its update step (forward and backward) and acting forward run them; a batch of a new size (last minibatch, evaluation envs) compiles once more with a dynamic batch dimension, never on every call. Compilation takes seconds to minutes at start; on CPUs it is often no faster for small networks (see the docs' speed page)."""
    cudagraphs: bool = False
    """CUDA only: capture the compiled update and acting step as CUDA graphs and replay them (torch.compile mode 'reduce-overhead'; implies train.compile); best with replay.on_device so batches are already on the GPU."""
    profile: bool = False
    """Time each phase of the online loop (env, act, add, sample, update; evaluation apart) and print where the time goes at the end (the run's summary `profile`, <run>/profile.json, TensorBoard `profile/<phase>_fraction`); on CUDA it synchronises at each phase boundary, so it slows the run a little: off by default."""


@dataclass
class RunConfig:
    """Everything a run needs; written to runs/<run>/config.toml."""

    algo: str
    """Agent name ('dqn')."""
    agent: Any
    """The agent's config dataclass (e.g. DQNConfig)."""
    env: Any
    """The environment config (EnvConfig)."""
    replay: Any
    """The replay buffer config (ReplayConfig)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training loop settings."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Fine-tuning from a pre-trained checkpoint with knowledge retention (rlsuite finetune); inert in other runs."""
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    """Datasets of an offline agent (dt): paths, mixture, evaluated games; inert in online runs."""
    presets: list[str] = field(default_factory=list)
    """The preset files this config was built from, for the record."""


# ----------------------------------------------------------------------------- field docs


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: {field name: the string literal after it}."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(obj: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """Flatten a config dataclass instance to (key, value, doc) rows for --help and tables."""
    rows = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, key + "."))
        else:
            rows.append((key, _format_value(value), _with_range(docs.get(f.name, ""), field_check(f))))
    return rows


def _with_range(doc: str, check: Check | None) -> str:
    """The field doc followed by the values the field accepts, for --help."""
    if check is None or check.describe() == "any value":
        return doc
    return f"{doc} Valid: {check.describe()}.".strip()


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------- validation


# Rules between fields (key, comparison, other key); a rule whose keys the config lacks (another
# agent's config) is skipped. Single-field ranges live on the fields themselves.
CROSS_RULES = (
    ("agent.gmp.start", "<=", "agent.gmp.end"),
    ("replay.capacity", ">=", "agent.batch_size"),
)
_COMPARE = {"<=": operator.le, ">=": operator.ge}


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of a resolved config (nested dataclasses included) against its declared
    range or choices, then the cross-field rules; raise a one-line UserError naming the first bad key."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        check = field_check(f)
        reason = check.problem(value) if check is not None else None
        if reason is not None:
            raise UserError(f"bad value for {key}: {_format_value(value) or '(empty)'} ({reason})")
    if isinstance(cfg, RunConfig):
        _validate_cross_rules(cfg)


def _validate_cross_rules(cfg: RunConfig) -> None:
    """The rules between fields, checked once every field is known to be in range."""
    for key, op, other in CROSS_RULES:
        left, right = _lookup(cfg, key), _lookup(cfg, other)
        if left is not None and right is not None and not _COMPARE[op](left, right):
            raise UserError(f"bad value for {key}: {left} (must be {op} {other} = {right})")
    check_run = getattr(cfg.agent, "check_run", None)  # an agent's own rules with other sections' keys
    if check_run is not None:
        check_run(cfg)
    train = cfg.train
    if train.tasks and train.steps_per_task < 1:
        raise UserError(f"bad value for train.steps_per_task: {train.steps_per_task} "
                        "(train.tasks needs train.steps_per_task > 0; --steps-per-task N)")


def _lookup(cfg: Any, key: str) -> Any:
    """The value at a dotted key, or None if the config has no such field."""
    for part in key.split("."):
        cfg = getattr(cfg, part, None)
        if cfg is None:
            return None
    return cfg


# ----------------------------------------------------------------------------- values


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Convert an override string to the field's type, or raise a one-line UserError."""
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            number = float(text.replace("_", ""))
            if number != int(number):
                raise ValueError
            return int(number)
        if typ is float:
            return float(text)
        if typ is str:
            return text
        if origin is tuple:
            inner = typing.get_args(typ)[0]
            parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(parse_value(p.strip(), inner, key) for p in parts)
    except ValueError:
        pass
    else:
        raise UserError(f"config key '{key}' has unsupported type {typ}")
    type_name = getattr(typ, "__name__", str(typ))
    raise UserError(f"bad value for '{key}': {text!r} is not a valid {type_name}")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check/convert a value read from TOML against the declared field type."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(typ) is tuple and isinstance(value, list):
        return tuple(value)
    if typ in (bool, int, float, str) and not isinstance(value, typ):
        return parse_value(str(value), typ, key)
    return value


# Keys renamed after runs were written with the old name: {old full key: new leaf name}, so the
# config.toml and checkpoints of those runs still load (resume, eval, compare).
RENAMED_KEYS = {"finetune.bc.batch_size": "minibatch"}


def apply_table(obj: Any, table: dict[str, Any], prefix: str, source: str) -> None:
    """Set dataclass fields from a (possibly nested) TOML table; unknown keys are errors."""
    types = _field_types(type(obj))
    for name, value in table.items():
        name = RENAMED_KEYS.get(f"{prefix}{name}", name)
        key = f"{prefix}{name}"
        if name not in types:
            raise UserError(f"unknown config key '{key}' in {source}{_suggest(name, list(types))}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config key '{key}' in {source} must be a table")
            apply_table(current, value, key + ".", source)
        else:
            setattr(obj, name, _coerce(value, types[name], key))


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return f"; did you mean: {', '.join(close)}?" if close else ""


# ----------------------------------------------------------------------------- overrides


SECTIONS = ("agent", "env", "replay", "train", "finetune", "offline")


def all_keys(cfg: RunConfig) -> list[str]:
    return [key for section in SECTIONS for key, _, _ in describe(getattr(cfg, section), section + ".")]


def apply_override(cfg: RunConfig, assignment: str) -> None:
    """Apply one `--set key=value`. Keys are `section.field` (nested with dots) or a bare
    field name that is unique across sections (`lr=1e-4`)."""
    if "=" not in assignment:
        raise UserError(f"bad override {assignment!r}: expected key=value, e.g. --set agent.lr=1e-4")
    key, text = (part.strip() for part in assignment.split("=", 1))
    full_key = _resolve_key(cfg, key)
    *path, leaf = full_key.split(".")
    target: Any = cfg
    for part in path:
        target = getattr(target, part)
    typ = _field_types(type(target))[leaf]
    setattr(target, leaf, parse_value(text, typ, full_key))


def _resolve_key(cfg: RunConfig, key: str) -> str:
    keys = all_keys(cfg)
    if key in keys:
        return key
    matches = [k for k in keys if k.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"override key '{key}' is ambiguous: use one of {', '.join(matches)}")
    leaves = [k.split(".")[-1] for k in keys]
    close = difflib.get_close_matches(key, keys + leaves, n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    raise UserError(f"unknown config key '{key}'{hint} ('rlsuite train --help' lists all keys)")


# ----------------------------------------------------------------------------- presets


def preset_path(kind: str, name: str) -> Path | None:
    """Path of `agents/<name>.toml` or `envs/<name>.toml` shipped with the package."""
    candidate = resources.files("rlsuite.presets") / kind / f"{name}.toml"
    path = Path(str(candidate))
    return path if path.is_file() else None


def preset_names(kind: str) -> list[str]:
    folder = Path(str(resources.files("rlsuite.presets") / kind))
    return sorted(p.stem for p in folder.glob("*.toml"))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


# ----------------------------------------------------------------------------- dump


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def dumps_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML (one table per section, nested tables dotted)."""
    lines = ["# Resolved rlsuite config. Relaunch with: rlsuite train --config <this file>", ""]
    lines.append(f'algo = "{cfg.algo}"')
    lines.append(f"presets = {_toml_value(cfg.presets)}")
    for section in SECTIONS:
        _dump_table(lines, section, getattr(cfg, section))
    return "\n".join(lines) + "\n"


def _dump_table(lines: list[str], name: str, obj: Any) -> None:
    docs = field_docs(type(obj))
    lines += ["", f"[{name}]"]
    nested = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested.append((f.name, value))
            continue
        doc = docs.get(f.name, "")
        comment = f"  # {doc[:100]}" if doc else ""
        lines.append(f"{f.name} = {_toml_value(value)}{comment}")
    for child, value in nested:
        _dump_table(lines, f"{name}.{child}", value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


# ----------------------------------------------------------------------------- building a run


# Which env preset a bare env id gets, by family (`--env pong` -> atari-dopamine with id Pong).
DEFAULT_ENV_PRESET = {"atari": "atari-dopamine", "nethack": "nethack", "minatar": "minatar", "classic": "cartpole",
                      "closefar": "closefar"}


def empty_run_config(algo: str) -> RunConfig:
    from rlsuite.agents import AGENTS, agent_classes
    from rlsuite.envs import EnvConfig
    from rlsuite.replay import ReplayConfig

    if algo not in AGENTS:
        raise UserError(f"unknown agent '{algo}'; available: {', '.join(AGENTS)} "
                        f"(presets: {', '.join(preset_names('agents'))})")
    _, agent_config_cls = agent_classes(algo)
    return RunConfig(algo=algo, agent=agent_config_cls(), env=EnvConfig(), replay=ReplayConfig())


def apply_file(cfg: RunConfig, data: dict[str, Any], source: str) -> None:
    for section in SECTIONS:
        if section in data:
            apply_table(getattr(cfg, section), data[section], section + ".", source)
    unknown = set(data) - set(SECTIONS) - {"algo", "presets"}
    if unknown:
        raise UserError(f"unknown table(s) {', '.join(sorted(unknown))} in {source}; expected {', '.join(SECTIONS)}")


def build_run_config(agent: str | None = None, env: str | None = None, overrides: list[str] | None = None,
                     config_file: str | Path | None = None) -> RunConfig:
    """Resolve an agent preset (or a saved config.toml), an env, and `--set` overrides."""
    if config_file is not None:
        data = read_toml(Path(config_file))
        cfg = empty_run_config(data.get("algo", ""))
        apply_file(cfg, data, str(config_file))
        cfg.presets = list(data.get("presets", []))
    else:
        if not agent:
            raise UserError("name an agent or preset (e.g. 'rlsuite train dqn --env pong') or pass --config")
        cfg = _from_presets(agent, env)
    for assignment in overrides or []:
        apply_override(cfg, assignment)
    validate(cfg)  # before any command creates a run directory or starts work
    return cfg


def _from_presets(agent: str, env: str | None) -> RunConfig:
    path = preset_path("agents", agent)
    if path is None:
        names = preset_names("agents")
        close = difflib.get_close_matches(agent, names, n=3, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise UserError(f"unknown agent or preset '{agent}'{hint} (available: {', '.join(names)})")
    data = read_toml(path)
    cfg = empty_run_config(data.get("algo", agent))
    env = env or data.get("default_env")
    if env is None:
        raise UserError("name an environment with --env (e.g. --env pong); 'rlsuite list envs' shows them")
    apply_env(cfg, env, {**DEFAULT_ENV_PRESET, **data.get("env_presets", {})})
    recipe = {k: v for k, v in data.items() if k not in ("default_env", "env_presets")}
    apply_file(cfg, recipe, f"agents/{agent}.toml")
    cfg.presets.insert(0, f"agents/{agent}.toml")
    return cfg


def apply_env(cfg: RunConfig, env: str, family_presets: dict[str, str]) -> None:
    """`--env` takes an env preset name (envs/<name>.toml) or an env id, which gets its family's
    preset: the agent preset's `[env_presets]` choice (dqn-cleanrl: atari-cleanrl) or the default."""
    from rlsuite.envs import resolve_env_id

    path = preset_path("envs", env)
    if path is None:
        family, _ = resolve_env_id(env)  # raises UserError with close matches
        path = preset_path("envs", family_presets[family])
        if path is None:
            raise UserError(f"env preset '{family_presets[family]}' named by the agent preset does not exist")
    data = read_toml(path)
    apply_file(cfg, data, f"envs/{path.name}")
    if preset_path("envs", env) is None:
        cfg.env.id = env
    cfg.presets.append(f"envs/{path.name}")
