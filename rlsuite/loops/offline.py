"""The offline training loop, for agents that learn from datasets (the Decision Transformer):

    sampler.sample_sequences -> agent.update -> log / evaluate in real envs / checkpoint

It counts gradient updates where the online loop (rlsuite.loops.online) counts env steps:
`train.total_steps`, `eval_every`, `checkpoint_every` and `log_every` are in updates. Everything
else is the one lifecycle of every run (rlsuite.run.lifecycle): the run-directory lock, config
checks and resume rules, checkpoints, signals (SIGINT / SIGTERM finish the update, write a
checkpoint and return), the monitor; evaluation is rlsuite.run.evaluate's, with the same eval env
seeds and exploration streams as online runs. `OfflineRun` is what an offline run brings to it.

Evaluation plays each dataset's game on evaluation envs built from the env config the dataset
was collected with (its manifest), conditioned on the agent's target return. eval.jsonl gets one
record per evaluation: for one game, that game's summary; for several, `mean` is the mean over
games of each game's mean and `games` holds every game's summary.

Data-parallel training: started by `torchrun --nproc_per_node N -m rlsuite train dt ...`, every
rank builds the same session, the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on
GPU), every rank draws the same global batch and keeps its slice (rlsuite.data.sequences), and only
rank 0 logs, evaluates and writes checkpoints. A stop request on any rank stops all of them at the
same update. The sampler's stream is independent of the world size, so a run resumes under another.
DDP searches for unused parameters only when the agent says its forward leaves some unused
(`memory.variant=released`), and collectives wait up to PROCESS_GROUP_TIMEOUT (rank 0's evaluations).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsuite import config
from rlsuite.agents import agent_classes
from rlsuite.data.sequences import SequenceSampler
from rlsuite.errors import UserError
from rlsuite.loops.offline_games import EvalGame, evaluate_game, open_datasets, parent_games, resolve_games
from rlsuite.run import checkpoint, lifecycle, seeding, speed
from rlsuite.run.evaluate import append_jsonl, eval_env_seeds, eval_scalars, format_table
from rlsuite.run.lifecycle import Say, crossed
from rlsuite.run.monitor import Monitor, log_record


def is_offline(algo: str) -> bool:
    """Whether agents of `algo` learn from datasets (their class sets `offline = True`)."""
    agent_cls, _ = agent_classes(algo)
    return bool(getattr(agent_cls, "offline", False))


# ----------------------------------------------------------------------------- evaluation


def evaluate_all(s: "OfflineSession", monitor: Monitor | None) -> dict[str, Any]:
    """Evaluate every game at this update; eval.jsonl record, TensorBoard, and the summary."""
    cfg, started = s.cfg, time.perf_counter()
    per_game: dict[str, dict[str, Any]] = {}
    for index, game in enumerate(s.games):
        rng = seeding.generator(cfg.train.seed, "eval_exploration", s.step, index)
        summary, target = evaluate_game(s.agent, cfg.agent, game, cfg.train.eval_episodes, cfg.train.eval_num_envs,
                                        eval_env_seeds(cfg, s.step, index), rng, cfg.agent.eval_epsilon)
        per_game[game.name] = {**summary, "target": target, **({"earlier": True} if game.earlier else {})}
    s.eval_seconds += time.perf_counter() - started
    if len(per_game) == 1:
        record = next(iter(per_game.values()))
    else:  # the mean is over the games this run trains on; earlier (parent) games are reported beside it
        means = [g["mean"] for g in per_game.values() if not g.get("earlier")]
        record = {"mean": float(np.mean(means)), "game": "+".join(per_game), "games": per_game}
    append_jsonl(s.run_dir / "eval.jsonl", {**log_record(s.step, record), "source": "periodic"})
    if monitor is not None:
        scalars = eval_scalars(record) if len(per_game) == 1 else {"charts/eval_mean": record["mean"]}
        if len(per_game) > 1:
            scalars.update({f"charts/eval_mean_{name}": g["mean"] for name, g in per_game.items()})
        monitor.scalars(s.step, scalars)
        monitor.recent_returns.append(record["mean"])
    s.last_eval = record
    return record


# ----------------------------------------------------------------------------- session


@dataclass(kw_only=True)
class OfflineSession(lifecycle.Session):
    """The live objects of one offline run."""

    sampler: SequenceSampler
    games: list[EvalGame]
    rng: np.random.Generator
    """The sampler's stream ('replay' of the run's seed): the same on every rank."""

    @property
    def signature(self) -> dict[str, str]:
        return checkpoint.space_signature(self.sampler.observation_space, self.sampler.action_space)


PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=6)
"""How long a rank waits in a collective. Only rank 0 evaluates, while the others wait in the stop
flag's all_reduce; a long evaluation (many games, Atari episodes) can outlast torch's default (30
minutes; 10 for NCCL), which would kill the waiting ranks."""


def _init_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)


def ddp_options(agent: Any) -> dict[str, Any]:
    """Keyword arguments of DistributedDataParallel for `agent.model`: find_unused_parameters when
    the agent's forward leaves trainable parameters unused (DDP otherwise stops at the second
    update waiting for their gradients)."""
    unused = getattr(agent, "has_unused_parameters", lambda: False)()
    return {"find_unused_parameters": bool(unused)}


def build_session(cfg: config.RunConfig, run_dir: Path, fresh: bool = True) -> OfflineSession:
    """The session of a run; a fresh fine-tuning run (finetune.parent) starts from its parent's
    weights (a resumed one gets its own from its checkpoint)."""
    t = cfg.train
    rank, world = lifecycle.distributed()
    lifecycle.seed_everything(t.seed, t.torch_threads)
    device = lifecycle.pick_device(t.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.agent.batch_size % world:
        raise UserError(f"agent.batch_size ({cfg.agent.batch_size}) must be a multiple of the number of "
                        f"processes ({world})")
    datasets = open_datasets(cfg)
    if cfg.offline.weights and len(cfg.offline.weights) != len(datasets):
        raise UserError(f"offline.weights has {len(cfg.offline.weights)} numbers for {len(datasets)} datasets")
    sampler = SequenceSampler(datasets, cfg.offline.weights or None)
    agent_cls, _ = agent_classes(cfg.algo)
    agent = agent_cls(cfg.agent, sampler.observation_space, sampler.action_space, device, seed=t.seed)
    agent.plan(t.total_steps)
    if cfg.finetune.parent and fresh:
        _adopt_parent(agent, cfg.finetune.parent)
    speed.apply(agent, t, device, run_dir, resume=not fresh)  # before distribute(): the wrapper is wrapped
    if world > 1:
        _init_distributed(device)
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        agent.distribute(DistributedDataParallel(agent.model, device_ids=ids, **ddp_options(agent)), world)
    games = resolve_games(cfg, datasets)
    if cfg.finetune.parent and fresh and cfg.offline.eval_parent_games:
        games += parent_games(cfg.finetune.parent, games)
    return OfflineSession(cfg=cfg, run_dir=run_dir, agent=agent, sampler=sampler, games=games,
                          rng=seeding.generator(t.seed, "replay"), rank=rank, world_size=world)


def _adopt_parent(agent: Any, parent: str) -> None:
    path = checkpoint.find(parent)
    data = checkpoint.load(path)
    if data.get("algo") != agent.name:
        raise UserError(f"{path} holds a {data.get('algo')} agent, not {agent.name}")
    try:
        agent.adopt_parent(data["agent"]["model"])
    except RuntimeError as exc:
        raise UserError(f"the weights of {path} do not fit this model ({str(exc).splitlines()[0][:160]})") from None


def _stop_everywhere(s: OfflineSession) -> bool:
    """Whether any rank was asked to stop (every rank stops after the same update)."""
    if s.world_size == 1:
        return s.stop_requested
    import torch.distributed as dist

    flag = torch.tensor([1.0 if s.stop_requested else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


# ----------------------------------------------------------------------------- the run kind


class OfflineRun:
    """What an offline run brings to the lifecycle (rlsuite.run.lifecycle.RunKind): gradient updates."""

    unit = "update"

    def __init__(self) -> None:
        self.last_log = 0

    def check(self, cfg: config.RunConfig) -> None:
        pass  # the datasets are checked against the config by the CLI (rlsuite.loops.offline_checks)

    def preflight(self, cfg: config.RunConfig, say: Say) -> None:
        pass

    def build(self, cfg: config.RunConfig, run_dir: Path, fresh: bool) -> OfflineSession:
        return build_session(cfg, run_dir, fresh)

    def checkpoint_payload(self, s: OfflineSession) -> dict[str, Any]:
        return {"sampler_rng": s.rng.bit_generator.state, "games": [dataclasses.asdict(g) for g in s.games]}

    def restore(self, s: OfflineSession, data: dict[str, Any], say: Say) -> bool:
        s.agent.load_state_dict(data["agent"])
        s.step = int(data["step"])
        s.rng.bit_generator.state = data["sampler_rng"]
        if s.cfg.offline.eval_parent_games:  # the parent's games, as the run's first checkpoint found them
            s.games += [EvalGame(**g) for g in data.get("games", []) if g.get("earlier")]
        return True

    def start(self, s: OfflineSession, say: Say) -> None:
        cfg = s.cfg
        say(f"run {s.run_dir}  |  {cfg.algo} on {len(s.sampler):,} steps of {len(s.games)} game(s) "
            f"({', '.join(g.name for g in s.games)})  |  {s.agent.parameter_count():,} parameters"
            + (f", {s.agent.trainable_count():,} trainable" if s.agent.trainable_count() != s.agent.parameter_count()
               else "")
            + (f"  |  from {cfg.finetune.parent}" if cfg.finetune.parent else "")
            + (f"  |  {s.world_size} processes" if s.world_size > 1 else "")
            + f"  |  {s.agent.speed.describe()}")
        for line in getattr(s.agent, "model_notes", list)():  # e.g. a structured FFN's counts against dense
            say(line)

    def before_loop(self, s: OfflineSession, monitor: Monitor | None) -> None:
        self.last_log = s.step
        if s.step == 0 and s.cfg.finetune.parent and monitor is not None:  # the parent's own scores: the
            summary = evaluate_all(s, monitor)                             # baseline of adaptation and forgetting
            monitor.write(f"eval @ update 0 (the parent): mean {summary['mean']:.2f}")

    def advance(self, s: OfflineSession, monitor: Monitor | None) -> int:
        """One gradient update on a batch of windows; its losses, and an evaluation when due (rank 0)."""
        t = s.cfg.train
        batch = s.sampler.sample_sequences(s.cfg.agent.batch_size, s.agent.context, s.rng, s.rank, s.world_size,
                                           getattr(s.agent, "burn_in_steps", 0))
        metrics = s.agent.update(batch)
        s.step += 1
        if monitor is not None:
            if s.step - self.last_log >= t.log_every or s.step == 1:
                self.last_log = s.step
                monitor.scalars(s.step, metrics)
            monitor.tick(s.step, 1, f"ce {metrics['losses/action_ce']:.3f}")
            if crossed(s.step, 1, t.eval_every) and s.step < t.total_steps:
                summary = evaluate_all(s, monitor)
                monitor.write(f"eval @ update {s.step:,}: mean {summary['mean']:.2f}")
                monitor.restart_rate(s.step)
        return 1

    def stop_now(self, s: OfflineSession) -> bool:
        return _stop_everywhere(s)

    def final_evaluation(self, s: OfflineSession, monitor: Monitor) -> dict[str, Any]:
        return evaluate_all(s, monitor)

    def report(self, s: OfflineSession, summary: dict[str, Any], seconds: float, done: int,
               monitor: Monitor) -> dict[str, Any]:
        monitor.close()
        ups = done / max(seconds, 1e-9)
        print_summary(s, summary, ups)
        return {"updates_per_second": ups}


def train_offline(cfg: config.RunConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) an offline run in `run_dir` through the lifecycle, and leave the process
    group (torchrun) whatever happens."""
    try:
        return lifecycle.run(OfflineRun(), cfg, run_dir, resume)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def print_summary(s: OfflineSession, summary: dict[str, Any], ups: float) -> None:
    """The table printed at the end of a run: each game's final evaluation beside its data's best."""
    games = summary.get("games") or {summary.get("game", "?"): summary}
    rows = [{"game": name + (" (earlier)" if g.get("earlier") else ""),
             **({"target": g["target"]} if g.get("target") is not None else {}), "episodes": g.get("episodes"), "mean": g.get("mean"),
             "iqm": g.get("iqm"), "min": g.get("min"), "max": g.get("max"),
             "data best": next((x.best_return for x in s.games if x.name == name), None)} for name, g in games.items()]
    print(format_table(rows, f"{s.cfg.algo}: final evaluation after {s.step:,} updates ({ups:,.1f} updates/s)"))
    print(f"run directory: {s.run_dir}   (tensorboard --logdir {s.run_dir.parent})")
