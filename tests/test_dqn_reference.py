"""DQN's behaviour to the bit: two short runs (CartPole with n-step prioritized double DQN; a
MinAtar task sequence with GMP and NaP) must reproduce every loss and the final online weights
recorded in tests/data/dqn_reference.json, which was generated before the online loop became
agent-agnostic and re-recorded once on a machine whose float kernels differ (the JSON names its
platform), at a commit that reproduced the original on the original machine. A refactor of the loop, the agent or the replay buffer that changes DQN's
arithmetic or its random streams fails here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from dqn_reference import CASES, platform, run_case  # noqa: E402

REFERENCE = json.loads((DATA / "dqn_reference.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_dqn_reproduces_the_reference_losses_to_the_bit(tmp_path, name):
    got = run_case(name, tmp_path / name)
    want = REFERENCE[name]
    assert len(got["losses"]) == len(want["losses"])
    first = next((i for i, (a, b) in enumerate(zip(got["losses"], want["losses"])) if a != b), None)
    assert first is None, (f"update {first}: {float.fromhex(got['losses'][first])} != "
                           f"{float.fromhex(want['losses'][first])} (recorded on {REFERENCE.get('platform')}, "
                           f"running on {platform()}: a different CPU ISA or build changes float kernels; "
                           "regenerate with python tests/data/dqn_reference.py only at a commit known not to "
                           "change DQN's arithmetic)")
    assert got["online_sha256"] == want["online_sha256"]
