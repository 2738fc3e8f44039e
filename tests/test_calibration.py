import numpy as np
import pytest

from edge_distill.calibration import InputSpec, load_dataset, select_samples
from edge_distill.errors import BadInput

SPEC = [InputSpec("x", ("batch", 3), "float32")]


def write(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_reads_labels_named_slices_masks_and_weights(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)  # float64 is cast to the model's float32
    path = write(tmp_path, x=x, labels=np.array([0, 1, 1, 0]), slices=np.array(["a", "b", "a", "a"]),
                 slice_rare=np.array([False, False, True, False]), weights=np.array([1, 2, 1, 1.0]))
    data = load_dataset(path, SPEC)
    assert data.inputs["x"].dtype == np.float32 and len(data) == 4
    assert {k: v.tolist() for k, v in data.slices.items()} == {
        "a": [True, False, True, True], "b": [False, True, False, False], "rare": [False, False, True, False]}
    assert data.weights.tolist() == [1, 2, 1, 1]


def test_folder_of_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "labels.npy", np.array([1, 0]))
    assert load_dataset(tmp_path, SPEC).labels.tolist() == [1, 0]


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros((2, 3), np.float32)}, r"no array for model input\(s\) \['x'\]"),
    ({"x": np.zeros((2, 4), np.float32)}, "dimension 1 is 4, not 3"),
    ({"x": np.zeros((2, 3), np.complex64)}, "dtype complex64"),
    ({"x": np.array([[np.inf, 0, 0]], np.float32)}, "NaN or Inf in 1 sample"),
    ({"x": np.zeros((0, 3), np.float32)}, "empty"),
    ({"x": np.zeros((2, 3), np.float32), "labels": np.array([0.5, 1.0])}, "must be integers"),
    ({"x": np.zeros((2, 3), np.float32), "labels": np.array([0, 1, 2])}, "one value per sample"),
    ({"x": np.zeros((2, 3), np.float32), "slice_r": np.array([0, 1])}, "boolean mask"),
    ({"x": np.zeros((2, 3), np.float32), "slice_r": np.array([False, False])}, "holds no samples"),
    ({"x": np.zeros((2, 3), np.float32), "weights": np.array([-1.0, 1.0])}, "non-negative"),
])
def test_bad_data_is_named(tmp_path, arrays, message):
    with pytest.raises(BadInput, match=message) as err:
        load_dataset(write(tmp_path, **arrays), SPEC)
    assert "d.npz" in str(err.value)


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="junk.npz: cannot read data file"):
        load_dataset(path, SPEC)


def test_selection_is_deterministic_and_stratified(tmp_path):
    labels = np.array([0] * 90 + [1] * 10)
    path = write(tmp_path, x=np.random.default_rng(1).normal(size=(100, 3)).astype(np.float32), labels=labels)
    data = load_dataset(path, SPEC)
    a, b = select_samples(data, 20, seed=7), select_samples(data, 20, seed=7)
    assert len(a) == 20 and np.array_equal(a.inputs["x"], b.inputs["x"])
    assert (a.labels == 1).sum() == 2  # the rare class keeps its share
    assert not np.array_equal(a.inputs["x"], select_samples(data, 20, seed=8).inputs["x"])
    assert len(select_samples(data, 500)) == 100


def test_selection_stratifies_by_slice_without_labels(tmp_path):
    rare = np.zeros(100, bool)
    rare[:3] = True
    data = load_dataset(write(tmp_path, x=np.zeros((100, 3), np.float32), slice_rare=rare), SPEC)
    assert select_samples(data, 10, seed=0).slices["rare"].sum() >= 1
