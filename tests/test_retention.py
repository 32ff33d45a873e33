"""The knowledge-retention losses and objects (rlsuite.retention) against hand-computed values and
the definitions of Wołczyk et al. (ICML 2024) §2.2: KL direction, KS schedule, EWC's Fisher and
penalty, EM's protected replay."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsuite.data import Dataset, DatasetWriter
from rlsuite.replay import ReplayBuffer, ReplayConfig
from rlsuite.retention.config import EMConfig, EWCConfig, KSConfig
from rlsuite.retention.losses import (behaviour_cloning_loss, diagonal_fisher, ewc_penalty, kickstarting_loss,
                                      kl_teacher_student)
from rlsuite.retention.memory import EpisodicMemory
from rlsuite.retention.terms import EWC, Kickstarting, retention_loss


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor([probs], dtype=torch.float64))


def test_kl_is_teacher_to_student_and_zero_when_equal() -> None:
    teacher, student = [0.5, 0.5], [0.9, 0.1]
    by_hand = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(teacher || student) = 0.5108
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # KL(student || teacher) = 0.3681
    for loss in (kl_teacher_student, behaviour_cloning_loss, kickstarting_loss):
        value = float(loss(logits_of(teacher), logits_of(student)))
        assert value == pytest.approx(by_hand, abs=1e-12)
        assert abs(value - reverse) > 0.1
        assert float(loss(logits_of(student), logits_of(student))) == pytest.approx(0.0, abs=1e-15)


def test_kl_gradient_reaches_the_student_only() -> None:
    teacher = logits_of([0.2, 0.8]).requires_grad_(True)
    student = logits_of([0.6, 0.4]).requires_grad_(True)
    kl_teacher_student(teacher, student).backward()
    assert teacher.grad is None
    # d KL / d student logits = softmax(student) - softmax(teacher)
    assert torch.allclose(student.grad, torch.tensor([[0.6 - 0.2, 0.4 - 0.8]], dtype=torch.float64))


def test_kickstarting_coefficient_decays_per_update_to_its_floor() -> None:
    released = Kickstarting(KSConfig(coef=0.75, decay=0.5, floor=0.33))
    seen = []
    for _ in range(4):
        seen.append(released.coef())
        released.after_update()
    assert seen == [0.75, 0.375, 0.33, 0.33]
    paper = Kickstarting(KSConfig(coef=0.5, decay=0.99998, floor=0.0))
    paper.load_state_dict({"updates": 41_000})
    assert paper.coef() == pytest.approx(0.5 * 0.99998 ** 41_000)
    assert paper.state_dict() == {"updates": 41_000}


def test_ewc_penalty_by_hand() -> None:
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchor = [torch.tensor([0.0, 2.5]), torch.tensor([[1.5]])]
    fisher = [torch.tensor([2.0, 4.0]), torch.tensor([[3.0]])]
    # 2 (0 - 1)^2 + 4 (2.5 - 2)^2 + 3 (1.5 - 0.5)^2 = 2 + 1 + 3
    assert float(ewc_penalty(theta, anchor, fisher)) == pytest.approx(6.0)
    assert float(ewc_penalty(anchor, anchor, fisher)) == 0.0


def softmax_policy(num_actions: int = 3, dim: int = 4) -> tuple[torch.nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(dim, num_actions, bias=False).double()
    states = torch.randn(300, dim, dtype=torch.float64)
    return layer, states


def analytic_fisher(layer: torch.nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """For logits W x: d log pi(a|x) / d W_ij = (1[a = i] - pi_i) x_j, so
    F_ij = E_x sum_a pi_a (1[a = i] - pi_i)^2 x_j^2 = E_x pi_i (1 - pi_i) x_j^2."""
    with torch.no_grad():
        pi = torch.softmax(layer(states), dim=1)
    return ((pi * (1 - pi)).unsqueeze(2) * states.pow(2).unsqueeze(1)).mean(0)


def test_fisher_equals_the_analytic_fisher_of_a_softmax_policy() -> None:
    layer, states = softmax_policy()
    exact = diagonal_fisher(layer, [layer.weight], states, np.random.default_rng(0), actions="expected")[0]
    assert torch.allclose(exact, analytic_fisher(layer, states), rtol=1e-10, atol=1e-12)


def test_sampled_fisher_is_the_true_fisher_not_the_empirical_one() -> None:
    """Actions drawn from the policy: the Monte Carlo estimate converges to the analytic Fisher
    (2,000 draws per state here: within 5% of every entry)."""
    layer, states = softmax_policy()
    repeated = states.repeat(20, 1)
    sampled = diagonal_fisher(layer, [layer.weight], repeated, np.random.default_rng(1), actions="sampled")[0]
    analytic = analytic_fisher(layer, states)
    assert torch.allclose(sampled, analytic, rtol=0.08)
    clipped = diagonal_fisher(layer, [layer.weight], states[:5], np.random.default_rng(1), clip_below=1.0)[0]
    assert bool((clipped >= 1.0).all())


class LinearAgent:
    """The agent side of the retention protocol for a linear softmax policy."""

    def __init__(self) -> None:
        self.online = torch.nn.Linear(2, 3)
        self.teacher = torch.nn.Linear(2, 3).requires_grad_(False)

    def policy_logits(self, obs: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        return (self.teacher if teacher else self.online)(obs)

    def teacher_logits_on(self, batch: dict) -> torch.Tensor:
        return self.teacher(batch["obs"])

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.online.parameters())


def test_retention_loss_sums_weighted_terms_and_logs_them() -> None:
    agent = LinearAgent()
    obs = torch.randn(8, 2)
    ks, ewc = Kickstarting(KSConfig(coef=0.5, decay=0.5, floor=0.0)), EWC(EWCConfig(coef=3.0))
    ewc.fill([p.detach() + 1.0 for p in agent.actor_parameters()], [torch.ones_like(p) for p in agent.actor_parameters()])
    logits = agent.online(obs)
    total, metrics = retention_loss([ks, ewc], agent, {"obs": obs, "logits": logits})
    kl = float(kl_teacher_student(agent.teacher(obs), logits.detach()))
    assert float(total) == pytest.approx(0.5 * kl + 3.0 * 9.0, rel=1e-6)  # 9 parameters, each 1 away
    assert metrics["retention/ks_coef"] == 0.5 and metrics["retention/ewc_coef"] == 3.0
    assert float(metrics["retention/ks_loss"]) == pytest.approx(kl, rel=1e-6)
    assert ks.coef() == 0.25  # advanced by one update


def chain_dataset(tmp_path, rewards: list[list[float]], terminated_last: list[bool]) -> Dataset:
    """A dataset of episodes with observation = [episode, t] and the given rewards (one env)."""
    space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    writer = DatasetWriter(tmp_path / "data", space, gym.spaces.Discrete(4), {"source": "test"})
    for e, (episode, term) in enumerate(zip(rewards, terminated_last)):
        for t, r in enumerate(episode):
            last = t == len(episode) - 1
            obs = np.array([[e, t]], np.float32)
            final = np.array([[e, t + 1]], np.float32) if last else None
            writer.add(obs, np.array([t % 4]), np.array([r]), np.array([last and term]),
                       np.array([last and not term]), final)
    writer.close()
    return Dataset(tmp_path / "data")


def test_em_transitions_are_n_step_within_episodes(tmp_path) -> None:
    data = chain_dataset(tmp_path, [[1.0, 2.0, 3.0], [4.0, 5.0]], [True, False])
    agent_cfg = type("A", (), {"n_step": 2, "gamma": 0.5})()
    memory = EpisodicMemory(EMConfig(fraction=0.25, transitions=100), agent_cfg, np.random.default_rng(0))
    memory.fill(data, torch.device("cpu"))
    d = memory.data
    # episode 0 (terminated at t=2): R0 = 1 + .5*2, bootstrap from obs t=2 with .25; R1 = 2 + .5*3,
    # ends in a termination: discount 0; R2 = 3, discount 0. Episode 1 truncated after t=1:
    # R0 = 4 + .5*5 from its final obs (t=2) with .25; R1 = 5, from the final obs with .5.
    assert d["reward"].tolist() == [2.0, 3.5, 3.0, 6.5, 5.0]
    assert d["discount"].tolist() == [0.25, 0.0, 0.0, 0.25, 0.5]
    assert d["obs"].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    assert d["next_obs"].tolist() == [[0, 2], [0, 3], [0, 3], [1, 2], [1, 2]]


def test_em_protected_transitions_survive_wraparounds_and_keep_their_share(tmp_path) -> None:
    data = chain_dataset(tmp_path, [[1.0] * 10], [True])
    agent_cfg = type("A", (), {"n_step": 1, "gamma": 0.9})()
    memory = EpisodicMemory(EMConfig(fraction=0.25, transitions=10), agent_cfg, np.random.default_rng(0))
    memory.fill(data, torch.device("cpu"))
    before = {k: v.clone() for k, v in memory.data.items()}
    space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    buffer = ReplayBuffer(ReplayConfig(capacity=64, prioritized=False), space, num_envs=1, n_step=1, gamma=0.9, seed=3)
    for i in range(64 * 20):  # 20 wrap-arounds of the online ring; its observations are (-1, i)
        buffer.add(np.array([[-1, i]], np.float32), np.array([0]), np.array([0.0]), np.array([False]),
                   np.array([False]), None)
    counts = []
    for _ in range(200):
        batch = memory.mix(buffer, 32)
        protected = batch.obs[:, 0] >= 0
        counts.append(int(protected.sum()))
        assert bool((batch.obs[~protected, 1] >= 64 * 19).all())  # the online part: only recent transitions
    assert set(counts) == {8}  # round(0.25 x 32) protected rows in every batch
    for key in before:
        assert torch.equal(before[key], memory.data[key])


def test_kickstarting_decays_per_transitions_as_the_paper() -> None:
    """decay_per = 'transitions': coef * decay^(env steps / decay_transitions), whatever the update size.
    64 env steps per update (ppo-finetune-closefar): 6,400 updates = 409,600 env steps = 100 of the
    paper's SGD steps of 4,096 transitions, so the coefficient is 0.5 * 0.99998^100."""
    cfg = KSConfig(coef=0.5, decay=0.99998, decay_per="transitions", decay_transitions=4096)
    ks = Kickstarting(cfg, env_steps_per_update=64)
    for _ in range(6400):
        ks.after_update()
    assert ks.coef() == pytest.approx(0.5 * 0.99998 ** 100, rel=1e-12)
    per_update = Kickstarting(KSConfig(coef=0.5, decay=0.99998), env_steps_per_update=64)
    per_update.load_state_dict({"updates": 6400})
    assert per_update.coef() == pytest.approx(0.5 * 0.99998 ** 6400, rel=1e-12)  # 64x faster per env step
    floored = Kickstarting(KSConfig(coef=0.75, decay=0.5, decay_per="transitions", decay_transitions=100, floor=0.33), 50)
    seen = []
    for _ in range(5):
        seen.append(floored.coef())
        floored.after_update()
    assert seen == pytest.approx([0.75, 0.75 * 0.5 ** 0.5, 0.375, 0.33, 0.33])


@pytest.mark.parametrize("preset,steps_per_update", [
    ("ppo-finetune-closefar", 128 * 8 / (4 * 4)),  # num_steps x num_envs / (epochs x minibatches)
    ("ppo-finetune-nethack", 32 * 16 / (1 * 1)),
    ("ppo-finetune-nethack-released", 32 * 16 / (1 * 1)),
])
def test_presets_that_claim_the_papers_schedule_decay_per_4096_env_steps(preset, steps_per_update) -> None:
    from rlsuite import config
    from rlsuite.loops.finetune import env_steps_per_update

    cfg = config.build_run_config(preset, None, [])
    assert (cfg.finetune.ks.decay_per, cfg.finetune.ks.decay_transitions, cfg.finetune.ks.decay) == (
        "transitions", 4096, 0.99998)
    assert env_steps_per_update(cfg) == steps_per_update


def test_retention_advances_nothing_while_the_actor_is_frozen() -> None:
    agent = LinearAgent()
    ks = Kickstarting(KSConfig(coef=0.5, decay=0.5))
    obs = torch.randn(8, 2)
    agent.online.requires_grad_(False)  # a critic warm-up: no actor parameter trains
    total, metrics = retention_loss([ks], agent, {"obs": obs, "logits": agent.online(obs)})
    assert float(total) == 0.0 and metrics == {"retention/ks_coef": 0.5} and ks.updates == 0
    agent.online.requires_grad_(True)
    retention_loss([ks], agent, {"obs": obs, "logits": agent.online(obs)})
    assert ks.updates == 1 and ks.coef() == 0.25
