"""DQN (Mnih et al., 2015) with the options researchers toggle most, one job per file:

- `agent.py`: the DQN agent: acting, the replay, the updates, the target syncs (start here);
- `config.py`: DQNConfig, its hyperparameters (defaults: Dopamine's JAX DQN);
- `network.py`: QNetwork, the encoder with a linear or dueling Q head;
- `loss.py`: the TD targets (vanilla or double) and the TD loss (MSE or Huber);
- `exploration.py`: the epsilon schedule;
- `reporting.py`: what a run prints, logs and checks about the agent;
- `finetune.py`: what fine-tuning and knowledge retention ask of it.

DQN inherits the methods of the last two from their classes (DQNReporting, DQNFineTuning).
"""
from rlsuite.agents.dqn.agent import DQN
from rlsuite.agents.dqn.config import DQNConfig

__all__ = ["DQN", "DQNConfig"]
