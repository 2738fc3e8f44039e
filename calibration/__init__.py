"""Calibration and evaluation data: readers, validation against the model's inputs, and
deterministic sample selection. No heavy imports here: numpy only."""

from .dataset import (Dataset, InputSpec, example_batch, fixed_batch_of, from_model_layout, on_each_chunk, padded, run_in_batches,
                      to_model_layout, whole_batches, zeros)
from .readers import check_labels, load_dataset, read_arrays
from .selection import select_indices, select_samples

__all__ = ["Dataset", "InputSpec", "check_labels", "example_batch", "fixed_batch_of", "from_model_layout", "to_model_layout", "load_dataset",
           "read_arrays", "on_each_chunk", "padded", "run_in_batches", "select_indices", "select_samples", "whole_batches",
           "zeros"]
