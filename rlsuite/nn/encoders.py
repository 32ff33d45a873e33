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

Initialisation (``EncoderConfig.init``): 'dopamine' follows Dopamine's JAX networks, which the GMP
paper (Obando-Ceron et al., ICML 2024) used: Xavier-uniform kernels and zero biases, except the
Impala residual convs, which keep Flax's default (LeCun-normal). Magnitude pruning ranks weights
inside a layer, so matching the paper's init scale keeps learning dynamics (and so what GMP
prunes) comparable with theirs. 'torch' keeps PyTorch's layer defaults (Kaiming-uniform, a=sqrt(5):
bound 1/sqrt(fan_in), and non-zero biases), as CleanRL and SB3 do; it makes the Nature 3136->512
dense layer ~2.3x smaller than Xavier does.

Padding (``EncoderConfig.padding``, Nature CNN only): Dopamine's Flax ``NatureDQNNetwork`` uses
Flax's default 'SAME' padding (84 -> 21 -> 11 -> 11, 7744 features into the dense layer); CleanRL
and the PyTorch ports of Mnih et al. (2015) use 'VALID' (84 -> 20 -> 9 -> 7, 3136 features). The
Impala encoder is always 'SAME', as Dopamine's, and the MinAtar net 'VALID', as Young & Tian's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlsuite.config.fields import choice, ranged
from rlsuite.errors import UserError, brief_space

KINDS = ("auto", "nature", "impala", "minatar", "mlp", "nethack")
PADDINGS = ("valid", "same")
INITS = ("dopamine", "torch", "orthogonal")
ACTIVATIONS = ("relu", "tanh")
STREAM_ATTR = "residual_stream"
"""Attribute marking a ReLU applied to a residual stream (see `ResidualStream`)."""


@dataclass
class EncoderConfig:
    kind: str = choice("auto", *KINDS)
    """'nature' (Mnih et al. 2015 CNN), 'impala' (Espeholt et al. 2018 ResNet, 15 conv layers), 'minatar' (Young & Tian 2019: one 3x3 conv of 16 then 128 units), 'mlp', 'nethack', or 'auto' (nature for Atari-sized images, minatar for 10x10 images, nethack for NetHack dict obs, mlp for vectors)."""
    width: int = ranged(1, ge=1)
    """Width multiplier k: conv channels x k (Nature 32/64/64 x k, Impala 16/32/32 x k, MinAtar 16 x k, NetHack `nethack_screen_channels` x k); MLP hidden sizes x k."""
    scale_dense: bool = False
    """Also multiply the dense layer after the conv stack (512, MinAtar 128, NetHack `nethack_hidden`) by k (the GMP paper scales only convs for DQN)."""
    hidden: tuple[int, ...] = ranged((64, 64), ge=1)
    """Hidden layer sizes of the MLP encoder (vector observations)."""
    dense: int = ranged(512, ge=1)
    """Units of the dense layer after the Nature / Impala conv stack (MinAtar is fixed at 128, as in Young & Tian 2019; NetHack uses `nethack_hidden`)."""
    padding: str = choice("valid", *PADDINGS)
    """Nature CNN conv padding: 'same' (Dopamine's Flax NatureDQNNetwork: 7744 features into the dense layer, 3.96M dense weights) or 'valid' (CleanRL / Mnih et al. 2015 in PyTorch: 3136 features, 1.6M). Impala is always 'same' and MinAtar 'valid', as in their sources."""
    init: str = choice("dopamine", *INITS)
    """Weight init: 'dopamine' (Xavier-uniform kernels, zero biases; Flax LeCun-normal for the Impala residual convs), 'torch' (PyTorch's layer defaults, as CleanRL's and SB3's DQN) or 'orthogonal' (orthogonal kernels with gain sqrt(2), zero biases: CleanRL's layer_init and SB3's ortho_init for PPO trunks)."""
    activation: str = choice("relu", *ACTIVATIONS)
    """MLP encoder only: the hidden activation, 'relu' or 'tanh' (CleanRL's and SB3's PPO MLPs). NaP's norms and the dormant-unit diagnostic look for ReLUs, so they need 'relu'."""
    nethack_char_dim: int = ranged(16, ge=1)
    """NetHack: embedding size of a terminal character (one table shared by the screen, the crop and the message and status lines; 16 as in the paper's screen encoder)."""
    nethack_color_dim: int = ranged(16, ge=1)
    """NetHack: embedding size of a terminal colour (16 as in the paper)."""
    nethack_screen_channels: tuple[int, ...] = ranged((16, 32), ge=1)
    """NetHack: channels of each ResNet stage on the 21x80 map (a stride-2 3x3 conv, then one residual block), x `width`. Two stages shrink the map to 6x20; the crop's convs use the first stage's width."""
    nethack_crop: int = ranged(9, ge=1)
    """NetHack: side of the egocentric window of the terminal around the cursor (odd; 9 as in the paper)."""
    nethack_hidden: int = ranged(256, ge=1)
    """NetHack: width of the screen's FC layer and of the two FC layers after the concatenation (the encoder's output). The paper's ScaledNet uses 1738; 256 keeps CPU training affordable."""
    nethack_status_hidden: int = ranged(128, ge=1)
    """NetHack: hidden units of the MLP (2 layers) on the two bottom status lines plus blstats."""
    nethack_message_hidden: int = ranged(128, ge=1)
    """NetHack: hidden units of the MLP (2 layers) on the message line."""


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


def init_layer(module: nn.Module, init: str) -> None:
    """Initialise one conv / linear layer by `init` ('dopamine': Xavier-uniform kernel and zero bias;
    'orthogonal': orthogonal kernel, gain sqrt(2), zero bias; 'torch': leave PyTorch's default, which the layer got when it was built). Use it for heads."""
    if init == "dopamine":
        xavier_(module)
    elif init == "orthogonal":
        nn.init.orthogonal_(module.weight, math.sqrt(2))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif init != "torch":
        raise UserError(f"encoder.init must be one of {', '.join(INITS)}, got {init!r}")


def _init_all(net: nn.Module, init: str) -> None:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            init_layer(m, init)


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
        self.dense = nn.Linear(_flat_dim(convs, in_shape), dense)
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
    enc = ImageEncoder(nn.Sequential(*layers), in_shape, _dense_units(cfg, cfg.dense))
    _init_all(enc, cfg.init)
    return enc


# --------------------------------------------------------------------------------------------
# Impala ResNet (Espeholt et al. 2018), as Dopamine's ImpalaEncoder


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
    enc = ImageEncoder(nn.Sequential(*stacks, final), in_shape, _dense_units(cfg, cfg.dense))
    init_layer(enc.dense, cfg.init)
    return enc


# --------------------------------------------------------------------------------------------
# MinAtar net (Young & Tian 2019)


def minatar_cnn(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> ImageEncoder:
    convs = nn.Sequential(nn.Conv2d(in_shape[0], 16 * cfg.width, 3, stride=1), nn.ReLU())
    enc = ImageEncoder(convs, in_shape, _dense_units(cfg, 128))
    _init_all(enc, cfg.init)
    return enc


# --------------------------------------------------------------------------------------------
# MLP


class MLPEncoder(nn.Module):
    """Flatten -> (Linear -> activation) per hidden size (activation: 'relu' or 'tanh')."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], init: str = "dopamine", activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.Tanh() if activation == "tanh" else nn.ReLU()]
            in_dim = h
        self.net = nn.Sequential(*layers)
        self.output_dim = in_dim
        _init_all(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


# --------------------------------------------------------------------------------------------
# NetHack: the encoder itself is in rlsuite.nn.nethack (it builds on the pieces above)


def normalize_blstats(b: torch.Tensor) -> torch.Tensor:
    """sign(x) * log1p(|x|) on the 27 bottom-line stats.

    The fields span wildly different, unbounded ranges (score and turn counter in the 10^4-10^5s,
    gold, HP up to hundreds, AC can be negative, flags 0/1). A fixed per-field scale would need
    constants tied to NLE's field order and still saturate on long games; the signed log keeps
    every field O(1..12), preserves order and sign, and needs no statistics.
    """
    b = b.float()
    return torch.sign(b) * torch.log1p(b.abs())


# --------------------------------------------------------------------------------------------
# factory


def _is_nethack(space: gym.Space) -> bool:
    from rlsuite.nn.nethack import OBS_KEYS

    return isinstance(space, gym.spaces.Dict) and set(OBS_KEYS) <= set(space.spaces)


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
        f"no encoder fits observation space {brief_space(space)}; set encoder.kind to one of {', '.join(KINDS)}"
    )


# The agent preset whose encoder fits each kind of observation space, for error messages.
_PRESET_FOR_KIND = {"mlp": "dqn-classic", "minatar": "dqn-minatar", "nature": "dqn"}


def _describe(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box):
        what = {1: "vector", 3: "image"}.get(len(space.shape), "array")
        return f"{what} observations of shape {tuple(int(s) for s in space.shape)}"
    if isinstance(space, gym.spaces.Dict):
        return f"dict observations ({', '.join(space.spaces)})"
    return f"{type(space).__name__} observations"


def _mismatch(kind: str, space: gym.Space) -> UserError:
    """One line: this encoder cannot take this space, and the preset or override that fits."""
    msg = f"encoder '{kind}' cannot take {_describe(space)}"
    try:
        fit = auto_kind(space)
    except UserError:
        return UserError(f"{msg}; pick one that can with --set agent.encoder.kind=KIND ({', '.join(KINDS)})")
    preset = _PRESET_FOR_KIND.get(fit)
    if preset is None:
        return UserError(f"{msg}; add --set agent.encoder.kind={fit}")
    return UserError(f"{msg}; use the agent preset that fits (rlsuite train {preset} --env ...) "
                     f"or add --set agent.encoder.kind={fit}")


def _image_shape(space: gym.Space, kind: str) -> tuple[int, ...]:
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3):
        raise _mismatch(kind, space)
    return tuple(int(s) for s in space.shape)


def _nethack(cfg: EncoderConfig, space: gym.Space) -> nn.Module:
    from rlsuite.nn.nethack import OBS_KEYS, NetHackEncoder

    if not isinstance(space, gym.spaces.Dict):
        raise _mismatch("nethack", space)
    missing = [k for k in OBS_KEYS if k not in space.spaces]
    if missing:
        raise UserError(f"encoder 'nethack' needs the observation keys {', '.join(OBS_KEYS)} (rlsuite's "
                        f"NetHack env provides them); {_describe(space)} lack {', '.join(missing)}")
    if cfg.nethack_crop % 2 == 0:
        raise UserError(f"encoder.nethack_crop must be odd (a window centred on the cursor), got {cfg.nethack_crop}")
    if not cfg.nethack_screen_channels:
        raise UserError("encoder.nethack_screen_channels needs at least one stage")
    return NetHackEncoder(cfg, space)


def __getattr__(name: str):
    """`NetHackEncoder` stays importable from here; it lives in rlsuite.nn.nethack, which imports
    this module, so it is loaded on first use instead of at import (no import cycle)."""
    if name == "NetHackEncoder":
        from rlsuite.nn.nethack import NetHackEncoder

        return NetHackEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_encoder(cfg: EncoderConfig, observation_space: gym.Space) -> nn.Module:
    """Build the encoder named by ``cfg.kind`` for one environment's observation space."""
    if cfg.kind not in KINDS:
        raise UserError(f"unknown encoder kind '{cfg.kind}'; choose one of {', '.join(KINDS)}")
    if cfg.width < 1:
        raise UserError(f"encoder.width must be a positive integer, got {cfg.width}")
    if cfg.padding not in PADDINGS:
        raise UserError(f"unknown encoder.padding {cfg.padding!r}; choose one of {', '.join(PADDINGS)}")
    if cfg.init not in INITS:
        raise UserError(f"unknown encoder.init {cfg.init!r}; choose one of {', '.join(INITS)}")
    kind = auto_kind(observation_space) if cfg.kind == "auto" else cfg.kind
    if cfg.activation != "relu" and kind != "mlp":
        raise UserError(f"encoder.activation={cfg.activation} applies to the MLP encoder only; "
                        f"the {kind} encoder uses ReLU")
    if kind == "nethack":
        return _nethack(cfg, observation_space)
    if kind == "mlp":
        if not isinstance(observation_space, gym.spaces.Box):
            raise _mismatch("mlp", observation_space)
        hidden = tuple(h * cfg.width for h in cfg.hidden)
        return MLPEncoder(int(np.prod(observation_space.shape)), hidden, cfg.init, cfg.activation)
    shape = _image_shape(observation_space, kind)
    builders = {"nature": nature_cnn, "impala": impala_cnn, "minatar": minatar_cnn}
    try:
        encoder = builders[kind](cfg, shape)
    except RuntimeError as exc:  # the dry run fails when the image is too small for the stack
        raise UserError(f"encoder '{kind}' cannot take images of shape {shape}: {exc}") from exc
    encoder.input_scale = input_scale(observation_space)
    return encoder
