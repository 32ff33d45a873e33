"""The Stable-Baselines3 side of `rlsuite bench dqn`: env, network and DQN settings built from the
same `settings(...)` and rlsuite config as the rlsuite side, and the timed `learn()` call.

Imports SB3 at module level: only the SB3 worker and the tests (after importorskip) load it.
"""
from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rlsuite.bench.dqn_settings import Algo, rlsuite_config, settings, warm_imports
from rlsuite.bench.harness import timing
from rlsuite.envs import resolve_env_id
from rlsuite.envs.config import ATARI, CLASSIC, MINATAR


class MinAtarCNN(BaseFeaturesExtractor):
    """rlsuite's MinAtar encoder (rlsuite.nn.conv.minatar_cnn) for SB3: one 3x3 conv of 16,
    ReLU, flatten, Linear 128, ReLU. MinAtar's 0/1 uint8 planes are not an image to SB3 (high is 1),
    so it feeds them as floats unscaled, as rlsuite does (input scale 1)."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, 3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))


def _mlp(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "MlpPolicy", {"net_arch": list(s["hidden"])}


def _minatar(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CnnPolicy", {"features_extractor_class": MinAtarCNN, "features_extractor_kwargs": {"features_dim": 128},
                         "net_arch": []}


def _nature(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CnnPolicy", {}  # NatureCNN (32/64/64 convs, 512 dense) and a linear head: net_arch []


# rlsuite encoder.kind -> (SB3 policy, policy_kwargs) for the same layers
SB3_NETWORKS = {"mlp": _mlp, "minatar": _minatar, "nature": _nature}


def sb3_env(s: dict[str, Any], env_cfg: Any) -> Any:
    """SB3's env for the task, with rlsuite's env settings (`env_cfg`, from the same preset).
    Classic control and MinAtar: rlsuite's own single-env class (a gymnasium.Env), so both sides
    pay for the same game code. Atari: SB3's AtariWrapper on PongNoFrameskip-v4 plus 4 stacked frames."""
    family, game = resolve_env_id(s["env"])
    if family == CLASSIC:
        from rlsuite.envs.classic import ClassicGame

        return ClassicGame(env_cfg, game)
    if family == MINATAR:
        from rlsuite.envs.minatar import MinAtarGame

        return MinAtarGame(env_cfg, game)
    if family == ATARI:
        import ale_py
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        wrapper = dict(noop_max=env_cfg.noop_max, frame_skip=env_cfg.frame_skip, screen_size=env_cfg.screen_size,
                       terminal_on_life_loss=env_cfg.terminal_on_life_loss, clip_reward=env_cfg.clip_rewards,
                       action_repeat_probability=env_cfg.sticky_action_prob)
        env = make_atari_env(f"{game}NoFrameskip-v4", n_envs=1, seed=s["seed"], wrapper_kwargs=wrapper)
        return VecFrameStack(env, n_stack=env_cfg.frame_stack)
    raise ValueError(f"bench dqn has no SB3 env for the {family} family")


def sb3_kwargs(s: dict[str, Any]) -> dict[str, Any]:
    """DQN(...) keyword arguments for settings `s` (the policy and env come separately)."""
    policy, policy_kwargs = SB3_NETWORKS[s["network"]](s)
    return dict(
        policy=policy, policy_kwargs={**policy_kwargs, "optimizer_kwargs": {"eps": s["adam_eps"]}},
        learning_rate=s["lr"], buffer_size=s["buffer_size"], learning_starts=s["learning_starts"],
        batch_size=s["batch_size"], tau=1.0, gamma=s["gamma"], train_freq=s["train_freq"], gradient_steps=s["gradient_steps"],
        target_update_interval=s["target_update"], exploration_initial_eps=s["eps_start"],
        exploration_final_eps=s["eps_end"],
        # SB3 decays over a fraction of total_timesteps; with total_timesteps = steps run this is
        # the same number of env steps as rlsuite's epsilon_decay_steps.
        exploration_fraction=s["eps_decay_steps"] / s["steps"], max_grad_norm=s["max_grad_norm"],
        seed=s["seed"], device=s["device"], verbose=0,
    )


def build_sb3(s: dict[str, Any], env_cfg: Any = None) -> DQN:
    """Env and model, as the timed run builds them (`env_cfg`: rlsuite's env settings for the task)."""
    torch.set_num_threads(s["threads"])
    env = sb3_env(s, env_cfg if env_cfg is not None else rlsuite_config(s).env)
    kwargs = sb3_kwargs(s)
    return DQN(kwargs.pop("policy"), env, **kwargs)


def sb3_worker(task: str, steps: int, algo: Algo = Algo()) -> dict[str, Any]:
    """Time env + DQN(...) + learn(total_timesteps=steps), in this process."""
    import stable_baselines3

    s = settings(task, steps, algo)
    env_cfg = rlsuite_config(s).env  # presets read before the clock starts, as on the rlsuite side
    warm_imports(s)
    start = time.perf_counter()
    model = build_sb3(s, env_cfg)
    learn_start = time.perf_counter()
    model.learn(total_timesteps=steps)
    end = time.perf_counter()
    result = timing(start, learn_start, end, end, model.num_timesteps, model._n_updates,
                     {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__})
    return {**result, "total_timesteps": model._total_timesteps}
