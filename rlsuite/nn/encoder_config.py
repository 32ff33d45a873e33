"""`EncoderConfig`: which observation encoder a network uses and how it is sized and initialised
(the `agent.encoder` table of every agent's config)."""
from __future__ import annotations

from dataclasses import dataclass

from rlsuite.config.fields import choice, ranged

KINDS = ("auto", "nature", "impala", "minatar", "mlp", "nethack")
PADDINGS = ("valid", "same")
INITS = ("dopamine", "torch", "orthogonal")
ACTIVATIONS = ("relu", "tanh")


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


def dense_units(cfg: EncoderConfig, base: int) -> int:
    """Units of the dense layer after a conv stack of `base` units: x `width` when `scale_dense`."""
    return base * cfg.width if cfg.scale_dense else base
