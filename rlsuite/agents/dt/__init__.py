"""The Decision Transformer (Chen et al. 2021) with the Multi-Game DT's options (Lee et al. 2022)
and DT-Mem's working memory (Kang et al. 2024): an offline agent, one job per file:

- `agent.py`: the DT agent: its updates and its evaluation with a return target (start here);
- `config.py`: DTConfig, its hyperparameters, and the pattern of an evaluation return target;
- `expert.py`: MGDT's 'expert' return-to-go, sampled from the return head;
- `burn_in.py`: DT-Mem training's burn-in of the working memory.

The transformer itself is rlsuite.nn.transformer, its memory rlsuite.nn.memory.
"""
from rlsuite.agents.dt.agent import DT
from rlsuite.agents.dt.config import DTConfig

__all__ = ["DT", "DTConfig"]
