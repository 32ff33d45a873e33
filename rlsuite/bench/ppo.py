"""`rlsuite bench ppo`: PPO training throughput against Stable-Baselines3, timed alike.

The rules are `rlsuite bench dqn`'s (rlsuite/bench/dqn.py), for PPO:

- Both sides run their real training entry points: rlsuite's `rlsuite.loops.train.train(cfg, run_dir)`
  (what `rlsuite train` calls: TensorBoard logging and plasticity diagnostics on, as configured;
  progress bar off) and SB3's `PPO(...).learn(total_timesteps=N)`.
- Identical algorithm settings, from one place (`settings`): CleanRL's PPO settings as the task's
  preset states them (`ppo-classic` = CleanRL ppo.py for CartPole, `ppo-atari` = CleanRL
  ppo_atari_envpool.py for Pong, `ppo-minatar` for MinAtar): envs x 128-step rollouts, 4 epochs x 4
  minibatches, Adam (lr 2.5e-4 annealed linearly to 0 over the rollouts, eps 1e-5), clip 0.2
  (classic) or 0.1, normalised advantages, entropy 0.01, gamma 0.99, lambda 0.95, global gradient
  clip 0.5, no target KL, torch threads, CPU. Where SB3 writes a setting differently it gets the
  value that makes the loss the same, and the test checks it field by field:
  * value loss: rlsuite (and CleanRL) minimise vf_coef * 0.5 * mean((V - R)^2); SB3 vf_coef * mean(...)
    (F.mse_loss), so SB3 gets vf_coef / 2 (0.25 for CleanRL's 0.5);
  * value clipping: CleanRL's clip_vloss takes max(unclipped, clipped) squared errors; SB3's
    clip_range_vf uses the clipped one alone. No setting of either makes them the same loss, so
    value clipping is off on both sides (agent.clip_vloss=false; SB3's default clip_range_vf=None);
    this is the one departure from the presets;
  * lr annealing: SB3 evaluates its schedule after each rollout's steps are counted (progress
    remaining 1 - (k+1)/K before update k), rlsuite (and CleanRL) before (1 - k/K); SB3 gets the
    schedule lr * (progress + 1/K), so update k uses lr * (1 - k/K) on both sides;
  * minibatches: SB3's batch_size = envs x 128 / 4.
  Same network layer for layer: separate 64-64 tanh MLPs for actor and critic (SB3's MlpPolicy
  with net_arch pi/vf [64, 64], Tanh), the MinAtar CNN (dqn_peers.MinAtarCNN as SB3's features
  extractor, net_arch []) and the Nature CNN (SB3's CnnPolicy), one trunk shared by both heads
  for the CNNs; orthogonal init on both sides (gain sqrt 2, heads 0.01 and 1: rlsuite
  encoder.init=orthogonal, SB3's ortho_init). Same envs: SB3 steps rlsuite's own single-env classes
  for classic control and MinAtar (its DummyVecEnv over them; rlsuite's gymnasium backend is the
  same in-process loop), and its AtariWrapper + VecFrameStack (DummyVecEnv) with rlsuite's ALE
  settings for Pong, where rlsuite runs envpool as `ppo-atari` does. Truncation bootstraps with
  gamma V(final obs) on both sides.
- Run lengths are whole rollouts (the steps are rounded up to a multiple of envs x 128), so both
  sides do the same number of updates (`updates` = gradient steps on both sides).
- Timed end to end, minus nothing: from before the envs and the model are built to the return of
  `train()` / `learn()` (module imports done before the clock, the same set on both sides).
  rlsuite's `train()` ends with a checkpoint and a one-game evaluation; that tail is included
  and reported apart (`tail_s`).
- Two rlsuite modes, fp32 and fast (`--fast`), as in `bench dqn` (rlsuite.bench.modes); every
  measurement in a fresh process; R repeats, interleaved (rlsuite-fp32, sb3, rlsuite-fast, ...),
  under the tuned malloc thresholds (`dqn.MALLOC_ENV`; `allocators=` adds glibc's default). The
  loop, records and table are `dqn.run_interleaved`'s.

CleanRL's PPO is not timed: its only PyPI release (0.4.8) has 2021 scripts on the old `gym`
package that do not run beside gymnasium 1.2.0 (the evidence: rlsuite/bench/dqn.py's docstring).
The CleanRL comparison is by settings only (the presets state CleanRL's values and this module
uses them).

Worker: `python -m rlsuite.bench.ppo IMPL TASK STEPS [ALGO_JSON [FAST_JSON]]` prints one JSON line
prefixed `RESULT `.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from rlsuite.bench import modes
from rlsuite.bench.dqn import RESULT, run_interleaved, time_train
from rlsuite.errors import UserError


@dataclass(frozen=True)
class Task:
    """One benchmark task: what both sides train on. Everything else comes from `Algo`."""

    env: str
    """rlsuite env id; its family picks SB3's env (see ppo_peers.sb3_env)."""
    preset: str
    """rlsuite agent preset the config starts from (its env preset gives the env settings)."""
    network: str
    """'mlp', 'minatar' or 'nature': rlsuite encoder.kind and SB3's network (ppo_peers.SB3_NETWORKS)."""
    num_envs: int
    steps: int
    """Default env steps per measurement (summed over the envs)."""
    clip_coef: float
    """The preset's clip range (ppo.py: 0.2; the Atari script and ppo-minatar: 0.1)."""
    shared_trunk: bool
    """One trunk for both heads (CNNs) or separate actor and critic networks (ppo.py's MLPs)."""
    backend: str = "gymnasium"
    """rlsuite env backend: 'gymnasium' is in-process, as SB3's DummyVecEnv; Pong: envpool."""
    quick_steps: int = 2_048


TASKS = {
    "cartpole": Task("CartPole-v1", "ppo-classic", "mlp", 4, steps=20_480, clip_coef=0.2, shared_trunk=False),
    "pong": Task("pong", "ppo-atari", "nature", 8, steps=10_240, clip_coef=0.1, shared_trunk=True,
                 backend="envpool"),
    # not in the default set; experiments/ppo_parity.py uses its settings
    "minatar-breakout": Task("minatar:breakout", "ppo-minatar", "minatar", 8, steps=20_480, clip_coef=0.1,
                             shared_trunk=True),
}
DEFAULT_TASKS = ("cartpole", "pong")


@dataclass(frozen=True)
class Algo:
    """PPO settings both sides get (CleanRL's, as the presets state them; see the module docstring)."""

    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    clip_vloss: bool = False  # see the module docstring: SB3 cannot express CleanRL's form
    ent_coef: float = 0.01
    vf_coef: float = 0.5  # of 0.5 * mean squared error, as CleanRL
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"  # MLP only (ppo.py's Tanh); the CNNs use ReLU on both sides
    init: str = "orthogonal"
    threads: int = 2
    seed: int = 0


def rollout_size(task: str, algo: Algo = Algo()) -> int:
    return TASKS[task].num_envs * algo.num_steps


def settings(task: str, steps: int, algo: Algo = Algo(), *, eval_episodes: int = 1) -> dict[str, Any]:
    """The one description of a measurement that both sides' configs are built from. `steps` is
    rounded up to whole rollouts."""
    t = TASKS[task]
    per = rollout_size(task, algo)
    steps = max(1, math.ceil(steps / per)) * per
    return {**dataclasses.asdict(algo), "task": task, "env": t.env, "preset": t.preset, "network": t.network,
            "backend": t.backend, "num_envs": t.num_envs, "clip_coef": t.clip_coef, "shared_trunk": t.shared_trunk,
            "steps": steps, "rollouts": steps // per, "batch_size": per // algo.num_minibatches, "device": "cpu",
            "rlsuite_eval_episodes": eval_episodes, "rlsuite_log_every": "default",
            "rlsuite_diagnostics_every": "default"}


def rlsuite_config(s: dict[str, Any], extra: tuple[str, ...] | list[str] = ()) -> Any:
    """rlsuite's RunConfig for settings `s`: the task's preset with every shared setting overridden
    (then `extra`: a mode's keys, see bench.modes)."""
    from rlsuite import config
    hidden = ",".join(str(h) for h in s["hidden"])
    overrides = [
        f"agent.num_steps={s['num_steps']}", f"agent.num_minibatches={s['num_minibatches']}",
        f"agent.update_epochs={s['update_epochs']}", f"agent.lr={s['lr']}", f"agent.anneal_lr={s['anneal_lr']}",
        f"agent.adam_eps={s['adam_eps']}", f"agent.gamma={s['gamma']}", f"agent.gae_lambda={s['gae_lambda']}",
        f"agent.clip_coef={s['clip_coef']}", f"agent.clip_vloss={s['clip_vloss']}", f"agent.norm_adv={s['norm_adv']}",
        f"agent.ent_coef={s['ent_coef']}", f"agent.vf_coef={s['vf_coef']}", f"agent.max_grad_norm={s['max_grad_norm']}",
        "agent.target_kl=0", f"agent.shared_trunk={s['shared_trunk']}", "agent.core=none", "agent.eval_sample=false",
        "agent.rnd.enabled=false", "agent.gmp.sparsity=0", "agent.nap.norm=none", "agent.nap.project=false",
        f"agent.encoder.kind={s['network']}", "agent.encoder.width=1", "agent.encoder.scale_dense=false",
        f"agent.encoder.hidden={hidden}", "agent.encoder.dense=512", "agent.encoder.padding=valid",
        f"agent.encoder.init={s['init']}",
        f"env.backend={s['backend']}",
        f"train.total_steps={s['steps']}", f"train.num_envs={s['num_envs']}", f"train.seed={s['seed']}",
        f"train.device={s['device']}", f"train.torch_threads={s['threads']}", "train.progress=false",
        "train.eval_every=0", f"train.eval_episodes={s['rlsuite_eval_episodes']}", "train.eval_num_envs=1",
        "train.checkpoint_every=0",
    ]
    if s["network"] == "mlp":
        overrides.append(f"agent.encoder.activation={s['activation']}")
    return config.build_run_config(s["preset"], s["env"], overrides + list(extra))


# ----------------------------------------------------------------------------- orchestration


def bench_ppo(steps: int | None = None, repeats: int | None = None, tasks: str | list[str] | None = None,
              quick: bool = False, allocators: tuple[str, ...] = ("tuned",), algo: Algo = Algo(),
              fast: tuple[str, ...] = modes.DEFAULT_FAST, table: bool = True) -> list[dict[str, Any]]:
    """One record per task x allocator x (rlsuite-fp32, sb3, rlsuite-fast): steps/s min/median/max
    over `repeats` fresh processes (`fast`: the fast mode's config keys; empty: fp32 only)."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks or DEFAULT_TASKS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown bench ppo task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    repeats = repeats if repeats is not None else (1 if quick else 3)
    if repeats < 1 or (steps is not None and steps < 100):
        raise UserError("bench ppo needs --repeats >= 1 and --steps >= 100")
    lengths = {task: settings(task, steps or (TASKS[task].quick_steps if quick else TASKS[task].steps), algo)["steps"]
               for task in names}
    for task in names:
        modes.validate(fast, lambda f: rlsuite_config(settings(task, lengths[task], algo), f))
    return run_interleaved("ppo", "sb3", lengths, repeats, allocators, algo, fast, table)


# ----------------------------------------------------------------------------- the rlsuite worker


def warm_imports(s: dict[str, Any]) -> None:
    """Import, before the clock, the modules either side would import lazily inside it (the env
    family's modules, TensorBoard): module import is process start-up, not training. Same set both sides."""
    import importlib

    from rlsuite.envs import resolve_env_id

    family, _ = resolve_env_id(s["env"])
    extra = {"classic": ["rlsuite.envs.classic"], "minatar": ["rlsuite.envs.minatar", "minatar"],
             "atari": ["rlsuite.envs.atari", "ale_py", "cv2"] + (["envpool"] if s["backend"] == "envpool" else [])
             }.get(family, [])
    for name in ["rlsuite.loops.train", "rlsuite.envs.gym_backend", "torch.utils.tensorboard", "tqdm", *extra]:
        importlib.import_module(name)


def rlsuite_worker(task: str, steps: int, algo: Algo = Algo(), fast: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time `rlsuite.loops.train.train(cfg, run_dir)` over `steps` env steps, in this process (`fast`:
    the mode's extra config keys)."""
    s = settings(task, steps, algo)
    cfg = rlsuite_config(s, fast)
    warm_imports(s)
    return time_train(cfg, "rlsuite-bench-ppo-")


def algo_from_json(text: str) -> Algo:
    fields = json.loads(text) if text else {}
    return Algo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def main(argv: list[str]) -> None:
    impl, task, steps = argv[0], argv[1], int(argv[2])
    algo = algo_from_json(argv[3] if len(argv) > 3 else "")
    fast = tuple(json.loads(argv[4])) if len(argv) > 4 else ()
    if impl == "rlsuite":
        result = rlsuite_worker(task, steps, algo, fast)
    else:
        from rlsuite.bench.ppo_peers import sb3_worker

        result = {**sb3_worker(task, steps, algo), **modes.peer_speed()}
    print(RESULT + json.dumps({**result, **modes.machine(settings(task, steps, algo)["device"])}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
