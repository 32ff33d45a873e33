"""LoRA memory fine-tuning of DT-Mem (rlsuite.nn.lora, rlsuite finetune --lora, rlsuite export
--merge-lora): only adapters train, the base weights stay bitwise the parent's, and the merged export
computes the same function."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from rlsuite.run import checkpoint
from rlsuite.cli import main
from rlsuite.data import Dataset
from rlsuite.data.sequences import SequenceSampler
from rlsuite.nn.lora import LoRAConfig, LoRALinear, add_lora, merge_lora

TINY = ["agent.model.context=4", "agent.model.embed_dim=16", "agent.model.n_layer=1", "agent.model.n_head=2",
        "agent.model.max_timestep=512", "agent.batch_size=8", "agent.warmup_updates=0", "agent.lr=1e-2",
        "agent.encoder.hidden=8", "agent.memory.placement=model", "agent.memory.slots=4", "train.eval_episodes=1",
        "train.eval_num_envs=1", "train.torch_threads=1"]


def test_lora_linear_starts_at_the_base_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(base, rank=2, alpha=1.0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(lora(x), base(x), atol=0, rtol=0)  # B = 0: the update starts at zero
    with torch.no_grad():
        lora.lora_B.normal_()
    expected = base(x) + 0.5 * x @ lora.lora_A.t() @ lora.lora_B.t()  # alpha / r = 0.5
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.merged()(x), lora(x), atol=1e-6, rtol=0)
    assert [p.requires_grad for p in base.parameters()] == [False, False]


def test_targets_memory_or_all_and_merge():
    from rlsuite.nn.encoders import EncoderConfig, make_encoder
    from rlsuite.nn.memory import MemoryConfig
    from rlsuite.nn.transformer import DecisionTransformer, TransformerConfig
    import gymnasium as gym

    space = gym.spaces.Box(-1, 1, (3,), np.float32)

    def model():
        torch.manual_seed(0)
        return DecisionTransformer(TransformerConfig(context=3, embed_dim=8, n_layer=1, n_head=2, max_timestep=8),
                                   make_encoder(EncoderConfig(kind="mlp", hidden=(4,)), space), 3,
                                   MemoryConfig(placement="model", slots=2))

    m = model()
    names = add_lora(m, LoRAConfig(target="memory"))
    assert names and all(n.startswith("memory.") for n in names)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    memory = [f"memory.{x}" for x in ("read_q", "read_k", "read_v", "write_q", "write_k", "write_v", "erase", "add", "out")]
    assert sorted(names) == sorted(memory)
    block = ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.0", "blocks.0.mlp.2"]
    everywhere = add_lora(model(), LoRAConfig(target="all"))
    # the released code adapts its GPT stack (blocks holding the memory): no encoder, obs embedding or heads
    assert sorted(everywhere) == sorted(block + memory)
    assert merge_lora(m) == len(names) and not any(isinstance(x, LoRALinear) for x in m.modules())
    def plain():
        return DecisionTransformer(TransformerConfig(context=3, embed_dim=8, n_layer=1, n_head=2, max_timestep=8),
                                   make_encoder(EncoderConfig(kind="mlp", hidden=(4,)), space), 3,
                                   MemoryConfig(placement="none"))

    assert sorted(add_lora(plain(), LoRAConfig(target="all"))) == sorted(block)  # exactly the block linears
    with pytest.raises(ValueError, match="no working memory"):
        add_lora(plain(), LoRAConfig(target="memory"))
    per_block = DecisionTransformer(TransformerConfig(context=3, embed_dim=8, n_layer=1, n_head=2, max_timestep=8),
                                    make_encoder(EncoderConfig(kind="mlp", hidden=(4,)), space), 3,
                                    MemoryConfig(placement="block", slots=2))
    in_block = ["blocks.0." + n for n in memory]
    assert sorted(add_lora(per_block, LoRAConfig(target="memory"))) == sorted(in_block)  # blocks.N.memory.*


@pytest.fixture
def cartpole(cartpole_datasets):
    """The shared CartPole datasets (conftest.py): `a` pre-trains, `b` is the new data."""
    return {"a": cartpole_datasets / "expert", "b": cartpole_datasets / "noisy"}


def _sets(items):
    return [x for s in items for x in ("--set", s)]


def test_finetune_lora_memory_trains_adapters_only_and_merged_export_matches(cartpole, tmp_path, capsys):
    parent, child = tmp_path / "parent", tmp_path / "child"
    assert main(["train", "dt", "--dataset", str(cartpole["a"]), "--steps", "5", "--run-dir", str(parent),
                 "--no-progress", *_sets(TINY)]) == 0
    capsys.readouterr()
    assert main(["finetune", "--from", str(parent), "--dataset", str(cartpole["b"]), "--lora", "memory",
                 "--steps", "5", "--run-dir", str(child), "--no-progress"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    trainable = int(line.split(" trainable")[0].split(", ")[-1].replace(",", ""))
    assert 0 < trainable < 10_000  # the adapters of the memory's linear layers only
    before = checkpoint.load(checkpoint.find(parent))["agent"]["model"]
    after = checkpoint.load(checkpoint.find(child))["agent"]["model"]
    for key, value in before.items():  # every base weight bitwise the parent's
        wrapped = key.rpartition(".")[0] + ".base." + key.rpartition(".")[2]
        assert torch.equal(after.get(wrapped, after.get(key)), value), key
    assert any(k.endswith("lora_B") and v.abs().max() > 0 for k, v in after.items())  # adapters moved
    assert main(["export", str(child), "--merge-lora"]) == 0
    merged = checkpoint.load(child / "export" / "merged.pt")
    assert merged["config"]["agent"]["lora"]["target"] == "none" and not any("lora_" in k for k in merged["agent"]["model"])
    from rlsuite.agents.dt import DT
    from rlsuite import config
    def build(data):
        cfg = config.empty_run_config("dt")
        config.apply_file(cfg, {k: v for k, v in data["config"].items() if k in config.SECTIONS}, "test")
        ds = Dataset(cartpole["b"])
        agent = DT(cfg.agent, ds.observation_space, ds.action_space)
        agent.load_state_dict(data["agent"])
        return agent.model.eval()

    batch = SequenceSampler([Dataset(cartpole["b"])]).sample_sequences(8, 4, np.random.default_rng(3))
    args = (batch.obs, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask)
    with torch.no_grad():
        lora_out = build(checkpoint.load(checkpoint.find(child)))(*args)["action"]
        merged_out = build(merged)(*args)["action"]
    torch.testing.assert_close(merged_out, lora_out, atol=1e-5, rtol=1e-5)
    assert main(["eval", str(child / "export" / "merged.pt"), "--episodes", "1", "--num-envs", "1"]) == 0


def test_lora_bad_input(cartpole, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main(["train", "dt", "--dataset", str(cartpole["a"]), "--steps", "2", "--run-dir", str(plain),
                 "--no-progress", *_sets([s for s in TINY if "memory" not in s])]) == 0
    capsys.readouterr()
    cases = [(["finetune", "--from", str(plain), "--dataset", str(cartpole["b"]), "--lora", "memory"], "no working memory"),
             (["finetune", "--from", str(plain), "--lora", "all"], "--dataset"),
             (["export", str(plain), "--merge-lora"], "no LoRA adapters"),
             (["finetune", "--from", str(plain), "--dataset", str(cartpole["b"]), "--lora", "all",
               "--set", "agent.lora.lr_scale=0"], "agent.lora.lr_scale")]
    for args, message in cases:
        assert main(args + (["--run-dir", str(tmp_path / "x")] if args[0] == "finetune" else [])) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_adapter_learning_rate_scale(cartpole, tmp_path):
    """agent.lora.lr_scale puts the adapters in an AdamW group of their own at that multiple of the
    rate. Adam's first step moves a parameter by lr * g / (|g| + eps), so after one update from the
    same parent and batch the adapters' B (zero at the start) is exactly 10x further at scale 10."""
    parent = tmp_path / "parent"
    assert main(["train", "dt", "--dataset", str(cartpole["a"]), "--steps", "5", "--run-dir", str(parent),
                 "--no-progress", *_sets(TINY)]) == 0
    moved = {}
    for scale in (1, 10):
        child = tmp_path / f"child-{scale}"
        assert main(["finetune", "--from", str(parent), "--dataset", str(cartpole["b"]), "--lora", "memory",
                     "--steps", "1", "--run-dir", str(child), "--no-progress",
                     "--set", f"agent.lora.lr_scale={scale}"]) == 0
        state = checkpoint.load(checkpoint.find(child))["agent"]
        assert len(state["optimizer"]["param_groups"]) == (2 if scale == 1 else 3)  # scale 1: the parent's groups
        moved[scale] = torch.cat([v.flatten() for k, v in sorted(state["model"].items()) if k.endswith("lora_B")])
    assert moved[1].abs().max() > 0
    torch.testing.assert_close(moved[10], 10 * moved[1], rtol=1e-4, atol=1e-12)
