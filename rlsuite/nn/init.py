"""Weight initialisation of encoder and head layers (`EncoderConfig.init`).

'dopamine' follows Dopamine's JAX networks, which the GMP paper (Obando-Ceron et al., ICML 2024)
used: Xavier-uniform kernels and zero biases, except the Impala residual convs, which keep Flax's
default (LeCun-normal). Magnitude pruning ranks weights inside a layer, so matching the paper's init
scale keeps learning dynamics (and so what GMP prunes) comparable with theirs. 'torch' keeps
PyTorch's layer defaults (Kaiming-uniform, a=sqrt(5): bound 1/sqrt(fan_in), and non-zero biases),
as CleanRL and SB3 do; it makes the Nature 3136->512 dense layer ~2.3x smaller than Xavier does.
'orthogonal' is CleanRL's layer_init and SB3's ortho_init for PPO trunks.
"""
from __future__ import annotations

import math

from torch import nn

from rlsuite.errors import UserError
from rlsuite.nn.encoder_config import INITS


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


def init_all(net: nn.Module, init: str) -> None:
    """`init_layer` on every conv and linear layer of `net`."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            init_layer(m, init)
