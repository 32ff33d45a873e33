"""`rlsuite export | list | bench`."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from rlsuite.errors import UserError


def add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="export a trained agent (--sparse: surviving weights only)",
                       description="Write the online network of a run's latest checkpoint (or a checkpoint file). "
                                   "With --sparse, pruned kernels keep only their nonzero weights. The export is "
                                   "a checkpoint that `rlsuite eval` accepts.")
    p.add_argument("target", help="run directory or checkpoint file")
    p.add_argument("--sparse", action="store_true", help="store kernels as (indices, values) of nonzero weights")
    p.add_argument("--merge-lora", action="store_true",
                   help="offline runs fine-tuned with --lora: fold the adapters into the weights (W0 + alpha/r BA)")
    p.add_argument("-o", "--out", help="output file (default <run>/export/sparse.pt, or merged.pt with --merge-lora)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from rlsuite.run.evaluate import format_table
    from rlsuite.trained.export import export_sparse

    if args.sparse == args.merge_lora:
        raise UserError("choose what to export: --sparse (pruned weights) or --merge-lora (LoRA adapters merged)")
    base = Path(args.target) if Path(args.target).is_dir() else Path(args.target).parent
    if args.merge_lora:
        from rlsuite.trained.export import export_merged_lora

        out = Path(args.out) if args.out else base / "export" / "merged.pt"
        report = export_merged_lora(args.target, out)
        print(f"merged {report['merged']} LoRA adapter(s) of {report['source']} into {report['export']} "
              f"({report['parameters']:,} parameters)")
        return 0
    out = Path(args.out) if args.out else base / "export" / "sparse.pt"
    if out.is_dir():
        raise UserError(f"-o {out} is a directory; give the export's file name, e.g. -o {out / 'sparse.pt'}")
    report = export_sparse(args.target, out)
    rows = [{"what": "parameters", "value": f"{report['parameters']:,}"},
            {"what": "nonzero", "value": f"{report['nonzero']:,}"},
            {"what": "dense size", "value": f"{report['dense_bytes'] / 1e6:.3f} MB"},
            {"what": "sparse size", "value": f"{report['sparse_bytes'] / 1e6:.3f} MB"},
            {"what": "file size", "value": f"{report['file_bytes'] / 1e6:.3f} MB"},
            {"what": "saved", "value": f"{100 * report['saved']:.1f}%"}]
    print(format_table(rows, f"sparse export of {report['source']} -> {report['export']}"))
    return 0


def add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="list agents, presets and environments")
    p.add_argument("what", nargs="?", default="all", choices=["all", "agents", "envs"])
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from rlsuite.agents import AGENTS
    from rlsuite.config import preset_names

    if args.what in ("all", "agents"):
        from rlsuite.native import backend_description

        print("agents:        " + ", ".join(AGENTS))
        print("replay ops:    " + backend_description())
        print("agent presets: " + ", ".join(preset_names("agents")))
    if args.what in ("all", "envs"):
        from rlsuite.envs import known_env_ids

        print("env presets:   " + ", ".join(preset_names("envs")))
        ids = known_env_ids()
        print(f"env ids ({len(ids)}):")
        print(textwrap.fill(", ".join(ids), width=100, initial_indent="  ", subsequent_indent="  "))
    return 0


def add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure speed against peers installed side by side, or run the "
                       "plasticity benchmark (JSON lines)")
    p.add_argument("what", choices=["dqn", "ppo", "dt", "replay", "envs", "plasticity", "networks"],
                   help="networks: each agent's network under each fast mode (bf16, channels_last, compile) "
                        "against fp32, on this machine")
    p.add_argument("--seconds", type=float, default=20.0, help="replay, envs: time per measurement (default 20; dqn times whole runs of --steps)")
    p.add_argument("--quick", action="store_true", help="short measurements (a smoke test, not a result; "
                   "dt: the small size)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="replay: cuda holds the whole buffer in GPU memory (replay.on_device) and skips the "
                        "CPU peers; dt: train both models on the GPU (default cpu)")
    p.add_argument("--capacity", type=int, default=None,
                   help="replay: buffer capacity in transitions (default 200000; 20000 with --quick)")
    p.add_argument("--arms", default=None,
                   help="plasticity: comma-separated arms (default plain,ln,nap,ln_wd); each arm with Adam with "
                        "critical momenta in place of Adam is <arm>_cm, e.g. --arms plain,plain_cm,ln,ln_cm")
    p.add_argument("--out", default="runs/bench-plasticity",
                   help="plasticity: folder for its figures, table and records (default runs/bench-plasticity)")
    p.add_argument("--steps", type=int, default=None,
                   help="dqn, ppo: env steps per timed train()/learn() call (default per task, 10k-20k; about 2000 with --quick); "
                        "dt: timed updates per measurement (default 30; 10 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="dqn, ppo, dt: fresh processes per side (and allocator), interleaved (default 3; 1 with --quick)")
    p.add_argument("--size", default=None, choices=["default", "small"],
                   help="dt: model and batch size (default: the dt preset's d 128, 3 layers, 4 heads, K 20, batch 64; "
                        "small with --quick)")
    p.add_argument("--threads", type=int, default=None, help="dt: torch threads on both sides (default 2); "
                   "networks: torch threads (default 1)")
    p.add_argument("--memory", action="store_true",
                   help="dt: DT-Mem (dtmem-minatar) against the parameter-matched plain DT (mgdt-minatar-matched) "
                        "instead of Hugging Face: training tokens/s and memory (peak RSS; CUDA peak on --device cuda)")
    p.add_argument("--tasks", default=None,
                   help="dqn: comma-separated tasks (default all: cartpole, minatar-breakout, pong); ppo: cartpole, pong "
                        "(default) or minatar-breakout")
    p.add_argument("--fast", default=None, metavar="KEY=VALUE,...|none",
                   help="dqn, ppo, dt: config keys of rlsuite's fast mode, measured beside its fp32 mode and the "
                        "peer (default train.precision=auto,train.memory_format=auto, plus train.compile=true,"
                        "train.cudagraphs=true with --device cuda; 'none': the fp32 mode only)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from rlsuite.bench.modes import parse_fast

    seconds = 1.0 if args.quick else args.seconds
    if args.what not in ("replay", "dt", "networks") and (args.device != "cpu" or args.capacity is not None):
        raise UserError(f"bench {args.what} runs on the CPU with fixed sizes; --device and --capacity "
                        "apply to `rlsuite bench replay` only (--device also to `rlsuite bench dt`)")
    if args.what == "dt" and args.capacity is not None:
        raise UserError("bench dt has no buffer: --capacity applies to `rlsuite bench replay` only")
    if args.what != "dt" and (args.size is not None or args.memory):
        raise UserError("--size and --memory apply to `rlsuite bench dt` only")
    if args.what not in ("dt", "networks") and args.threads is not None:
        raise UserError("--threads applies to `rlsuite bench dt` and `rlsuite bench networks` only")
    if args.what == "networks" and args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("bench networks --device cuda needs a GPU and a CUDA build of torch; this torch sees none")
    if args.memory and args.size is not None:
        raise UserError("bench dt --memory measures the DT-Mem study's presets; --size does not apply")
    if args.fast is not None and (args.what not in ("dqn", "ppo", "dt") or args.memory):
        raise UserError("--fast applies to `rlsuite bench dqn`, `ppo` and `dt` (not dt --memory)")
    if args.what == "dt" and args.tasks is not None:
        raise UserError("bench dt has no tasks: --tasks applies to `rlsuite bench dqn` and `rlsuite bench ppo`")
    if args.what == "replay":
        from rlsuite.bench.replay import bench_replay
        from rlsuite.bench.replay_peers import bench_peers

        import torch

        capacity = args.capacity or (20_000 if args.quick else 200_000)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("bench replay --device cuda needs a GPU and a CUDA build of torch; "
                            "this torch sees none")
        results = bench_replay(capacity=capacity, seconds=seconds, device=args.device)
        if not args.quick and args.device == "cpu":  # peers installed side by side, each in its own subprocess
            results += bench_peers(capacity=capacity, seconds=seconds)
    elif args.what == "plasticity":  # fixed step counts, so --seconds does not apply
        from rlsuite.bench.plasticity import PlasticityConfig, bench_plasticity

        cfg = PlasticityConfig.quick() if args.quick else PlasticityConfig()
        if args.arms:
            cfg.arms = tuple(arm.strip() for arm in args.arms.split(",") if arm.strip())
        results = bench_plasticity(cfg, out=args.out)
    elif args.what == "networks":
        from rlsuite.bench.networks import bench_networks

        results = bench_networks(quick=args.quick, device=args.device, threads=args.threads or 1)
    elif args.what == "envs":
        from rlsuite.bench.envs import bench_envs

        results = bench_envs(seconds=seconds)
    elif args.what == "dt" and args.memory:
        from rlsuite.bench.dtmem import bench_dtmem

        results = bench_dtmem(repeats=args.repeats, updates=args.steps, quick=args.quick, device=args.device,
                              threads=args.threads)
    elif args.what == "dt":
        from rlsuite.bench.dt import bench_dt

        results = bench_dt(size=args.size, repeats=args.repeats, updates=args.steps, quick=args.quick,
                           device=args.device, threads=args.threads, fast=parse_fast(args.fast, args.device))
    elif args.what == "ppo":
        from rlsuite.bench.ppo import bench_ppo

        results = bench_ppo(steps=args.steps, repeats=args.repeats, tasks=args.tasks, quick=args.quick,
                            fast=parse_fast(args.fast, args.device))
    else:
        from rlsuite.bench.dqn import bench_dqn

        results = bench_dqn(steps=args.steps, repeats=args.repeats, tasks=args.tasks, quick=args.quick,
                            fast=parse_fast(args.fast, args.device))
    for record in results:
        print(json.dumps(record), flush=True)
    return 0
