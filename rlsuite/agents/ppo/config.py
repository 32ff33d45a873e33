"""PPO's hyperparameters (PPOConfig): the agent.* keys of a PPO run, each with its default, its
range and its documentation (defaults: CleanRL's ppo_atari_envpool.py; agent.py), and the two rules
that tie them to the run's envs: enough samples per minibatch, and minibatches that split the
rollout evenly."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlsuite.agents.common import EVAL_TEMPERATURES, check_eval_temperature, refuse_teacher_temperature
from rlsuite.config.fields import choice, ranged
from rlsuite.errors import UserError
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.optim import OPTIMIZERS, CMConfig
from rlsuite.nn.pruning import GMPConfig
from rlsuite.nn.rnd import RNDConfig


def check_split(c: Any, num_envs: int) -> None:
    """Refuse minibatches that do not split the rollout evenly (LSTM, LRU: whole env sequences)."""
    if c.core in ("lstm", "lru") and num_envs % c.num_minibatches:
        raise UserError(f"agent.core={c.core} splits envs into minibatches: num_envs={num_envs} is not a "
                        f"multiple of agent.num_minibatches={c.num_minibatches}")
    if (c.num_steps * num_envs) % c.num_minibatches:
        raise UserError(f"the rollout of {c.num_steps} x {num_envs} steps does not split into "
                        f"agent.num_minibatches={c.num_minibatches} equal minibatches")


def check_minibatch(run: Any) -> None:
    """The cross-field rule `config.validate` runs on a PPO config (PPOConfig.check_run): with
    agent.norm_adv each minibatch needs at least 2 samples, since the std of one advantage is nan
    and the first update would stop with 'loss became nan'."""
    a, envs = run.agent, run.train.num_envs
    size = envs * a.num_steps / a.num_minibatches
    if a.norm_adv and size < 2:
        raise UserError(f"bad value for agent.num_minibatches: {a.num_minibatches} (train.num_envs x agent.num_steps / "
                        f"agent.num_minibatches = {envs} x {a.num_steps} / {a.num_minibatches} = {size:g} sample(s) "
                        "per minibatch, and agent.norm_adv needs at least 2: lower agent.num_minibatches, raise "
                        "agent.num_steps or train.num_envs, or set agent.norm_adv=false)")


def check_lru(run: Any) -> None:
    """agent.core=lru: the init ring needs lru_r_min < lru_r_max."""
    a = run.agent
    if a.core == "lru" and a.lru_r_min >= a.lru_r_max:
        raise UserError(f"bad value for agent.lru_r_min: {a.lru_r_min} (must be < agent.lru_r_max = {a.lru_r_max}: "
                        "the ring of |lambda| at init is r_min <= r <= r_max)")


def check_ppo_run(run: Any) -> None:
    """Every PPO rule with other sections' keys (PPOConfig.check_run): the minibatch size above, then
    agent.eval_temperature=adaptive needs agent.eval_sample, and finetune.temperature_rule is DQN's
    only (rlsuite.agents.common)."""
    check_minibatch(run)
    check_lru(run)
    check_eval_temperature(run)
    refuse_teacher_temperature(run)


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults: CleanRL ppo_atari_envpool.py)."""

    num_steps: int = ranged(128, ge=1)
    """Rollout length per env: vector steps collected between two rounds of updates."""
    num_minibatches: int = ranged(4, ge=1)
    """Minibatches per epoch; with core 'lstm' or 'lru' they are groups of whole env sequences, so num_envs must be a multiple."""
    update_epochs: int = ranged(4, ge=1)
    """Passes over each rollout."""
    lr: float = ranged(2.5e-4, gt=0)
    """Adam learning rate (the start of the annealing)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run's rollouts (CleanRL's anneal_lr); rollouts whose updates find the actor frozen (finetune.critic_warmup) keep lr, and the anneal runs over the rest."""
    gamma: float = ranged(0.99, ge=0, le=1)
    """Discount factor (of the extrinsic return, with RND)."""
    gae_lambda: float = ranged(0.95, ge=0, le=1)
    """GAE lambda."""
    clip_coef: float = ranged(0.1, gt=0)
    """Clip range eps of the probability ratio (and of the value change with clip_vloss)."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values (CleanRL's clip_vloss)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch (mean 0, std 1)."""
    ent_coef: float = ranged(0.01, ge=0)
    """Entropy bonus coefficient."""
    vf_coef: float = ranged(0.5, ge=0)
    """Value loss coefficient."""
    max_grad_norm: float = ranged(0.5, ge=0)
    """Clip the global gradient norm to this value (0 = no clipping)."""
    target_kl: float = ranged(0.0, ge=0)
    """Stop a rollout's epochs early once approx_kl exceeds this, checked after each epoch as CleanRL (0 = off)."""
    adam_eps: float = ranged(1e-5, gt=0)
    """Adam epsilon."""
    optimizer: str = choice("adam", *OPTIMIZERS)
    """'adam': torch Adam (CleanRL's optimizer), or 'adam_cm': Adam with critical momenta (Malviya et al. 2024), the same rate, betas, epsilon and decay plus a buffer of past momenta (see the cm.* keys)."""
    cm: CMConfig = field(default_factory=CMConfig)
    """Adam with critical momenta's buffer, used when optimizer is 'adam_cm' (see the cm.* keys)."""
    eval_sample: bool = False
    """Evaluation samples actions from the policy instead of taking its most likely action."""
    eval_temperature: str = choice("fixed", *EVAL_TEMPERATURES)
    """Evaluation only (training rollouts always sample softmax(logits)): 'fixed' samples from softmax(logits); 'adaptive' from softmax(beta * logits), beta >= 1 chosen per step from the entropy of the action distribution (Veličković et al. 2024, arXiv 2410.01104; rlsuite.nn.temperature). It changes nothing with 2 actions or fewer than ~3 likely ones (entropy <= 0.85 nats). Needs eval_sample=true (argmax ignores temperature)."""
    shared_trunk: bool = True
    """One encoder (and LSTM) for actor and critic; false: a separate trunk each."""
    core: str = choice("none", "none", "lstm", "lru")
    """'lstm': a single-layer LSTM after the encoder (CleanRL ppo_atari_lstm.py); 'lru': a Linear Recurrent Unit block after the encoder (Orvieto et al. 2023; rlsuite.nn.lru, docs/components/lru.md); 'none': feed-forward."""
    lstm_hidden: int = ranged(128, ge=1)
    """LSTM hidden units (CleanRL ppo_atari_lstm.py: 128)."""
    lru_state: int = ranged(128, ge=1)
    """core 'lru': complex state units N (the state is stored as 2 x N reals; minimal-LRU: 128)."""
    lru_r_min: float = ranged(0.9, ge=0, lt=1)
    """core 'lru': smallest |lambda| of the ring init (must be < lru_r_max; 0.9: the LRU paper's long-memory ring, which learned masked CartPole where minimal-LRU's 0 did less well, docs/components/lru.md)."""
    lru_r_max: float = ranged(0.999, gt=0, le=1)
    """core 'lru': largest |lambda| of the ring init (the LRU paper's long-memory ring: 0.999; minimal-LRU: 1)."""
    lru_max_phase: float = ranged(6.28, gt=0, le=6.2832)
    """core 'lru': the phases of lambda at init are uniform in [0, lru_max_phase] radians (minimal-LRU: 6.28)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The torso that maps observations to features (see the encoder.* keys)."""
    gmp: GMPConfig = field(default_factory=GMPConfig)
    """Gradual magnitude pruning of the actor-critic, counted in gradient updates = rollouts x epochs x minibatches (see the gmp.* keys)."""
    nap: NaPConfig = field(default_factory=NaPConfig)
    """Normalize-and-Project (Lyle et al. 2024) on the actor-critic (see the nap.* keys)."""
    rnd: RNDConfig = field(default_factory=RNDConfig)
    """Random Network Distillation exploration bonus (Burda et al. 2019; see the rnd.* keys)."""
    check_run = staticmethod(check_ppo_run)  # rules with other sections' keys (config.validate calls it)
