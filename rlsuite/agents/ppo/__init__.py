"""PPO (Schulman et al., 2017) with GAE, an optional LSTM core and an optional RND bonus, one job
per file:

- `agent.py`: the PPO agent: acting, storing the rollout, the epochs of updates (start here);
- `config.py`: PPOConfig, its hyperparameters (defaults: CleanRL's ppo_atari_envpool.py), and the
  rules that tie them to the run's envs (minibatch sizes and splits);
- `network.py`: the actor-critic (trunks with the optional LSTM, the heads) and action sampling;
- `objective.py`: GAE, the clipped surrogate and value losses, the lr anneal, explained variance;
- `rollout.py`: the rollout storage;
- `observations.py`: observation batches (arrays or dicts) as the others handle them;
- `checkpoint.py`: what a checkpoint or an export holds of the agent, and exact resume;
- `reporting.py`: what a run prints, logs and checks about the agent;
- `finetune.py`: what fine-tuning and knowledge retention ask of it.

PPO inherits the methods of the last three from their classes (PPOCheckpoint, PPOReporting,
PPOFineTuning). RND's networks are rlsuite.nn.rnd.
"""
from rlsuite.agents.ppo.agent import PPO
from rlsuite.agents.ppo.config import PPOConfig

__all__ = ["PPO", "PPOConfig"]
