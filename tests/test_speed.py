"""Fast modes (rlsuite.run.speed): bf16 autocast, channels_last, torch.compile; their checks.

Every comparison is against the fp32 eager agent on the same data. bf16 runs here on any CPU:
the tests call `accelerate` directly, or pretend the CPU has bf16 units, because autocast works
everywhere (emulated, and slower, where the units are missing); only the start-up check refuses it.

Tolerances, stated once: bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2% per op). The
first update's loss must agree with fp32 to 1%; over 300 updates on the same batches the training
trajectories drift apart (Adam amplifies small differences), and the mean relative difference of
the losses must stay under 5% (measured: 1.3% for DQN on CartPole).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsuite import config

from rlsuite.run import checkpoint, speed
from rlsuite.agents import agent_classes
from rlsuite.agents.dqn import agent as dqn_module
from rlsuite.agents.ppo import agent as ppo_module
from rlsuite.agents.base import Transition
from rlsuite.cli import main
from rlsuite.envs import make as make_env
from rlsuite.run.speed import SpeedPlan
from rlsuite.loops.online import advance, build_session, restore_checkpoint, save_checkpoint, storage_context
from tests.conftest import TINY

UPDATES = 300
FIRST_TOLERANCE, MEAN_TOLERANCE = 0.01, 0.05
CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has bf16 units, so runs through the CLI may ask for bf16 on any machine."""
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})


def relative_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.maximum(np.abs(a), 1e-3)


# ----------------------------------------------------------------------------- hardware checks


def test_bf16_is_refused_without_bf16_units_and_accepted_with_them():
    assert speed.bf16_problem(CPU, flags=set()) is not None
    assert speed.bf16_problem(CPU, flags={"avx2", "avx512f"}) is not None
    for flags in ({"avx512_bf16"}, {"amx_bf16", "amx_tile"}, {"bf16", "asimd"}):
        assert speed.bf16_problem(CPU, flags=flags) is None, flags


@pytest.mark.parametrize("override, expected", [
    ("train.cudagraphs=true", "train.cudagraphs needs a CUDA device"),
    ("train.precision=bf16", "train.precision=bf16: this CPU has no bf16 units"),
    ("train.precision=fp16", "bad value for train.precision: fp16"),
    ("train.memory_format=nhwc", "bad value for train.memory_format: nhwc"),
    ("train.compile=maybe", "train.compile"),
])
def test_unsupported_modes_are_one_line_exit_2_and_nothing_written(monkeypatch, tmp_path, capsys, override, expected):
    monkeypatch.setattr(speed, "cpu_flags", lambda: set())  # a CPU without bf16 units
    run_dir = tmp_path / "run"
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--run-dir", str(run_dir), "--steps", "500",
                 "--no-progress", "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_offline_runs_check_the_hardware_too(monkeypatch, cartpole_datasets, tmp_path, capsys):
    monkeypatch.setattr(speed, "cpu_flags", lambda: set())
    data = f"{cartpole_datasets / 'expert'}"
    for override in ("train.cudagraphs=true", "train.precision=bf16"):
        assert main(["train", "dt", "--dataset", data, "--run-dir", str(tmp_path / "dt"), "--steps", "10",
                     "--no-progress", "--set", override]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "dt" / "config.toml").exists()


# ----------------------------------------------------------------------------- auto


def test_auto_measures_and_keeps_fp32_unless_bf16_is_clearly_faster(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 3))
    probe = lambda: (net, (torch.zeros(4, 4, 8, 8),))  # noqa: E731
    train = config.TrainConfig(precision="auto", memory_format="auto")
    times = {("fp32", "contiguous"): 1.0, ("fp32", "channels_last"): 0.95, ("bf16", "contiguous"): 0.5,
             ("bf16", "channels_last"): 0.4}
    monkeypatch.setattr(speed, "time_updates", lambda m, a, d, modes: {mode: times[mode] for mode in modes})
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"amx_bf16"})
    plan = speed.resolve(train, CPU, probe)
    assert (plan.precision, plan.memory_format) == ("bf16", "channels_last") and "2.50x" in plan.reason
    times.update({("bf16", "contiguous"): 0.95, ("bf16", "channels_last"): 0.93})  # within the margin: no switch
    plan = speed.resolve(train, CPU, probe)
    assert (plan.precision, plan.memory_format) == ("fp32", "contiguous")
    monkeypatch.setattr(speed, "cpu_flags", lambda: set())  # no units: bf16 is never even timed
    plan = speed.resolve(train, CPU, probe)
    assert plan.precision == "fp32"
    previous = {"precision": "bf16", "memory_format": "channels_last"}  # a resume keeps the recorded picks
    assert speed.resolve(train, CPU, probe, previous).precision == "bf16"


def test_timing_leaves_the_network_and_the_global_rng_alone():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    before = copy.deepcopy(net.state_dict())
    state = torch.random.get_rng_state()
    seconds = speed.time_updates(net, (torch.ones(16, 4),), CPU, [("fp32", "contiguous"), ("bf16", "contiguous")], 2)
    assert set(seconds) == {("fp32", "contiguous"), ("bf16", "contiguous")} and min(seconds.values()) > 0
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


# ----------------------------------------------------------------------------- DQN


def dqn_agent(plan: SpeedPlan, cfg, env):
    agent_cls, _ = agent_classes("dqn")
    agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, CPU, seed=3)
    agent.begin(storage_context(cfg, env, 0))
    agent.plan(10_000)
    agent.accelerate(plan)
    return agent


@pytest.fixture(scope="module")
def dqn_batches():
    """300 replay batches of random CartPole play, and what the agents are built from."""
    cfg = config.build_run_config("dqn-classic", "CartPole-v1", ["replay.capacity=5000"])
    env = make_env(cfg.env, 1, 0)
    source = dqn_agent(SpeedPlan(), cfg, env)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(3000):
        action = rng.integers(2, size=1)
        next_obs, reward, terminated, truncated, info = env.step(action)
        source.buffer.add(obs, action, reward, terminated, truncated, info["final_obs"])
        obs = next_obs
    batches = [copy.deepcopy(source.buffer.sample(64)) for _ in range(UPDATES)]
    return cfg, env, batches


def dqn_losses(agent, batches) -> np.ndarray:
    losses = []
    for i, batch in enumerate(batches):
        losses.append(float(agent.update(batch)["losses/td"]))
        if i % 100 == 99:
            agent.sync_target()
    return np.array(losses)


def test_dqn_bf16_losses_track_fp32_and_every_fp32_quantity_stays_fp32(dqn_batches, monkeypatch):
    cfg, env, batches = dqn_batches
    reference = dqn_losses(dqn_agent(SpeedPlan(), cfg, env), batches)
    seen = []
    real_td_loss = dqn_module.td_loss
    monkeypatch.setattr(dqn_module, "td_loss", lambda q, target, w, kind: seen.append((q.dtype, target.dtype))
                        or real_td_loss(q, target, w, kind))
    agent = dqn_agent(SpeedPlan("bf16"), cfg, env)
    hook_dtypes = []
    agent.online.head.register_forward_hook(lambda m, i, o: hook_dtypes.append(o.dtype))
    bf16 = dqn_losses(agent, batches)
    assert torch.bfloat16 in hook_dtypes  # the head really ran in bf16...
    assert set(seen) == {(torch.float32, torch.float32)}  # ...and Q(s,a) and the TD target reach the loss in fp32
    gap = relative_gap(reference, bf16)
    assert gap[0] < FIRST_TOLERANCE and gap.mean() < MEAN_TOLERANCE, (gap[0], gap.mean())
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in agent.online.parameters())
    assert all(v.dtype == torch.float32 for s in agent.optimizer.state.values() for v in s.values() if v.is_floating_point())
    assert all(t.dtype == torch.float32 for t in agent.state_dict()["online"].values())


def test_dqn_compiled_matches_eager_losses_and_actions(dqn_batches):
    cfg, env, batches = dqn_batches
    eager, compiled = dqn_agent(SpeedPlan(), cfg, env), dqn_agent(SpeedPlan(compile=True), cfg, env)
    few = batches[:60]
    np.testing.assert_allclose(dqn_losses(compiled, few), dqn_losses(eager, few), rtol=1e-4, atol=1e-6)
    states = np.stack([batches[0].obs.numpy()[i] for i in range(16)])
    for batch_size in (1, 3, 16):  # acting batches of several sizes
        assert np.array_equal(eager.act(states[:batch_size], 0.0), compiled.act(states[:batch_size], 0.0))


def test_a_changing_batch_does_not_recompile_on_every_call():
    """After a batch of a second size the graph has a dynamic batch dimension: further sizes reuse it."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    fast = SpeedPlan(compile=True).wrap(net)
    with torch.no_grad():
        fast(torch.ones(8, 4)), fast(torch.ones(5, 4))  # static, then dynamic
        with torch.compiler.set_stance("fail_on_recompile"):
            for n in (3, 7, 11, 2, 64):
                assert fast(torch.ones(n, 4)).shape == (n, 2)


def test_bf16_dqn_run_resumes_exactly_and_checkpoints_hold_fp32(tmp_path, bf16_cpu):
    overrides = TINY + ["train.total_steps=1200", "train.save_replay=true", "train.precision=bf16"]

    def session(run_dir: Path):
        s = build_session(config.build_run_config("dqn-classic", "CartPole-v1", overrides), run_dir)
        s.obs, _ = s.env.reset(seed=s.cfg.train.seed)
        return s

    (tmp_path / "run").mkdir()
    first = session(tmp_path / "run")
    assert first.agent.speed.bf16
    while first.step < 600:
        advance(first)
    path = save_checkpoint(first)
    tensors = [t for t in checkpoint.load(path)["agent"]["online"].values()]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    resumed = session(tmp_path / "run")
    restore_checkpoint(resumed, lambda _: None)
    while first.step < 1200:
        a, b = advance(first), advance(resumed)
        assert np.array_equal(a.actions, b.actions)
    for name, value in first.agent.online.state_dict().items():
        assert torch.equal(value, resumed.agent.online.state_dict()[name]), name


# ----------------------------------------------------------------------------- PPO


def ppo_pair(plans: tuple[SpeedPlan, SpeedPlan], core: str = "lstm"):
    cfg = config.build_run_config("ppo-classic", "CartPole-v1", [f"agent.core={core}", "train.num_envs=4"])
    env = make_env(cfg.env, 4, 0)
    agent_cls, _ = agent_classes("ppo")
    agents = []
    for plan in plans:
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, CPU, seed=5)
        agent.plan(100_000)
        agent.begin(storage_context(cfg, env, 0))
        agent.accelerate(plan)
        agents.append(agent)
    return env, agents


def ppo_lockstep(env, agents, rollouts: int) -> list[list[dict]]:
    """Both agents see the same observations and transitions (the env follows the first agent's
    actions; the second draws from the same exploration state, so its samples match where its
    probabilities do); returns each agent's per-rollout metrics."""
    obs, _ = env.reset(seed=0)
    metrics: list[list[dict]] = [[], []]
    while len(metrics[0]) < rollouts:
        state = agents[0].rng.bit_generator.state
        actions = agents[0].step(obs, 0, 0)
        agents[1].rng.bit_generator.state = state
        agents[1].step(obs, 0, 0)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        t = Transition(obs, actions, reward, terminated, truncated, info.get("final_obs"), next_obs)
        for i, agent in enumerate(agents):
            out = agent.observe(t, 0)
            if out is not None:
                metrics[i].append(out)
        obs = next_obs
    return metrics


def test_ppo_lstm_bf16_losses_track_fp32_and_gae_and_the_core_stay_fp32(monkeypatch):
    env, (fp32, bf16) = ppo_pair((SpeedPlan(), SpeedPlan("bf16")))
    gae_dtypes, core_dtypes = [], []
    real_gae = ppo_module.gae
    monkeypatch.setattr(ppo_module, "gae", lambda *a: gae_dtypes.extend(x.dtype for x in a if torch.is_tensor(x))
                        or real_gae(*a))
    for trunk in bf16.online.trunks():
        trunk.lstm.register_forward_hook(lambda m, i, o: core_dtypes.extend([i[0].dtype, o[0].dtype]))
    metrics = ppo_lockstep(env, (fp32, bf16), rollouts=10)  # 10 x 4 epochs x 4 minibatches = 160 updates
    assert set(gae_dtypes) == {torch.float32} and set(core_dtypes) == {torch.float32}
    for key in ("losses/value_loss", "losses/entropy"):
        a = np.array([float(m[key]) for m in metrics[0]])
        b = np.array([float(m[key]) for m in metrics[1]])
        gap = relative_gap(a, b)
        assert gap[0] < FIRST_TOLERANCE and gap.mean() < MEAN_TOLERANCE, (key, gap)
    assert all(p.dtype == torch.float32 for p in bf16.online.parameters())
    assert all(t.dtype == torch.float32 for t in bf16.state_dict()["online"].values())


def test_ppo_compiled_acts_and_learns_like_eager():
    env, (eager, compiled) = ppo_pair((SpeedPlan(), SpeedPlan(compile=True)), core="none")
    metrics = ppo_lockstep(env, (eager, compiled), rollouts=2)
    for a, b in zip(*metrics):
        assert float(a["losses/value_loss"]) == pytest.approx(float(b["losses/value_loss"]), rel=1e-4)
    obs, _ = env.reset(seed=1)
    assert np.array_equal(eager.act(obs, 0.0), compiled.act(obs, 0.0))


# ----------------------------------------------------------------------------- the Decision Transformer


DT_SETTINGS = ["agent.model.context=5", "agent.model.embed_dim=32", "agent.model.n_layer=1", "agent.model.n_head=2",
               "agent.model.max_timestep=512", "agent.batch_size=16", "train.eval_every=0", "train.log_every=1",
               "train.eval_episodes=1", "train.eval_num_envs=1", "train.torch_threads=1"]


def dt_losses(run_dir: Path) -> np.ndarray:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return np.array([e.value for e in events.Scalars("losses/action_ce")])


def test_dt_bf16_losses_track_fp32_resume_exactly_and_start_line_says_the_mode(cartpole_datasets, tmp_path,
                                                                               capsys, bf16_cpu):
    data = f"{cartpole_datasets / 'expert'},{cartpole_datasets / 'noisy'}"

    def train(run_dir: Path, steps: int, *extra: str) -> int:
        settings = DT_SETTINGS + list(extra)
        return main(["train", "dt", "--dataset", data, "--steps", str(steps), "--run-dir", str(run_dir),
                     "--no-progress", *[x for s in settings for x in ("--set", s)]])

    assert train(tmp_path / "fp32", 200) == 0
    assert "fp32 · eager · no graphs" in capsys.readouterr().out
    assert train(tmp_path / "bf16", 200, "train.precision=bf16") == 0
    assert "bf16 · eager · no graphs" in capsys.readouterr().out
    reference, bf16 = dt_losses(tmp_path / "fp32"), dt_losses(tmp_path / "bf16")
    assert len(reference) == len(bf16) == 200
    gap = relative_gap(reference, bf16)
    assert gap[0] < FIRST_TOLERANCE and gap.mean() < MEAN_TOLERANCE, (gap[0], gap.mean())
    assert train(tmp_path / "half", 100, "train.precision=bf16") == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--steps", "200", "--no-progress"]) == 0
    assert "compute: bf16" in capsys.readouterr().out
    a = checkpoint.load(checkpoint.find(tmp_path / "bf16"))["agent"]["model"]
    b = checkpoint.load(checkpoint.find(tmp_path / "half"))["agent"]["model"]
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == torch.float32 for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------------------- env.async_step in the loop


def test_async_envs_overlap_dqn_updates_with_stepping_and_owe_nothing(tmp_path):
    """With env.async_step the DQN updates owed by a step run between send and recv (while the env
    processes step), observe then finds none owed, and the update count is the schedule's."""
    overrides = TINY + ["train.total_steps=1000", "train.num_envs=2", "env.backend=gymnasium-async",
                        "env.async_step=true"]
    (tmp_path / "run").mkdir()
    s = build_session(config.build_run_config("dqn-classic", "CartPole-v1", overrides), tmp_path / "run")
    try:
        assert s.env.asynchronous
        s.obs, _ = s.env.reset(seed=1)
        in_flight = []
        send, recv = s.env.send, s.env.recv
        s.env.send = lambda actions: (in_flight.append(s.agent.num_updates), send(actions))[1]
        s.env.recv = lambda: (in_flight.append(s.agent.num_updates - in_flight.pop()), recv())[1]
        after_observe = []
        while s.step < 1000:
            advance(s)
            after_observe.append(s.agent.updates_owed(s.step))
        learned_in_flight = sum(in_flight)
        assert s.agent.num_updates == s.agent.updates_due(1000) > 0
        assert learned_in_flight == s.agent.num_updates  # every update ran while a step was in flight
        assert set(after_observe) == {0}
    finally:
        s.env.close(), s.eval_env.close()


# ----------------------------------------------------------------------------- CUDA graphs (run where a GPU is lent)

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def on(device: torch.device, batch):
    """A replay Batch with every tensor on `device`."""
    import dataclasses

    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                         for f in dataclasses.fields(batch)})


@GPU
def test_dqn_cuda_graphs_match_eager_losses_and_actions(dqn_batches):
    """Graph capture fails silently when a replay reads stale inputs or overwritten outputs: the
    graphed agent must compute the eager agent's losses, update after update, and its actions."""
    cfg, env, batches = dqn_batches
    cuda = torch.device("cuda")
    agent_cls, _ = agent_classes("dqn")
    agents = []
    for plan in (SpeedPlan(device_type="cuda"), SpeedPlan(compile=True, cudagraphs=True, device_type="cuda")):
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, cuda, seed=3)
        agent.plan(10_000)
        agent.accelerate(plan)
        agents.append(agent)
    few = [on(cuda, b) for b in batches[:60]]
    np.testing.assert_allclose(dqn_losses(agents[1], few), dqn_losses(agents[0], few), rtol=1e-3, atol=1e-5)
    states = batches[0].obs.numpy()[:16]
    for batch_size in (1, 4, 16):
        assert np.array_equal(agents[0].act(states[:batch_size], 0.0), agents[1].act(states[:batch_size], 0.0))


@GPU
def test_ppo_cuda_graphs_match_eager():
    cfg = config.build_run_config("ppo-classic", "CartPole-v1", ["train.num_envs=4", "train.device=cuda"])
    env = make_env(cfg.env, 4, 0)
    agent_cls, _ = agent_classes("ppo")
    agents = []
    for plan in (SpeedPlan(device_type="cuda"), SpeedPlan(compile=True, cudagraphs=True, device_type="cuda")):
        agent = agent_cls(cfg.agent, env.single_observation_space, env.single_action_space, torch.device("cuda"), seed=5)
        agent.plan(100_000)
        agent.begin(storage_context(cfg, env, 0))
        agent.accelerate(plan)
        agents.append(agent)
    metrics = ppo_lockstep(env, agents, rollouts=2)
    for a, b in zip(*metrics):
        assert float(a["losses/value_loss"]) == pytest.approx(float(b["losses/value_loss"]), rel=1e-3)
    obs, _ = env.reset(seed=1)
    assert np.array_equal(agents[0].act(obs, 0.0), agents[1].act(obs, 0.0))


@GPU
def test_graphed_dqn_run_from_the_cli_with_the_replay_on_the_gpu(tmp_path, capsys):
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "2000", "--run-dir", str(tmp_path / "run"),
                 "--no-progress", *[x for s in TINY + ["train.device=cuda", "replay.on_device=true",
                                                       "train.cudagraphs=true"] for x in ("--set", s)]]) == 0
    assert "compiled · CUDA graphs" in capsys.readouterr().out


def test_eval_acts_in_the_runs_recorded_precision(tmp_path, bf16_cpu):
    from rlsuite.trained.policy import load_policy

    run_dir = tmp_path / "run"
    assert main(["train", "dqn-classic", "--env", "CartPole-v1", "--steps", "300", "--run-dir", str(run_dir),
                 "--no-progress", *[x for s in TINY + ["train.precision=bf16"] for x in ("--set", s)]]) == 0
    assert speed.load(run_dir)["precision"] == "bf16"
    policy = load_policy(run_dir, num_envs=1)
    try:
        assert policy.agent.speed.bf16 and not policy.agent.speed.compile
    finally:
        policy.env.close()
