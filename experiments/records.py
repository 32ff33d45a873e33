"""Keep a long study's finished runs in the repository, so it can go on across machines.

A study such as experiments/gmp_minatar.sh takes more CPU-hours than one session has, and a new
session starts on a new machine with an empty runs/. Its finished runs are therefore kept, without
their checkpoints, in experiments/records/<study>/ (config.toml, eval.jsonl, the TensorBoard events,
speed.json: what `rlsuite compare` and the study's page read), plus record.json with what the
reports read from the last checkpoint: its step and the network's parameter count (LoRA adapters
apart). rlsuite counts such a run as finished
(`rlsuite.run.rundir.is_record`): `rlsuite sweep` skips it, `rlsuite train --resume` does nothing,
`rlsuite runs` lists it as "finished (checkpoints removed)".

    python experiments/records.py restore experiments/records/gmp-minatar-breakout-500k runs/gmp-minatar-breakout-500k
    python experiments/records.py save runs/gmp-minatar-breakout-500k experiments/records/gmp-minatar-breakout-500k

`restore` copies each record whose run directory is absent (a run that exists is left as it is);
`save` copies each finished run that has no record yet, and prints what it copied. Interrupted and
running runs are never copied.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from rlsuite.errors import UserError
from rlsuite.run import checkpoint, rundir

LEFT_OUT = ("checkpoints", "replay", ".lock")
"""What a record does not keep: the checkpoints, the saved replay buffer (tens of MB per run) and the lock."""


def finished(run_dir: Path) -> bool:
    if rundir.holder(run_dir) is not None:
        return False
    planned = rundir.planned_steps(run_dir)
    return rundir.is_record(run_dir, planned) or rundir.is_finished(run_dir, rundir.latest_step(run_dir), planned)


NETWORK_KEYS = ("model", "online", "network")
"""Where an agent's state holds its trained network: the DT family and BC, DQN, PPO."""


def describe_checkpoint(run_dir: Path) -> dict | None:
    """record.json's content: {"checkpoint", "step", "parameters", "lora_parameters"} of the run's
    latest checkpoint, or None when it has none (a run restored from a record)."""
    try:
        path = checkpoint.find(run_dir)
    except UserError:
        return None
    data = checkpoint.load(path)
    network = next((data["agent"][k] for k in NETWORK_KEYS if isinstance(data["agent"].get(k), dict)), {})
    tensors = {k: v for k, v in network.items() if hasattr(v, "numel")}
    return {"checkpoint": path.name, "step": int(data["step"]),
            "parameters": sum(v.numel() for v in tensors.values()),
            "lora_parameters": sum(v.numel() for k, v in tensors.items() if "lora_" in k)}


def copy_run(source: Path, target: Path) -> None:
    """Copy a run directory without LEFT_OUT (adding record.json), through a temporary folder renamed
    at the end, so an interrupted copy never leaves a half record."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(*LEFT_OUT))
    described = describe_checkpoint(source)
    if described is not None:
        (partial / "record.json").write_text(json.dumps(described, indent=1) + "\n")
    partial.rename(target)


def save(study: Path, records: Path) -> list[Path]:
    saved = []
    for run in rundir.find_runs(study):
        target = records / run.relative_to(study)
        if target.exists() or not finished(run):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_run(run, target)
        saved.append(target)
    return saved


def restore(records: Path, study: Path) -> list[Path]:
    restored = []
    if not records.is_dir():
        return restored
    for record in rundir.find_runs(records):
        target = study / record.relative_to(records)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_run(record, target)
        restored.append(target)
    return restored


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("save", "restore"))
    p.add_argument("source", type=Path, help="save: the study's runs folder; restore: its records folder")
    p.add_argument("target", type=Path, help="save: the records folder; restore: the study's runs folder")
    args = p.parse_args(argv)
    if args.action == "save" and not args.source.is_dir():
        print(f"records: no such folder: {args.source}", file=sys.stderr)
        return 2
    done = (save if args.action == "save" else restore)(args.source, args.target)
    for path in done:
        print(f"{args.action}d: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
