"""`rlsuite bench dt --memory`: DT-Mem's training cost against the plain DT of the same size.

The two sides are the presets the DT-Mem study trains: `dtmem-minatar` (the DT with a
working memory, 16 slots, 1 write per step, once per model) and `mgdt-minatar-matched` (the plain
DT widened to d 140, parameters within 0.5%), built as `rlsuite train` builds them, each with
`agent.warmup_updates=0`. What is timed is `DT.update` on a real batch (forward, cross-entropy,
backward, clip, AdamW), and the measure is training tokens per second (3 x K x batch per update),
as in `rlsuite bench dt` (rlsuite.bench.dt, whose method this follows: a fresh process per
measurement, the sides interleaved, the same thread count and malloc settings, the batch pool
sampled before the clock from a seeded Generator and shared by both sides).

Memory use, per measurement process: `peak_rss_mib`, the process's peak resident set (Linux
ru_maxrss, so torch's own libraries included), and `train_rss_mib`, how much of it the updates
added over the process after building the model (activations, gradients, AdamW state); on CUDA
also `cuda_peak_mib` (torch.cuda.max_memory_allocated over the updates).

Data: a uniform random policy on MinAtar Breakout with the study's shared spaces (6 actions,
observations padded to 6 channels), `dataset_steps` steps, written with DatasetWriter.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rlsuite.bench.harness import MALLOC_ENV, RESULT
from rlsuite.errors import UserError

PRESETS = {"dtmem": "dtmem-minatar", "dt-matched": "mgdt-minatar-matched"}
IMPLS = tuple(PRESETS)
ENV = {"id": "minatar:breakout", "full_action_space": True, "pad_channels": 6}


def settings(*, quick: bool = False, updates: int | None = None, device: str = "cpu",
             threads: int | None = None) -> dict[str, Any]:
    """One description of a measurement, the same for both sides. The presets' own batch (64) and
    context (10); --quick takes batch 8 and fewer updates (the test's size)."""
    s: dict[str, Any] = {"env": ENV["id"], "dataset_steps": 600 if quick else 4_000, "pool": 2 if quick else 8,
                         "seed": 0, "device": device, "threads": int(threads or 2),
                         "warmup": 1 if quick else 5, "updates": int(updates or (2 if quick else 30)),
                         "batch_size": 8 if quick else 64, "context": 10, "size": "quick" if quick else "preset"}
    s["tokens_per_update"] = 3 * s["context"] * s["batch_size"]
    return s


def build(impl: str, s: dict[str, Any], observation_space: Any, action_space: Any) -> Any:
    from rlsuite import config
    from rlsuite.agents.dt import DT

    cfg = config.build_run_config(PRESETS[impl], s["env"], [
        "agent.warmup_updates=0", f"agent.batch_size={s['batch_size']}", f"agent.model.context={s['context']}",
        f"train.seed={s['seed']}", f"train.device={s['device']}", f"train.torch_threads={s['threads']}"])
    return DT(cfg.agent, observation_space, action_space, device=s["device"], seed=s["seed"])


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(impl: str, s: dict[str, Any], pool_path: str) -> dict[str, Any]:
    """Build one side, run `warmup` then `updates` timed updates; in this process."""
    import torch

    torch.set_num_threads(s["threads"])
    device = torch.device(s["device"])
    pool = torch.load(pool_path, weights_only=False)
    batches = [b.to(device) for b in pool["batches"]]
    agent = build(impl, s, pool["observation_space"], pool["action_space"])
    built_rss = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(s["warmup"]):
        agent.update(batches[i % len(batches)])
    sync()
    marks = [time.perf_counter()]
    for i in range(s["warmup"], s["warmup"] + s["updates"]):
        agent.update(batches[i % len(batches)])  # reads its metrics back: on CUDA that waits for the update
        marks.append(time.perf_counter())
    sync()
    elapsed = time.perf_counter() - marks[0]
    step_s = statistics.median(b - a for a, b in zip(marks, marks[1:]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"tokens_per_s": round(s["updates"] * s["tokens_per_update"] / elapsed, 1),
           "step_median_tokens_per_s": round(s["tokens_per_update"] / step_s, 1),
           "s_per_update": round(elapsed / s["updates"], 5), "params": agent.parameter_count(),
           "peak_rss_mib": round(peak, 1), "train_rss_mib": round(max(0.0, peak - built_rss), 1),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def main(argv: list[str]) -> None:
    impl, s, pool_path = argv[0], json.loads(argv[1]), argv[2]
    print(RESULT + json.dumps(worker(impl, s, pool_path)), flush=True)


def bench_dtmem(repeats: int | None = None, updates: int | None = None, quick: bool = False,
                device: str = "cpu", threads: int | None = None, table: bool = True) -> list[dict[str, Any]]:
    """One record per side (tokens/s min/median/max over `repeats` fresh processes, memory); the
    dtmem record carries `ratio_vs_matched_dt` (its median tokens/s over the plain DT's)."""
    import torch

    from rlsuite.bench.dt import make_pool
    from rlsuite.envs import EnvConfig

    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (updates is not None and updates < 1) or (threads is not None and threads < 1):
        raise UserError("bench dt --memory needs --repeats >= 1, --steps >= 1 and --threads >= 1")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("bench dt --device cuda needs a GPU and a CUDA build of torch; this torch sees none")
    s = settings(quick=quick, updates=updates, device=device, threads=threads)
    folder = Path(tempfile.mkdtemp(prefix="rlsuite-bench-dtmem-"))
    try:
        pool = make_pool(s, folder, EnvConfig(**ENV))
        pool_path = folder / "pool.pt"
        torch.save(pool, pool_path)
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
        for r in range(repeats):
            for impl in IMPLS:
                run = _measure(impl, s, pool_path)
                runs[impl].append(run)
                print(f"bench dt --memory: {impl} {r + 1}/{repeats}: {run.get('tokens_per_s') or run.get('error')}",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    records = {impl: _summarise(impl, s, runs[impl]) for impl in IMPLS}
    ours, theirs = records["dtmem"], records["dt-matched"]
    if ours.get("tokens_per_s") and theirs.get("tokens_per_s"):
        ours["ratio_vs_matched_dt"] = round(ours["tokens_per_s"]["median"] / theirs["tokens_per_s"]["median"], 3)
        ours["train_rss_ratio_vs_matched_dt"] = round(ours["train_rss_mib"] / max(theirs["train_rss_mib"], 1e-9), 3)
    if table:
        print(format_table(list(records.values())), file=sys.stderr, flush=True)
    return list(records.values())


def _summarise(impl: str, s: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    record: dict[str, Any] = {"bench": "dt-memory", "impl": impl, "preset": PRESETS[impl], "device": s["device"],
                              "repeats": len(runs), "updates": s["updates"], "tokens_per_update": s["tokens_per_update"],
                              "settings": s}
    good = [r for r in runs if r.get("tokens_per_s")]
    if not good:
        return {**record, "tokens_per_s": None, "error": next((r["error"] for r in runs if r.get("error")), "?")}
    rates = [r["tokens_per_s"] for r in good]
    record.update(tokens_per_s={"min": min(rates), "median": round(statistics.median(rates), 1), "max": max(rates)},
                  step_median_tokens_per_s=round(statistics.median(r["step_median_tokens_per_s"] for r in good), 1),
                  s_per_update_median=round(statistics.median(r["s_per_update"] for r in good), 5),
                  params=good[-1]["params"], torch_threads=good[-1]["torch_threads"])
    for key in ("peak_rss_mib", "train_rss_mib", "cuda_peak_mib"):
        if key in good[-1]:
            record[key] = round(statistics.median(r[key] for r in good), 1)
    return record


def format_table(records: list[dict[str, Any]]) -> str:
    s = records[0]["settings"]
    lines = [f"bench dt --memory: K={s['context']}, batch {s['batch_size']} ({s['tokens_per_update']} tokens/update); "
             f"{s['device']}, {s['threads']} threads; {s['updates']} timed updates after {s['warmup']} warm-up, "
             f"{records[0]['repeats']} runs per side",
             f"{'impl':<11} {'preset':<22} {'params':>10} {'tokens/s median':>15} {'ms/update':>9} "
             f"{'peak RSS MiB':>12} {'train RSS MiB':>13}"]
    for r in records:
        if not r.get("tokens_per_s"):
            lines.append(f"{r['impl']:<11} failed: {r.get('error')}")
            continue
        lines.append(f"{r['impl']:<11} {r['preset']:<22} {r['params']:>10,} {r['tokens_per_s']['median']:>15,.0f} "
                     f"{1000 * r['s_per_update_median']:>9.1f} {r['peak_rss_mib']:>12,.0f} {r['train_rss_mib']:>13,.0f}"
                     + (f"  cuda peak {r['cuda_peak_mib']:,.0f} MiB" if "cuda_peak_mib" in r else ""))
    ours = records[0]
    lines.append("DT-Mem / matched DT: tokens/s " + (f"{ours['ratio_vs_matched_dt']}, training memory "
                 f"{ours['train_rss_ratio_vs_matched_dt']}" if "ratio_vs_matched_dt" in ours else "n/a"))
    return "\n".join(lines)


def _measure(impl: str, s: dict[str, Any], pool_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(MALLOC_ENV, OMP_NUM_THREADS=str(s["threads"]), MKL_NUM_THREADS=str(s["threads"]))
    proc = subprocess.run([sys.executable, "-m", "rlsuite.bench.dtmem", impl, json.dumps(s), str(pool_path)],
                          env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        return {"tokens_per_s": None, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1][len(RESULT):])


if __name__ == "__main__":
    main(sys.argv[1:])
