"""Offline data: the on-disk dataset format (`rlsuite.data.dataset`) that `rlsuite collect` writes and
behaviour cloning, EWC Fisher estimates, EM transitions and the Decision Transformer read."""
from rlsuite.data.collect import collect
from rlsuite.data.dataset import Dataset
from rlsuite.data.format import DEFAULT_CHUNK_SIZE
from rlsuite.data.writer import DatasetWriter

__all__ = ["DEFAULT_CHUNK_SIZE", "Dataset", "DatasetWriter", "collect"]
