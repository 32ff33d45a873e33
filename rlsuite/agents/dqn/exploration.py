"""DQN's exploration schedule: the training epsilon at an env step, from DQNConfig's epsilon_*
keys, in the form Dopamine and CleanRL give it."""
from __future__ import annotations


def linear_epsilon(step: int, start: float, end: float, decay_steps: int, decay_start: int = 0) -> float:
    """`start` until `decay_start`, then linear to `end` over `decay_steps` env steps, then flat.
    Dopamine's `linearly_decaying_epsilon(decay_period, step, warmup_steps, epsilon)` is the case
    start = 1, decay_start = warmup_steps; CleanRL's `linear_schedule` the case decay_start = 0."""
    if decay_steps <= 0:
        return end if step >= decay_start else start
    fraction = min(1.0, max(0.0, (step - decay_start) / decay_steps))
    return start + fraction * (end - start)
