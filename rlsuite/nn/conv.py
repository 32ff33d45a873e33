"""Convolutional image encoders and their parts: the Nature CNN (Mnih et al. 2015), the Impala
ResNet (Espeholt et al. 2018) as Dopamine's, the MinAtar net (Young & Tian 2019), and the pieces
other encoders reuse (Flax 'SAME' padding, residual blocks and the streams they read, the dry run
that sizes a conv stack's output).

Padding (``EncoderConfig.padding``, Nature CNN only): Dopamine's Flax ``NatureDQNNetwork`` uses
Flax's default 'SAME' padding (84 -> 21 -> 11 -> 11, 7744 features into the dense layer); CleanRL
and the PyTorch ports of Mnih et al. (2015) use 'VALID' (84 -> 20 -> 9 -> 7, 3136 features). The
Impala encoder is always 'SAME', as Dopamine's, and the MinAtar net 'VALID', as Young & Tian's.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlsuite.nn.encoder_config import EncoderConfig, dense_units
from rlsuite.nn.init import init_all, init_layer, lecun_normal_

# --------------------------------------------------------------------------------------------
# shared pieces


def to_float_image(x: torch.Tensor, scale: float = 1.0 / 255.0) -> torch.Tensor:
    """Integer images -> floats in [0, 1] (`scale` = 1 / the space's maximum); floats unchanged."""
    if x.is_floating_point():
        return x
    return x.float().mul_(scale)


def input_scale(space: gym.Space) -> float:
    """1 / the largest value an integer image space can hold: 1/255 for Atari pixels, 1 for MinAtar's
    0/1 planes (dividing those by 255 would squash every input to 0.004)."""
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer):
        high = float(np.max(space.high))
        return 1.0 / high if high > 0 else 1.0
    return 1.0


def flat_dim(net: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Feature size of a conv stack, found by a dry run so odd input sizes cannot be miscounted."""
    with torch.no_grad():
        return int(net(torch.zeros(1, *in_shape)).flatten(1).shape[1])


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow / Flax 'SAME' padding of one spatial axis: (before, after) in pixels.

    The output has ceil(size / stride) positions; the total padding max((out - 1) stride + kernel
    - size, 0) is split with the odd pixel after (bottom / right), as `lax.padtype_to_pads` does.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    (top, bottom), (left, right) = (same_pads(n, kernel, stride) for n in x.shape[-2:])
    return F.pad(x, (left, right, top, bottom), value=value)


class SamePad2d(nn.Module):
    """Zero padding in front of a VALID conv so that the pair computes Flax's 'SAME' conv.

    PyTorch's ``padding='same'`` rejects stride > 1 and ``padding=n`` is symmetric, so the pads
    are computed from each input's size (see `same_pads`) and the conv stays a plain Conv2d.
    """

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _same_pad(x, self.kernel, self.stride)


class MaxPool2dSame(nn.Module):
    """Flax ``max_pool(..., padding='SAME')``: pad with -inf by `same_pads`, then a VALID max-pool.
    (PyTorch's ``padding=1`` pads both sides, which shifts the windows by a pixel on even sizes.)"""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(_same_pad(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class ImageEncoder(nn.Module):
    """Conv stack -> flatten -> Dense -> ReLU, on a channels-first image batch."""

    def __init__(self, convs: nn.Sequential, in_shape: tuple[int, ...], dense: int) -> None:
        super().__init__()
        self.convs = convs
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(flat_dim(convs, in_shape), dense)
        self.dense_act = nn.ReLU()
        self.output_dim = dense
        self.input_scale = 1.0 / 255.0  # make_encoder sets it from the observation space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_act(self.dense(self.flatten(self.convs(to_float_image(x, self.input_scale)))))


# --------------------------------------------------------------------------------------------
# Nature CNN (Mnih et al. 2015)


def nature_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    """Three convs (8x8 s4, 4x4 s2, 3x3 s1; 32/64/64 x k) -> dense. With padding 'valid' the convs
    are ``convs.0/2/4``; with 'same' each conv follows a `SamePad2d` (``convs.1/4/7``)."""
    k, c = cfg.width, in_shape[0]
    layers: list[nn.Module] = []
    for in_ch, out_ch, kernel, stride in [(c, 32 * k, 8, 4), (32 * k, 64 * k, 4, 2), (64 * k, 64 * k, 3, 1)]:
        if cfg.padding == "same":
            layers.append(SamePad2d(kernel, stride))
        layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=stride), nn.ReLU()]
    enc = ImageEncoder(nn.Sequential(*layers), in_shape, dense_units(cfg, cfg.dense))
    init_all(enc, cfg.init)
    return enc


# --------------------------------------------------------------------------------------------
# Impala ResNet (Espeholt et al. 2018), as Dopamine's ImpalaEncoder


STREAM_ATTR = "residual_stream"
"""Attribute marking a ReLU applied to a residual stream (see `ResidualStream`)."""


class ResidualStream:
    """Marks the ReLUs applied to one residual stream (attribute `STREAM_ATTR` on the ReLU).

    Every block of an Impala stack adds into the same C channels, and a ReLU reads that stream in
    front of each block (and once more at the end of the encoder): these are the same units read
    at several depths, so plasticity diagnostics count them once per stream.
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))); ReLUs are modules and not in-place (x is reused).
    ``body.0`` reads the residual stream `stream`; ``body.2`` is the block's own hidden layer."""

    def __init__(self, channels: int, stream: ResidualStream, init: str = "dopamine") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),  # 3x3 s1: SAME = 1 pixel each side
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )
        setattr(self.body[0], STREAM_ATTR, stream)
        for m in self.body:
            if isinstance(m, nn.Conv2d) and init == "dopamine":
                lecun_normal_(m)  # Dopamine leaves these convs at Flax's default init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def impala_stack(in_ch: int, out_ch: int, init: str = "dopamine") -> nn.Sequential:
    """3x3 conv -> 3x3 max-pool stride 2 -> two residual blocks, all 'SAME' as in Dopamine
    (84->42->21->11, 10->5->3->2). The stack's residual stream is tagged on its first block."""
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
    init_layer(conv, init)
    stream = ResidualStream(out_ch)
    return nn.Sequential(conv, MaxPool2dSame(3, 2), ResidualBlock(out_ch, stream, init),
                         ResidualBlock(out_ch, stream, init))


def impala_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    channels = [in_shape[0]] + [16 * cfg.width, 32 * cfg.width, 32 * cfg.width]
    stacks = [impala_stack(a, b, cfg.init) for a, b in zip(channels[:-1], channels[1:])]
    final = nn.ReLU()  # reads the last stack's residual stream
    setattr(final, STREAM_ATTR, getattr(stacks[-1][2].body[0], STREAM_ATTR))
    enc = ImageEncoder(nn.Sequential(*stacks, final), in_shape, dense_units(cfg, cfg.dense))
    init_layer(enc.dense, cfg.init)
    return enc


# --------------------------------------------------------------------------------------------
# MinAtar net (Young & Tian 2019)


def minatar_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    convs = nn.Sequential(nn.Conv2d(in_shape[0], 16 * cfg.width, 3, stride=1), nn.ReLU())
    enc = ImageEncoder(convs, in_shape, dense_units(cfg, 128))
    init_all(enc, cfg.init)
    return enc
