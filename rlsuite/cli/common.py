"""What every command shares: the examples shown by --help, and the one-line usage-error parser."""
from __future__ import annotations

import argparse
from typing import NoReturn

EXAMPLES = """\
examples:
  rlsuite train dqn-classic --env CartPole-v1 --steps 60000      # a few minutes on a laptop CPU
  rlsuite train dqn --env pong --set replay.capacity=200000       # Dopamine DQN on Pong
  rlsuite train dqn-cleanrl --env breakout --set agent.double=true
  rlsuite train --resume runs/dqn-pong-s1                         # continue an interrupted run
  rlsuite train dqn-minatar --tasks minatar:breakout,minatar:asterix --steps-per-task 100000 --cycles 2
  rlsuite train dqn-minatar --env minatar:breakout --set nap.norm=layer --set nap.project=true   # NaP
  rlsuite train --config runs/dqn-pong-s1/config.toml --set train.seed=2
  rlsuite eval runs/dqn-pong-s1 --episodes 30
  rlsuite list envs
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
