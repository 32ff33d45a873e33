"""The LRU (rlsuite.nn.lru; Orvieto et al., arXiv 2303.06349) and PPO's `agent.core = lru`.

References are written here from the definitions: the closed form x_k = sum_j lambda^{k-j} gamma B u_j
(from the last episode start, plus lambda^{k+1} x_{-1} before any) in float64, the ring init's
bounds, white-noise variance, and a least-squares memory readout (Orvieto et al., arXiv 2307.11888)
computed with numpy. The PPO parts drive a real CartPole agent (tests.test_ppo's Driver)."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from rlsuite.cli import main
from rlsuite.nn.lru import LRU, LRUBlock, to_complex, to_real
from tests.test_ppo import Driver, small_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def lambdas_from_definition(layer: LRU) -> np.ndarray:
    """exp(-exp(nu_log)) * exp(i exp(theta_log)), in complex128."""
    nu, theta = layer.nu_log.detach().double().numpy(), layer.theta_log.detach().double().numpy()
    return np.exp(-np.exp(nu)) * np.exp(1j * np.exp(theta))


def closed_form(layer: LRU, u: np.ndarray, x0: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """x_k = [no start in 0..k] lambda^{k+1} x0 + sum_{j = s..k} lambda^{k-j} gamma B u_j, s = the last
    start <= k (0 if none). u: (T, B, H), x0: (B, N), starts: (T, B). Returns (T, B, N) complex128."""
    lam = lambdas_from_definition(layer)
    gamma = np.exp(layer.gamma_log.detach().double().numpy())
    b_mat = layer.B_re.detach().double().numpy() + 1j * layer.B_im.detach().double().numpy()
    drive = gamma * np.einsum("nh,tbh->tbn", b_mat, u)
    steps, envs = starts.shape
    out = np.zeros((steps, envs, len(lam)), complex)
    for e in range(envs):
        for k in range(steps):
            first = max([j for j in range(k + 1) if starts[j, e]], default=0)
            total = sum(lam ** (k - j) * drive[j, e] for j in range(first, k + 1))
            if not starts[: k + 1, e].any():
                total = total + lam ** (k + 1) * x0[e]
            out[k, e] = total
    return out


def test_scan_loop_step_and_closed_form_agree_with_episode_starts():
    g = torch.Generator().manual_seed(1)
    layer = LRU(5, 12, r_min=0.5, r_max=0.99, max_phase=math.pi, generator=g)
    steps, envs = 37, 3
    u = torch.randn(steps, envs, 5, generator=g)
    x0 = torch.complex(torch.randn(envs, 12, generator=g), torch.randn(envs, 12, generator=g))
    starts = torch.zeros(steps, envs)
    starts[0, 2] = starts[9, 0] = starts[20, 0] = starts[30, 1] = 1.0  # resets inside the stretch
    expected = closed_form(layer, u.double().numpy(), x0.numpy().astype(complex), starts.numpy())
    with torch.no_grad():
        y_scan, xs_scan = layer(u, x0, starts, parallel=True)
        y_loop, xs_loop = layer(u, x0, starts, parallel=False)
        x, stepped = x0, []
        for k in range(steps):
            _, x = layer.step(u[k], x, starts[k])
            stepped.append(x)
    for xs in (xs_scan, xs_loop, torch.stack(stepped)):
        assert np.abs(xs.numpy() - expected).max() < 1e-5
    c_mat = layer.C_re.detach().double().numpy() + 1j * layer.C_im.detach().double().numpy()
    y_ref = np.einsum("hn,tbn->tbh", c_mat, expected).real + layer.D.detach().double().numpy() * u.double().numpy()
    assert np.abs(y_scan.numpy() - y_ref).max() < 1e-5 and np.abs(y_loop.numpy() - y_ref).max() < 1e-5
    no_resets = closed_form(layer, u.double().numpy(), x0.numpy().astype(complex), np.zeros((steps, envs)))
    assert np.abs(no_resets[9, 0] - expected[9, 0]).max() > 0.1  # the resets change what is checked


def test_ring_init_bounds_gamma_and_projection_scales():
    r_min, r_max, phase, h, n = 0.4, 0.9, math.pi / 10, 16, 4000
    layer = LRU(h, n, r_min, r_max, phase, generator=torch.Generator().manual_seed(2))
    lam = lambdas_from_definition(layer)
    r, angle = np.abs(lam), np.exp(layer.theta_log.detach().double().numpy())
    assert r.min() >= r_min - 1e-6 and r.max() <= r_max + 1e-6
    assert angle.min() >= 0 and angle.max() <= phase + 1e-6
    # area-uniform on the ring: r^2 is uniform on [r_min^2, r_max^2]
    assert abs(np.mean(r ** 2) - (r_min ** 2 + r_max ** 2) / 2) < 0.01
    assert np.allclose(np.exp(layer.gamma_log.detach().double().numpy()), np.sqrt(1 - r ** 2), atol=1e-5)
    assert abs(layer.B_re.std().item() - math.sqrt(1 / (2 * h))) < 0.01
    assert abs(layer.C_im.std().item() - math.sqrt(1 / n)) < 0.01
    assert abs(layer.D.std().item() - 1.0) < 0.5  # only 16 draws
    with pytest.raises(ValueError):
        LRU(4, 4, r_min=0.9, r_max=0.9)


@pytest.mark.parametrize("ring", [(0.5, 0.6), (0.98, 0.99)])
def test_gamma_keeps_the_state_variance_of_white_noise(ring):
    """E|x|^2 = gamma^2 E|Bu|^2 / (1 - |lambda|^2) = E|Bu|^2 for white-noise u, whatever |lambda|
    (without gamma the ratio would be 1 / (1 - r^2), ~50 at r = 0.99)."""
    g = torch.Generator().manual_seed(3)
    layer = LRU(8, 64, *ring, generator=g)
    u = torch.randn(6000, 1, 8, generator=g)
    with torch.no_grad():
        _, xs = layer(u, torch.zeros(1, 64, dtype=torch.complex64))
        bu = torch.complex(u @ layer.B_re.T, u @ layer.B_im.T)
    ratio = (xs[1000:].abs() ** 2).mean() / (bu.abs() ** 2).mean()
    assert 0.9 < ratio.item() < 1.1


def memory_r2(lam: np.ndarray, lag: int, rng: np.random.Generator, steps: int = 3000) -> float:
    """Held-out R^2 of a least-squares readout of u_{t-lag} from the states of x_t = lam x_{t-1} + u_t
    (scalar white noise u; complex states give their real and imaginary parts as features)."""
    u = rng.standard_normal(steps)
    states = np.stack([lfilter([1.0], [1.0, -unit], u) for unit in lam], axis=1)  # x_t = lam x_{t-1} + u_t
    feats = (np.concatenate([states.real, states.imag], axis=1) if np.iscomplexobj(states) else states)[500:]
    target = u[500 - lag: steps - lag]
    split = len(target) * 2 // 3
    # torch's solver on the test's one thread (numpy's BLAS threads crawl on a busy 2-core machine)
    feats_t, target_t = torch.from_numpy(feats), torch.from_numpy(target)
    w = torch.linalg.lstsq(feats_t[:split], target_t[:split, None]).solution
    resid = (target_t[split:] - (feats_t[split:] @ w)[:, 0]).numpy()
    return 1 - resid.var() / target[split:].var()


def test_complex_ring_init_remembers_better_than_real_eigenvalues():
    """32 complex ring-init units (64 features) against 64 real units with the same |lambda|
    distribution (r in [0.9, 0.999]): u_{t-10} is recoverable from the complex states (median R^2
    over 5 inits > 0.9; single inits gave 0.81-0.99, the phases being random), not from the real
    ones (< 0.3): the real Vandermonde readout is badly conditioned."""
    ring, r2_complex, r2_real = (0.9, 0.999), [], []
    for seed in range(5):
        lam = lambdas_from_definition(LRU(1, 32, *ring, 2 * math.pi, generator=torch.Generator().manual_seed(seed)))
        real = np.abs(lambdas_from_definition(LRU(1, 64, *ring, generator=torch.Generator().manual_seed(100 + seed))))
        r2_complex.append(memory_r2(lam, 10, np.random.default_rng(seed)))
        r2_real.append(memory_r2(real, 10, np.random.default_rng(seed)))
    assert np.median(r2_complex) > 0.9 and np.median(r2_real) < 0.3, (r2_complex, r2_real)


def test_recurrence_stays_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(7)
    layer = LRU(6, 8, 0.9, 0.999, generator=g)
    u, x0 = torch.randn(20, 2, 6, generator=g), torch.zeros(2, 8, dtype=torch.complex64)
    with torch.no_grad():
        y, xs = layer(u, x0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_auto, xs_auto = layer(u.bfloat16(), x0)
    assert y_auto.dtype == torch.float32 and xs_auto.dtype == torch.complex64
    assert torch.allclose(y_auto, layer(u.bfloat16().float(), x0)[0].detach())  # only the input's rounding differs
    state = to_real(xs[-1])
    assert state.shape == (2, 2, 8) and torch.equal(to_complex(state), xs[-1])


def test_block_step_equals_scan():
    g = torch.Generator().manual_seed(8)
    with torch.random.fork_rng(devices=[]):  # the GLU's torch init; the LRU's own draws use g
        torch.manual_seed(8)
        block = LRUBlock(6, 10, 0.5, 0.99, generator=g)
    u, starts = torch.randn(15, 3, 6, generator=g), torch.zeros(15, 3)
    starts[4, 1] = 1.0
    state = torch.randn(2, 3, 10, generator=g)
    with torch.no_grad():
        out_scan, last_scan = block(u, state, starts)
        s, outs = state, []
        for k in range(15):
            o, s = block(u[k:k + 1], s, starts[k:k + 1])
            outs.append(o)
    assert torch.allclose(torch.cat(outs), out_scan, atol=1e-5) and torch.allclose(s, last_scan, atol=1e-5)


# ----------------------------------------------------------------------------- PPO with agent.core=lru


def lru_cfg(**kw):
    return small_cfg(core="lru", lru_state=16, lru_r_min=0.5, lru_r_max=0.99, **kw)


# The update's scan replays what acting computed: tests/test_ppo.py, test_recurrent_minibatch_forward_replays_rollout.


def test_ppo_lru_recurrent_parameters_train_at_half_the_learning_rate():
    d = Driver(lru_cfg())
    groups = d.agent.optimizer.param_groups
    lru = d.agent.online.actor_trunk.lru.lru
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in (lru.nu_log, lru.theta_log, lru.gamma_log,
                                                                    lru.B_re, lru.B_im)]
    for _ in range(2 * 16):
        d.advance()
    assert d.agent.rollouts_done == 2 and groups[0]["lr"] < 1e-3  # annealed
    assert groups[1]["lr"] == pytest.approx(0.5 * groups[0]["lr"])


@pytest.mark.parametrize("begin_again", [False, True])
def test_ppo_lru_exact_resume_mid_rollout(begin_again):
    """As tests/test_ppo.py's LSTM resume: a mid-rollout checkpoint loaded into an agent built with
    another seed gives the same actions and the same next updates' losses, bitwise."""
    from rlsuite.agents.base import StorageContext

    cfg = lru_cfg()
    a, c = Driver(cfg, total=2000), Driver(cfg, total=2000)
    for _ in range(16 + 7):
        a.advance()
        c.advance()
    buffer = io.BytesIO()
    torch.save(c.agent.state_dict(), buffer)
    buffer.seek(0)
    b = Driver(cfg, total=2000, agent_seed=99)
    b.env, b.obs, b.step_count = c.env, c.obs, c.step_count
    b.agent.load_state_dict(torch.load(buffer, weights_only=False))
    if begin_again:
        b.agent.begin(StorageContext(b.run_cfg, 4, b.env.single_observation_space, 1, 0))
    updates = 0
    for _ in range(2 * 16):
        actions_a, metrics_a = a.advance()
        actions_b, metrics_b = b.advance()
        assert np.array_equal(actions_a, actions_b)
        if metrics_a is not None:
            updates += 1
            assert {k: float(v) for k, v in metrics_a.items()} == {k: float(v) for k, v in metrics_b.items()}
    assert updates == 2
    for pa, pb in zip(a.agent.online.parameters(), b.agent.online.parameters()):
        assert torch.equal(pa, pb)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    cases = [(["dqn-classic", "--set", "agent.core=lru"], "unknown config key 'agent.core'"),
             (["dt", "--set", "agent.core=lru"], "unknown config key 'agent.core'"),
             (["ppo-classic", "--set", "agent.core=lru", "--set", "agent.lru_r_min=0.9", "--set", "agent.lru_r_max=0.9"],
              "agent.lru_r_min"),
             (["ppo-classic", "--set", "agent.core=lru", "--set", "agent.lru_r_max=1.5"], "agent.lru_r_max"),
             (["ppo-classic", "--set", "agent.core=lru", "--set", "train.num_envs=3"], "agent.core=lru splits envs")]
    for args, message in cases:
        run_dir = tmp_path / "x"
        assert main(["train", args[0], "--env", "CartPole-v1", "--steps", "100", "--run-dir", str(run_dir),
                     "--no-progress", *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not run_dir.exists()
