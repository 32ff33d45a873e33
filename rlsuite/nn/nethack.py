"""NetHack encoder shaped like the retention paper's NetHack agent, sized for CPU.

Wołczyk et al. (2024) fine-tune the "ScaledNet" of Tuyls et al. (2023), itself the NetHack
Challenge winner's (Chaos Dwarf / Sample Factory) network grown wider. Per step it encodes five
inputs and concatenates them:

- message: the top message line through an MLP (here NLE's 256-byte `message`, which holds the
  whole text where the terminal's top line can be cut by ``--More--``);
- status: the two bottom terminal lines through an MLP (here with NLE's parsed `blstats`
  appended, signed-log scaled: numbers the MLP need not read digit by digit);
- screen: the terminal's map rows (1..21 of 24), tty chars and colours embedded (16 + 16 dims) ->
  an IMPALA-style ResNet -> FC;
- crop: the 9x9 terminal window centred on the cursor (where the hero is) -> a small conv stack;
- the previous action, one-hot;

then two FC layers. The LSTM core of the paper is not here: the recurrent agent adds it on top.

Scaled down from the paper, for CPU training (the paper trains on GPUs for billions of steps):
hidden width 256 instead of 1738 (`EncoderConfig.nethack_hidden`); two ResNet stages (16, 32
channels) of one residual block each, each opened by a stride-2 conv instead of IMPALA's conv +
max-pool, so the map shrinks fast (21x80 -> 11x40 -> 6x20) and the big first conv runs at a
quarter of the positions; the text lines are embedded (one shared 16-dim char embedding) instead
of one-hot, which keeps their first layers small. At the defaults (NetHackScore's 23 actions) the
encoder has 2.45M parameters, the screen's FC (3840 -> 256) about 1M of them.

Module conventions are those of `rlsuite.nn.encoders`: plain Conv2d/Linear kernels (GMP) and
ReLU modules (NaP); the residual blocks are rlsuite.nn.conv's `ResidualBlock`.
"""
from __future__ import annotations

from typing import Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlsuite.nn.conv import STREAM_ATTR, ResidualBlock, ResidualStream, flat_dim
from rlsuite.nn.encoder_config import EncoderConfig, dense_units
from rlsuite.nn.init import init_layer

OBS_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats", "message", "prev_action")
"""Observation keys the encoder reads (`NetHackGame` provides all of them)."""
MAP_ROWS = slice(1, 22)  # terminal rows 1..21: the dungeon map; row 0 is the message line
STATUS_ROWS = slice(22, 24)  # the two bottom status lines


def normalize_blstats(b: torch.Tensor) -> torch.Tensor:
    """sign(x) * log1p(|x|) on the 27 bottom-line stats.

    The fields span wildly different, unbounded ranges (score and turn counter in the 10^4-10^5s,
    gold, HP up to hundreds, AC can be negative, flags 0/1). A fixed per-field scale would need
    constants tied to NLE's field order and still saturate on long games; the signed log keeps
    every field O(1..12), preserves order and sign, and needs no statistics.
    """
    b = b.float()
    return torch.sign(b) * torch.log1p(b.abs())


def egocentric_crop(tty: torch.Tensor, cursor: torch.Tensor, size: int, pad: int = 0) -> torch.Tensor:
    """The size x size window of `tty` centred on `cursor`, `pad` outside the screen.

    tty: (B, H, W) integer grid; cursor: (B, 2) (row, col), clamped into the screen (random
    samples of the space can point outside it); size: odd. Returns (B, size, size), same dtype.
    A plain gather (no gradient needed: the inputs are symbols, embedded after the crop).
    """
    b, h, w = tty.shape
    r = size // 2
    padded = F.pad(tty, (r, r, r, r), value=pad)
    cursor = cursor.long()
    # In padded coordinates the window starts at the cursor itself (shifted by r, minus r).
    top = cursor[:, 0].clamp(0, h - 1)
    left = cursor[:, 1].clamp(0, w - 1)
    offsets = torch.arange(size, device=tty.device)
    rows = (top[:, None] + offsets)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + offsets)[:, None, :]  # (B, 1, size)
    batch = torch.arange(b, device=tty.device)[:, None, None]
    return padded[batch, rows, cols]


def _stage(in_ch: int, out_ch: int, init: str) -> nn.Sequential:
    """3x3 stride-2 conv (halves H and W, rounding up) -> one residual block.

    IMPALA's stage is a stride-1 conv then a 3x3 stride-2 max-pool; striding the conv instead
    computes it at a quarter of the positions, which on the 21x80 map is most of the encoder's cost.
    """
    conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
    init_layer(conv, init)
    return nn.Sequential(conv, ResidualBlock(out_ch, ResidualStream(out_ch), init))


def _mlp(in_dim: int, hidden: int, init: str) -> nn.Sequential:
    """Two Linear -> ReLU layers of `hidden` units."""
    net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
    for m in net:
        if isinstance(m, nn.Linear):
            init_layer(m, init)
    return net


class NetHackEncoder(nn.Module):
    """Dict of NetHack observations (see `OBS_KEYS`) -> (B, output_dim) features.

    forward takes tensors or numpy arrays with a leading batch axis: tty_chars / tty_colors
    (B, 24, 80), tty_cursor (B, 2), blstats (B, 27), message (B, 256), prev_action (B, 1) or (B,).
    """

    def __init__(self, cfg: EncoderConfig, space: gym.spaces.Dict) -> None:
        super().__init__()
        rows, cols = space["tty_chars"].shape
        n_colors = int(np.max(space["tty_colors"].high)) + 1
        self.n_actions = int(np.max(space["prev_action"].high)) + 1
        self.crop = cfg.nethack_crop
        k, e = cfg.width, cfg.nethack_char_dim + cfg.nethack_color_dim
        channels = [e] + [c * k for c in cfg.nethack_screen_channels]
        hidden = dense_units(cfg, cfg.nethack_hidden)
        self.char_emb = nn.Embedding(256, cfg.nethack_char_dim)  # shared by screen, crop and text lines
        self.color_emb = nn.Embedding(n_colors, cfg.nethack_color_dim)

        stages = [_stage(a, b, cfg.init) for a, b in zip(channels[:-1], channels[1:])]
        final = nn.ReLU()  # reads the last stage's residual stream
        setattr(final, STREAM_ATTR, getattr(stages[-1][1].body[0], STREAM_ATTR))
        self.screen = nn.Sequential(*stages, final, nn.Flatten())
        map_rows = len(range(rows)[MAP_ROWS])
        self.screen_fc = nn.Sequential(nn.Linear(flat_dim(self.screen, (e, map_rows, cols)), hidden), nn.ReLU())

        crop_ch = channels[1]
        self.crop_net = nn.Sequential(
            nn.Conv2d(e, crop_ch, 3, padding=1), nn.ReLU(),
            nn.Conv2d(crop_ch, crop_ch, 3, padding=1), nn.ReLU(),
            nn.Conv2d(crop_ch, crop_ch, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        crop_dim = crop_ch * self.crop * self.crop

        msg_len = int(space["message"].shape[0])
        status_in = 2 * cols * cfg.nethack_char_dim + int(space["blstats"].shape[0])
        self.message = _mlp(msg_len * cfg.nethack_char_dim, cfg.nethack_message_hidden, cfg.init)
        self.status = _mlp(status_in, cfg.nethack_status_hidden, cfg.init)

        cat = hidden + crop_dim + cfg.nethack_message_hidden + cfg.nethack_status_hidden + self.n_actions
        self.core = _mlp(cat, hidden, cfg.init)
        self.output_dim = hidden
        for m in [*self.screen_fc, *self.crop_net]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init_layer(m, cfg.init)

    def _grid(self, chars: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """(B, H, W) chars and colours -> (B, char_dim + color_dim, H, W) channels-first embedding."""
        return torch.cat([self.char_emb(chars), self.color_emb(colors)], dim=-1).permute(0, 3, 1, 2)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        chars = torch.as_tensor(obs["tty_chars"]).long()
        colors = torch.as_tensor(obs["tty_colors"]).long()
        cursor = torch.as_tensor(obs["tty_cursor"])
        screen = self.screen_fc(self.screen(self._grid(chars[:, MAP_ROWS], colors[:, MAP_ROWS])))
        # Outside the terminal: char 32 (blank, as NetHack draws unexplored space), colour 0.
        crop = self._grid(egocentric_crop(chars, cursor, self.crop, pad=32),
                          egocentric_crop(colors, cursor, self.crop, pad=0))
        message = self.message(self.char_emb(torch.as_tensor(obs["message"]).long()).flatten(1))
        bottom = self.char_emb(chars[:, STATUS_ROWS]).flatten(1)
        status = self.status(torch.cat([bottom, normalize_blstats(torch.as_tensor(obs["blstats"]))], dim=1))
        prev = torch.as_tensor(obs["prev_action"]).long().reshape(-1).clamp(0, self.n_actions - 1)
        prev = F.one_hot(prev, self.n_actions).float()
        return self.core(torch.cat([screen, self.crop_net(crop), message, status, prev], dim=1))
