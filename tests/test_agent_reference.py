"""PPO and the Decision Transformer to the bit (tests/data/agent_reference.py says what the cases
are): on a platform with a recorded entry, every minibatch loss, the final weights and the final
evaluation must match it exactly; elsewhere the number of updates and the first update's losses
must match the nearest recorded platform within 1e-3 relative (the runs sample actions, so later
updates may part on other float kernels)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "data"))
import agent_reference as ref  # noqa: E402

REFERENCES = ref.load()["references"]


@pytest.mark.parametrize("name", sorted(ref.CASES))
def test_agent_reproduces_the_reference(tmp_path, name):
    info = ref.platforms.platform()
    key = ref.platforms.platform_key(info)
    got = ref.run_case(name, tmp_path / name)
    if key not in REFERENCES:
        nearest_key, entry = ref.platforms.nearest(REFERENCES, info)
        problems = ref.compare_tolerant(got, entry["cases"][name])
        assert not problems, f"{name} on {key}, against the nearest recorded platform {nearest_key}: {problems}"
        return
    want = REFERENCES[key]["cases"][name]
    assert len(got["losses"]) == len(want["losses"])
    first = next((i for i, (a, b) in enumerate(zip(got["losses"], want["losses"])) if a != b), None)
    assert first is None, (f"{name}: update {first} losses {got['losses'][first]} != recorded {want['losses'][first]}: "
                           "the agent's arithmetic or random streams changed")
    assert got["weights_sha256"] == want["weights_sha256"], f"{name}: final weights differ from the record"
    assert got["final_eval_mean"] == want["final_eval_mean"]


def test_the_reference_check_sees_a_changed_learning_rate(tmp_path):
    """Not blind: PPO with lr x 1.001 changes the recorded losses (exactly or within tolerance)."""
    preset, env, overrides = ref.CASES["ppo-cartpole"]
    from rlsuite import config
    lr = config.build_run_config(preset, env, overrides).agent.lr
    ref.CASES["ppo-cartpole"] = (preset, env, overrides + [f"agent.lr={lr * 1.001!r}"])
    try:
        got = ref.run_case("ppo-cartpole", tmp_path / "ppo")
    finally:
        ref.CASES["ppo-cartpole"] = (preset, env, overrides)
    _, entry = ref.platforms.nearest(REFERENCES, ref.platforms.platform())
    want = entry["cases"]["ppo-cartpole"]
    assert got["losses"][1:] != want["losses"][1:]  # the first minibatch precedes any step of the new lr
    assert got["weights_sha256"] != want["weights_sha256"]
