"""PPO (rlsuite.agents.ppo): GAE, losses, LSTM replay, RND normalisation, exact resume, GMP/NaP
hooks, presets, and a short CartPole learning run. Expected values are written out by hand from
the definitions, never taken from rlsuite's own output. The agent is driven by a tiny loop over
`rlsuite.envs.make` here (rlsuite.loops.online is not imported)."""
from __future__ import annotations

import copy
import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsuite import config, envs
from rlsuite.agents import agent_classes
from rlsuite.agents.base import StorageContext, Transition
from rlsuite.agents.ppo import PPO, PPOConfig
from rlsuite.agents.ppo.objective import clipped_surrogate, gae, value_loss
from rlsuite.errors import TrainingDiverged
from rlsuite.nn.encoders import EncoderConfig
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.pruning import GMPConfig, prunable_parameters
from rlsuite.nn.rnd import DiscountedReturn, RNDConfig, RunningMeanStd, normalise_intrinsic

PRESETS = ["ppo-atari", "ppo-classic", "ppo-minatar", "ppo-rnd-montezuma", "ppo-nethack"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: one thread is fastest


def small_cfg(**kw) -> PPOConfig:
    base = dict(num_steps=16, num_minibatches=2, update_epochs=2, lr=1e-3,
                encoder=EncoderConfig(kind="mlp", hidden=(32, 32), init="torch"))
    base.update(kw)
    return PPOConfig(**base)


class Driver:
    """A CartPole vector env and a PPO agent, stepped by the protocol of rlsuite.agents.base."""

    def __init__(self, cfg: PPOConfig, num_envs: int = 4, seed: int = 3, total: int = 10_000, agent_seed: int | None = None):
        self.run_cfg = config.build_run_config("ppo-classic", None, [])
        self.env = envs.make(self.run_cfg.env, num_envs, seed)
        space = self.env.single_observation_space
        self.agent = PPO(cfg, space, self.env.single_action_space, seed=seed if agent_seed is None else agent_seed)
        self.agent.plan(total)
        self.agent.begin(StorageContext(self.run_cfg, num_envs, space, 1, 0))
        self.obs, _ = self.env.reset(seed=seed)
        self.step_count, self.returns, self.num_envs = 0, [], num_envs

    def advance(self, transform=None):
        actions = self.agent.step(self.obs, self.step_count, self.step_count)
        next_obs, reward, term, trunc, info = self.env.step(actions)
        if transform is not None:
            reward, term, trunc = transform(reward.copy(), term.copy(), trunc.copy())
        self.step_count += self.num_envs
        t = Transition(self.obs, actions, reward, term, trunc, info.get("final_obs"), next_obs)
        metrics = self.agent.observe(t, self.step_count)
        episode = info["episode"]
        self.returns += list(episode["return"][episode["done"]])
        self.obs = next_obs
        return actions, metrics


# ----------------------------------------------------------------------------- GAE and losses


def test_gae_hand_computed_termination_and_truncation():
    """5 steps, 2 envs, gamma = lambda = 0.5 (gamma lambda = 0.25).
    env 0 terminates at t=2 (no bootstrap), next value after the rollout 2.0.
    env 1 is truncated at t=1 with V(final obs) = 4: its reward there is 1 + gamma 4 = 3, and the
    episode counts as ended for GAE; next value after the rollout 0.0."""
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0 + 0.5 * 4.0], [2.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 2.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    ends = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 0], [0, 0]], dtype=torch.float32)
    next_value = torch.tensor([2.0, 0.0])
    adv, ret = gae(rewards, values, ends, next_value, gamma=0.5, lam=0.5)
    # env 0: d4 = 0 + .5*2 - 1 = 0        A4 = 0
    #        d3 = 1 + .5*1 - 2 = -.5      A3 = -.5
    #        d2 = 2 - 0 (terminal) = 2    A2 = 2 (nothing carried over the end)
    #        d1 = 0 + .5*0 - 1 = -1       A1 = -1 + .25*2 = -.5
    #        d0 = 1 + .5*1 - .5 = 1       A0 = 1 + .25*(-.5) = .875
    # env 1: d4 = 1 + .5*0 - 1 = 0        A4 = 0
    #        d3 = 1 + .5*1 - 1 = .5       A3 = .5
    #        d2 = 1 + .5*1 - 1 = .5       A2 = .5 + .25*.5 = .625
    #        d1 = 3 - 2 (ended) = 1       A1 = 1
    #        d0 = 1 + .5*2 - 1 = 1        A0 = 1 + .25*1 = 1.25
    expected = torch.tensor([[0.875, 1.25], [-0.5, 1.0], [2.0, 0.625], [-0.5, 0.5], [0.0, 0.0]])
    assert torch.allclose(adv, expected)
    assert torch.allclose(ret, expected + values)


def test_agent_bootstraps_truncation_not_termination():
    """Where the loop reports truncated (only), the stored reward is r + gamma V(final obs); where
    terminated (also with truncated), it is r; both cut the episode (ends = 1)."""
    d = Driver(small_cfg(gamma=0.9, num_steps=8))
    d.advance()
    final = np.array([[0.1, 0.2, 0.03, -0.1]] * 4, np.float32)

    def fake(reward, term, trunc):
        term[:] = [False, True, False, True]
        trunc[:] = [True, False, False, True]
        return reward, term, trunc

    actions = d.agent.step(d.obs, 4, 4)
    next_obs, reward, term, trunc, info = d.env.step(actions)
    reward, term, trunc = fake(reward.copy(), term.copy(), trunc.copy())
    with torch.no_grad():
        v_final = d.agent.online(torch.from_numpy(final[:1]))[1].item()
    d.agent.observe(Transition(d.obs, actions, reward, term, trunc, final, next_obs), 8)
    r = d.agent.rollout
    assert r.rewards[1].tolist() == pytest.approx([1.0 + 0.9 * v_final, 1.0, 1.0, 1.0], abs=1e-6)
    assert r.ends[1].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_clipped_surrogate_hand_batch():
    """eps = 0.2: ratios inside (1.1) and outside (1.5, 0.5) the clip range, both advantage signs."""
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0])
    ratio = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1], requires_grad=True)
    loss = clipped_surrogate(adv, ratio, 0.2)
    # max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2; max(-.5, -.8) = -.5; max(1.5, 1.2) = 1.5;
    # max(.5, .8) = .8; max(-2.2, -2.2) = -2.2  -> mean = -1.6 / 5
    assert loss.item() == pytest.approx(-0.32)
    loss.backward()
    # Gradient flows only where the unclipped term is the max: rows 1, 2 and 4 (-A / 5).
    assert ratio.grad.tolist() == pytest.approx([0.0, -0.2, 0.2, 0.0, -0.4])


def test_value_clipping_hand_batch():
    new, old = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    returns = torch.tensor([3.0, 0.0])
    # clip 0.5: row 0 unclipped (2-3)^2 = 1, clipped V = 1 + .5 -> (1.5-3)^2 = 2.25 -> 2.25
    #           row 1 unclipped (0-0)^2 = 0, clipped V = 1 - .5 -> (.5-0)^2 = .25 -> .25
    assert value_loss(new, old, returns, 0.5, clipped=True).item() == pytest.approx(0.5 * (2.25 + 0.25) / 2)
    assert value_loss(new, old, returns, 0.5, clipped=False).item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)


# ----------------------------------------------------------------------------- LSTM replay


RECURRENT = {  # core: (its settings, the replay tolerance)
    "lstm": (dict(core="lstm", lstm_hidden=16), 1e-6),
    # The LRU acts with its O(1) step and replays with the parallel scan: equal up to fp32 rounding.
    "lru": (dict(core="lru", lru_state=16, lru_r_min=0.5, lru_r_max=0.99), 1e-5),
}


@pytest.mark.parametrize("core", sorted(RECURRENT))
@pytest.mark.parametrize("shared", [True, False])
def test_recurrent_minibatch_forward_replays_rollout(shared, core):
    """Before the first gradient step, every minibatch's forward pass (whole env sequences from the
    stored initial state, resets at the stored episode starts) gives the log-probs and values the
    rollout computed step by step, for rollouts that contain episode ends: the LSTM, and the LRU
    (acting with its O(1) step, replaying with the parallel scan)."""
    settings, tolerance = RECURRENT[core]
    d = Driver(small_cfg(**settings, num_steps=40, num_minibatches=2, shared_trunk=shared))
    agent = d.agent
    checked = []
    original_update, original_step = agent._update, agent._minibatch_step

    def update(*args):
        agent._snapshot = copy.deepcopy(agent.online)  # the weights the rollout acted with
        checked.clear()
        return original_update(*args)

    def minibatch_step(mb, state, starts):
        if len(checked) < agent.cfg.num_minibatches:  # the first epoch covers every env once
            with torch.no_grad():
                logits, value, _, _ = agent._snapshot(mb["obs"], state, starts)
            logprob = torch.log_softmax(logits, 1).gather(1, mb["actions"].view(-1, 1)).squeeze(1)
            assert torch.allclose(logprob, mb["logprobs"], atol=tolerance, rtol=0)
            assert torch.allclose(value, mb["values"], atol=tolerance, rtol=0)
            checked.append(starts.shape[1])
        return original_step(mb, state, starts)

    agent._update, agent._minibatch_step = update, minibatch_step
    for _ in range(2 * 40):  # two rollouts: the second starts from a carried, non-zero state
        d.advance()
        if agent.rollout.pos == 39:
            # a done inside the rollout: some env starts an episode after step 0
            assert agent.rollout.starts[1:39].any()
    assert sum(checked) == 4 and agent.rollouts_done == 2
    assert agent.rollout.initial_state.shape == (1 if shared else 2, 2, 4, 16)  # (trunks, 2, envs, hidden)
    assert agent.rollout.initial_state.abs().sum() > 0


# ----------------------------------------------------------------------------- RND


def test_rnd_intrinsic_normalisation_by_hand():
    """gamma_int = 0.5; rewards (steps x envs) [[1, 0], [2, 1], [3, 0]]. Discounted returns,
    never reset: env 0: 1, 2.5, 4.25; env 1: 0, 1, 0.5. Their population mean is 9.25/6 and
    variance 26.5625/6 - (9.25/6)^2 = 2.0503472; the normaliser starts at mean 0, var 1, count
    1e-4, which moves the variance by under 1e-4 relative."""
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    filt, stats = DiscountedReturn(2, 0.5), RunningMeanStd(())
    normalised = normalise_intrinsic(rewards, filt, stats)
    std = math.sqrt(26.5625 / 6 - (9.25 / 6) ** 2)
    assert stats.mean.item() == pytest.approx(9.25 / 6, rel=1e-4)
    assert stats.std.item() == pytest.approx(std, rel=1e-4)
    assert torch.allclose(normalised, rewards / std, rtol=1e-4)
    assert filt.value.tolist() == pytest.approx([4.25, 0.5])  # carried into the next rollout
    normalise_intrinsic(torch.tensor([[1.0, 1.0]]), filt, stats)
    assert filt.value.tolist() == pytest.approx([0.5 * 4.25 + 1, 0.5 * 0.5 + 1])  # no episode reset


def test_running_mean_std_merges_batches():
    data = torch.tensor([[1.0], [2.0], [4.0], [8.0], [-3.0]])
    stats = RunningMeanStd((1,), count=0.0 + 1e-12)
    stats.update(data[:2])
    stats.update(data[2:])
    assert stats.mean.item() == pytest.approx(12.0 / 5)
    assert stats.var.item() == pytest.approx(float(np.var([1, 2, 4, 8, -3])))


def test_rnd_agent_runs_and_reports():
    cfg = small_cfg(rnd=RNDConfig(enabled=True, obs_norm_init_steps=10))
    d = Driver(cfg)
    metrics = None
    for _ in range(10 + 16):
        _, m = d.advance()
        metrics = m or metrics
    assert d.agent.init_steps_left == 0 and d.agent.rollouts_done == 1
    assert {"rnd/intrinsic_reward", "rnd/predictor_loss", "losses/approx_kl", "losses/old_approx_kl",
            "losses/clipfrac", "losses/explained_variance", "charts/learning_rate"} <= set(metrics)
    assert d.agent.rnd.obs_stats.count == pytest.approx(1e-4 + (10 + 16) * 4)


# ----------------------------------------------------------------------------- resume


def _as_numbers(metrics):
    return {k: (v.item() if torch.is_tensor(v) else v) for k, v in metrics.items()}


@pytest.mark.parametrize("extras", [
    dict(core="lstm", lstm_hidden=16, rnd=RNDConfig(enabled=True, obs_norm_init_steps=6)),
    dict(gmp=GMPConfig(sparsity=0.5, start=0.0, end=0.5, update_freq=2), nap=NaPConfig(norm="layer", project=True)),
])
@pytest.mark.parametrize("begin_again", [False, True])
def test_exact_resume_mid_rollout(extras, begin_again):
    """A checkpoint taken mid-rollout, loaded into a fresh agent (built with another seed), gives
    the same next actions, the same next update's losses and the same weights, bitwise."""
    cfg = small_cfg(**extras)
    a, c = Driver(cfg, total=2000), Driver(cfg, total=2000)
    for _ in range(6 + 16 + 7):  # past RND's init, one rollout, and 7 steps into the next
        a.advance()
        c.advance()
    buffer = io.BytesIO()
    torch.save(c.agent.state_dict(), buffer)
    buffer.seek(0)
    b = Driver(cfg, total=2000, agent_seed=99)
    b.env, b.obs, b.step_count = c.env, c.obs, c.step_count
    b.agent.load_state_dict(torch.load(buffer, weights_only=False))
    if begin_again:  # a task-sequence resume re-enters its phase after loading
        b.agent.begin(StorageContext(b.run_cfg, 4, b.env.single_observation_space, 1, 0))
    updates = 0
    for _ in range(2 * 16):
        actions_a, metrics_a = a.advance()
        actions_b, metrics_b = b.advance()
        assert np.array_equal(actions_a, actions_b)
        assert (metrics_a is None) == (metrics_b is None)
        if metrics_a is not None:
            updates += 1
            na, nb = _as_numbers(metrics_a), _as_numbers(metrics_b)
            assert na.keys() == nb.keys()
            for k in na:
                assert na[k] == nb[k] or (math.isnan(na[k]) and math.isnan(nb[k])), k
    assert updates == 2
    for pa, pb in zip(a.agent.online.parameters(), b.agent.online.parameters()):
        assert torch.equal(pa, pb)


# ----------------------------------------------------------------------------- GMP and NaP


def test_gmp_on_ppo_follows_schedule():
    """Gradient updates = rollouts x epochs x minibatches = 10 x 2 x 2 = 40 planned; window from
    update 0 to 0.5 x 40 = 20, masks every 4 updates, uniform per layer. After k updates the
    zero fraction of the prunable weights is s_F (1 - (1 - p)^3) at the last mask update m <= k,
    p = (m + 1) / 20 (the library's +1 offset), and s_F after the window."""
    cfg = small_cfg(gmp=GMPConfig(sparsity=0.8, start=0.0, end=0.5, update_freq=4, distribution="uniform"))
    d = Driver(cfg, total=10 * 16 * 4)
    assert d.agent.total_updates == 40
    params = prunable_parameters(d.agent.online)

    def zero_fraction():
        return sum(int((p == 0).sum()) for p in params.values()) / sum(p.numel() for p in params.values())

    for _ in range(3 * 16):  # 3 rollouts = 12 updates: last mask update at 12
        d.advance()
    assert d.agent.num_updates == 12
    expected = 0.8 * (1 - (1 - 13 / 20) ** 3)
    assert zero_fraction() == pytest.approx(expected, abs=2e-3)  # per-layer rounding to whole weights
    for _ in range(7 * 16):
        d.advance()
    assert d.agent.num_updates == 40
    assert zero_fraction() == pytest.approx(0.8, abs=2e-3)
    assert d.agent.record_extras()["sparsity"] == pytest.approx(0.8, abs=2e-3)


def test_nap_on_ppo_keeps_norms_at_radii():
    cfg = small_cfg(nap=NaPConfig(norm="layer", project=True))
    d = Driver(cfg)
    net = d.agent.online
    heads = {id(m) for m in net.output_layers()}

    def norms():
        out = {}
        for name, m in net.named_modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)) and id(m) not in heads:
                out[name] = float(torch.cat([p.detach().flatten() for p in m.parameters()]).norm())
        return out

    at_init = norms()
    assert any(isinstance(m, torch.nn.LayerNorm) for m in net.modules())
    policy_before = net.policy.weight.detach().clone()
    for _ in range(2 * 16):
        d.advance()
    assert d.agent.num_updates == 8
    after = norms()
    for name, radius in at_init.items():
        assert after[name] == pytest.approx(radius, rel=1e-5), name
    assert not torch.equal(policy_before, net.policy.weight)  # the head is free (nap.project_head=false)


# ----------------------------------------------------------------------------- misc protocol


def test_diverged_loss_raises_before_step():
    d = Driver(small_cfg())
    for _ in range(15):
        d.advance()
    before = [p.detach().clone() for p in d.agent.online.parameters()]

    def nan_rewards(reward, term, trunc):
        return reward * np.nan, term, trunc

    with pytest.raises(TrainingDiverged):
        d.advance(nan_rewards)
    assert all(torch.equal(p, q) for p, q in zip(before, d.agent.online.parameters()))


def test_eval_act_and_lstm_eval_state():
    d = Driver(small_cfg(core="lstm", lstm_hidden=8))
    agent = d.agent
    agent.eval_reset(4)
    rng = np.random.default_rng(0)
    a1 = agent.act(d.obs, 0.0, rng)
    assert a1.shape == (4,) and agent.eval_state.abs().sum() > 0
    agent.eval_episode_starts(np.array([True, False, False, False]))
    assert agent.eval_state[:, :, 0].abs().sum() == 0 and agent.eval_state[:, :, 1].abs().sum() > 0
    assert (agent.act(d.obs, 1.0, rng) < 2).all()
    assert agent.save_storage("/nonexistent") is False


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load(preset):
    cfg = config.build_run_config(preset, None, [])
    assert cfg.algo == "ppo" and isinstance(cfg.agent, PPOConfig)
    assert agent_classes("ppo") == (PPO, PPOConfig)


def test_rnd_montezuma_preset_builds_agent():
    cfg = config.build_run_config("ppo-rnd-montezuma", None, [])
    assert (cfg.env.max_episode_steps, cfg.env.sticky_action_prob, cfg.agent.gamma) == (4500, 0.25, 0.999)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = PPO(cfg.agent, space, gym.spaces.Discrete(18))
    assert agent.rnd.input_shape == (1, 84, 84)
    obs = np.zeros((2, 4, 84, 84), np.uint8)
    assert agent.act(obs, 0.0, np.random.default_rng(0)).shape == (2,)


def test_rnd_montezuma_preset_is_jcwleos_raw_advantages_and_no_clipping(monkeypatch):
    """jcwleo's RND never normalises advantages and never clips gradients (its global_grad_norm_ only
    computes the norm): the preset says norm_adv = false, max_grad_norm = 0, and 0 means no clip call."""
    for preset in ("ppo-rnd-montezuma", "ppo-finetune-montezuma"):
        a = config.build_run_config(preset, None, []).agent
        assert (a.norm_adv, a.max_grad_norm, a.rnd.ext_coef, a.rnd.int_coef) == (False, 0.0, 2.0, 1.0), preset
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm, *a, **k: calls.append(norm))
    for norm, expected in ((0.0, []), (0.5, [0.5] * 4)):
        drive, metrics = Driver(small_cfg(max_grad_norm=norm)), None
        while metrics is None:
            _, metrics = drive.advance()
        assert calls == expected  # one rollout: 2 epochs x 2 minibatches
        calls.clear()


def test_atari_preset_inits_like_cleanrl_layer_init():
    """ppo-atari: every conv and dense layer of the torso orthogonal with gain sqrt 2 (W reshaped to
    (out, fan_in): W W^T = 2 I for out <= fan_in, else W^T W = 2 I) and zero biases; heads
    orthogonal with gains 0.01 (policy) and 1 (value), as CleanRL's ppo_atari_envpool.py."""
    cfg = config.build_run_config("ppo-atari", None, [])
    assert cfg.agent.encoder.init == "orthogonal"
    agent = PPO(cfg.agent, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))

    def check(layer: torch.nn.Module, gain: float) -> None:
        w = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, gain ** 2 * torch.eye(len(gram), dtype=torch.float64), atol=1e-5 * max(gain ** 2, 1))
        assert layer.bias is None or not layer.bias.detach().any()

    torso = [m for m in agent.online.actor_trunk.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [type(m).__name__ for m in torso] == ["Conv2d"] * 3 + ["Linear"]  # the Nature CNN
    for layer in torso:
        check(layer, math.sqrt(2))
    check(agent.online.policy, 0.01)
    check(agent.online.value, 1.0)


def test_overrides_reach_sub_configs():
    cfg = config.build_run_config("ppo-classic", None, ["agent.gmp.sparsity=0.9", "agent.nap.norm=rms",
                                                       "agent.rnd.enabled=true", "agent.core=lstm"])
    assert (cfg.agent.gmp.sparsity, cfg.agent.nap.norm, cfg.agent.rnd.enabled, cfg.agent.core) == (0.9, "rms", True, "lstm")


# ----------------------------------------------------------------------------- learning


def test_cartpole_learning_smoke():
    """PPO on CartPole-v1, 4 envs, 30k env steps: the mean training return of the last 20 episodes
    exceeds 150 (a random policy: ~22). lr 1e-3 and 10 epochs instead of ppo-classic's 2.5e-4 and
    4, which need ~100k steps."""
    cfg = PPOConfig(num_steps=128, num_minibatches=4, update_epochs=10, lr=1e-3, clip_coef=0.2, shared_trunk=False,
                    encoder=EncoderConfig(kind="mlp", hidden=(64, 64), init="torch"))
    d = Driver(cfg, seed=1, total=30_000)
    while d.step_count < 30_000:
        d.advance()
    assert np.mean(d.returns[-20:]) > 150, np.mean(d.returns[-20:])


def test_diagnostics_and_plan_warnings():
    d = Driver(small_cfg(gmp=GMPConfig(sparsity=0.5)), total=4 * 16 * 3)
    for _ in range(16):
        d.advance()
    out = d.agent.diagnostics(d.step_count)
    assert {"plasticity/srank", "plasticity/dormant_fraction", "charts/learning_rate", "sparsity/overall"} <= set(out)
    assert d.agent.plan_warnings(4 * 16 * 3) != []  # gmp.update_freq=1000 > the run's 12 updates: no mask update
    assert any("no update will run" in w for w in d.agent.plan_warnings(4 * 15))
    assert d.agent.status(d.step_count).startswith("kl ")


def test_dict_observations_with_lstm_nethack_preset():
    """ppo-nethack's agent (NetHack encoder, LSTM) through two rollouts of random dict observations:
    dict rollout storage, sequence minibatches, the truncation bootstrap on dict final_obs."""
    from tests.test_encoders import NETHACK

    run = config.build_run_config("ppo-nethack", None, ["agent.num_steps=4", "agent.lstm_hidden=16",
                                                        "agent.encoder.nethack_hidden=32"])
    agent = PPO(run.agent, NETHACK, gym.spaces.Discrete(23))
    agent.plan(1000)
    agent.begin(StorageContext(run, 2, NETHACK, 1, 0))
    rng = np.random.default_rng(0)

    def sample():
        return {k: rng.integers(0, 20, size=(2, *s.shape)).astype(s.dtype) for k, s in NETHACK.spaces.items()}

    obs, metrics = sample(), None
    for i in range(8):
        actions = agent.step(obs, i, i)
        nxt = sample()
        trunc = np.array([i == 2, False])
        m = agent.observe(Transition(obs, actions, np.ones(2, np.float32), np.zeros(2, bool), trunc, sample(), nxt), i)
        metrics, obs = m or metrics, nxt
    assert agent.rollouts_done == 2 and np.isfinite(float(metrics["losses/value_loss"]))


def test_sample_actions_follow_the_policy():
    from rlsuite.agents.ppo.network import sample_actions

    logits = torch.log(torch.tensor([[0.2, 0.8, 0.0 + 1e-12], [0.5, 0.25, 0.25]])).repeat(10_000, 1)
    actions = sample_actions(logits, np.random.default_rng(0)).reshape(10_000, 2)
    assert np.mean(actions[:, 0] == 1) == pytest.approx(0.8, abs=0.015)
    assert np.mean(actions[:, 0] == 2) < 1e-3
    assert np.bincount(actions[:, 1], minlength=3) / 10_000 == pytest.approx([0.5, 0.25, 0.25], abs=0.015)
