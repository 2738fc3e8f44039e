"""Calibration and evaluation data: readers, validation against the model's inputs, and
deterministic sample selection. No heavy imports here: numpy only."""

from .dataset import Dataset, InputSpec
from .readers import load_dataset
from .selection import select_samples

__all__ = ["Dataset", "InputSpec", "load_dataset", "select_samples"]
