"""Frozen parameters stay frozen: `finetune.freeze` parts are left bitwise alone by NaP's projection
and GMP's masks, and with separate actor and critic trunks 'encoder' is the actor's encoder while
the critic warm-up trains the whole critic (its trunk and value head)."""
from __future__ import annotations

import pytest
import torch

from rlsuite.loops.finetune import part_of, set_frozen
from rlsuite.nn.nap import NaPConfig
from rlsuite.nn.pruning import GMPConfig
from rlsuite.retention.config import PARTS
from tests.test_ppo import Driver, small_cfg


pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: one thread is fastest


def moved_after_updates(frozen: set[str], **cfg) -> dict[str, bool]:
    """{parameter name: changed at all} after 3 rollouts of updates with `frozen` parts frozen."""
    drive = Driver(small_cfg(shared_trunk=False, **cfg), total=4 * 16 * 4)
    with torch.no_grad():  # a parent's weights, adopted after NaP measured its radii (as rlsuite finetune does)
        for param in drive.agent.online.parameters():
            param.mul_(1.5)
    set_frozen(drive.agent.online, frozen)
    before = {n: p.detach().clone() for n, p in drive.agent.online.named_parameters()}
    updates = 0
    while updates < 3:
        _, metrics = drive.advance()
        updates += metrics is not None
    return {n: not torch.equal(before[n], p) for n, p in drive.agent.online.named_parameters()}


def test_separate_critic_trunk_is_part_of_value():
    assert part_of("critic_trunk.encoder.net.1.weight") == "value"
    assert part_of("critic_trunk.lstm.weight_ih_l0") == "value"
    assert part_of("actor_trunk.encoder.net.1.weight") == "encoder"
    assert part_of("actor_trunk.lstm.weight_ih_l0") == "core"
    assert part_of("actor_trunk.lru.lru.nu_log") == "core" and part_of("actor_trunk.lru.glu.weight") == "core"
    assert part_of("critic_trunk.lru.lru.nu_log") == "value"
    assert part_of("encoder.net.1.weight") == "encoder"  # a shared trunk / DQN


@pytest.mark.parametrize("hooks", [
    {},
    {"nap": NaPConfig(norm="layer", project=True)},
    {"gmp": GMPConfig(sparsity=0.5, start=0.0, end=0.5, update_freq=1)},
    {"nap": NaPConfig(norm="layer", project=True), "gmp": GMPConfig(sparsity=0.5, start=0.0, end=0.5, update_freq=1)},
], ids=["plain", "nap", "gmp", "nap+gmp"])
def test_freeze_encoder_keeps_the_actors_encoder_bitwise_with_nap_and_gmp(hooks):
    moved = moved_after_updates({"encoder"}, **hooks)
    for name, changed in moved.items():
        if name.startswith("actor_trunk.encoder."):
            assert not changed, f"frozen {name} was rewritten"
        elif name.startswith("critic_trunk.encoder.") or name.startswith(("policy.", "value.")):
            assert changed, f"{name} should train"


def test_critic_warmup_trains_the_whole_critic_and_nothing_else():
    moved = moved_after_updates(set(PARTS) - {"value"}, nap=NaPConfig(norm="layer", project=True))
    critic = [n for n in moved if n.startswith(("critic_trunk.", "value."))]
    assert critic and all(moved[n] for n in critic), {n: moved[n] for n in critic}
    assert not any(changed for n, changed in moved.items() if n not in critic)


def test_gmp_leaves_a_frozen_kernel_dense_and_reports_it():
    gmp = GMPConfig(sparsity=0.5, start=0.0, end=0.5, update_freq=1, distribution="uniform")
    drive = Driver(small_cfg(shared_trunk=False, gmp=gmp), total=4 * 16 * 4)
    set_frozen(drive.agent.online, {"encoder"})
    updates = 0
    while updates < 3:
        _, metrics = drive.advance()
        updates += metrics is not None
    report = drive.agent.pruner.report()
    assert report["sparsity/actor_trunk.encoder.net.1.weight"] == 0.0
    assert report["sparsity/critic_trunk.encoder.net.1.weight"] > 0.0
