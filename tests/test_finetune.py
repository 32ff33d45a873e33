"""`rlsuite finetune` end to end on the real closefar:chain task: the parent's weights and a frozen
teacher inside the run, every method resuming exactly, freezing and the critic warm-up, FAR
evaluation records, and bad input refused before anything is written."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlsuite.run import checkpoint
from rlsuite.cli import main
from rlsuite.loops.finetune import part_of

QUIET = ["--no-progress", "--set", "train.status_every=0"]


def cli(*argv: str) -> int:
    return main([*argv, *QUIET]) if argv[0] in ("train", "finetune") else main(list(argv))


@pytest.fixture(scope="module")
def parents(tmp_path_factory) -> dict[str, Path]:
    """A PPO and a DQN agent pre-trained a little from FAR starts (the lock) of closefar:chain."""
    root = tmp_path_factory.mktemp("parents")
    out = {}
    for algo, steps in (("ppo", 8192), ("dqn", 3000)):
        out[algo] = root / algo
        assert cli("train", f"{algo}-closefar", "--env", "closefar:chain", "--set", "env.start=far", "--steps",
                   str(steps), "--run-dir", str(out[algo]), "--set", "train.eval_every=0") == 0
    return out


def latest(run: Path) -> dict:
    return checkpoint.load(checkpoint.find(run))


def finetune(parent: Path, run: Path, *extra: str, steps: int = 4096) -> int:
    return cli("finetune", "--from", str(parent), "--env", "closefar:chain", "--steps", str(steps),
               "--run-dir", str(run), "--set", "finetune.data_steps=512", "--set", "finetune.far_eval_episodes=4",
               "--set", "train.eval_every=0", *extra)


def test_teacher_is_the_parent_and_never_changes(parents, tmp_path) -> None:
    run = tmp_path / "ft"
    assert finetune(parents["ppo"], run, "--retention", "bc,ks", "--set", "finetune.far_eval_every=2048") == 0
    parent, done = latest(parents["ppo"])["agent"]["online"], latest(run)["agent"]
    teacher = done["teacher"]["weights"]
    assert parent.keys() == teacher.keys()
    assert all(torch.equal(parent[k], teacher[k]) for k in parent)
    assert any(not torch.equal(parent[k], done["online"][k]) for k in parent)  # the student trained
    config = (run / "config.toml").read_text()
    assert f'parent = "{checkpoint.find(parents["ppo"])}"' in config and 'retention = ["bc", "ks"]' in config
    far = [json.loads(line) for line in (run / "far.jsonl").read_text().splitlines()]
    assert [r["step"] for r in far] == [0, 2048, 4096]
    assert far[0]["far_kl"] == pytest.approx(0.0, abs=1e-6)  # at step 0 the student is the teacher
    assert (run / "teacher_data" / "manifest.json").is_file()
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"retention/bc_loss", "retention/bc_coef", "retention/ks_loss", "retention/ks_coef",
            "far/return", "far/success", "far/kl"} <= tags
    ks = [e.value for e in events.Scalars("retention/ks_coef")]
    updates = [round(math.log(v / 0.5) / math.log(0.99998)) for v in ks]
    assert all(v == pytest.approx(0.5 * 0.99998 ** k, rel=1e-6) for v, k in zip(ks, updates))  # 0.5 x 0.99998^k
    assert updates == sorted(updates) and updates[-1] > updates[0] > 0  # k counts gradient updates


@pytest.mark.parametrize("algo,methods", [("ppo", "ewc"), ("ppo", "bc,ks"), ("ppo", "none"), ("dqn", "em,bc,ks")])
def test_fine_tuning_resumes_exactly(parents, tmp_path, algo, methods) -> None:
    """Half the steps, then `train --resume` to the end == all the steps in one go, bitwise: weights,
    teacher, optimizer-driven updates, the terms' states (BC's sampler, KS's schedule, EM's sampler)."""
    extra = ["--retention", methods, "--set", "finetune.far_eval_every=2048", "--set", "finetune.ewc.fisher_states=64"]
    if algo == "dqn":
        extra += ["--set", "agent.learning_starts=256", "--set", "finetune.em.transitions=256",
                  "--set", "train.save_replay=true"]  # DQN's exact resume needs its replay buffer
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert finetune(parents[algo], straight, *extra, steps=4096) == 0
    assert finetune(parents[algo], halves, *extra, steps=2048) == 0
    assert cli("train", "--resume", str(halves), "--steps", "4096") == 0
    if algo == "dqn":  # every method logs its loss and coefficient, EM too
        events = EventAccumulator(str(straight), size_guidance={"scalars": 0})
        events.Reload()
        assert {"retention/em_loss", "retention/em_coef", "retention/bc_loss", "retention/ks_coef"} \
            <= set(events.Tags()["scalars"])
    a, b = latest(straight)["agent"], latest(halves)["agent"]
    for key in ("online", "teacher"):
        wa = a[key]["weights"] if algo == "ppo" and key == "teacher" else a[key]
        wb = b[key]["weights"] if algo == "ppo" and key == "teacher" else b[key]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), key
    assert repr(a["retention"]) == repr(b["retention"])
    far_a = [json.loads(x)["mean"] for x in (straight / "far.jsonl").read_text().splitlines()]
    far_b = [json.loads(x)["mean"] for x in (halves / "far.jsonl").read_text().splitlines()]
    assert far_a == far_b  # steps 0, 2048 (the periodic one; the first half's final one), 4096


def test_freeze_keeps_the_encoder_and_warmup_trains_the_value_head_alone(parents, tmp_path) -> None:
    parent = latest(parents["ppo"])["agent"]["online"]
    run = tmp_path / "frozen"
    assert finetune(parents["ppo"], run, "--freeze", "encoder", "--critic-warmup", "2048", "--retention", "ks",
                    "--set", "train.checkpoint_every=2048", "--set", "train.keep_checkpoints=5") == 0
    at_2048 = checkpoint.load(run / "checkpoints" / "ckpt_000000002048.pt")["agent"]["online"]
    final = latest(run)["agent"]["online"]
    for name, weights in parent.items():
        moved_early = not torch.equal(weights, at_2048[name])
        moved = not torch.equal(weights, final[name])
        assert moved_early == (part_of(name) == "value"), name  # warm-up: the value head alone
        assert moved == (part_of(name) != "encoder"), name  # then everything but the frozen encoder
    # rollouts of 8 envs x 128 steps end at 1024, 2048 (both in the warm-up), 3072 and 4096: KS's
    # schedule counts only the 2 x 16 updates of the actor, and the lr anneal skips 2 rollouts
    agent = latest(run)["agent"]
    assert agent["retention"] == [{"updates": 32}] and agent["counters"]["warmup_rollouts"] == 2


@pytest.mark.parametrize("args,message", [
    (["--retention", "lwf"], "finetune.retention"),
    (["--retention", "em"], "em (episodic memory) needs a replay buffer"),
    (["--freeze", "brain"], "finetune.freeze"),
    (["--set", "finetune.bc.coef=-1"], "finetune.bc.coef"),
    (["dqn-closefar"], "holds a ppo agent"),
])
def test_bad_input_is_one_line_and_writes_nothing(parents, tmp_path, capsys, args, message) -> None:
    run = tmp_path / "never"
    capsys.readouterr()
    code = cli("finetune", "--from", str(parents["ppo"]), "--env", "closefar:chain", "--run-dir", str(run), *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not run.exists()


def test_a_missing_parent_is_one_line(tmp_path, capsys) -> None:
    code = cli("finetune", "--from", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "ft"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not (tmp_path / "ft").exists()


def test_recurrent_kickstarting_replays_the_teachers_own_state() -> None:
    """With an LSTM, KS compares student and teacher on the rollout's sequences, the teacher from its
    own state carried across rollouts. With a learning rate too small to move a float32 weight the
    student stays the teacher, so KL(pi* || pi) must be exactly 0 at every update, many episode
    starts and rollouts later; a teacher replayed from a zero state instead would disagree."""
    from tests.test_ppo import Driver, small_cfg
    from rlsuite.retention.config import KSConfig
    from rlsuite.retention.terms import Kickstarting

    drive = Driver(small_cfg(core="lstm", lstm_hidden=16, lr=3e-3, num_minibatches=1, update_epochs=1))
    for _ in range(16 * 40):  # a teacher whose actions depend on its recurrent state
        drive.advance()
    drive.agent.cfg.lr = 1e-30
    drive.agent.set_teacher()
    drive.agent.retention = [Kickstarting(KSConfig(coef=1.0))]
    losses, zero_state = [], []
    for _ in range(16 * 6):
        _, metrics = drive.advance()
        if metrics is not None:
            losses.append(float(metrics["retention/ks_loss"]))
            r = drive.agent.rollout  # the teacher from a zero state on the rollout just used
            with torch.no_grad():
                student = drive.agent.online(r.obs.flatten(0, 1), r.initial_state, r.starts)[0]
                blank = drive.agent.teacher(r.obs.flatten(0, 1), torch.zeros_like(r.initial_state), r.starts)[0]
            from rlsuite.retention.losses import kl_teacher_student
            zero_state.append(float(kl_teacher_student(blank, student)))
    assert len(losses) == 6 and all(v == 0.0 for v in losses), losses
    assert max(zero_state[1:]) > 1e-6  # the check is sensitive: a zero teacher state gives a nonzero KL


def test_runs_written_with_a_renamed_key_still_load() -> None:
    from rlsuite import config
    cfg = config.empty_run_config("ppo")
    config.apply_file(cfg, {"finetune": {"bc": {"batch_size": 64}}}, "an old config.toml")
    assert cfg.finetune.bc.minibatch == 64


def test_critic_warmup_starts_ks_decay_and_lr_anneal_with_the_actor() -> None:
    """While the actor is frozen (a critic warm-up of W rollouts) KS's coefficient stays at its
    initial value and the lr at the un-annealed lr; from the first actor update they follow their
    schedules as if the run started there: rollout j after the warm-up anneals to
    lr (1 - j / (T - W)) (CleanRL's 1 - (iteration - 1) / N over the T - W actor rollouts), and its
    last update's KS coefficient is coef decay^(4 j + 3) (4 updates per rollout, decay after use)."""
    from tests.test_ppo import Driver, small_cfg
    from rlsuite.loops.finetune import set_frozen
    from rlsuite.retention.config import PARTS, KSConfig
    from rlsuite.retention.terms import Kickstarting

    lr, total, warm = 1e-3, 6400, 3
    drive = Driver(small_cfg(lr=lr, anneal_lr=True), total=total)  # 4 envs x 16 steps: T = 100 rollouts
    rollouts = total // 4 // 16
    drive.agent.set_teacher()
    drive.agent.retention = [Kickstarting(KSConfig(coef=0.5, decay=0.9))]
    set_frozen(drive.agent.online, set(PARTS) - {"value"})
    seen = []
    while len(seen) < warm + 5:
        if len(seen) == warm:
            set_frozen(drive.agent.online, set())  # the warm-up ends: the actor trains
        _, metrics = drive.advance()
        if metrics is not None:
            seen.append((metrics["charts/learning_rate"], metrics["retention/ks_coef"]))
    assert seen[:warm] == [(lr, 0.5)] * warm
    assert drive.agent.retention[0].updates == 5 * 4 and drive.agent.warmup_rollouts == warm
    for j, (got_lr, got_coef) in enumerate(seen[warm:]):
        assert got_lr == pytest.approx(lr * (1 - j / (rollouts - warm)), rel=1e-12)
        assert got_coef == pytest.approx(0.5 * 0.9 ** (4 * j + 3), rel=1e-12)
