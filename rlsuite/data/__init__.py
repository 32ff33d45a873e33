"""Offline data: the on-disk dataset format (`rlsuite.data.dataset`) that `rlsuite collect` writes and
behaviour cloning, EWC Fisher estimates, EM transitions and the Decision Transformer read."""
from rlsuite.data.dataset import DEFAULT_CHUNK_SIZE, Dataset, DatasetWriter, collect

__all__ = ["DEFAULT_CHUNK_SIZE", "Dataset", "DatasetWriter", "collect"]
