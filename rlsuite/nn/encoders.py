"""Observation encoders: one gymnasium observation space -> a flat feature vector.

`make_encoder(cfg, space)` builds the encoder `EncoderConfig.kind` names, or picks one from the
space ('auto'); this module also holds the MLP encoder for vector observations. The conv encoders
are in rlsuite.nn.conv, the NetHack encoder in rlsuite.nn.nethack, weight initialisation in
rlsuite.nn.init.

Every encoder is an ``nn.Module`` with an ``output_dim`` attribute. ``forward`` takes a batch
shaped like the space with a leading batch axis (a dict of tensors for NetHack). Images are
channels-first ``(C, H, W)``; ``uint8`` images are divided by 255 inside the encoder so the replay
buffer can keep raw bytes.

Two conventions the later modules rely on:

- every prunable kernel is a plain ``nn.Conv2d`` / ``nn.Linear``, so GMP finds them with
  ``module.modules()``;
- every nonlinearity is an ``nn.ReLU`` *module* (never ``F.relu``), so NaP can insert a
  normalization layer in front of each one by rewriting the module tree.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsuite.errors import UserError, brief_space
from rlsuite.nn.conv import impala_cnn, input_scale, minatar_cnn, nature_cnn
from rlsuite.nn.encoder_config import INITS, KINDS, PADDINGS, EncoderConfig
from rlsuite.nn.init import init_all, init_layer
from rlsuite.nn.nethack import OBS_KEYS, NetHackEncoder

# Names the agents import from here with the encoder: its config, the heads' init, the NetHack encoder.
__all__ = ["INITS", "KINDS", "PADDINGS", "EncoderConfig", "MLPEncoder", "NetHackEncoder", "auto_kind", "init_layer",
           "make_encoder"]


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
        init_all(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


# --------------------------------------------------------------------------------------------
# factory


def _is_nethack(space: gym.Space) -> bool:
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
