"""The run's machinery, shared by every kind of run: the lifecycle, run directory and its lock, checkpoints, seeding, the monitor, evaluation, preflight checks, profiling and the compute plan."""
