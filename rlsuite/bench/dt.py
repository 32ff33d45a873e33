"""`rlsuite bench dt`: Decision Transformer training throughput against Hugging Face transformers'
`DecisionTransformerModel`, timed alike.

What is timed, on both sides, is one full training update on a real batch: forward, cross-entropy
of the action logits over the window's real steps, backward, global gradient-norm clip 1.0, AdamW
step. The measure is training tokens per second: 3 x K x batch tokens (return, observation, action
per step) per update.

- rlsuite: `DT.update(batch)` (rlsuite.agents.dt) on a `SequenceBatch`, the agent built from the
  `dt` preset (rlsuite/presets/agents/dt.toml) with the shared settings as overrides, as `rlsuite
  train dt` builds it. Observation encoder `mlp` with `encoder.hidden=()`: an empty MLP is allowed
  (flatten and cast), so the observation token is `obs_embed`, one Linear(obs_dim, d), exactly
  HF's `embed_state`.
- HF: `DecisionTransformerModel` (GPT-2 backbone) at the same size: hidden_size d, n_layer, n_head,
  n_inner 4d, the same dropout on embeddings, attention and residual branches, max_ep_len = the
  same timestep table (rlsuite's `model.max_timestep`), state_dim = the flattened observation,
  act_dim = the number of actions (actions one-hot), `action_tanh=False`, GELU (exact, as rlsuite's
  nn.GELU; HF's DT default is ReLU), `attn_implementation="sdpa"` (the record reports the one that
  ran). `action_preds` (read at the state token, as rlsuite's logits) are the logits of the same
  cross-entropy: a sum over the real steps divided by the batch's real steps (`DT.losses`). The
  update is written out as DT.update does it: AdamW with the same lr, betas (0.9, 0.95) and
  weight decay 0.1 on Linear / Conv1D weights only (biases, LayerNorms, embeddings none), zero_grad
  (set_to_none), backward, clip_grad_norm_(1.0), step, then the loss read back as a float (DT.update
  reads its metrics back too).
- Same data: one small real dataset, written with `DatasetWriter` from a real env (CartPole-v1)
  played by a uniform random policy from a seeded numpy Generator; `SequenceSampler.
  sample_sequences` draws a pool of batches from a seeded Generator before any measurement, and
  both sides cycle through the same pool (HF gets it converted: float states (B, K, obs_dim),
  one-hot actions, returns-to-go (B, K, 1), timesteps clamped to the table, an all-ones attention
  mask). Sampling, batch building and the conversion are outside the clock on both sides, and the
  pool is on the device before the clock (DT.update's `batch.to(device)` is then a no-op).
- Method (the house rules of rlsuite/bench/dqn.py and ppo.py): every measurement in a fresh
  process (`python -m rlsuite.bench.dt IMPL SETTINGS_JSON POOL [PLAN_JSON]`), same torch thread count
  (torch.set_num_threads and OMP/MKL_NUM_THREADS) and the tuned malloc thresholds (harness.MALLOC_ENV)
  on both sides; module imports, model construction and `warmup` updates before the clock; then
  `updates` timed updates (CUDA: synchronised before and after). A run's rate is its timed
  updates' tokens over their wall time. R repeats, interleaved (rlsuite-fp32, hf, rlsuite-fast,
  rlsuite-fp32, ...); each side's median tokens/s over its runs, and each rlsuite mode's ratio
  to HF of the medians (`ratio_vs_hf`; the fast mode also `ratio_vs_fp32`). Each update is also timed alone (both sides read the loss back at its end, so
  on CUDA that clock waits for the update's kernels): `step_median_tokens_per_s`, from a run's
  median update, the median over runs, is less swayed by other jobs on a shared machine, and gets
  its own ratio (`ratio_vs_hf_step_median`). JSON lines on stdout, a readable table on stderr.
  Threads: 2 by default, as the other benches; where other jobs hold the cores, OpenMP threads
  wait on each other and the runs scatter widely: `--threads 1` then gives steadier numbers.
- Modes (rlsuite.bench.modes): rlsuite runs in fp32 (the preset's model as `rlsuite train dt`
  builds it) and in a fast mode; HF runs as it ships (fp32, eager). This bench calls the model,
  not train(), so the fast mode is applied here, not by the agent: with train.precision=bf16, or
  auto on a device with bf16 units (a CPU flag avx512_bf16 / amx_bf16, or a CUDA device with
  native bf16: no measurement), the model's forward runs inside `torch.autocast(device,
  bfloat16)` and its floating outputs are cast back to fp32, so the cross-entropy, the backward's
  loss gradient, weights and AdamW state are fp32; with train.compile=true the model is
  `model.compile()`d (train.cudagraphs=true, CUDA only: mode 'reduce-overhead', a new graph step
  marked before each update). train.memory_format has nothing to act on (no convolutions) and
  other keys are refused. Compilation happens in the warm-up updates, before the clock
  (`warmup_s_median` reports it), unlike `bench dqn`/`ppo`, which time train() end to end.
- Structured FFNs: `--fast` may also carry the model keys of dt_settings.FFN_KEYS (agent.model.ffn,
  ffn_rank, ffn_blocks, ffn_first_dense, sgt_ratio, sgt_schedule); the fast mode then builds that
  FFN (fp32 unless speed keys are given too) and `ratio_vs_fp32` is structured over dense. The agent
  is planned for warmup + updates updates, so sgt_ratio guides that share of them. Each record's
  `ffn` says which FFN it ran (HF: dense).

Where the two architectures cannot be the same: rlsuite/bench/dt_peers.py (the HF side) lists the
departures; `parameter_counts` there holds the parameter counts within
`dt_settings.PARAM_TOLERANCE`.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rlsuite.bench import modes
from rlsuite.bench.dt_settings import build_rlsuite, rlsuite_config, settings, split_ffn
from rlsuite.bench.harness import MALLOC_ENV, RESULT
from rlsuite.errors import UserError

# settings, rlsuite_config and build_rlsuite are also this bench's interface (tests).
__all__ = ["bench_dt", "build_rlsuite", "main", "make_pool", "rlsuite_config", "settings", "worker"]

# ----------------------------------------------------------------------------- data


def make_pool(s: dict[str, Any], folder: str | Path, env_cfg: Any = None) -> dict[str, Any]:
    """Collect the dataset under `folder` (a random policy on s['env'], or on `env_cfg`, an EnvConfig)
    and sample s['pool'] batches.
    Returns {"batches": [SequenceBatch], "observation_space", "action_space", "dataset_steps"}."""
    import numpy as np

    from rlsuite.data import Dataset, DatasetWriter
    from rlsuite.data.sequences import SequenceSampler
    from rlsuite.envs import EnvConfig, make

    path = Path(folder) / "dataset"
    env = make(env_cfg or EnvConfig(id=s["env"], backend="gymnasium"), 1, s["seed"])
    policy = np.random.default_rng(s["seed"])
    writer = DatasetWriter(path, env.single_observation_space, env.single_action_space,
                           {"source": "rlsuite bench dt: uniform random policy", "env": s["env"]})
    obs, _ = env.reset(seed=s["seed"])
    for _ in range(s["dataset_steps"]):
        actions = policy.integers(0, env.single_action_space.n, size=1)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        ended = np.logical_or(terminated, truncated)
        writer.add(obs, actions, rewards, terminated, truncated, info["final_obs"] if ended.any() else None,
                   episode_info=info.get("episode"))
        obs = next_obs
    writer.close(next_obs=obs)
    env.close()
    data = Dataset(path)
    sampler = SequenceSampler([data])
    rng = np.random.default_rng([s["seed"], 1])
    batches = [sampler.sample_sequences(s["batch_size"], s["context"], rng) for _ in range(s["pool"])]
    return {"batches": batches, "observation_space": data.observation_space, "action_space": data.action_space,
            "dataset_steps": len(sampler)}


# ----------------------------------------------------------------------------- the worker


def rlsuite_side(s: dict[str, Any], batches: list[Any], observation_space: Any, action_space: Any,
                 plan: dict[str, Any] | None) -> dict[str, Any]:
    """The worker's rlsuite side: DT.update on pool batch i (under `plan`), its parameter count."""
    ffn = tuple(plan.get("model", ())) if plan is not None else ()
    agent = build_rlsuite(s, observation_space, action_space, ffn)
    agent.plan(s["warmup"] + s["updates"])  # as a run of that length (self-guided training's share)
    if plan is not None:  # resolved and applied as train() does (auto: measured on this agent's network)
        from rlsuite.run import speed
        from rlsuite.config import TrainConfig

        resolved = speed.resolve(TrainConfig(**plan["requested"]), agent.device, agent.speed_probe)
        agent.accelerate(resolved)
        plan.update(precision=resolved.precision, memory_format=resolved.memory_format, speed_reason=resolved.reason)

    def step(i: int) -> float:
        return agent.update(batches[i % len(batches)])["losses/action_ce"]

    return {"step": step, "params": agent.parameter_count(), "attention": "rlsuite.nn.attention", "versions": {},
            "ffn": agent.cfg.model.ffn}


def worker(impl: str, s: dict[str, Any], pool_path: str, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build one side, run `warmup` then `updates` timed updates on the pool; in this process."""
    import torch

    torch.set_num_threads(s["threads"])
    device = torch.device(s["device"])
    pool = torch.load(pool_path, weights_only=False)
    batches = [b.to(device) for b in pool["batches"]]
    obs_space, act_space = pool["observation_space"], pool["action_space"]
    if impl == "rlsuite":
        side = rlsuite_side(s, batches, obs_space, act_space, plan)
    else:
        from rlsuite.bench.dt_peers import hf_side

        side = hf_side(s, batches, obs_space, act_space)
    update = side["step"]
    graphs = bool(plan and plan["cudagraphs"])

    def step(i: int) -> float:
        if graphs:  # a new CUDA-graph step: the last replay's outputs are no longer read
            torch.compiler.cudagraph_mark_step_begin()
        return update(i)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    losses = [step(i) for i in range(s["warmup"])]  # with compile: the compilation is here, before the clock
    sync()
    marks = [time.perf_counter()]
    for i in range(s["warmup"], s["warmup"] + s["updates"]):
        losses.append(step(i))  # reads the loss back: on CUDA that waits for the update's kernels
        marks.append(time.perf_counter())
    sync()
    elapsed = time.perf_counter() - marks[0]
    step_s = statistics.median(b - a for a, b in zip(marks, marks[1:]))
    speed = dict(plan) if plan else modes.peer_speed()  # no plan: fp32 eager, as HF always runs
    return {"tokens_per_s": round(s["updates"] * s["tokens_per_update"] / elapsed, 1),
            "step_median_tokens_per_s": round(s["tokens_per_update"] / step_s, 1),
            "s_per_update": round(elapsed / s["updates"], 5), "timed_s": round(elapsed, 3),
            "warmup_s": round(marks[0] - start, 3), "params": side["params"], "attention": side["attention"],
            "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4), "ffn": side.get("ffn", "dense"),
            "versions": {"torch": torch.__version__, **side["versions"]}, **speed, **modes.machine(s["device"])}


def main(argv: list[str]) -> None:
    impl, s, pool_path = argv[0], json.loads(argv[1]), argv[2]
    plan = json.loads(argv[3]) if len(argv) > 3 else None
    print(RESULT + json.dumps(worker(impl, s, pool_path, plan)), flush=True)


# ----------------------------------------------------------------------------- orchestration


def bench_dt(size: str | None = None, repeats: int | None = None, updates: int | None = None,
             quick: bool = False, device: str = "cpu", threads: int | None = None,
             fast: tuple[str, ...] = modes.DEFAULT_FAST, table: bool = True) -> list[dict[str, Any]]:
    """One record per side and mode (rlsuite-fp32, hf, rlsuite-fast): tokens/s min/median/max over
    `repeats` fresh processes, interleaved; each rlsuite record carries `ratio_vs_hf` (its median /
    HF's median). `fast`: the fast mode's --fast keys (empty: fp32 only)."""
    import torch

    size = size or ("small" if quick else "default")
    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (updates is not None and updates < 1) or (threads is not None and threads < 1):
        raise UserError("bench dt needs --repeats >= 1, --steps >= 1 and --threads >= 1")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("bench dt --device cuda needs a GPU and a CUDA build of torch; this torch sees none")
    if device not in ("cpu", "cuda"):
        raise UserError(f"bench dt --device must be cpu or cuda, not {device!r}")
    s = settings(size, updates=updates, device=device, threads=threads)
    speed_keys, ffn = split_ffn(tuple(fast))
    plan = modes.direct_plan(speed_keys or (("train.precision=fp32",) if ffn else ()),
                             lambda f: rlsuite_config(s, f), s["device"], "bench dt")
    if ffn:  # a structured FFN in the fast mode; its keys checked (one line) before anything runs
        modes.validate(ffn, lambda f: rlsuite_config(s, f), s["device"])
        plan["model"] = list(ffn)
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise UserError("bench dt needs Hugging Face transformers (pip install -e '.[transformers]')")
    order = modes.order("hf", tuple(fast) if plan else ())
    folder = Path(tempfile.mkdtemp(prefix="rlsuite-bench-dt-"))
    try:
        pool = make_pool(s, folder)
        pool_path = folder / "pool.pt"
        torch.save(pool, pool_path)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in order}
        for r in range(repeats):  # interleaved: rlsuite-fp32, hf, rlsuite-fast, rlsuite-fp32, ...
            for impl, mode in order:
                run = _measure_in_subprocess(impl, s, pool_path, plan if mode == "fast" else None)
                runs[(impl, mode)].append(run)
                rate = run.get("tokens_per_s") or run.get("error")
                print(f"bench dt: {size} {impl}-{mode} {r + 1}/{repeats}: {rate}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    records = [_summarise(impl, mode, s, runs[(impl, mode)], pool["dataset_steps"], fast if mode == "fast" else ())
               for impl, mode in order]
    modes.add_ratios(records, "hf", "tokens_per_s", "ratio_vs_hf")
    theirs = next(r for r in records if r["impl"] == "hf")
    for r in records:
        if "ratio_vs_hf" in r:
            r["ratio_vs_hf_step_median"] = round(r["step_median_tokens_per_s"] / theirs["step_median_tokens_per_s"], 3)
    if table:
        print(format_table(records), file=sys.stderr, flush=True)
    return records


def _summarise(impl: str, mode: str, s: dict[str, Any], runs: list[dict[str, Any]], dataset_steps: int,
               fast: tuple[str, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {"bench": "dt", "size": s["size"], "impl": impl, "mode": mode, "device": s["device"],
                              "repeats": len(runs), "updates": s["updates"], "warmup": s["warmup"],
                              "tokens_per_update": s["tokens_per_update"], "fast_overrides": list(fast)}
    good = [r for r in runs if r.get("tokens_per_s")]
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        record["error"] = errors[-1]
    if not good:
        return {**record, **modes.machine(s["device"]), "torch_threads": s["threads"], "tokens_per_s": None}
    rates = [r["tokens_per_s"] for r in good]
    last = good[-1]
    record.update({k: modes.merged(good, k) for k in (*modes.SPEED_FIELDS, "requested", "speed_reason", *MACHINE)})
    record.update(tokens_per_s={"min": min(rates), "median": round(statistics.median(rates), 1), "max": max(rates)},
                  runs_tokens_per_s=rates,
                  step_median_tokens_per_s=round(statistics.median(r["step_median_tokens_per_s"] for r in good), 1),
                  s_per_update_median=round(statistics.median(r["s_per_update"] for r in good), 5),
                  warmup_s_median=round(statistics.median(r["warmup_s"] for r in good), 3),
                  params=last["params"], attention=last["attention"], ffn=last.get("ffn", "dense"),
                  loss_first_last=[last["loss_first"], last["loss_last"]], versions=last["versions"],
                  dataset_steps=dataset_steps, settings=s)
    return record


MACHINE = ("torch_threads", "cpu", "cpu_bf16_flags", "gpu")


def format_table(records: list[dict[str, Any]]) -> str:
    """The records as a small human-readable table."""
    s, first = records[0].get("settings") or {}, records[0]
    flags = ", ".join(first.get("cpu_bf16_flags") or []) or "no bf16 flags"
    head = (f"bench dt, size {first['size']}: d={s.get('embed_dim')}, {s.get('n_layer')} layers, "
            f"{s.get('n_head')} heads, K={s.get('context')}, batch {s.get('batch_size')} "
            f"({first['tokens_per_update']} tokens/update); {first['device']}, {first.get('torch_threads')} "
            f"threads, CPU {first.get('cpu')} ({flags})" + (f", GPU {first['gpu']}" if first.get("gpu") else "")
            + f"; {first['updates']} timed updates after {first['warmup']} warm-up, {first['repeats']} runs per side")
    lines = [head, f"{'impl-mode':<13} {'speed settings':<34} {'params':>9} {'attention':<22} {'tokens/s median':>15} "
                   f"{'(min - max)':>19} {'ms/update':>9} {'step-median':>11} {'vs hf':>6} {'vs fp32':>7}"]
    for r in records:
        label, rate = f"{r['impl']}-{r['mode']}", r.get("tokens_per_s")
        if not rate:
            lines.append(f"{label:<13} failed: {r.get('error')}")
            continue
        span = f"({rate['min']:,.0f} - {rate['max']:,.0f})"
        speed = modes.describe_speed(r) + (f" ffn={r['ffn']}" if r.get("ffn", "dense") != "dense" else "")
        lines.append(f"{label:<13} {speed:<34} {r['params']:>9,} {r['attention']:<22} "
                     f"{rate['median']:>15,.0f} {span:>19} {1000 * r['s_per_update_median']:>9.1f} "
                     f"{r['step_median_tokens_per_s']:>11,.0f} {r.get('ratio_vs_hf', ''):>6} {r.get('ratio_vs_fp32', ''):>7}")
    for r in records:
        if "ratio_vs_hf" in r:
            lines.append(f"ratio rlsuite-{r['mode']} / hf (median tokens/s): {r['ratio_vs_hf']} "
                         f"(step medians: {r['ratio_vs_hf_step_median']})")
    return "\n".join(lines)


def _measure_in_subprocess(impl: str, s: dict[str, Any], pool_path: Path, plan: dict[str, Any] | None
                           ) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    threads = str(s["threads"])
    env.update(MALLOC_ENV, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "rlsuite.bench.dt", impl, json.dumps(s), str(pool_path)]
    proc = subprocess.run(cmd + ([json.dumps(plan)] if plan else []), env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"tokens_per_s": None, "error": reason}
    return json.loads(lines[-1][len(RESULT):])


if __name__ == "__main__":
    main(sys.argv[1:])
