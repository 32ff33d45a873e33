"""`rlsuite merge`: CCA and permutation alignment against their definitions, exact recovery of mixed
and permuted copies, the paper's ordering on a toy classification task, and the command end to end
(Horoi et al., "Harmony in Diversity", ICML 2024, arXiv 2407.05385)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from rlsuite.cli import main
from rlsuite.errors import UserError
from rlsuite.trained.alignment import JointMoments, cca_transform, permutation_transform
from rlsuite.trained.merge import merge_networks
from tests.conftest import TINY


def _init(net: nn.Module, gen: torch.Generator) -> nn.Module:
    """PyTorch's default init of Linear / Conv2d layers (weights and biases uniform in +-1/sqrt(fan_in)),
    drawn from `gen` (no global RNG); norms keep gain 1, offset 0."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = 1 / m.weight[0].numel() ** 0.5
                m.weight.uniform_(-bound, bound, generator=gen)
                m.bias.uniform_(-bound, bound, generator=gen)
    return net


def _sqrtm(s: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(s)
    return (vectors * values ** power) @ vectors.T


def test_cca_transform_is_the_papers_formula():
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(500, 6))
    xb = xa @ rng.normal(size=(6, 6)) + 0.5 * rng.normal(size=(500, 6))
    moments = JointMoments()
    moments.add(torch.as_tensor(xa[:200]), torch.as_tensor(xb[:200]))
    moments.add(torch.as_tensor(xa[200:]), torch.as_tensor(xb[200:]))
    cov = np.cov(np.hstack([xa, xb]).T)  # the dense reference, numpy's own
    np.testing.assert_allclose(moments.covariance().numpy(), cov, atol=1e-12)
    gamma = 0.3
    saa, sbb, sab = cov[:6, :6] + gamma * np.eye(6), cov[6:, 6:] + gamma * np.eye(6), cov[:6, 6:]
    u, sigma, vt = np.linalg.svd(_sqrtm(saa, -0.5) @ sab @ _sqrtm(sbb, -0.5))
    expected = _sqrtm(sbb, -0.5) @ vt.T @ u.T @ _sqrtm(saa, 0.5)
    t, t_inv_t, corr = cca_transform(torch.as_tensor(cov), 6, gamma)
    np.testing.assert_allclose(t.numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(corr.numpy(), sigma, atol=1e-10)
    np.testing.assert_allclose((t_inv_t @ t.T).numpy(), np.eye(6), atol=1e-10)  # (T^T)^{-1} T^T = I


def test_hungarian_matching_is_the_best_of_all_permutations():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 10))
    cov = np.cov(x.T)
    p, _, _ = permutation_transform(torch.as_tensor(cov), 5)
    corr = cov[:5, 5:] / np.sqrt(np.outer(np.diag(cov)[:5], np.diag(cov)[5:]))
    best = max(itertools.permutations(range(5)), key=lambda perm: sum(corr[i, perm[i]] for i in range(5)))
    expected = np.zeros((5, 5))
    expected[list(best), range(5)] = 1  # B's unit best[i] is matched to A's unit i
    np.testing.assert_array_equal(p.numpy(), expected)


def test_cca_recovers_a_linearly_mixed_copy_and_averaging_does_not():
    gen = torch.Generator().manual_seed(2)
    a = _init(nn.Sequential(nn.Linear(32, 16), nn.Linear(16, 4)).double(), gen).requires_grad_(False)
    b = _init(nn.Sequential(nn.Linear(32, 16), nn.Linear(16, 4)).double(), gen).requires_grad_(False)
    q = torch.randn(16, 16, generator=gen, dtype=torch.float64)  # invertible with probability 1
    with torch.no_grad():
        b[0].weight.copy_(q @ a[0].weight)
        b[0].bias.copy_(q @ a[0].bias)
        b[1].weight.copy_(a[1].weight @ torch.linalg.inv(q))
        b[1].bias.copy_(a[1].bias)
    x = torch.randn(4000, 32, generator=gen, dtype=torch.float64)
    assert float((a(x) - b(x)).abs().max()) < 1e-12  # the same function
    merged = nn.Sequential(nn.Linear(32, 16), nn.Linear(16, 4)).double().requires_grad_(False)
    state, report = merge_networks([a, b], x, "cca", gamma=1e-6)
    merged.load_state_dict(state)
    assert float((merged(x) - a(x)).abs().max()) < 1e-6
    assert min(report["correlation"][0].values()) > 0.999
    state, _ = merge_networks([a, b], x, "average")
    merged.load_state_dict(state)
    assert float((merged(x) - a(x)).abs().max()) > 0.1


def _permuted_copy(a: nn.Sequential, hidden: list[int], gen: torch.Generator, spatial: int = 1) -> nn.Sequential:
    """A copy of `a` with the units of each hidden weighted layer (indices `hidden`) permuted: the same function."""
    import copy

    b = copy.deepcopy(a)
    layers = [i for i, m in enumerate(a) if isinstance(m, (nn.Linear, nn.Conv2d))]
    previous = None
    with torch.no_grad():
        for i in layers:
            w = a[i].weight
            if previous is not None:  # the input side follows the previous layer's permutation
                if isinstance(a[i], nn.Linear) and w.shape[1] != len(previous):  # reads a flattened conv map
                    w = w.view(w.shape[0], len(previous), -1)[:, previous].reshape(w.shape[0], -1)
                else:
                    w = w[:, previous]
            perm = torch.randperm(w.shape[0], generator=gen) if i in hidden else None
            b[i].weight.copy_(w[perm] if perm is not None else w)
            b[i].bias.copy_(a[i].bias[perm] if perm is not None else a[i].bias)
            for j in range(i + 1, len(a)):  # a norm right after the layer follows its permutation
                if isinstance(a[j], nn.LayerNorm) and perm is not None:
                    b[j].weight.copy_(a[j].weight[perm])
                    b[j].bias.copy_(a[j].bias[perm])
                if not isinstance(a[j], nn.LayerNorm):
                    break
            previous = perm
    return b


def _alive(net: nn.Sequential) -> nn.Sequential:
    """Positive biases and norm offsets (gain 1), so that no ReLU unit is dead on every input: a dead
    unit matches any other dead unit equally well, and the permutation is then not identifiable."""
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)):
                m.bias.abs_().add_(0.3)
    return net


def test_permute_recovers_permuted_copies_exactly_mlp_norms_and_conv():
    gen = torch.Generator().manual_seed(3)
    mlp = _alive(_init(nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                              nn.Linear(12, 3)).double(), gen)).requires_grad_(False)
    cnn = _alive(_init(nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU(), nn.Flatten(),
                              nn.Linear(5 * 4 * 4, 7), nn.ReLU(), nn.Linear(7, 2)).double(), gen)).requires_grad_(False)
    for net, hidden, x in [(mlp, [0, 3], torch.randn(500, 8, generator=gen, dtype=torch.float64)),
                           (cnn, [0, 2, 5], torch.randn(300, 2, 8, 8, generator=gen, dtype=torch.float64))]:
        copy = _permuted_copy(net, hidden, gen)
        assert float((copy(x) - net(x)).abs().max()) < 1e-12
        assert not torch.equal(copy[0].weight, net[0].weight)
        state, _ = merge_networks([net, copy], x, "permute")
        for key, value in net.state_dict().items():
            torch.testing.assert_close(state[key], value, atol=1e-12, rtol=0)
    with pytest.raises(UserError, match="normalisation"):
        merge_networks([mlp, _permuted_copy(mlp, [0, 3], gen)], torch.randn(50, 8, dtype=torch.float64), "cca")
    with pytest.raises(UserError, match="LSTM"):
        merge_networks([nn.LSTM(4, 4), nn.LSTM(4, 4)], torch.randn(5, 3, 4), "cca")


def _clusters(gen: torch.Generator, centers: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, len(centers), (n,), generator=gen)
    return centers[y] + torch.randn(n, centers.shape[1], generator=gen), y


def test_toy_classification_cca_beats_permute_beats_average(one_thread):
    """Three 16-32-32-10 ReLU MLPs from different seeds on 10 unit-variance Gaussian clusters in 16-d
    (200 Adam steps each). Measured when written (4,000 test points): each model 0.940-0.942, the
    ensemble of the three 0.947, average 0.347, permute 0.920, cca 0.938 at gamma 0.1 (0.926 at 0.01,
    0.941 at 1): the paper's ordering, cca 0.019 above permute and permute 0.57 above averaging."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(10, 16, generator=gen)
    x_train, y_train = _clusters(gen, centers, 4000)
    x_test, y_test = _clusters(gen, centers, 4000)

    def make(seed: int) -> nn.Sequential:
        return _init(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)),
                     torch.Generator().manual_seed(seed))

    nets = []
    for seed in (1, 2, 3):
        net, batches = make(seed), torch.Generator().manual_seed(10 + seed)
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(200):
            i = torch.randint(0, len(x_train), (256,), generator=batches)
            loss = nn.functional.cross_entropy(net(x_train[i]), y_train[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets.append(net)

    def accuracy(method: str) -> float:
        merged = make(0)
        merged.load_state_dict(merge_networks(nets, x_train, method, gamma=0.1)[0])
        with torch.no_grad():
            return float((merged(x_test).argmax(1) == y_test).float().mean())

    with torch.no_grad():
        assert min(float((n(x_test).argmax(1) == y_test).float().mean()) for n in nets) > 0.9
    average, permute, cca = accuracy("average"), accuracy("permute"), accuracy("cca")
    assert cca >= permute + 0.01 and permute >= average + 0.3, (average, permute, cca)


# ---------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny CartPole DQN runs of one architecture, seeds 1 and 2; run 2 saves its replay buffer."""
    root = tmp_path_factory.mktemp("merge-runs")
    sets = [a for item in TINY for a in ("--set", item)]
    for seed in (1, 2):
        replay = ["--set", "train.save_replay=true"] if seed == 2 else []
        assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "300", "--seed", str(seed),
                     "--run-dir", str(root / f"s{seed}"), *sets, *replay]) == 0
    return root


def test_merged_run_is_accepted_by_eval_export_and_finetune(two_runs, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["merge", str(two_runs / "s1"), str(two_runs / "s2"), "--method", "cca", "--states", "256",
                 "--out", str(out)]) == 0
    assert (out / "config.toml").is_file() and (out / "merge.json").is_file()
    import json

    report = json.loads((out / "merge.json").read_text())
    assert report["method"] == "cca" and report["gamma"] == 0.1 and len(report["correlation"]) == 1
    assert report["points"] == ["encoder.net.2", "encoder.net.4"]
    assert report["states"] == "replay buffers of 1 run(s)"  # run 2's saved replay, not a rollout
    # checkpoint files outside a run directory have no replay: the reference policy plays for the states
    files = []
    for seed in (1, 2):
        files.append(tmp_path / f"s{seed}.pt")
        files[-1].write_bytes(next((two_runs / f"s{seed}" / "checkpoints").glob("ckpt_*.pt")).read_bytes())
    assert main(["merge", *map(str, files), "--method", "permute", "--states", "64", "--out", str(tmp_path / "p")]) == 0
    played = json.loads((tmp_path / "p" / "merge.json").read_text())
    assert played["states"] == "64 steps of the reference policy in 1 env(s)" and played["gamma"] is None
    assert main(["eval", str(out), "--episodes", "2", "--num-envs", "2"]) == 0
    assert (out / "eval.jsonl").is_file()
    assert main(["export", str(out), "--sparse", "-o", str(tmp_path / "merged.pt")]) == 0
    assert main(["eval", str(tmp_path / "merged.pt"), "--episodes", "2", "--num-envs", "2"]) == 0
    sets = [a for item in TINY for a in ("--set", item)]
    assert main(["finetune", "--from", str(out), "--steps", "250", "--run-dir", str(tmp_path / "ft"), *sets]) == 0
    # the merged weights are the mean of the reference and the aligned other run: with average, the plain mean
    assert main(["merge", str(two_runs / "s1"), str(two_runs / "s2"), "--method", "average",
                 "--out", str(tmp_path / "avg")]) == 0
    load = lambda p: torch.load(next((p / "checkpoints").glob("ckpt_*.pt")), weights_only=False)["agent"]["online"]
    a, b, m = load(two_runs / "s1"), load(two_runs / "s2"), load(tmp_path / "avg")
    for key in a:
        torch.testing.assert_close(m[key], (a[key] + b[key]) / 2)


def _forged(two_runs, tmp_path, name: str, change) -> str:
    """A copy of run s1's checkpoint with `change` applied to its contents (a run of another kind)."""
    data = torch.load(next((two_runs / "s1" / "checkpoints").glob("ckpt_*.pt")), weights_only=False)
    change(data)
    path = tmp_path / f"{name}.pt"
    torch.save(data, path)
    return str(path)


def test_bad_input_is_one_line_exit_2_and_nothing_written(two_runs, tmp_path, capsys):
    s1, s2 = str(two_runs / "s1"), str(two_runs / "s2")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    wider = _forged(two_runs, tmp_path, "wider",
                    lambda d: d["config"]["agent"]["encoder"].__setitem__("hidden", [64, 64]))
    ppo = _forged(two_runs, tmp_path, "ppo", lambda d: d.__setitem__("algo", "ppo"))
    spaces = _forged(two_runs, tmp_path, "spaces", lambda d: d["signature"].__setitem__("action_space", "Discrete(3)"))
    dt = _forged(two_runs, tmp_path, "dt", lambda d: d.__setitem__("algo", "dt"))
    cases = [([s1], "at least two runs"), ([s1, wider], "different networks"), ([s1, ppo], "one agent"),
             ([s1, spaces], "action spaces differ"), ([dt, s1], "Decision Transformer"),
             ([s1, s2, "--gamma", "-1"], "gamma must be >= 0")]
    capsys.readouterr()
    for extra, message in cases:
        out = tmp_path / "never"
        assert main(["merge", *extra, "--method", "cca", "--out", str(out)]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)
        assert not out.exists()
    assert main(["merge", s1, s2, "--method", "permute", "--out", str(occupied)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert sorted(p.name for p in occupied.iterdir()) == ["x"]
