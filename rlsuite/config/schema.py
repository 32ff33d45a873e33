"""The run config's shape: `TrainConfig` (the training loop's settings) and `RunConfig` (one run's
sections), with each field's accepted values and, on the line after it, its documentation.

Field documentation lives where the field is declared, as a string literal on the line after it
(attribute docstrings, as tyro reads them); `rlsuite.config.docs.field_docs` recovers them so
`--help` and the docs never drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlsuite.config.fields import checked, choice, matching, ranged
from rlsuite.retention.config import FinetuneConfig
from rlsuite.data.config import OfflineConfig

SECTIONS = ("agent", "env", "replay", "train", "finetune", "offline")
"""The tables of a run's config.toml, in the order they are written and read."""


def _env_ids(value: str) -> str | None:
    """train.tasks' check: None for an env id `resolve_env_id` accepts, else its reason."""
    from rlsuite.envs.config import env_id_problem  # late: importing it loads this package

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
