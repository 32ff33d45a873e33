"""The Decision Transformer's hyperparameters (DTConfig): the agent.* keys of a DT run, each with
its default, its range and its documentation (sources and departures: agent.py), and the pattern
of an evaluation return target (TARGET_PATTERN: a number, data-best or expert)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlsuite.agents.common import EVAL_TEMPERATURES, check_eval_temperature, refuse_teacher_temperature
from rlsuite.config.fields import choice, matching, ranged
from rlsuite.errors import UserError
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.lora import LoRAConfig
from rlsuite.nn.memory import MemoryConfig
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.optim import OPTIMIZERS, CMConfig
from rlsuite.nn.pruning import GMPConfig
from rlsuite.nn.structured import ffn_problem
from rlsuite.nn.transformer import TransformerConfig

TARGET_PATTERN = r"data-best|expert|[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?"


def check_dt_run(run: Any) -> None:
    """The DT's rules with other keys, checked by `config.validate` before anything is written
    (DTConfig.check_run): agent.eval_temperature=adaptive needs agent.eval_sample, and
    finetune.temperature_rule is DQN's only (rlsuite.agents.common)."""
    check_eval_temperature(run)
    refuse_teacher_temperature(run)
    check_structured_ffn(run.agent)


def check_structured_ffn(cfg: Any) -> None:
    """A structured FFN's rules (agent.model.ffn; rlsuite.nn.structured.ffn_problem: ranks and
    blocks that fit embed_dim, SGT only with a structured FFN, a structured layer somewhere), and
    what it cannot be combined with: GMP and NaP's projection act on nn.Linear weights, and LoRA
    'all' adapts nn.Linear layers, none of which a structured FFN has. UserError (one line)."""
    problem = ffn_problem(cfg.model)
    if problem is not None:
        raise UserError(problem)
    if cfg.model.ffn == "dense":
        return
    for on, what in ((cfg.gmp.sparsity > 0, "agent.gmp.sparsity > 0 (GMP prunes"),
                     (cfg.nap.project, "agent.nap.project (NaP projects"),
                     (cfg.lora.target == "all", "agent.lora.target=all (LoRA adapts")):
        if on:
            raise UserError(f"agent.model.ffn={cfg.model.ffn} cannot be combined with {what} nn.Linear layers "
                            "and a structured FFN has none): use agent.model.ffn=dense")


@dataclass
class DTConfig:
    """Decision Transformer hyperparameters (module docstring for the sources and departures)."""

    model: TransformerConfig = field(default_factory=TransformerConfig)
    """The transformer: context, width, depth, heads, return layout (see the model.* keys)."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """DT-Mem's working memory (Kang et al. 2024; memory.placement 'none' = a plain DT; see the memory.* keys)."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """Low-rank adapters: with lora.target set only they train, the rest is frozen (rlsuite finetune --lora; see the lora.* keys)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation token encoder: Nature CNN (Atari), MinAtar net, MLP (vectors) (see the encoder.* keys)."""
    batch_size: int = ranged(64, ge=1)
    """Windows per update, over all data-parallel ranks (each rank takes batch_size / world_size)."""
    lr: float = ranged(3e-4, gt=0)
    """AdamW learning rate after warm-up."""
    lr_schedule: str = choice("constant", "constant", "cosine")
    """After the warm-up: 'constant', or 'cosine' decay to lr_final * lr at the last update (DT Atari)."""
    lr_final: float = ranged(0.1, ge=0)
    """'cosine': the multiplier of lr reached at the last update (DT Atari: 0.1)."""
    warmup_updates: int = ranged(1_000, ge=0)
    """Linear warm-up of the learning rate from 0 over this many updates (DT-Mem: 10,000)."""
    weight_decay: float = ranged(0.1, ge=0)
    """AdamW weight decay of linear and conv weights (biases, LayerNorms and embeddings get none, as minGPT)."""
    betas: tuple[float, ...] = ranged((0.9, 0.95), ge=0, lt=1)
    """AdamW betas (DT Atari / minGPT: 0.9, 0.95)."""
    optimizer: str = choice("adam", *OPTIMIZERS)
    """'adam': torch AdamW (minGPT's optimizer), or 'adam_cm': Adam with critical momenta (Malviya et al. 2024), the same rate, betas, epsilon and decay plus a buffer of past momenta (see the cm.* keys)."""
    cm: CMConfig = field(default_factory=CMConfig)
    """Adam with critical momenta's buffer, used when optimizer is 'adam_cm' (see the cm.* keys)."""
    max_grad_norm: float = ranged(1.0, ge=0)
    """Clip the global gradient norm (0 = no clipping)."""
    return_loss_coef: float = ranged(1.0, ge=0)
    """model.returns 'bins': weight of the return cross-entropy beside the action's (MGDT: 1)."""
    eval_target: str = matching("data-best", TARGET_PATTERN, "a number, data-best or expert")
    """Return to condition on at evaluation: a number, 'data-best' (each game's best episode in its dataset) or 'expert' (MGDT's sampling; model.returns 'bins')."""
    expert_kappa: float = ranged(10.0, ge=0)
    """eval_target 'expert': the optimality weight kappa (MGDT's opt_weight) added as kappa (R - R_min) / (R_max - R_min) to the return logits before the temperature. rlsuite's default and presets: 10 (not checked against MGDT's paper text); MGDT's public colab, in its optimal_action cell, uses 0."""
    expert_samples: int = ranged(128, ge=1)
    """eval_target 'expert': returns drawn per step; the highest is the target (MGDT's colab: num_samples = 128)."""
    return_temperature: float = ranged(0.75, gt=0)
    """eval_target 'expert': the return logits (with kappa's tilt) are multiplied by this before sampling (MGDT's colab: return_temperature = 0.75, a multiplier as in its sample_from_logits)."""
    eval_sample: bool = False
    """Sample evaluation actions from the policy (DT Atari) instead of taking the most likely one."""
    eval_temperature: str = choice("fixed", *EVAL_TEMPERATURES)
    """Evaluation only: 'fixed' samples from softmax(logits); 'adaptive' from softmax(beta * logits), beta >= 1 chosen per step from the entropy of the action distribution (Veličković et al. 2024, arXiv 2410.01104: an inference-time fix for softmax dispersing over many items; rlsuite.nn.temperature). It changes nothing with 2 actions or fewer than ~3 likely ones (entropy <= 0.85 nats). Needs eval_sample=true (argmax ignores temperature)."""
    eval_epsilon: float = ranged(0.0, ge=0, le=1)
    """Evaluation epsilon: a uniformly random action with this probability."""
    eval_reward: str = choice("auto", "auto", "raw", "clip")
    """Reward that lowers the return-to-go at evaluation: 'clip' (its sign, for datasets with clipped rewards, e.g. DQN-Replay), 'raw', or 'auto' (clip when any dataset says its rewards are clipped)."""
    gmp: GMPConfig = field(default_factory=GMPConfig)
    """Gradual magnitude pruning of the transformer, counted in updates (see the gmp.* keys)."""
    nap: NaPConfig = field(default_factory=NaPConfig)
    """Normalize-and-Project on the transformer (see the nap.* keys)."""
    check_run = staticmethod(check_dt_run)  # rules with other sections' keys (config.validate calls it)
