"""The `[finetune]` section of a run: which pre-trained checkpoint it starts from, which knowledge
retention terms it adds to the RL loss, what is frozen, and how FAR skill is measured.

The methods and their defaults follow Wołczyk et al. (ICML 2024), "Fine-tuning Reinforcement
Learning Models is Secretly a Forgetting Mitigation Problem" (arXiv 2402.02868,
and their released code); each default says where it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rlsuite.config.fields import checked, choice, ranged, unchecked

METHODS = ("ewc", "bc", "ks", "em")
"""Knowledge-retention methods: elastic weight consolidation, behavioural cloning (distillation on a
fixed buffer of the teacher's states), kickstarting (distillation on the online batch), episodic
memory (DQN: protected replay of the teacher's transitions)."""

PARTS = ("encoder", "core", "policy", "value")
"""What `finetune.freeze` can name: the observation encoder, the LSTM core, the policy head (DQN: its
Q head) and the value head(s). Encoder and core are the actor's (or the shared) trunk's; a separate
critic's own trunk (PPO shared_trunk=false) counts as 'value' (rlsuite.loops.finetune.part_of)."""


TEMPERATURE_RULES = ("fixed", "adaptive")
"""finetune.temperature_rule's choices: DQN's distillation teacher at tau, or at tau / beta with the
adaptive inverse temperature beta of rlsuite.nn.temperature."""


def _methods_problem(value: str) -> str | None:
    return None if value in METHODS else f"must be one of {', '.join(METHODS)} (or empty for none)"


def _parts_problem(value: str) -> str | None:
    return None if value in PARTS else f"must be one of {', '.join(PARTS)}"


@dataclass
class EWCConfig:
    """Elastic weight consolidation (Kirkpatrick et al. 2017): coef * sum_i F_i (theta*_i - theta_i)^2."""

    coef: float = ranged(100.0, ge=0)
    """lambda. The paper: 2e6 on NetHack (30M-parameter net, Fisher of 10,000 batches), 100 on Meta-World's actor; the spec's chain task sweeps 1e2-1e4."""
    fisher_states: int = ranged(1_000, ge=1)
    """States of the teacher's data the diagonal Fisher is averaged over."""
    fisher_actions: str = choice("sampled", "sampled", "expected")
    """'sampled': one action per state drawn from the policy, the Monte Carlo true Fisher (not the empirical Fisher of logged actions); 'expected': the exact expectation over all actions (|A| gradients per state)."""
    clip_below: float = ranged(0.0, ge=0)
    """Fisher entries below this are raised to it (Continual World: 1e-5; 0 = off)."""


@dataclass
class BCConfig:
    """Behavioural cloning as the paper means it: KL(pi* || pi) on a fixed buffer of states the
    pre-trained policy visited on its own (FAR) task."""

    coef: float = ranged(2.0, ge=0)
    """Coefficient (the paper's NetHack runs: 2.0, no decay)."""
    minibatch: int = ranged(256, ge=1)
    """Buffer states per gradient step."""
    buffer_states: int = ranged(5_000, ge=1)
    """States kept in the buffer (the spec's chain task: about 5k FAR states)."""


@dataclass
class KSConfig:
    """Kickstarting (Schmitt et al. 2018): KL(pi* || pi) on the states of the online batch, with a
    coefficient that decays by `decay` per gradient update (or per `decay_transitions` env steps,
    `decay_per`) and never goes below `floor`. The schedule starts when the actor starts training:
    updates during a critic warm-up do not count."""

    coef: float = ranged(0.5, ge=0)
    """Initial coefficient (the paper: 0.5; the released code's best agent: 0.75)."""
    decay: float = ranged(0.99998, gt=0, le=1)
    """The coefficient's decay factor: multiplied in after every gradient update ('update'), or per `decay_transitions` env steps ('transitions'). The paper: 0.99998 per SGD step of 4,096 transitions."""
    decay_per: str = choice("update", "update", "transitions")
    """'update': coef * decay^k after k gradient updates of the actor. 'transitions': coef * decay^(t / decay_transitions), t = the env steps those k updates stand for (PPO: num_steps x num_envs / (update_epochs x num_minibatches) per update, so a target_kl early stop slows it; DQN: train_freq / gradient_steps), which is the paper's schedule whatever the update size. rlsuite's PPO updates stand for far fewer env steps than the paper's 4,096 (ppo-finetune-closefar: 64, ppo-finetune-nethack: 512), so 'update' decays 64x / 8x faster per env step."""
    decay_transitions: int = ranged(4_096, ge=1)
    """With decay_per = 'transitions': the env steps per decay step (the paper: one SGD step = 4,096 transitions, 128 sequences x 32 steps, 1 epoch)."""
    floor: float = ranged(0.0, ge=0)
    """The coefficient never decays below this (the paper: 0, none; the released code: 0.33)."""


@dataclass
class EMConfig:
    """Episodic memory (DQN): a protected part of replay holding the teacher's transitions, never
    evicted, mixed into every batch."""

    fraction: float = ranged(0.1, ge=0, le=1)
    """Share of each replay batch drawn from the protected transitions (the spec's chain variant: 10%)."""
    transitions: int = ranged(10_000, ge=1)
    """Protected transitions kept from the teacher's data (the paper's Meta-World: 10k)."""


@dataclass
class FinetuneConfig:
    """Fine-tuning from a pre-trained checkpoint (`rlsuite finetune`); inert while `parent` is empty."""

    parent: str = unchecked("", "a checkpoint path, or '' (not a fine-tuning run)")
    """The pre-trained checkpoint this run started from, as given to --from (recorded; the weights and the teacher live in this run's own checkpoints, so the run does not need the file again)."""
    retention: tuple[str, ...] = checked((), _methods_problem, "a list of ewc, bc, ks, em")
    """Knowledge-retention terms added to the RL loss, e.g. ('bc', 'ks'); empty = vanilla fine-tuning. They act on the actor only: the value head is never regularised (a shared trunk does receive the actor's gradients, as in the paper)."""
    freeze: tuple[str, ...] = checked((), _parts_problem, "a list of encoder, core, policy, value")
    """Parts that never train (the paper freezes the encoder on NetHack). 'encoder' and 'core' are the actor's (or the shared) trunk; with separate trunks 'value' is the whole critic. Frozen weights are also left alone by NaP's projection and GMP (whose masks of frozen weights stay as they were: dense when frozen from the start)."""
    critic_warmup: int = ranged(0, ge=0)
    """For this many env steps at the start only the critic trains (the value head(s), and with separate trunks the critic's own trunk), so the critic fits the pre-trained policy before the actor moves (the paper pre-trains NetHack's critic this way)."""
    temperature: float = ranged(1.0, gt=0)
    """DQN's distillation temperature tau: BC and KS compare softmax(Q*/tau) with softmax(Q/tau) (Rusu et al. 2016)."""
    temperature_rule: str = choice("fixed", *TEMPERATURE_RULES)
    """DQN's distillation target: 'fixed' = the teacher's softmax(Q*/tau); 'adaptive' = softmax(beta Q*/tau) with beta >= 1 chosen per state from that distribution's entropy (Veličković et al. 2024, arXiv 2410.01104; rlsuite.nn.temperature), the TEACHER's only (the student and EWC's Fisher keep Q/tau; far/kl then measures against the same sharpened target). The paper applies the rule at inference; using it on a distillation target is rlsuite's. With few actions it is a no-op: beta = 1 while the entropy is <= 0.85 nats (always with 2 actions, H <= ln 2). DQN only (PPO and the DT refuse it)."""
    far: tuple[str, ...] = unchecked(("auto",), "'auto', or env overrides such as env.start=far or env.start_states=states/room7")
    """The env overrides that make the task's env start in FAR states (close-far tasks: env.start=far; Atari: env.start_states=DIR). The teacher's data is collected there, and FAR skill is measured there. 'auto': env.start=far on close-far tasks, none elsewhere (FAR evaluation is then from the normal start); empty: none."""
    far_eval_every: int = ranged(0, ge=0)
    """Evaluate from FAR starts every this many env steps (0 = at the start and the end only), logging far/return, far/success and far/kl."""
    far_eval_episodes: int = ranged(20, ge=1)
    """Whole episodes per FAR evaluation."""
    data: str = unchecked("", "a dataset folder, or '' (collect one at the start)")
    """Dataset of the teacher's experience (from `rlsuite collect`) for BC, EWC's Fisher and EM; '' = the run collects `data_steps` steps with the teacher from FAR starts into <run>/teacher_data."""
    data_steps: int = ranged(5_000, ge=1)
    """Env steps the run collects with the teacher when `data` is empty."""
    data_epsilon: float = ranged(0.0, ge=0, le=1)
    """Exploration epsilon of that collection."""
    ewc: EWCConfig = field(default_factory=EWCConfig)
    """EWC settings (see the finetune.ewc.* keys)."""
    bc: BCConfig = field(default_factory=BCConfig)
    """BC settings (see the finetune.bc.* keys)."""
    ks: KSConfig = field(default_factory=KSConfig)
    """Kickstarting settings (see the finetune.ks.* keys)."""
    em: EMConfig = field(default_factory=EMConfig)
    """Episodic-memory settings (see the finetune.em.* keys)."""
