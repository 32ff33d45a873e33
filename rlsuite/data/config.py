"""The `[offline]` section of a run: the datasets an offline agent (the Decision Transformer) learns
from, how batches mix them, and which envs evaluate it. Inert in online runs.

An offline run counts `train.total_steps`, `train.eval_every`, `train.checkpoint_every` and
`train.log_every` in gradient updates, not env steps (rlsuite.loops.offline).
"""
from __future__ import annotations

from dataclasses import dataclass

from rlsuite.config.fields import ranged, unchecked


@dataclass
class OfflineConfig:
    """Datasets and their mixture (rlsuite train dt --dataset DIR[,DIR...])."""

    datasets: tuple[str, ...] = unchecked((), "dataset directories")
    """Dataset directories (rlsuite collect, rlsuite dataset import-*); several = multi-game training, one game per dataset."""
    weights: tuple[float, ...] = ranged((), ge=0)
    """Share of each dataset in a batch, one number per dataset (normalised); empty = equal shares (one game as likely as another, whatever its size)."""
    eval_games: tuple[str, ...] = unchecked((), "dataset directories or game names")
    """Games evaluated during and after training, named by their dataset's game (e.g. breakout); empty = every dataset's game."""
    eval_parent_games: bool = True
    """A fine-tuning run (rlsuite finetune --from) also evaluates the games its parent trained on that its own datasets lack, to measure forgetting; they are logged per game (eval.jsonl `earlier`, charts/eval_mean_<game>) and left out of the run's mean."""
