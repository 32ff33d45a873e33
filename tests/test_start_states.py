"""Start-state sets on the real ALE (Montezuma's Revenge): the --when parser, `rlsuite states collect`
from a scripted action list, saved states that continue the game, and env.start_states resets."""
from __future__ import annotations

import dataclasses

import json

import cv2
import numpy as np
import pytest

from rlsuite.cli import main
from rlsuite.envs import EnvConfig, make
from rlsuite.envs.config import start_states_problem
from rlsuite.envs.start_states import condition_keys, load_state_set, parse_condition
from rlsuite.errors import UserError

KEYS = condition_keys("MontezumaRevenge")
NOOP, RIGHT = 0, 3  # indices in Montezuma's action set
# Wait, then walk right off the starting ledge: Panama Joe falls and loses a life near step 40.
ACTIONS = [NOOP] * 10 + [RIGHT] * 80 + [NOOP] * 60


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Two state sets made by the CLI: 'steps' (step>=30, every 10 steps, 3 states) and 'death'
    (the first step with a life lost), plus the actions file."""
    root = tmp_path_factory.mktemp("states")
    actions = root / "actions.json"
    actions.write_text(json.dumps(ACTIONS))
    common = ["states", "collect", "--env", "montezuma", "--from", str(actions), "--seed", "3"]
    assert main(common + ["--when", "step>=30", "--every", "10", "--count", "3", "--out", str(root / "steps")]) == 0
    assert main(common + ["--when", "lives<=4 and room==1", "--count", "1", "--out", str(root / "death")]) == 0
    return {"steps": root / "steps", "death": root / "death", "actions": actions, "root": root}


def test_parse_condition_good():
    cond = parse_condition("room>=1 and lives > 2", KEYS)
    assert cond.terms == (("room", ">=", 1.0), ("lives", ">", 2.0))
    assert cond({"room": 1, "lives": 3}) and not cond({"room": 0, "lives": 3}) and not cond({"room": 7, "lives": 2})
    assert parse_condition("step==30", KEYS)({"step": 30})
    assert parse_condition(" score != -1.5 ", KEYS)({"score": 0.0})
    assert parse_condition("rooms<2 and step<=4", KEYS)({"rooms": 1, "step": 4})


@pytest.mark.parametrize("text", ["", "room", "room>=", "room=>1", "room>=1 or lives>2", "room>=1 and",
                                  "floor>=1", "room>=x", "__import__('os').system('true')", "room>=1;lives<2"])
def test_parse_condition_bad(text):
    with pytest.raises(UserError) as err:
        parse_condition(text, KEYS)
    assert "\n" not in str(err.value)


def test_collect_manifest(sets):
    manifest = json.loads((sets["steps"] / "manifest.json").read_text())
    assert manifest["env"] == "montezuma" and manifest["game"] == "MontezumaRevenge"
    assert manifest["source"] == {"kind": "actions", "file": str(sets["actions"]), "actions": len(ACTIONS)}
    assert manifest["condition"] == "step>=30" and manifest["seed"] == 3 and manifest["count"] == 3
    assert manifest["env_config"]["sticky_action_prob"] == 0.0 and manifest["env_config"]["backend"] == "gymnasium"
    assert [s["step"] for s in manifest["states"]] == [30, 40, 50]
    assert all(s["episode"] == 0 and s["room"] == 1 and s["score"] == 0.0 for s in manifest["states"])
    death = load_state_set(sets["death"]).manifest["states"]
    assert len(death) == 1 and death[0]["lives"] <= 4 and 30 < death[0]["step"] < 90


def _ale():
    from ale_py import ALEInterface, roms

    ale = ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(str(roms.get_rom_path("montezuma_revenge")))
    return ale


@pytest.mark.parametrize("name", ["steps", "death"])
def test_saved_states_continue_the_game(sets, name):
    """Each state, restored in a fresh raw ALE, has the RAM recorded with it, the room and lives of
    its manifest record, and plays 100 more frames without the game ending."""
    from ale_py import Action, ALEState

    states = load_state_set(sets[name])
    for i, record in enumerate(states.manifest["states"]):
        ale = _ale()
        ale.restoreState(ALEState(states.states[i]))
        ram = ale.getRAM()
        np.testing.assert_array_equal(ram, states.ram[i])
        assert int(ram[3]) == record["room"] and ale.lives() == record["lives"]
        for _ in range(100):
            ale.act(Action.NOOP)
        assert not ale.game_over()
        assert not np.array_equal(ale.getRAM(), states.ram[i])  # the game went on


def test_saved_screen_and_ram_are_the_games(sets):
    """Playing the same actions on the env the states came from reaches the saved RAM and screen."""
    states = load_state_set(sets["steps"])
    cfg = EnvConfig(**states.manifest["env_config"])
    env = make(cfg, 1, 3, evaluation=True)
    try:
        env.reset()
        ale = env.envs[0].ale
        for t, action in enumerate(ACTIONS[:30], start=1):
            env.step(np.array([action]))
        np.testing.assert_array_equal(ale.getRAM(), states.ram[0])
        np.testing.assert_array_equal(ale.getScreenGrayscale(), states.screen[0])
        assert env.envs[0].last_info["room"] == 1 and "rooms" in env.envs[0].last_info
    finally:
        env.close()


def _draws(folder, seed, resets=6):
    """Start-state indices drawn by a 2-env vector over `resets` resets (the first one seeded)."""
    cfg = EnvConfig(id="montezuma", backend="gymnasium", start_states=str(folder))
    env = make(cfg, 2, seed)
    try:
        draws = []
        for _ in range(resets):
            env.reset()
            draws.append([game.start_index for game in env.envs])
        return draws
    finally:
        env.close()


def test_env_starts_from_saved_states(sets):
    """Resets restore a saved state: RAM equal to the saved RAM, newest frame = the saved screen
    resized as the env does; episode counting starts there; the same seed draws the same states."""
    states = load_state_set(sets["steps"])
    cfg = EnvConfig(id="montezuma", backend="gymnasium", start_states=str(sets["steps"]))
    env = make(cfg, 2, 11)
    try:
        obs, _ = env.reset()
        for i, game in enumerate(env.envs):
            k = game.start_index
            assert 0 <= k < len(states)
            np.testing.assert_array_equal(game.ale.getRAM(), states.ram[k])
            expected = cv2.resize(states.screen[k], (cfg.screen_size, cfg.screen_size), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(obs[i, -1], expected)
            assert not obs[i, :-1].any()  # a fresh episode: the rest of the stack is zeros
        env.step(np.array([NOOP, NOOP]))
        assert all(game.last_info["rooms"] == 1 for game in env.envs)
    finally:
        env.close()
    first = _draws(sets["steps"], seed=5)
    assert first == _draws(sets["steps"], seed=5)
    assert len({k for row in first for k in row}) > 1  # it does draw, not always the same state
    assert first != _draws(sets["steps"], seed=6)


def test_start_states_config(sets, tmp_path):
    assert start_states_problem("") is None and start_states_problem(str(sets["steps"])) is None
    assert "not a start-state set" in start_states_problem(str(tmp_path))
    cfg = EnvConfig(id="montezuma", backend="envpool", start_states=str(sets["steps"]))
    with pytest.raises(UserError, match="backend=gymnasium"):  # envpool cannot restore emulator states
        make(cfg, 1, 0)
    with make(dataclasses.replace(cfg, backend="auto"), 1, 0) as env:  # auto picks ale-py for start states
        assert type(env).__name__ == "SyncGameVec"


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("bad", [
    ["--when", "room>=1 or lives<3"],  # syntax
    ["--when", "floor>=1"],  # unknown key
    ["--count", "0"],
    ["--from", "no/such/run"],
])
def test_cli_bad_input(sets, capsys, tmp_path, bad):
    args = {"--from": str(sets["actions"]), "--when": "step>=1", "--count": "2", "--out": str(tmp_path / "out")}
    args.update(dict(zip(bad[::2], bad[1::2])))
    code, err = _one_line_error(capsys, ["states", "collect"] + [x for kv in args.items() for x in kv])
    assert code == 2 and err.count("\n") == 1 and err.startswith("rlsuite: error:")
    assert not (tmp_path / "out").exists()


def test_cli_shortfall_writes_nothing(sets, capsys, tmp_path):
    code, err = _one_line_error(capsys, ["states", "collect", "--from", str(sets["actions"]), "--when", "room>=2",
                                         "--count", "1", "--out", str(tmp_path / "out")])
    assert code == 2 and "found 0 of 1" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
