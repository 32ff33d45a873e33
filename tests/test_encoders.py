"""Encoders: shapes per kind, width scaling, Impala depth, Nature parameter count, errors."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlsuite.errors import UserError
from rlsuite.nn.encoders import (
    EncoderConfig,
    NetHackEncoder,
    auto_kind,
    make_encoder,
)
from rlsuite.nn.nethack import normalize_blstats

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (4, 10, 10), bool)
CARTPOLE = gym.make("CartPole-v1").observation_space
NETHACK = gym.spaces.Dict(  # the keys rlsuite's NetHackGame returns (rlsuite/envs/nethack.py)
    {
        "blstats": gym.spaces.Box(-(2**31), 2**31 - 1, (27,), np.int64),
        "tty_chars": gym.spaces.Box(0, 255, (24, 80), np.uint8),
        "tty_colors": gym.spaces.Box(0, 31, (24, 80), np.int8),
        "tty_cursor": gym.spaces.Box(0, 255, (2,), np.uint8),
        "message": gym.spaces.Box(0, 255, (256,), np.uint8),
        "prev_action": gym.spaces.Box(0, 22, (1,), np.int64),
    }
)


def batch(space: gym.Space, n: int = 2):
    """A batch of real samples from the space, as tensors."""
    if isinstance(space, gym.spaces.Dict):
        return {k: torch.as_tensor(np.stack([space[k].sample() for _ in range(n)])) for k in space.spaces}
    return torch.as_tensor(np.stack([space.sample() for _ in range(n)]))


def convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def kernel_params(net: nn.Module) -> int:
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize(
    "kind,space,dim",
    [
        ("nature", ATARI, 512),
        ("impala", ATARI, 512),
        ("impala", MINATAR, 512),
        ("minatar", MINATAR, 128),
        ("mlp", CARTPOLE, 64),
        ("nethack", NETHACK, 256),
    ],
)
def test_output_shape(kind: str, space: gym.Space, dim: int) -> None:
    enc = make_encoder(EncoderConfig(kind=kind), space)
    out = enc(batch(space, 3))
    assert enc.output_dim == dim
    assert out.shape == (3, dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "space,kind", [(ATARI, "nature"), (MINATAR, "minatar"), (CARTPOLE, "mlp"), (NETHACK, "nethack")]
)
def test_auto_picks_by_space(space: gym.Space, kind: str) -> None:
    assert auto_kind(space) == kind
    enc = make_encoder(EncoderConfig(), space)
    assert enc(batch(space)).shape == (2, enc.output_dim)


def test_uint8_is_scaled_inside() -> None:
    enc = make_encoder(EncoderConfig(kind="nature"), ATARI)
    x = batch(ATARI)
    torch.testing.assert_close(enc(x), enc(x.float() / 255.0))


@pytest.mark.parametrize("kind,space,base", [("nature", ATARI, [32, 64, 64]), ("minatar", MINATAR, [16])])
def test_width_multiplies_conv_channels(kind: str, space: gym.Space, base: list[int]) -> None:
    enc = make_encoder(EncoderConfig(kind=kind, width=3), space)
    assert [c.out_channels for c in convs(enc)] == [3 * b for b in base]
    assert enc.output_dim == (512 if kind == "nature" else 128)  # dense not scaled by default


def test_impala_width_and_depth() -> None:
    enc = make_encoder(EncoderConfig(kind="impala", width=3), ATARI)
    layers = convs(enc)
    assert len(layers) == 15
    assert sorted({c.out_channels for c in layers}) == [48, 96]
    assert [layers[i].out_channels for i in (0, 5, 10)] == [48, 96, 96]  # first conv of each stack
    # 84 -> 42 -> 21 -> 11 spatial, 32k channels into the dense layer.
    assert enc.dense.in_features == 96 * 11 * 11


def test_scale_dense() -> None:
    enc = make_encoder(EncoderConfig(kind="nature", width=2, scale_dense=True), ATARI)
    assert enc.output_dim == 1024
    assert enc(batch(ATARI)).shape == (2, 1024)


def test_mlp_hidden_and_width() -> None:
    enc = make_encoder(EncoderConfig(kind="mlp", hidden=(32, 16), width=2), CARTPOLE)
    assert [m.out_features for m in enc.modules() if isinstance(m, nn.Linear)] == [64, 32]
    assert enc.output_dim == 32


def test_nature_param_count() -> None:
    # Mnih et al. 2015: 4*32*64 + 32*64*16 + 64*64*9 + 3136*512 kernel weights = 1,683,456;
    # with an 18-action head (512*18) that is the often-quoted 1.69M.
    enc = make_encoder(EncoderConfig(kind="nature"), ATARI)
    assert kernel_params(enc) == 1_683_456
    assert kernel_params(enc) + 512 * 18 == 1_692_672
    assert sum(p.numel() for p in enc.parameters()) == 1_683_456 + 32 + 64 + 64 + 512


def test_prunable_layers_and_relus_are_modules() -> None:
    # GMP walks modules() for Conv2d/Linear; NaP wraps every nn.ReLU module.
    for kind, space, n_relu in [("nature", ATARI, 4), ("impala", ATARI, 3 * 4 + 2), ("minatar", MINATAR, 2)]:
        enc = make_encoder(EncoderConfig(kind=kind), space)
        assert sum(isinstance(m, nn.ReLU) for m in enc.modules()) == n_relu
        assert all(not m.inplace for m in enc.modules() if isinstance(m, nn.ReLU))


def test_xavier_init_zero_bias() -> None:
    enc = make_encoder(EncoderConfig(kind="nature"), ATARI)
    fan_in, fan_out = 3136, 512
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    assert enc.dense.weight.abs().max() <= bound
    assert enc.dense.weight.abs().max() > 0.9 * bound
    assert all((c.bias == 0).all() for c in convs(enc))


def test_impala_gradients_flow_through_every_conv() -> None:
    enc = make_encoder(EncoderConfig(kind="impala"), MINATAR)
    enc(batch(MINATAR)).sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs(enc))


def test_nethack_accepts_numpy_and_real_obs() -> None:
    enc = make_encoder(EncoderConfig(kind="nethack"), NETHACK)
    assert isinstance(enc, NetHackEncoder)
    obs = {k: np.stack([NETHACK[k].sample() for _ in range(2)]) for k in NETHACK.spaces}
    assert enc(obs).shape == (2, 256)


def test_blstats_normalisation() -> None:
    b = torch.tensor([[0, 1, -3, 100000]])
    out = normalize_blstats(b)
    torch.testing.assert_close(out, torch.tensor([[0.0, np.log(2), -np.log(4), np.log(100001)]], dtype=torch.float32))


def test_unknown_kind_is_user_error() -> None:
    with pytest.raises(UserError, match="unknown encoder kind"):
        make_encoder(EncoderConfig(kind="transformer"), ATARI)


def test_bad_space_is_user_error() -> None:
    with pytest.raises(UserError):
        make_encoder(EncoderConfig(kind="nature"), CARTPOLE)
    with pytest.raises(UserError):
        make_encoder(EncoderConfig(kind="nature"), gym.spaces.Box(0, 255, (4, 10, 10), np.uint8))
    with pytest.raises(UserError):
        make_encoder(EncoderConfig(), gym.spaces.Discrete(5))


def test_image_inputs_are_scaled_by_their_space_maximum():
    """Atari pixels are divided by 255; MinAtar's 0/1 planes must stay 0/1 (not 1/255)."""
    import gymnasium as gym
    import numpy as np
    import torch

    from rlsuite.nn.encoders import EncoderConfig, make_encoder

    minatar = make_encoder(EncoderConfig(kind="minatar"), gym.spaces.Box(0, 1, (4, 10, 10), np.uint8))
    atari = make_encoder(EncoderConfig(kind="nature"), gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert minatar.input_scale == 1.0 and atari.input_scale == 1.0 / 255.0
    seen = {}
    minatar.convs.register_forward_hook(lambda m, inp, out: seen.update(max=inp[0].max().item()))
    minatar(torch.ones(2, 4, 10, 10, dtype=torch.uint8))
    assert seen["max"] == 1.0


def test_nature_same_padding_is_dopamines_network() -> None:
    """Dopamine's Flax NatureDQNNetwork pads 'SAME': 84 -> 21 -> 11 -> 11 at 64 channels."""
    enc = make_encoder(EncoderConfig(kind="nature", padding="same"), ATARI)
    assert enc.dense.in_features == 11 * 11 * 64 == 7744
    dopamine = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64) + (7744 * 512 + 512)
    assert sum(p.numel() for p in enc.parameters()) == dopamine
    assert [type(c) for c in convs(enc)] == [nn.Conv2d] * 3  # plain convs: GMP and NaP find them
    assert enc(batch(ATARI)).shape == (2, 512)


# (kernel, stride, H, (top, bottom), W, (left, right)), pads written out from Flax's rule: out =
# ceil(size / stride), total = max((out - 1) stride + kernel - size, 0), the odd pixel after.
SAME_CASES = [
    (8, 4, 84, (2, 2), 85, (3, 4)),  # out 21, total 4 | out 22, total 7
    (4, 2, 21, (1, 2), 84, (1, 1)),  # out 11, total 3 | out 42, total 2
    (3, 1, 11, (1, 1), 10, (1, 1)),  # stride 1: total kernel - 1
    (3, 2, 10, (0, 1), 11, (1, 1)),  # out 5, total 1 | out 6, total 2
    (8, 4, 7, (2, 3), 13, (3, 4)),  # out 2, total 5 | out 4, total 7
    (1, 4, 10, (0, 0), 9, (0, 0)),  # total max(-1, 0) | total 0
]


@pytest.mark.parametrize("kernel,stride,h,hpad,w,wpad", SAME_CASES)
def test_same_padding_equals_a_hand_padded_valid_conv(kernel, stride, h, hpad, w, wpad) -> None:
    from rlsuite.nn.conv import SamePad2d, same_pads

    assert same_pads(h, kernel, stride) == hpad and same_pads(w, kernel, stride) == wpad
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, kernel, stride=stride)
    x = torch.randn(2, 3, h, w)  # H != W: checks which pad goes on which axis
    want = conv(torch.nn.functional.pad(x, wpad + hpad))  # F.pad: (left, right, top, bottom)
    got = nn.Sequential(SamePad2d(kernel, stride), conv)(x)
    assert got.shape[-2:] == (-(-h // stride), -(-w // stride))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("size,pads", [(84, (0, 1)), (21, (1, 1)), (10, (0, 1)), (5, (1, 1))])
def test_impala_pool_is_flax_same_max_pool(size: int, pads: tuple[int, int]) -> None:
    """3x3 stride-2 max-pool, Flax 'SAME': -inf padding, the odd pixel after (PyTorch's padding=1
    would put one on each side and shift the windows on even sizes)."""
    from rlsuite.nn.conv import MaxPool2dSame

    x = torch.randn(2, 3, size, size)
    want = torch.nn.functional.max_pool2d(torch.nn.functional.pad(x, pads * 2, value=float("-inf")), 3, 2)
    torch.testing.assert_close(MaxPool2dSame(3, 2)(x), want)
    enc = make_encoder(EncoderConfig(kind="impala"), ATARI)
    assert isinstance(enc.convs[0][1], MaxPool2dSame)


def test_torch_init_keeps_pytorch_defaults() -> None:
    from rlsuite.nn.encoders import init_layer

    torch.manual_seed(0)
    enc = make_encoder(EncoderConfig(kind="nature", init="torch"), ATARI)
    head = nn.Linear(512, 6)
    init_layer(head, "torch")
    for layer, fan_in in [(enc.dense, 3136), (head, 512)]:
        bound = 1 / fan_in**0.5  # PyTorch's Linear default: kaiming_uniform(a=sqrt(5)) and bias U(+-1/sqrt(fan_in))
        assert 0.9 * bound < layer.weight.abs().max() <= bound
        assert (layer.bias != 0).all() and layer.bias.abs().max() <= bound
    assert all((c.bias != 0).any() for c in convs(enc))
    impala = make_encoder(EncoderConfig(kind="impala", init="torch"), ATARI)
    assert all((c.bias != 0).any() for c in convs(impala))  # residual convs too


def test_dopamine_init_is_xavier_with_zero_bias_and_init_layer_matches() -> None:
    from rlsuite.nn.encoders import init_layer

    torch.manual_seed(0)
    enc = make_encoder(EncoderConfig(kind="nature", init="dopamine"), ATARI)
    head = nn.Linear(512, 6)
    init_layer(head, "dopamine")
    for layer, fan_in, fan_out in [(enc.dense, 3136, 512), (head, 512, 6)]:
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert 0.9 * bound < layer.weight.abs().max() <= bound
        assert (layer.bias == 0).all()


@pytest.mark.parametrize("field,value", [("padding", "full"), ("init", "kaiming")])
def test_bad_padding_or_init_is_a_one_line_user_error(field: str, value: str) -> None:
    with pytest.raises(UserError, match=f"encoder.{field}") as err:
        make_encoder(EncoderConfig(kind="nature", **{field: value}), ATARI)
    message = str(err.value)
    assert "\n" not in message and all(choice in message for choice in
                                       {"padding": ("same", "valid"), "init": ("dopamine", "torch")}[field])
