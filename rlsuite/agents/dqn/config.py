"""DQN's hyperparameters (DQNConfig): the agent.* keys of a DQN run, each with its default, its
range and its documentation (defaults: Dopamine's JAX DQN as the GMP paper ran it; agent.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from rlsuite.config.fields import choice, ranged
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.optim import OPTIMIZERS, CMConfig
from rlsuite.nn.pruning import GMPConfig
from rlsuite.nn.schedules import LR_SCHEDULES


@dataclass
class DQNConfig:
    """DQN hyperparameters (defaults: Dopamine JAX DQN, the GMP paper's Table 2)."""

    gamma: float = ranged(0.99, ge=0, le=1)
    """Discount factor."""
    n_step: int = ranged(1, ge=1)
    """Rewards summed before bootstrapping (Dopamine DQN: 1; Rainbow: 3)."""
    double: bool = False
    """Double-DQN targets: the online net picks the next action, the target net values it."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean(A)."""
    loss: str = choice("mse", "mse", "huber")
    """TD loss: 'mse' (Dopamine JAX default) or 'huber' (Nature DQN, CleanRL's smooth L1)."""
    lr: float = ranged(6.25e-5, gt=0)
    """Adam learning rate (the start of the schedule)."""
    lr_schedule: str = choice("constant", *LR_SCHEDULES)
    """'constant', 'linear' or 'cosine' decay over the run's gradient updates, from lr to lr * lr_final. NaP removes the implicit decay that weight-norm growth gives, so single-task NaP runs want 'linear' (Lyle et al. 2024, Fig. 4)."""
    lr_final: float = ranged(0.0, ge=0)
    """Multiplier of lr reached at the last update by the 'linear' and 'cosine' schedules."""
    adam_eps: float = ranged(1.5e-4, gt=0)
    """Adam epsilon (the GMP paper's Table 2; its appendix's 1.5e-5 is a typo)."""
    optimizer: str = choice("adam", *OPTIMIZERS)
    """'adam': torch Adam (Dopamine's optimizer), or 'adam_cm': Adam with critical momenta (Malviya et al. 2024), the same rate, betas, epsilon and decay plus a buffer of past momenta (see the cm.* keys)."""
    cm: CMConfig = field(default_factory=CMConfig)
    """Adam with critical momenta's buffer, used when optimizer is 'adam_cm' (see the cm.* keys)."""
    batch_size: int = ranged(32, ge=1)
    """Transitions per gradient update."""
    learning_starts: int = ranged(20_000, ge=0)
    """Env steps collected before the first gradient update (Dopamine min_replay_history, CleanRL learning_starts, SB3 learning_starts). Whether epsilon stays at epsilon_start until then is epsilon_decay_start's business."""
    train_freq: int = ranged(4, ge=1)
    """Env steps between rounds of gradient updates (Dopamine update_period, SB3 train_freq); a round runs once the step count passes a multiple of train_freq beyond learning_starts."""
    gradient_steps: int = ranged(1, ge=1)
    """Gradient updates per round, i.e. every train_freq env steps (SB3 gradient_steps; rl-zoo's CartPole recipe: 128 every 256). Replay ratio = gradient_steps / train_freq."""
    target_update_period: int = ranged(8_000, ge=1)
    """Env steps (not gradient updates) between copies of the online net into the target net, as Dopamine (training_steps), CleanRL (global_step) and SB3 (target_update_interval) count it; checked after each vector step's updates."""
    epsilon_start: float = ranged(1.0, ge=0, le=1)
    """Exploration epsilon until epsilon_decay_start."""
    epsilon_end: float = ranged(0.01, ge=0, le=1)
    """Exploration epsilon after the decay."""
    epsilon_decay_start: int = ranged(0, ge=0)
    """Env step at which the linear decay begins: Dopamine holds epsilon = 1 for its min_replay_history (= learning_starts, 20k) and decays after it; CleanRL and SB3 decay from step 0."""
    epsilon_decay_steps: int = ranged(250_000, ge=0)
    """Env steps over which epsilon decays linearly, from epsilon_decay_start (Dopamine epsilon_decay_period, CleanRL exploration_fraction x total steps)."""
    eval_epsilon: float = ranged(0.001, ge=0, le=1)
    """Epsilon used by evaluation (Dopamine: 0.001)."""
    max_grad_norm: float = ranged(0.0, ge=0)
    """Clip the global gradient norm to this value (0 = no clipping; SB3 uses 10)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The torso that maps observations to features (see the encoder.* keys)."""
    gmp: GMPConfig = field(default_factory=GMPConfig)
    """Gradual magnitude pruning of the online network (Obando-Ceron et al. 2024; see the gmp.* keys)."""
    nap: NaPConfig = field(default_factory=NaPConfig)
    """Normalize-and-Project (Lyle et al. 2024): norm layers before every ReLU and weight projection (see the nap.* keys)."""
