"""Observation encoders: one gymnasium observation space -> a flat feature vector.

Every encoder is an ``nn.Module`` with an ``output_dim`` attribute. ``forward`` takes a batch
shaped like the space with a leading batch axis (a dict of tensors for NetHack). Images are
channels-first ``(C, H, W)``; ``uint8`` images are divided by 255 inside the encoder so the replay
buffer can keep raw bytes.

Two conventions the later modules rely on:

- every prunable kernel is a plain ``nn.Conv2d`` / ``nn.Linear``, so GMP finds them with
  ``module.modules()``;
- every nonlinearity is an ``nn.ReLU`` *module* (never ``F.relu``), so NaP can insert a
  normalization layer in front of each one by rewriting the module tree.

Initialisation follows Dopamine, whose networks the GMP paper used (GMP_NAP.md §1.1.4): Xavier-
uniform kernels and zero biases, except the Impala residual convs, which keep Flax's default
(LeCun-normal). Magnitude pruning ranks weights inside a layer, so matching the paper's init
scale keeps learning dynamics (and so what GMP prunes) comparable with theirs. PyTorch's default
(Kaiming-uniform, a=sqrt(5): bound 1/sqrt(fan_in)) would make the Nature 3136->512 dense layer
~2.3x smaller than Xavier does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsuite.errors import UserError

KINDS = ("auto", "nature", "impala", "minatar", "mlp", "nethack")


@dataclass
class EncoderConfig:
    kind: str = "auto"
    """'nature' (Mnih et al. 2015 CNN), 'impala' (Espeholt et al. 2018 ResNet, 15 conv layers), 'minatar' (Young & Tian 2019: one 3x3 conv of 16 then 128 units), 'mlp', 'nethack', or 'auto' (nature for Atari-sized images, minatar for 10x10 images, nethack for NetHack dict obs, mlp for vectors)."""
    width: int = 1
    """Width multiplier k: conv channels x k (Nature 32/64/64 x k, Impala 16/32/32 x k, MinAtar 16 x k, NetHack 16/32/32 x k); MLP hidden sizes x k."""
    scale_dense: bool = False
    """Also multiply the dense layer after the conv stack (512, MinAtar 128) by k (the GMP paper scales only convs for DQN)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the MLP encoder (vector observations)."""
    dense: int = 512
    """Units of the dense layer after the Nature / Impala / NetHack conv stack (MinAtar is fixed at 128, as in Young & Tian 2019)."""


# --------------------------------------------------------------------------------------------
# initialisation


def xavier_(module: nn.Module) -> None:
    """Xavier-uniform kernel, zero bias (Dopamine's choice for conv and dense layers)."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def lecun_normal_(module: nn.Module) -> None:
    """Flax's default kernel init: truncated normal with variance 1/fan_in, zero bias."""
    fan_in = module.weight[0].numel()
    # Flax rescales the truncated normal so that its variance (not the untruncated one) is 1/fan_in.
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _init_all_xavier(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            xavier_(m)


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


def _flat_dim(net: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Feature size of a conv stack, found by a dry run so odd input sizes cannot be miscounted."""
    with torch.no_grad():
        return int(net(torch.zeros(1, *in_shape)).flatten(1).shape[1])


def _dense_units(cfg: EncoderConfig, base: int) -> int:
    return base * cfg.width if cfg.scale_dense else base


class ImageEncoder(nn.Module):
    """Conv stack -> flatten -> Dense -> ReLU, on a channels-first image batch."""

    def __init__(self, convs: nn.Sequential, in_shape: tuple[int, ...], dense: int) -> None:
        super().__init__()
        self.convs = convs
        self.flatten = nn.Flatten()
        self.dense = nn.Linear(_flat_dim(convs, in_shape), dense)
        self.dense_act = nn.ReLU()
        self.output_dim = dense
        self.input_scale = 1.0 / 255.0  # make_encoder sets it from the observation space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_act(self.dense(self.flatten(self.convs(to_float_image(x, self.input_scale)))))


# --------------------------------------------------------------------------------------------
# Nature CNN (Mnih et al. 2015)


def nature_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    k, c = cfg.width, in_shape[0]
    convs = nn.Sequential(
        nn.Conv2d(c, 32 * k, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32 * k, 64 * k, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64 * k, 64 * k, 3, stride=1), nn.ReLU(),
    )
    enc = ImageEncoder(convs, in_shape, _dense_units(cfg, cfg.dense))
    _init_all_xavier(enc)
    return enc


# --------------------------------------------------------------------------------------------
# Impala ResNet (Espeholt et al. 2018), as Dopamine's ImpalaEncoder


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))); ReLUs are modules and not in-place (x is reused)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                lecun_normal_(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def impala_stack(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv -> 3x3 max-pool stride 2 -> two residual blocks.

    PyTorch pads the pool by 1 on both sides where Flax 'SAME' pads (0, 1) for even sizes; the
    output sizes agree (84->42->21->11, 10->5->3->2), the windows shift by one pixel.
    """
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
    xavier_(conv)
    return nn.Sequential(
        conv, nn.MaxPool2d(3, stride=2, padding=1), ResidualBlock(out_ch), ResidualBlock(out_ch)
    )


def impala_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    channels = [in_shape[0]] + [16 * cfg.width, 32 * cfg.width, 32 * cfg.width]
    stacks = [impala_stack(a, b) for a, b in zip(channels[:-1], channels[1:])]
    convs = nn.Sequential(*stacks, nn.ReLU())
    enc = ImageEncoder(convs, in_shape, _dense_units(cfg, cfg.dense))
    xavier_(enc.dense)
    return enc


# --------------------------------------------------------------------------------------------
# MinAtar net (Young & Tian 2019)


def minatar_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    convs = nn.Sequential(nn.Conv2d(in_shape[0], 16 * cfg.width, 3, stride=1), nn.ReLU())
    enc = ImageEncoder(convs, in_shape, _dense_units(cfg, 128))
    _init_all_xavier(enc)
    return enc


# --------------------------------------------------------------------------------------------
# MLP


class MLPEncoder(nn.Module):
    """Flatten -> (Linear -> ReLU) per hidden size."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU()]
            in_dim = h
        self.net = nn.Sequential(*layers)
        self.output_dim = in_dim
        _init_all_xavier(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


# --------------------------------------------------------------------------------------------
# NetHack (basic): glyph map (chars + colors) through a small CNN, blstats through an MLP


def normalize_blstats(b: torch.Tensor) -> torch.Tensor:
    """sign(x) * log1p(|x|) on the 27 bottom-line stats.

    The fields span wildly different, unbounded ranges (score and turn counter in the 10^4-10^5s,
    gold, HP up to hundreds, AC can be negative, flags 0/1). A fixed per-field scale would need
    constants tied to NLE's field order and still saturate on long games; the signed log keeps
    every field O(1..12), preserves order and sign, and needs no statistics.
    """
    b = b.float()
    return torch.sign(b) * torch.log1p(b.abs())


class NetHackEncoder(nn.Module):
    """chars (21x79) and colors embedded as 16 + 4 channels -> 3 strided 3x3 convs -> flatten;
    blstats -> MLP(64, 64); concatenate -> Dense -> ReLU. Other dict keys are ignored."""

    def __init__(self, cfg: EncoderConfig, space: gym.spaces.Dict) -> None:
        super().__init__()
        rows, cols = space["chars"].shape
        n_colors = int(np.max(space["colors"].high)) + 1 if "colors" in space.spaces else 16
        n_stats = int(space["blstats"].shape[0])
        k = cfg.width
        self.char_emb = nn.Embedding(256, 16)
        self.color_emb = nn.Embedding(n_colors, 4)
        # Stride 2 at every conv keeps this cheap: 21x79 -> 11x40 -> 6x20 -> 3x10.
        self.convs = nn.Sequential(
            nn.Conv2d(20, 16 * k, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16 * k, 32 * k, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32 * k, 32 * k, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.stats = nn.Sequential(nn.Linear(n_stats, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        map_dim = _flat_dim(self.convs, (20, rows, cols))
        self.output_dim = _dense_units(cfg, cfg.dense)
        self.dense = nn.Linear(map_dim + 64, self.output_dim)
        self.dense_act = nn.ReLU()
        _init_all_xavier(self)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        chars = torch.as_tensor(obs["chars"]).long()
        colors = torch.as_tensor(obs["colors"]).long()
        # Embeddings come out (B, H, W, E); convs want channels first.
        grid = torch.cat([self.char_emb(chars), self.color_emb(colors)], dim=-1).permute(0, 3, 1, 2)
        stats = self.stats(normalize_blstats(torch.as_tensor(obs["blstats"])))
        return self.dense_act(self.dense(torch.cat([self.convs(grid), stats], dim=1)))


# --------------------------------------------------------------------------------------------
# factory


def _is_nethack(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and {"chars", "colors", "blstats"} <= set(space.spaces)


def auto_kind(space: gym.Space) -> str:
    """Pick an encoder from the space: the rule documented on EncoderConfig.kind."""
    if _is_nethack(space):
        return "nethack"
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        # MinAtar boards are 10x10; the Nature CNN needs at least 36x36 to have any output.
        return "minatar" if max(space.shape[1:]) <= 16 else "nature"
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return "mlp"
    raise UserError(
        f"no encoder fits observation space {space}; set encoder.kind to one of {', '.join(KINDS)}"
    )


def _image_shape(space: gym.Space, kind: str) -> tuple[int, ...]:
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3):
        raise UserError(
            f"encoder '{kind}' needs a channels-first image space (C, H, W), got {space}"
        )
    return tuple(int(s) for s in space.shape)


def make_encoder(cfg: EncoderConfig, observation_space: gym.Space) -> nn.Module:
    """Build the encoder named by ``cfg.kind`` for one environment's observation space."""
    if cfg.kind not in KINDS:
        raise UserError(f"unknown encoder kind '{cfg.kind}'; choose one of {', '.join(KINDS)}")
    if cfg.width < 1:
        raise UserError(f"encoder.width must be a positive integer, got {cfg.width}")
    kind = auto_kind(observation_space) if cfg.kind == "auto" else cfg.kind
    if kind == "nethack":
        if not _is_nethack(observation_space):
            raise UserError(
                f"encoder 'nethack' needs a Dict space with chars, colors and blstats, got {observation_space}"
            )
        return NetHackEncoder(cfg, observation_space)
    if kind == "mlp":
        if not isinstance(observation_space, gym.spaces.Box):
            raise UserError(f"encoder 'mlp' needs a Box space, got {observation_space}")
        hidden = tuple(h * cfg.width for h in cfg.hidden)
        return MLPEncoder(int(np.prod(observation_space.shape)), hidden)
    shape = _image_shape(observation_space, kind)
    builders = {"nature": nature_cnn, "impala": impala_cnn, "minatar": minatar_cnn}
    try:
        encoder = builders[kind](cfg, shape)
    except RuntimeError as exc:  # the dry run fails when the image is too small for the stack
        raise UserError(f"encoder '{kind}' cannot take images of shape {shape}: {exc}") from exc
    encoder.input_scale = input_scale(observation_space)
    return encoder
