"""Evaluation protocol and statistics.

Statistics follow rliable (Agarwal et al. 2021): the interquartile mean (IQM, a 25% trimmed mean)
with percentile-bootstrap confidence intervals. Atari scores are also reported human-normalised
against the published random / human table.

The protocol plays whole games with a fixed epsilon and records the raw game score (never the
clipped training reward) plus any domain metrics the environment reports (NetHack score, depth,
experience level, turns; Montezuma rooms).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import scipy.stats
import torch

from rlsuite.run import seeding

# --------------------------------------------------------------------------------------------
# statistics


def iqm(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: mean of the middle 50% (25% cut from each end), as rliable defines it."""
    return scipy.stats.trim_mean(np.asarray(x, dtype=np.float64), 0.25, axis=axis)


def bootstrap_ci(
    x: np.ndarray,
    stat: Callable[..., Any] = iqm,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval of ``stat`` over the scores ``x``.

    All ``reps`` resamples are drawn as one (reps, n) index matrix; ``stat`` is called once with
    ``axis=1`` when it accepts it (iqm, np.mean, np.median do), else once per resample.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(reps, x.size))]
    try:
        boots = np.asarray(stat(samples, axis=1), dtype=np.float64)
    except TypeError:
        boots = np.array([stat(s) for s in samples], dtype=np.float64)
    lo, hi = np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def summarize(scores: np.ndarray) -> dict[str, float]:
    """mean, median, IQM with its 95% bootstrap CI, min, max, std and the episode count."""
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size == 0:
        nan = math.nan
        return dict(mean=nan, median=nan, iqm=nan, iqm_ci_lo=nan, iqm_ci_hi=nan,
                    min=nan, max=nan, std=nan, episodes=0)
    lo, hi = bootstrap_ci(x)
    return dict(
        mean=float(x.mean()), median=float(np.median(x)), iqm=float(iqm(x)),
        iqm_ci_lo=lo, iqm_ci_hi=hi, min=float(x.min()), max=float(x.max()),
        std=float(x.std()), episodes=int(x.size),
    )


# --------------------------------------------------------------------------------------------
# Atari human-normalised scores

# (random, human) scores of the 57-game Atari benchmark, as tabulated by Badia et al. 2020
# (Agent57, Table H.1) and used by R2D2, MuZero, rliable and Dopamine-era papers. Random and human
# scores originate in Mnih et al. 2015 (DQN, Nature) and Wang et al. 2016 (games added later);
# human = the professional tester's score. Note Video Pinball: the Agent57 table lists random 0.0,
# whereas Mnih et al. 2015 list 16,256.9 (some codebases, e.g. DQN Zoo, use that value).
ATARI_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7),
    "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "Defender": (2874.5, 18688.9),
    "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4),
    "Enduro": (0.0, 860.5),
    "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4),
    "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0),
    "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9),
    "Seaquest": (68.4, 42054.7),
    "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7),
    "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0),
    "Surround": (-10.0, 6.5),
    "Tennis": (-23.8, -8.3),
    "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6),
    "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5),
    "VideoPinball": (0.0, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
    "Zaxxon": (32.5, 9173.3),
}

_BY_KEY = {name.lower(): name for name in ATARI_RANDOM_HUMAN}


def atari_game_name(game: str | None) -> str | None:
    """The table's name for any spelling of an Atari game that `resolve_env_id` accepts ('Pong',
    'pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4', 'ms_pacman', 'montezuma'); None for anything else.

    Resolving first, rather than squashing the id as typed, keeps MinAtar's 'MinAtar/Breakout-v1'
    off Atari Breakout's row: only the 'atari' family is scored against the human table."""
    from rlsuite.envs.config import ATARI, resolve_env_id  # here: the env package is not needed otherwise
    from rlsuite.errors import UserError

    if not game:
        return None
    try:
        family, name = resolve_env_id(game)
    except UserError:  # not an env id at all (e.g. 'CartPole'): nothing to normalise against
        return None
    return _BY_KEY.get(name.lower()) if family == ATARI else None


def human_normalized(game: str | None, score: float | np.ndarray) -> float | np.ndarray | None:
    """(score - random) / (human - random); None when the game is not an Atari game in the table."""
    name = atari_game_name(game)
    if name is None:
        return None
    random, human = ATARI_RANDOM_HUMAN[name]
    return (score - random) / (human - random)


# --------------------------------------------------------------------------------------------
# the protocol


class VecEnvLike(Protocol):
    num_envs: int

    def reset(self, seed: int | None = None) -> tuple[Any, dict]: ...

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]: ...


class ActingAgent(Protocol):
    def act(self, obs: Any, epsilon: float, rng: np.random.Generator | None = None) -> np.ndarray: ...


_EPISODE_CORE = ("done", "return", "length")


@dataclass
class EvalResult:
    """Per-episode results of one evaluation, in the order the games finished."""

    returns: np.ndarray
    lengths: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """Domain metrics per episode: score/depth/xp/turns (NetHack), rooms (Montezuma), ..."""
    epsilon: float = 0.0
    game: str | None = None
    env_ids: np.ndarray | None = None
    """Which sub-environment played each episode (for auditing the per-env quota)."""

    def per_episode(self) -> dict[str, list]:
        """Each game's raw return, length and domain metrics, in the order the games finished
        (`episode_returns`, `episode_lengths`, `episode_<metric>`): what eval.jsonl keeps so a later
        analysis never has to trust the summary."""
        out: dict[str, list] = {"episode_returns": self.returns.tolist(), "episode_lengths": self.lengths.tolist()}
        out.update({f"episode_{name}": values.tolist() for name, values in self.metrics.items()})
        return out

    def summary(self) -> dict[str, Any]:
        """Return statistics, human-normalised IQM/mean (Atari), and the mean of each metric."""
        out: dict[str, Any] = {"game": self.game, "epsilon": self.epsilon}
        out.update(summarize(self.returns))
        out["length_mean"] = float(np.mean(self.lengths)) if len(self.lengths) else math.nan
        hns = human_normalized(self.game, np.asarray(self.returns, dtype=np.float64))
        if hns is not None and len(self.returns):
            out["hns_iqm"] = float(iqm(hns))
            out["hns_mean"] = float(np.mean(hns))
        for name, values in self.metrics.items():
            out[f"{name}_mean"] = float(np.mean(values)) if len(values) else math.nan
        return out


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """How many games each sub-env must finish: ceil or floor of episodes/num_envs, summing to
    ``episodes`` (the first ``episodes % num_envs`` envs play one more)."""
    base, extra = divmod(episodes, num_envs)
    return np.array([base + (i < extra) for i in range(num_envs)], dtype=np.int64)


def evaluate(
    agent: ActingAgent, env: VecEnvLike, episodes: int, epsilon: float, seed: int | list[int],
    game: str | None = None, rng: np.random.Generator | None = None,
) -> EvalResult:
    """Play exactly ``episodes`` whole games with ``agent.act(obs, epsilon)`` and record them.

    Quota rule: sub-env i counts only its first ``episode_quotas(...)[i]`` games, fixed before
    play starts, and the loop runs until every env has met its quota. "Stop after the first N
    games to finish, whichever env" would over-sample short games (fast envs finish more of them);
    a quota fixed in advance counts each env's games regardless of their length. Games past the
    quota are played (the vector env steps all envs) but ignored.

    ``seed``: the envs' reset seed (an int root or one seed per env). ``rng``: the exploration
    stream for the agent's epsilon draws (training passes its own eval stream so that evaluating
    never moves the training exploration stream); None = the agent's own stream.

    ``game`` names the Atari game for human-normalised scores; left out, it is taken from the
    env's ``game`` attribute when its ``family`` is 'atari' (MinAtar's 'breakout' is not Atari).
    """
    if game is None and getattr(env, "family", None) == "atari":
        game = getattr(env, "game", None)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    quotas = episode_quotas(episodes, env.num_envs)
    counts = np.zeros(env.num_envs, dtype=np.int64)
    rows: list[tuple[int, dict[str, float]]] = []
    obs, _ = env.reset(seed=seed)
    # A recurrent agent keeps an evaluation state per env: fresh here, reset where a game ended.
    reset, starts = getattr(agent, "eval_reset", None), getattr(agent, "eval_episode_starts", None)
    rewarded = getattr(agent, "eval_rewards", None)  # return-conditioned agents (DT) track the rewards earned
    if reset is not None:
        reset(env.num_envs)
    with torch.no_grad():
        while (counts < quotas).any():
            actions = agent.act(obs, epsilon) if rng is None else agent.act(obs, epsilon, rng=rng)
            obs, reward, terminated, truncated, info = env.step(actions)
            if rewarded is not None:
                rewarded(reward)
            if starts is not None:
                starts(np.logical_or(terminated, truncated))
            rows += _finished_games(info, counts, quotas)
    return _to_result(rows, epsilon, game)


def _finished_games(info: dict, counts: np.ndarray, quotas: np.ndarray) -> list[tuple[int, dict]]:
    """Rows for games that ended this step within their env's quota; updates ``counts``."""
    ep = info.get("episode")
    if not ep:
        return []
    rows = []
    for i in np.flatnonzero(np.asarray(ep["done"], dtype=bool)):
        if counts[i] >= quotas[i]:
            continue
        counts[i] += 1
        rows.append((int(i), {k: float(np.asarray(v)[i]) for k, v in ep.items() if k != "done"}))
    return rows


def _to_result(rows: list[tuple[int, dict]], epsilon: float, game: str | None) -> EvalResult:
    def column(key: str) -> np.ndarray:
        return np.array([r[key] for _, r in rows], dtype=np.float64)

    extra = sorted({k for _, r in rows for k in r} - set(_EPISODE_CORE))
    return EvalResult(
        returns=column("return"),
        lengths=column("length").astype(np.int64),
        metrics={k: column(k) for k in extra},
        epsilon=float(epsilon),
        game=game,
        env_ids=np.array([i for i, _ in rows], dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# output


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e7 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], title: str = "") -> str:
    """Fixed-width text table: one column per key (first-seen order), numbers right-aligned."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    cells = [[_fmt(row.get(k)) for k in keys] for row in rows]
    widths = [max([len(k)] + [len(c[j]) for c in cells]) for j, k in enumerate(keys)]
    numeric = [all(isinstance(r.get(k), (int, float, np.number)) or r.get(k) is None for r in rows)
               for k in keys]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    body = [line(keys), "  ".join("-" * w for w in widths)] + [line(c) for c in cells]
    width = max(len(s) for s in body)
    head = [title, "=" * max(width, len(title))] if title else []
    return "\n".join(head + body)


def _jsonable(value: Any) -> Any:
    """numpy values -> Python; non-finite floats -> null (strict JSON readers reject NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON record as a line (creating parent dirs); one write call per record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_jsonable(record), sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def eval_env_seeds(cfg: Any, step: int, task: int = 0) -> list[int]:
    """Per-env seeds of the evaluation envs of a run (`cfg`: a RunConfig) at step `step` (env step
    or update) of task `task` (index in a sequence, or of a game): the run's `eval_env` stream, so
    evaluating never moves a training stream and two evaluations never share an env seed."""
    return seeding.env_seeds(cfg.train.seed, "eval_env", step, task, n=cfg.train.eval_num_envs)


def eval_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars of an evaluation: return statistics, human-normalised scores and every
    domain metric's mean (charts/eval_score, charts/eval_depth, charts/eval_rooms, ...)."""
    out = {f"charts/eval_{k}": summary[k] for k in ("mean", "median", "iqm", "hns_iqm", "hns_mean")
           if isinstance(summary.get(k), (int, float))}
    for key, value in summary.items():
        if key.endswith("_mean") and key not in ("length_mean", "hns_mean") and isinstance(value, (int, float)):
            out[f"charts/eval_{key[:-len('_mean')]}"] = value
    return out
