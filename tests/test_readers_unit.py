"""calibration/readers.py, unit by unit: the size bound read from .npy headers, the file formats, the
input checks and the labels check, each refusal by its exact message naming the file (issue 31)."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest

from edge_distill.calibration import InputSpec, load_dataset
from edge_distill.calibration.dataset import Dataset
from edge_distill.calibration.readers import check_labels, read_arrays
from edge_distill.errors import BadInput

SPEC = [InputSpec("x", ("batch", 3), "float32")]
HINT = "\n  hint: if this machine can hold it, set EDGE_DISTILL_MAX_ARRAY_BYTES to a larger number of bytes"


def refused(call, *args) -> str:
    with pytest.raises(BadInput) as err:
        call(*args)
    return str(err.value)


# ---- the size bound, from the header ------------------------------------------------------------------

def test_an_npz_array_over_the_bound_is_refused_with_its_size_worked_out(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_DISTILL_MAX_ARRAY_BYTES", "1000")
    path = tmp_path / "big.npz"
    np.savez(path, x=np.zeros((2, 3), np.float32), y=np.zeros((25, 5), np.float64))  # y: 25 * 5 * 8 = 1000 + 0
    assert sorted(read_arrays(path)) == ["x", "y"]  # exactly at the bound: read
    np.savez(path, x=np.zeros((2, 3), np.float32), y=np.zeros((7, 20), np.float64))  # 7 * 20 * 8 = 1120 bytes
    assert refused(read_arrays, path) == (f"{path}: array 'y' declares shape [7, 20] float64: 1,120 bytes, more "
                                          f"than the 1,000 a data array may have; refused before reading it{HINT}")


def test_a_npy_in_a_folder_over_the_bound_is_refused_and_one_at_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_DISTILL_MAX_ARRAY_BYTES", "24")
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))  # 24 bytes: at the bound
    assert load_dataset(tmp_path, SPEC).inputs["x"].shape == (2, 3)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.int32).astype(np.float64))  # 48 bytes
    assert refused(load_dataset, tmp_path, SPEC) == (
        f"{tmp_path / 'x.npy'}: array 'x' declares shape [2, 3] float64: 48 bytes, more than the 24 a data "
        f"array may have; refused before reading it{HINT}")


def test_a_version_2_npy_header_is_read(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with open(tmp_path / "x.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=(2, 0))
    assert load_dataset(tmp_path, SPEC).inputs["x"].tolist() == x.tolist()


def test_an_unreadable_npy_header_is_named(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"{'descr': 'zz'}\n")
    message = refused(load_dataset, tmp_path, SPEC)
    assert message.startswith(f"{tmp_path / 'x.npy'}: array 'x' has no readable .npy header (")


def test_an_object_array_in_an_npz_is_never_unpickled(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    message = refused(load_dataset, path, SPEC)
    assert message.startswith(f"{path}: cannot read data file (Object arrays cannot be loaded when allow_pickle=False")


# ---- formats -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["d.txt", "d.pkl", "d.zip", "d.csv"])  # suffixes after and before ".npz"
def test_a_file_of_another_format_is_named_as_unsupported(tmp_path, name):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:  # even a zip: only the suffix decides
        archive.writestr("x.npy", b"")
    assert refused(read_arrays, path) == (f"{path}: unsupported data format '{path.suffix}'\n"
                                          "  hint: use .npz or a folder of .npy files")


# ---- inputs --------------------------------------------------------------------------------------------

def test_integers_for_a_bool_input_are_refused_by_dtype_not_as_unscaled_pixels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, m=np.ones((2, 3), np.int64))
    assert refused(load_dataset, path, [InputSpec("m", ("batch", 3), "bool")]) == (
        f"{path}: input 'm' has dtype int64, the model expects bool")


def test_nan_samples_of_a_multi_dimensional_input_are_counted_per_sample(tmp_path):
    x = np.zeros((4, 2, 3), np.float32)
    x[1, 0, 0] = x[1, 1, 2] = np.nan  # two NaN in one sample
    x[3, 1, 1] = np.inf
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    assert refused(load_dataset, path, [InputSpec("x", ("batch", 2, 3), "float32")]) == (
        f"{path}: input 'x' contains NaN or Inf in 2 sample(s)")


def test_a_scalar_where_one_value_per_sample_is_needed_is_named(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 3), np.float32), labels=np.array(1))
    assert refused(load_dataset, path, SPEC) == f"{path}: 'labels' must be one value per sample (2), got shape []"


def test_a_mask_of_strings_is_not_a_boolean_mask(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 3), np.float32), slice_r=np.array(["a", "b"]))
    assert refused(load_dataset, path, SPEC) == f"{path}: 'slice_r' must be a boolean mask, got <U1"


@pytest.mark.parametrize("weights", [[0.0, 0.5, 2.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
def test_weights_with_zeros_or_summing_to_one_are_kept(tmp_path, weights):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 3), np.float32), weights=np.array(weights))
    assert load_dataset(path, SPEC).weights.tolist() == weights


@pytest.mark.parametrize("weights", [[1.0, -0.5, 1.0], [0.0, 0.0, 0.0]])
def test_a_negative_weight_or_all_zero_weights_are_refused(tmp_path, weights):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 3), np.float32), weights=np.array(weights))
    assert refused(load_dataset, path, SPEC) == f"{path}: 'weights' must be finite, non-negative and not all zero"


# ---- labels against the class count ---------------------------------------------------------------------

def labelled(labels) -> Dataset:
    return Dataset(source="eval.npz", inputs={"x": np.zeros((len(labels), 3), np.float32)},
                   labels=np.array(labels, np.int64))


def test_labels_outside_the_classes_are_counted_and_the_first_five_shown():
    labels = [0, 2, -1, 3, 3, 7, -2, 9, 1, 5]  # classes 0..2; bad: -2, -1, 3, 3, 5, 7, 9 (7 samples, 6 values)
    bad = [v for v in labels if not 0 <= v < 3]
    assert len(bad) == 7 and sorted(set(bad))[:5] == [-2, -1, 3, 5, 7]
    assert refused(check_labels, labelled(labels), 3) == (
        "eval.npz: 'labels' holds -2, -1, 3, 5, 7 in 7 sample(s), outside [0, 3): the model's output has 3 classes")


def test_labels_on_both_edges_of_the_classes_pass_and_just_outside_fail():
    assert check_labels(labelled([0, 1, 2, 2, 0]), 3) is None
    assert check_labels(Dataset(source="eval.npz", inputs={"x": np.zeros((2, 3))}, labels=None), 3) is None
    assert re.fullmatch(r"eval\.npz: 'labels' holds 3 in 1 sample\(s\), outside \[0, 3\).*",
                        refused(check_labels, labelled([0, 3, 2]), 3))
    assert re.fullmatch(r"eval\.npz: 'labels' holds -1 in 2 sample\(s\), outside \[0, 3\).*",
                        refused(check_labels, labelled([-1, 0, -1]), 3))
