"""`rlsuite bench dt`: rlsuite's DT and Hugging Face's DecisionTransformerModel at the bench's sizes
have matching parameter counts and settings, compute the same loss on the same batch, and a --quick
measurement through the CLI returns records for both sides and their ratio. Needs transformers (the
`transformers` extra). Speed is never asserted."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")

from rlsuite.bench.dt import make_pool  # noqa: E402
from rlsuite.bench.dt_settings import PARAM_TOLERANCE, SIZES, build_rlsuite, rlsuite_config, settings  # noqa: E402
from rlsuite.bench import modes  # noqa: E402
from rlsuite.bench.dt_peers import (build_hf, hf_config, hf_inputs, hf_loss, hf_update,  # noqa: E402
                                    parameter_counts)
from tests.bench_records import assert_names_its_measurement, cpuinfo_bf16_flags  # noqa: E402


@pytest.mark.parametrize("size", list(SIZES))
def test_parameter_counts_and_sizes_agree(size):
    s = settings(size)
    counts = parameter_counts(s, 4, 2)
    for key in ("total", "without_timestep_table"):
        ours, theirs = counts["rlsuite"][key], counts["hf"][key]
        assert abs(ours - theirs) / theirs < PARAM_TOLERANCE, (key, ours, theirs)
    a, c = rlsuite_config(s).agent, hf_config(s, 4, 2)
    m = a.model
    assert (m.embed_dim, m.n_layer, m.n_head, m.context) == (c.hidden_size, c.n_layer, c.n_head, s["context"])
    assert c.n_inner == 4 * m.embed_dim and c.activation_function == "gelu"  # rlsuite's blocks: 4d GELU MLPs
    assert m.max_timestep == c.max_ep_len == s["max_timestep"]
    assert m.dropout == c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == s["dropout"]
    assert m.returns == "continuous" and not c.action_tanh and c._attn_implementation == "sdpa"
    assert a.encoder.kind == "mlp" and tuple(a.encoder.hidden) == ()  # observation token: one Linear, as HF's
    assert a.batch_size == s["batch_size"] and a.warmup_updates == 0 and a.lr == s["lr"]
    assert tuple(a.betas) == tuple(s["betas"]) and a.max_grad_norm == s["max_grad_norm"] == 1.0
    assert s["tokens_per_update"] == 3 * s["context"] * s["batch_size"]
    if size == "default":  # the dt preset's size
        assert (m.embed_dim, m.n_layer, m.n_head, m.context, a.batch_size) == (128, 3, 4, 20, 64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    s = {**settings("small"), "dataset_steps": 600, "pool": 2}
    pool = make_pool(s, tmp_path_factory.mktemp("bench-dt"))
    return s, pool


def test_both_sides_compute_the_same_loss_on_the_same_batch(small):
    s, pool = small
    batch, n = pool["batches"][0], int(pool["action_space"].n)
    assert batch.obs.shape[:2] == batch.actions.shape == (s["batch_size"], s["context"])
    assert int(batch.mask.sum()) == batch.valid_steps < batch.mask.numel()  # real data: some windows padded
    agent = build_rlsuite(s, pool["observation_space"], pool["action_space"])
    model, optimizer = build_hf(s, 4, n)
    inputs = hf_inputs(batch, n, s["max_timestep"])
    assert inputs["states"].shape == (s["batch_size"], s["context"], 4) and inputs["actions"].shape[-1] == n
    # Same logits on both sides (action heads zeroed, the same bias) -> the same number, which is the
    # cross-entropy of softmax(bias) averaged over the batch's real steps only.
    bias = torch.tensor([0.4, -0.3])
    with torch.no_grad():
        for head in (agent.model.action_head, model.predict_action[0]):
            head.weight.zero_()
            head.bias.copy_(bias)
    agent.model.eval()
    model.eval()
    logp = torch.log_softmax(bias, 0)
    expected = -float(logp[batch.actions[batch.mask]].sum()) / batch.valid_steps
    with torch.no_grad():
        ours = float(agent.losses(batch)["action_ce"])
        theirs = float(hf_loss(model, inputs))
    assert ours == pytest.approx(expected, rel=1e-5) and theirs == pytest.approx(expected, rel=1e-5)
    # One full update on each side trains the observation embedding (the token the logits read).
    obs_before = agent.model.obs_embed.weight.detach().clone(), model.embed_state.weight.detach().clone()
    loss_ours = agent.update(batch)["losses/action_ce"]
    loss_theirs = hf_update(model, optimizer, inputs, s["max_grad_norm"])
    assert math.isfinite(loss_ours) and math.isfinite(loss_theirs)
    assert not torch.equal(obs_before[0], agent.model.obs_embed.weight)
    assert not torch.equal(obs_before[1], model.embed_state.weight)


def test_quick_measurement_through_the_cli():
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "dt", "--quick", "--steps", "2", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [(r["impl"], r["mode"]) for r in records] == [("rlsuite", "fp32"), ("hf", "fp32"), ("rlsuite", "fast")]
    for r in records:
        assert r["bench"] == "dt" and r["size"] == "small" and r["device"] == "cpu" and "error" not in r
        assert r["tokens_per_s"]["median"] > 0 and r["updates"] == 2
        assert r["tokens_per_update"] == 3 * SIZES["small"]["context"] * SIZES["small"]["batch_size"]
        assert_names_its_measurement(r, r["impl"], r["mode"])
    assert records[1]["attention"] == "sdpa"
    fast = records[2]  # default: precision auto, measured on the DT's network as train() measures it
    assert fast["requested"]["precision"] == "auto" and not fast["compile"]
    assert fast["speed_reason"].startswith("auto")  # what it measured, or why it measured nothing
    if not {"avx512_bf16", "amx_bf16"} & set(cpuinfo_bf16_flags()):
        assert fast["precision"] == "fp32"  # no bf16 units: bf16 is never even timed
    else:
        assert fast["precision"] in ("fp32", "bf16") and "bf16" in fast["speed_reason"]
    for ours in (records[0], fast):
        assert ours["ratio_vs_hf"] == pytest.approx(
            ours["tokens_per_s"]["median"] / records[1]["tokens_per_s"]["median"], rel=1e-2)
        assert f"ratio rlsuite-{ours['mode']} / hf" in proc.stderr  # the readable table


@pytest.mark.parametrize("fast, says", [("agent.lr=1e-3", "maps only train.precision"),
                                        ("train.cudagraphs=true", "needs --device cuda")])
def test_fast_keys_the_dt_bench_cannot_map_are_a_one_line_error(fast, says):
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "dt", "--quick", "--fast", fast],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


def test_cuda_without_a_gpu_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "dt", "--quick", "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a GPU" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_memory_pair_through_the_cli():
    """`bench dt --memory`: DT-Mem against the parameter-matched DT, both sides the study's presets
    (sizes within 1%, the memory side larger by its memory), each rate and memory measured."""
    cmd = [sys.executable, "-m", "rlsuite.cli", "bench", "dt", "--memory", "--quick", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mem, plain = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert (mem["preset"], plain["preset"]) == ("dtmem-minatar", "mgdt-minatar-matched")
    assert abs(mem["params"] - plain["params"]) / plain["params"] < 0.01
    for r in (mem, plain):
        assert r["tokens_per_s"]["median"] > 0 and r["train_rss_mib"] >= 0 and r["peak_rss_mib"] > r["train_rss_mib"]
    assert mem["ratio_vs_matched_dt"] == pytest.approx(
        mem["tokens_per_s"]["median"] / plain["tokens_per_s"]["median"], rel=1e-2)
    assert "DT-Mem / matched DT" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "rlsuite.cli", "bench", "dt", "--memory", "--size", "small"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
