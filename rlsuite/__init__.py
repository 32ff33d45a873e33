"""rlsuite: a PyTorch suite for continual and reinforcement learning research."""
__version__ = "0.1.0"
