"""The recurrent cores alone, on one CPU thread: PPO's LRU block (rlsuite.nn.lru) against the
single-layer LSTM it sits beside, at ppo-classic's sizes (64 features in, 128 state units).
Acting: one step for 4 envs, no gradient. Update: a minibatch of whole env sequences (128 steps x
1 env: CartPole's 4 envs / 4 minibatches) forward and backward (LRU: the parallel scan; LSTM: one
fused nn.LSTM call). Median of 7 rounds, the two cores taking turns.

    .venv/bin/python experiments/lru_core_speed.py
"""
from __future__ import annotations

import statistics
import time

import torch

from rlsuite.nn.lru import LRUBlock


def per_call_ms(fn, calls: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    width, state, steps, envs = 64, 128, 128, 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lru, lstm = LRUBlock(width, state, 0.9, 0.999, generator=gen), torch.nn.LSTM(width, state)
    seq = torch.randn(steps, 1, width, generator=gen)
    one = torch.randn(1, envs, width, generator=gen)
    zeros_seq, zeros_one = torch.zeros(steps, 1), torch.zeros(1, envs)

    def lru_update():
        lru(seq, torch.zeros(2, 1, state), zeros_seq)[0].sum().backward()

    def lstm_update():
        lstm(seq)[0].sum().backward()

    def lru_act():
        with torch.no_grad():
            lru(one, torch.zeros(2, envs, state), zeros_one)

    def lstm_act():
        with torch.no_grad():
            lstm(one, (torch.zeros(1, envs, state), torch.zeros(1, envs, state)))

    cases = {"update (128 steps fwd+bwd)": (lru_update, lstm_update, 20), "act (1 step, 4 envs)": (lru_act, lstm_act, 500)}
    print("| measurement | LRU ms | LSTM ms | LRU / LSTM |")
    print("|---|---|---|---|")
    for name, (f_lru, f_lstm, calls) in cases.items():
        a, b = [], []
        for _ in range(7):
            a.append(per_call_ms(f_lru, calls))
            b.append(per_call_ms(f_lstm, calls))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {ma:.3f} | {mb:.3f} | {ma / mb:.2f} |")


if __name__ == "__main__":
    main()
