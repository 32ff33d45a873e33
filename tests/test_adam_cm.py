"""AdamCM (rlsuite/nn/adam_cm.py): expected values come from the update equations, worked in float64 here."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from rlsuite.nn.adam_cm import AdamCM

B1, B2, EPS = 0.9, 0.999, 1e-8


def _set_grads(params: list[torch.Tensor], grads: list[list[float]]) -> None:
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=p.dtype)


def _norm(g: list[float]) -> float:
    return math.sqrt(sum(x * x for x in g))


def test_top_c_zero_equals_adamw() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    ours = AdamCM(model.parameters(), lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, top_c=0)
    ref = torch.optim.AdamW(twin.parameters(), lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        for p, q in zip(model.parameters(), twin.parameters()):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=0)
    assert ours.stats()["cm/accepted"] == 0.0


def test_three_hand_computed_steps() -> None:
    lr, wd, lam = 0.1, 0.01, 0.7
    theta = [1.0, -2.0]
    grads = [[0.5, -1.0], [0.1, 0.2], [2.0, 1.0]]
    p = torch.nn.Parameter(torch.tensor(theta))
    opt = AdamCM([p], lr=lr, weight_decay=wd, top_c=2, decay=lam, synced=True)

    def update(theta, m_tilde, v, t):  # steps 7-8 of the spec, elementwise, after the decay of step 3
        v = [B2 * vi + (1 - B2) * mi * mi for vi, mi in zip(v, m_tilde)]
        theta = [th * (1 - lr * wd) for th in theta]
        theta = [th - lr / (1 - B1**t) * mi / (math.sqrt(vi / (1 - B2**t)) + EPS)
                 for th, mi, vi in zip(theta, m_tilde, v)]
        return theta, v

    v = [0.0, 0.0]
    # Step 1: empty buffer, so m~1 = m1; (s1, m1) goes to slot 0; keys decay.
    m1 = [(1 - B1) * g for g in grads[0]]
    theta, v = update(theta, m1, v, 1)
    keys, buf = [lam * _norm(grads[0])], [m1]
    _set_grads([p], [grads[0]]); opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(theta), atol=1e-6, rtol=1e-6)
    # Step 2: m~2 = m2 + m1 (mean of one entry); buffer not full, so slot 1 takes (s2, m2).
    m2 = [B1 * a + (1 - B1) * g for a, g in zip(m1, grads[1])]
    m_tilde = [a + b for a, b in zip(m2, buf[0])]
    theta, v = update(theta, m_tilde, v, 2)
    keys, buf = [lam * keys[0], lam * _norm(grads[1])], [m1, m2]
    _set_grads([p], [grads[1]]); opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(theta), atol=1e-6, rtol=1e-6)
    # Step 3: m~3 = m3 + (m1 + m2)/2 (buffer before insertion); full buffer, s3 = sqrt(5) beats the min
    # key (slot 1: 0.7 * sqrt(0.05) < 0.49 * sqrt(1.25)), so slot 1 becomes (s3, m3).
    m3 = [B1 * a + (1 - B1) * g for a, g in zip(m2, grads[2])]
    m_tilde = [c + (a + b) / 2 for c, a, b in zip(m3, buf[0], buf[1])]
    theta, v = update(theta, m_tilde, v, 3)
    assert keys[1] < keys[0] < _norm(grads[2])
    keys, buf = [lam * keys[0], lam * _norm(grads[2])], [m1, m3]
    _set_grads([p], [grads[2]]); opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(theta), atol=1e-6, rtol=1e-6)

    state = opt.state[p]
    torch.testing.assert_close(state["cm_buffer"], torch.tensor(buf), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(state["cm_keys"], torch.tensor(keys, dtype=torch.float64), rtol=1e-6, atol=0)
    assert opt.stats() == pytest.approx({"cm/accepted": 3.0, "cm/rejected": 0.0, "cm/buffer_size": 2.0,
                                         "cm/key_mean": sum(keys) / 2}, rel=1e-6)


def _momenta(grads: list[list[float]]) -> list[list[float]]:
    m, out = [0.0] * len(grads[0]), []
    for g in grads:
        m = [B1 * a + (1 - B1) * x for a, x in zip(m, g)]
        out.append(m)
    return out


def test_full_buffer_rejects_low_and_replaces_argmin() -> None:
    # Two tensors, one synced group: priority = ||g_a|| + ||g_b||. decay 1 keeps the keys readable.
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = AdamCM([a, b], lr=1e-3, top_c=2, decay=1.0)
    grads_a = [[3.0, 4.0], [0.3, 0.4], [0.6, 0.8], [1.2, 1.6]]
    grads_b = [[0.0], [1.0], [-0.2], [1.0]]
    # priorities: 5, 1.5, 1.2 (< min key 1.5: rejected), 3 (> 1.5: replaces slot 1, the argmin)
    for ga, gb in zip(grads_a, grads_b):
        _set_grads([a, b], [ga, gb])
        opt.step()
    stats = opt.stats()
    assert (stats["cm/accepted"], stats["cm/rejected"], stats["cm/buffer_size"]) == (3.0, 1.0, 2.0)
    owner = opt.state[a]
    torch.testing.assert_close(owner["cm_keys"], torch.tensor([5.0, 3.0], dtype=torch.float64), rtol=1e-6, atol=0)
    ma, mb = _momenta(grads_a), _momenta(grads_b)
    torch.testing.assert_close(opt.state[a]["cm_buffer"], torch.tensor([ma[0], ma[3]]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(opt.state[b]["cm_buffer"], torch.tensor([mb[0], mb[3]]), rtol=1e-6, atol=1e-7)


def test_unsynced_decides_per_tensor() -> None:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = AdamCM([a, b], top_c=1, decay=1.0, synced=False)
    # a: 5 then 0.5 (rejected); b: 0 then 1 (accepted, replaces key 0). Synced would reject step 2.
    for ga, gb in [([3.0, 4.0], [0.0]), ([0.3, 0.4], [1.0])]:
        _set_grads([a, b], [ga, gb])
        opt.step()
    assert (opt.stats()["cm/accepted"], opt.stats()["cm/rejected"]) == (3.0, 1.0)
    assert float(opt.state[a]["cm_keys"][0]) == pytest.approx(5.0)
    assert float(opt.state[b]["cm_keys"][0]) == pytest.approx(1.0)


def test_critical_test_one_overwrites_min_unconditionally() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = AdamCM([p], top_c=1, decay=1.0, critical_test=1.0, generator=torch.Generator().manual_seed(0))
    for g in [[5.0], [0.1]]:
        _set_grads([p], [g])
        opt.step()
    assert float(opt.state[p]["cm_keys"][0]) == pytest.approx(0.1)
    torch.testing.assert_close(opt.state[p]["cm_buffer"][0], torch.tensor(_momenta([[5.0], [0.1]])[1]))
    assert opt.stats()["cm/rejected"] == 0.0


def _run(model: torch.nn.Module, opt: AdamCM, steps: range) -> None:
    for t in steps:
        gen = torch.Generator().manual_seed(100 + t)  # gradient of step t is fixed by t alone
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def test_state_dict_round_trip_is_bitwise() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    gen = torch.Generator().manual_seed(7)
    kwargs = dict(lr=1e-2, weight_decay=0.01, top_c=3, critical_test=0.3, buffer_dtype=torch.bfloat16)
    opt = AdamCM(model.parameters(), generator=gen, **kwargs)
    _run(model, opt, range(5))
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    _run(model, opt, range(5, 10))

    twin = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    twin.load_state_dict(saved_model)
    # A generator in another state: the saved critical_test stream must come from the state_dict.
    twin_opt = AdamCM(twin.parameters(), generator=torch.Generator().manual_seed(99), **kwargs)
    twin_opt.load_state_dict(saved_opt)
    first = twin_opt.state[next(twin.parameters())]
    assert first["cm_buffer"].dtype == torch.bfloat16 and first["cm_filled"].dtype == torch.bool
    assert first["cm_keys"].dtype == torch.float64
    _run(twin, twin_opt, range(5, 10))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    assert opt.stats() == twin_opt.stats()


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_c=-1), "top_c"),
    (dict(top_c=2.5), "top_c"),
    (dict(decay=1.5), "decay"),
    (dict(decay=-0.1), "decay"),
    (dict(critical_test=1.2), "critical_test"),
    (dict(critical_test=-0.5), "critical_test"),
    (dict(critical_test=0.5), "generator"),
    (dict(lr=0.0), "lr"),
    (dict(lr=-1e-3), "lr"),
])
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdamCM([torch.nn.Parameter(torch.zeros(1))], **kwargs)
