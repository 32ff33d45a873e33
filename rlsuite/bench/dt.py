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
  process (`python -m rlsuite.bench.dt IMPL SETTINGS_JSON POOL`), same torch thread count
  (torch.set_num_threads and OMP/MKL_NUM_THREADS) and the tuned malloc thresholds (dqn.MALLOC_ENV)
  on both sides; module imports, model construction and `warmup` updates before the clock; then
  `updates` timed updates (CUDA: synchronised before and after). A run's rate is its timed
  updates' tokens over their wall time. R repeats, the sides interleaved (rlsuite, hf, rlsuite,
  ...); each side's median tokens/s over its runs, and the ratio rlsuite / HF of the medians
  (`ratio_vs_hf`). Each update is also timed alone (both sides read the loss back at its end, so
  on CUDA that clock waits for the update's kernels): `step_median_tokens_per_s`, from a run's
  median update, the median over runs, is less swayed by other jobs on a shared machine, and gets
  its own ratio (`ratio_vs_hf_step_median`). JSON lines on stdout, a readable table on stderr.
  Threads: 2 by default, as the other benches; where other jobs hold the cores, OpenMP threads
  wait on each other and the runs scatter widely: `--threads 1` then gives steadier numbers.

Departures, where the two architectures cannot be the same (parameter counts: `parameter_counts`;
the test holds them within `PARAM_TOLERANCE`):
- GPT-2 has a position table (`wpe`); HF's DT feeds position id 0 to every token, so only row 0 is
  ever read: `n_positions=1` (a learned bias on every token, d parameters). Its unused token table
  `wte` has vocab_size 1 (d parameters). rlsuite has neither.
- HF adds a LayerNorm on the stacked embeddings (`embed_ln`) and computes, each forward, a state
  head and a return head on the action tokens that no loss reads (they get no gradient and AdamW
  skips them). rlsuite has no such heads with returns 'continuous'.
- Actions: rlsuite embeds the action index (nn.Embedding with one extra row for the unknown action
  at evaluation); HF multiplies a one-hot vector by a Linear (act_dim x d weights plus a bias): the
  same count, (A + 1) x d.
- Attention masks: rlsuite's windows are right-padded and its causal mask alone keeps padding from
  reaching a real step, so it passes no key mask; HF gets an all-ones attention mask (the same
  computation; its own default is built on the CPU, wrong for --device cuda), which its mask code
  turns into SDPA's `is_causal=True` with no mask tensor. Padded steps are left out of the loss on
  both sides. (Passing the padding mask to HF would make it build a 4-D float mask for every
  batch with padding: extra work rlsuite's model does not need.)
- Attention kernels: both sides call torch's scaled_dot_product_attention with is_causal=True and
  dropout_p = the attention dropout in training. On the CPU a nonzero dropout_p rules out the fused
  flash kernel, so with dropout 0.1 both run SDPA's math path (causal mask, softmax, dropout
  masks), the same on both sides; on a GPU SDPA picks its fused kernels for both.
- Init: GPT-2 N(0, 0.02) on both, HF also scales the residual projections by 1/sqrt(2 n_layer);
  no effect on speed.
- The lr: rlsuite's warm-up is set to 0 (`agent.warmup_updates=0`) so both sides step at the
  same constant lr; DT.update still computes it every update (a few float operations).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rlsuite.bench.dqn import MALLOC_ENV, RESULT
from rlsuite.errors import UserError

IMPLS = ("rlsuite", "hf")
PARAM_TOLERANCE = 0.01
"""Largest relative difference of the two models' parameter counts that the test accepts."""

SIZES: dict[str, dict[str, Any]] = {
    # the `dt` preset (rlsuite/presets/agents/dt.toml): d 128, 3 layers, 4 heads, K 20, batch 64
    "default": {"embed_dim": 128, "n_layer": 3, "n_head": 4, "context": 20, "batch_size": 64,
                "warmup": 5, "updates": 30},
    # a quick run (and the test's size)
    "small": {"embed_dim": 64, "n_layer": 2, "n_head": 2, "context": 10, "batch_size": 16,
              "warmup": 2, "updates": 10},
}
COMMON: dict[str, Any] = {
    "env": "CartPole-v1", "dataset_steps": 4_000, "pool": 8, "seed": 0, "dropout": 0.1,
    "max_timestep": 10_000,  # rlsuite's TransformerConfig default (the preset leaves it)
    "lr": 3e-4, "betas": (0.9, 0.95), "weight_decay": 0.1, "max_grad_norm": 1.0, "threads": 2,
}


def settings(size: str = "default", *, updates: int | None = None, device: str = "cpu",
             threads: int | None = None) -> dict[str, Any]:
    """The one description of a measurement that both sides are built from."""
    if size not in SIZES:
        raise UserError(f"unknown bench dt size {size!r}; choose from {', '.join(SIZES)}")
    s = {**COMMON, **SIZES[size], "size": size, "device": device}
    if updates is not None:
        s["updates"] = int(updates)
    if threads is not None:
        s["threads"] = int(threads)
    s["tokens_per_update"] = 3 * s["context"] * s["batch_size"]
    return s


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


def hf_inputs(batch: Any, num_actions: int, max_timestep: int) -> dict[str, Any]:
    """A SequenceBatch in DecisionTransformerModel's input format (plus the loss's targets and mask)."""
    import torch
    import torch.nn.functional as F

    b, k = batch.actions.shape
    return {"states": batch.obs.reshape(b, k, -1).float(),
            "actions": F.one_hot(batch.actions, num_actions).float(),
            "returns_to_go": batch.returns_to_go.float().unsqueeze(-1),
            "timesteps": batch.timesteps.clamp(0, max_timestep - 1),
            "attention_mask": torch.ones((b, k), dtype=torch.long, device=batch.actions.device),
            "targets": batch.actions, "mask": batch.mask, "valid_steps": batch.valid_steps}


# ----------------------------------------------------------------------------- the two sides


def rlsuite_config(s: dict[str, Any]) -> Any:
    """rlsuite's RunConfig for settings `s`: the dt preset with every shared setting overridden."""
    from rlsuite import config

    overrides = [
        f"agent.model.embed_dim={s['embed_dim']}", f"agent.model.n_layer={s['n_layer']}",
        f"agent.model.n_head={s['n_head']}", f"agent.model.context={s['context']}",
        f"agent.model.dropout={s['dropout']}", f"agent.model.max_timestep={s['max_timestep']}",
        "agent.model.returns=continuous", "agent.model.return_scale=1.0",
        f"agent.batch_size={s['batch_size']}", f"agent.lr={s['lr']}", "agent.lr_schedule=constant",
        "agent.warmup_updates=0", f"agent.weight_decay={s['weight_decay']}",
        "agent.betas=" + ",".join(str(v) for v in s["betas"]), f"agent.max_grad_norm={s['max_grad_norm']}",
        "agent.encoder.kind=mlp", "agent.encoder.hidden=", "agent.encoder.width=1",
        "agent.gmp.sparsity=0", "agent.nap.norm=none", "agent.nap.project=false",
        f"train.seed={s['seed']}", f"train.device={s['device']}", f"train.torch_threads={s['threads']}",
    ]
    return config.build_run_config("dt", s["env"], overrides)


def build_rlsuite(s: dict[str, Any], observation_space: Any, action_space: Any) -> Any:
    """The DT agent `rlsuite train dt` would build for settings `s`."""
    from rlsuite.agents.dt import DT

    cfg = rlsuite_config(s)
    return DT(cfg.agent, observation_space, action_space, device=s["device"], seed=s["seed"])


def hf_config(s: dict[str, Any], state_dim: int, num_actions: int) -> Any:
    from transformers import DecisionTransformerConfig

    d = s["embed_dim"]
    return DecisionTransformerConfig(
        state_dim=state_dim, act_dim=num_actions, hidden_size=d, n_layer=s["n_layer"], n_head=s["n_head"],
        n_inner=4 * d, activation_function="gelu", max_ep_len=s["max_timestep"], action_tanh=False,
        n_positions=1, vocab_size=1, bos_token_id=None, eos_token_id=None,
        resid_pdrop=s["dropout"], embd_pdrop=s["dropout"], attn_pdrop=s["dropout"],
        attn_implementation="sdpa")


def build_hf(s: dict[str, Any], state_dim: int, num_actions: int) -> tuple[Any, Any]:
    """(DecisionTransformerModel, AdamW) for settings `s`, the optimizer set up as DT's."""
    import torch
    from transformers import DecisionTransformerModel
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(s["seed"])
    model = DecisionTransformerModel(hf_config(s, state_dim, num_actions)).to(s["device"])
    decay, no_decay = [], []
    for module in model.modules():  # DT._param_groups' rule: Linear (and GPT-2's Conv1D) weights decay
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, (torch.nn.Linear, Conv1D))
            (decay if is_weight else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return model, torch.optim.AdamW(groups, lr=s["lr"], betas=tuple(s["betas"]))


def hf_loss(model: Any, inp: dict[str, Any]) -> Any:
    """DT.losses' action cross-entropy on HF's action_preds: sum over real steps / real steps."""
    import torch.nn.functional as F

    out = model(states=inp["states"], actions=inp["actions"], returns_to_go=inp["returns_to_go"],
                timesteps=inp["timesteps"], attention_mask=inp["attention_mask"], return_dict=True)
    mask = inp["mask"]
    return F.cross_entropy(out.action_preds[mask], inp["targets"][mask], reduction="sum") / max(1, inp["valid_steps"])


def hf_update(model: Any, optimizer: Any, inp: dict[str, Any], max_grad_norm: float) -> float:
    """One training update on HF's side, step for step as DT.update."""
    import torch

    model.train()
    loss = hf_loss(model, inp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def parameter_counts(s: dict[str, Any], state_dim: int, num_actions: int) -> dict[str, dict[str, int]]:
    """Both models' parameter counts: total, and without the timestep table (which is most of a
    small DT's parameters and the same size on both sides)."""
    from gymnasium import spaces
    import numpy as np

    agent = build_rlsuite({**s, "device": "cpu"}, spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
                          spaces.Discrete(num_actions))
    hf, _ = build_hf({**s, "device": "cpu"}, state_dim, num_actions)
    ours = sum(p.numel() for p in agent.model.parameters())
    theirs = sum(p.numel() for p in hf.parameters())
    return {"rlsuite": {"total": ours, "without_timestep_table": ours - agent.model.timestep_embed.weight.numel()},
            "hf": {"total": theirs, "without_timestep_table": theirs - hf.embed_timestep.weight.numel()}}


# ----------------------------------------------------------------------------- the worker


def worker(impl: str, s: dict[str, Any], pool_path: str) -> dict[str, Any]:
    """Build one side, run `warmup` then `updates` timed updates on the pool; in this process."""
    import torch

    torch.set_num_threads(s["threads"])
    device = torch.device(s["device"])
    pool = torch.load(pool_path, weights_only=False)
    batches = [b.to(device) for b in pool["batches"]]
    obs_space, act_space = pool["observation_space"], pool["action_space"]
    versions = {"torch": torch.__version__}
    if impl == "rlsuite":
        agent = build_rlsuite(s, obs_space, act_space)
        params = agent.parameter_count()
        attention = "torch sdpa (is_causal)"

        def step(i: int) -> float:
            return agent.update(batches[i % len(batches)])["losses/action_ce"]
    else:
        import transformers

        versions["transformers"] = transformers.__version__
        n = int(act_space.n)
        model, optimizer = build_hf(s, int(math.prod(obs_space.shape)), n)
        params = sum(p.numel() for p in model.parameters())
        attention = model.config._attn_implementation
        inputs = [hf_inputs(b, n, s["max_timestep"]) for b in batches]

        def step(i: int) -> float:
            return hf_update(model, optimizer, inputs[i % len(inputs)], s["max_grad_norm"])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    losses = [step(i) for i in range(s["warmup"])]
    sync()
    marks = [time.perf_counter()]
    for i in range(s["warmup"], s["warmup"] + s["updates"]):
        losses.append(step(i))  # reads the loss back: on CUDA that waits for the update's kernels
        marks.append(time.perf_counter())
    sync()
    elapsed = time.perf_counter() - marks[0]
    step_s = statistics.median(b - a for a, b in zip(marks, marks[1:]))
    return {"tokens_per_s": round(s["updates"] * s["tokens_per_update"] / elapsed, 1),
            "step_median_tokens_per_s": round(s["tokens_per_update"] / step_s, 1),
            "s_per_update": round(elapsed / s["updates"], 5), "timed_s": round(elapsed, 3),
            "params": params, "attention": attention, "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4), "torch_threads": torch.get_num_threads(), "versions": versions}


def main(argv: list[str]) -> None:
    impl, s, pool_path = argv[0], json.loads(argv[1]), argv[2]
    print(RESULT + json.dumps(worker(impl, s, pool_path)), flush=True)


# ----------------------------------------------------------------------------- orchestration


def bench_dt(size: str | None = None, repeats: int | None = None, updates: int | None = None,
             quick: bool = False, device: str = "cpu", threads: int | None = None,
             table: bool = True) -> list[dict[str, Any]]:
    """One record per side: tokens/s min/median/max over `repeats` fresh processes, interleaved;
    the rlsuite record carries `ratio_vs_hf` (rlsuite median / HF median)."""
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
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise UserError("bench dt needs Hugging Face transformers (pip install -e '.[transformers]')")
    folder = Path(tempfile.mkdtemp(prefix="rlsuite-bench-dt-"))
    try:
        pool = make_pool(s, folder)
        pool_path = folder / "pool.pt"
        torch.save(pool, pool_path)
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
        for r in range(repeats):  # interleaved: rlsuite, hf, rlsuite, hf, ...
            for impl in IMPLS:
                run = _measure_in_subprocess(impl, s, pool_path)
                runs[impl].append(run)
                rate = run.get("tokens_per_s") or run.get("error")
                print(f"bench dt: {size} {impl} {r + 1}/{repeats}: {rate}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    records = {impl: _summarise(impl, s, runs[impl], pool["dataset_steps"]) for impl in IMPLS}
    ours, theirs = (records[i]["tokens_per_s"] for i in IMPLS)
    if ours and theirs:
        records["rlsuite"]["ratio_vs_hf"] = round(ours["median"] / theirs["median"], 3)
        records["rlsuite"]["ratio_vs_hf_step_median"] = round(
            records["rlsuite"]["step_median_tokens_per_s"] / records["hf"]["step_median_tokens_per_s"], 3)
    if table:
        print(format_table(list(records.values())), file=sys.stderr, flush=True)
    return list(records.values())


def _summarise(impl: str, s: dict[str, Any], runs: list[dict[str, Any]], dataset_steps: int) -> dict[str, Any]:
    record: dict[str, Any] = {"bench": "dt", "size": s["size"], "impl": impl, "device": s["device"],
                              "repeats": len(runs), "updates": s["updates"], "warmup": s["warmup"],
                              "tokens_per_update": s["tokens_per_update"]}
    good = [r for r in runs if r.get("tokens_per_s")]
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        record["error"] = errors[-1]
    if not good:
        return {**record, "tokens_per_s": None}
    rates = [r["tokens_per_s"] for r in good]
    last = good[-1]
    record.update(tokens_per_s={"min": min(rates), "median": round(statistics.median(rates), 1), "max": max(rates)},
                  runs_tokens_per_s=rates,
                  step_median_tokens_per_s=round(statistics.median(r["step_median_tokens_per_s"] for r in good), 1),
                  s_per_update_median=round(statistics.median(r["s_per_update"] for r in good), 5),
                  params=last["params"], attention=last["attention"], torch_threads=last["torch_threads"],
                  loss_first_last=[last["loss_first"], last["loss_last"]], versions=last["versions"],
                  dataset_steps=dataset_steps, settings=s)
    return record


def format_table(records: list[dict[str, Any]]) -> str:
    """The records as a small human-readable table."""
    s = records[0].get("settings") or {}
    head = (f"bench dt, size {records[0]['size']}: d={s.get('embed_dim')}, {s.get('n_layer')} layers, "
            f"{s.get('n_head')} heads, K={s.get('context')}, batch {s.get('batch_size')} "
            f"({records[0]['tokens_per_update']} tokens/update); {records[0]['device']}, "
            f"{s.get('threads')} threads; {records[0]['updates']} timed updates after {records[0]['warmup']} "
            f"warm-up, {records[0]['repeats']} runs per side")
    lines = [head, f"{'impl':<8} {'params':>10} {'attention':<24} {'tokens/s median':>15} {'(min - max)':>21} "
                   f"{'ms/update':>9} {'step-median tokens/s':>20}"]
    for r in records:
        rate = r.get("tokens_per_s")
        if not rate:
            lines.append(f"{r['impl']:<8} failed: {r.get('error')}")
            continue
        lines.append(f"{r['impl']:<8} {r['params']:>10,} {r['attention']:<24} {rate['median']:>15,.0f} "
                     f"{'(' + format(rate['min'], ',.0f') + ' - ' + format(rate['max'], ',.0f') + ')':>21} "
                     f"{1000 * r['s_per_update_median']:>9.1f} {r['step_median_tokens_per_s']:>20,.0f}")
    ours = next((r for r in records if "ratio_vs_hf" in r), None)
    lines.append("ratio rlsuite / hf (median tokens/s): " + (f"{ours['ratio_vs_hf']} (step medians: "
                 f"{ours['ratio_vs_hf_step_median']})" if ours else "n/a"))
    return "\n".join(lines)


def _measure_in_subprocess(impl: str, s: dict[str, Any], pool_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    threads = str(s["threads"])
    env.update(MALLOC_ENV, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "rlsuite.bench.dt", impl, json.dumps(s), str(pool_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"tokens_per_s": None, "error": reason}
    return json.loads(lines[-1][len(RESULT):])


if __name__ == "__main__":
    main(sys.argv[1:])
