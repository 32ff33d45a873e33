"""Running many runs: grid sweeps as local processes, Ray tasks or SLURM jobs."""
