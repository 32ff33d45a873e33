"""The Stable-Baselines3 side of `rlsuite bench ppo`: envs, network and PPO settings built from the
same `settings(...)` and rlsuite config as the rlsuite side, and the timed `learn()` call.

Imports SB3 at module level: only the SB3 worker, experiments/ppo_parity.py and the tests (after
importorskip) load it.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from rlsuite.bench.dqn_peers import MinAtarCNN
from rlsuite.bench.harness import timing
from rlsuite.bench.ppo_settings import Algo, rlsuite_config, settings, warm_imports
from rlsuite.envs import resolve_env_id
from rlsuite.envs.config import ATARI, CLASSIC, MINATAR

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # separate actor and critic MLPs (CleanRL ppo.py; SB3's MlpPolicy default for PPO)
    hidden = list(s["hidden"])
    return "MlpPolicy", {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": ACTIVATIONS[s["activation"]]}


def _minatar(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CnnPolicy", {"features_extractor_class": MinAtarCNN, "features_extractor_kwargs": {"features_dim": 128},
                         "net_arch": []}


def _nature(s: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CnnPolicy", {"net_arch": []}  # NatureCNN (32/64/64 convs, 512 dense) shared; linear heads


# rlsuite encoder.kind -> (SB3 policy, policy_kwargs) for the same layers
SB3_NETWORKS = {"mlp": _mlp, "minatar": _minatar, "nature": _nature}


def single_env_factory(s: dict[str, Any], env_cfg: Any) -> Callable[[], gym.Env]:
    """rlsuite's own single-env class for classic control and MinAtar (a gymnasium.Env)."""
    family, game = resolve_env_id(s["env"])
    if family == CLASSIC:
        from rlsuite.envs.classic import ClassicGame

        return lambda: ClassicGame(env_cfg, game)
    if family == MINATAR:
        from rlsuite.envs.minatar import MinAtarGame

        return lambda: MinAtarGame(env_cfg, game)
    raise ValueError(f"no single-env class for the {family} family")


def sb3_env(s: dict[str, Any], env_cfg: Any) -> Any:
    """SB3's vec env for the task, with rlsuite's env settings (`env_cfg`, from the same preset):
    a DummyVecEnv over rlsuite's single-env class for classic control and MinAtar; SB3's
    AtariWrapper on <Game>NoFrameskip-v4 (DummyVecEnv) plus stacked frames for Atari."""
    family, game = resolve_env_id(s["env"])
    if family in (CLASSIC, MINATAR):
        return DummyVecEnv([single_env_factory(s, env_cfg)] * s["num_envs"])
    if family == ATARI:
        import ale_py
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        wrapper = dict(noop_max=env_cfg.noop_max, frame_skip=env_cfg.frame_skip, screen_size=env_cfg.screen_size,
                       terminal_on_life_loss=env_cfg.terminal_on_life_loss, clip_reward=env_cfg.clip_rewards,
                       action_repeat_probability=env_cfg.sticky_action_prob)
        env = make_atari_env(f"{game}NoFrameskip-v4", n_envs=s["num_envs"], seed=s["seed"], wrapper_kwargs=wrapper)
        return VecFrameStack(env, n_stack=env_cfg.frame_stack)
    raise ValueError(f"bench ppo has no SB3 env for the {family} family")


class AnnealedLR:
    """lr * (progress_remaining + 1/rollouts): SB3 reads it after counting a rollout's steps
    (progress 1 - (k+1)/K before update k), so update k gets lr * (1 - k/K), as rlsuite and CleanRL."""

    def __init__(self, lr: float, rollouts: int) -> None:
        self.lr, self.rollouts = lr, rollouts

    def __call__(self, progress_remaining: float) -> float:
        return self.lr * min(1.0, progress_remaining + 1.0 / self.rollouts)


def sb3_kwargs(s: dict[str, Any]) -> dict[str, Any]:
    """PPO(...) keyword arguments for settings `s` (the policy and env come separately)."""
    policy, policy_kwargs = SB3_NETWORKS[s["network"]](s)
    lr = AnnealedLR(s["lr"], s["rollouts"]) if s["anneal_lr"] else s["lr"]
    return dict(
        policy=policy,
        policy_kwargs={**policy_kwargs, "ortho_init": s["init"] == "orthogonal",
                       "share_features_extractor": True,  # the CNN trunk; the MLP's extractor is a Flatten
                       "optimizer_kwargs": {"eps": s["adam_eps"]}},
        learning_rate=lr, n_steps=s["num_steps"], batch_size=s["batch_size"], n_epochs=s["update_epochs"],
        gamma=s["gamma"], gae_lambda=s["gae_lambda"], clip_range=s["clip_coef"],
        clip_range_vf=s["clip_coef"] if s["clip_vloss"] else None, normalize_advantage=s["norm_adv"],
        ent_coef=s["ent_coef"], vf_coef=s["vf_coef"] / 2,  # SB3: vf_coef * MSE; rlsuite: vf_coef * 0.5 MSE
        max_grad_norm=s["max_grad_norm"], target_kl=None, seed=s["seed"], device=s["device"], verbose=0,
    )


def build_sb3(s: dict[str, Any], env_cfg: Any = None) -> PPO:
    """Env and model, as the timed run builds them (`env_cfg`: rlsuite's env settings for the task)."""
    torch.set_num_threads(s["threads"])
    env = sb3_env(s, env_cfg if env_cfg is not None else rlsuite_config(s).env)
    kwargs = sb3_kwargs(s)
    return PPO(kwargs.pop("policy"), env, **kwargs)


def gradient_steps(model: PPO) -> int:
    """SB3 counts epochs in `_n_updates`; gradient steps = epochs x minibatches per epoch."""
    return model._n_updates * -(-model.n_steps * model.n_envs // model.batch_size)


def sb3_worker(task: str, steps: int, algo: Algo = Algo()) -> dict[str, Any]:
    """Time env + PPO(...) + learn(total_timesteps=steps), in this process."""
    import stable_baselines3

    s = settings(task, steps, algo)
    env_cfg = rlsuite_config(s).env  # presets read before the clock starts, as on the rlsuite side
    warm_imports(s)
    start = time.perf_counter()
    model = build_sb3(s, env_cfg)
    learn_start = time.perf_counter()
    model.learn(total_timesteps=s["steps"])
    end = time.perf_counter()
    result = timing(start, learn_start, end, end, model.num_timesteps, gradient_steps(model),
                     {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__})
    model.get_env().close()
    return {**result, "total_timesteps": model._total_timesteps}
