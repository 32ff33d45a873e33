"""Replay storage and samplers: one time-major stream per env, frames stored once, frame stacks
and n-step returns rebuilt at sample time, uniform or prioritized sampling."""
from rlsuite.replay.buffer import Batch, ReplayBuffer, ReplayConfig

__all__ = ["Batch", "ReplayBuffer", "ReplayConfig"]
