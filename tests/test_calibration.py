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
    ({"x": np.zeros((2, 3), np.float32), "weights": np.array([np.nan, 1.0])}, "must be finite"),
    ({"x": np.zeros((2, 3), np.float32), "weights": np.array([0.0, 0.0])}, "not all zero"),
    ({"x": np.zeros((2, 3), np.float32), "weights": np.ones((2, 1))}, r"'weights' must be one value per sample \(2\), "
                                                                       r"got shape \[2, 1\]"),
    ({"x": np.zeros((2, 3), np.float32), "labels": np.array([0])}, r"one value per sample \(2\), got shape \[1\]"),
    ({"x": np.zeros((3,), np.float32)}, r"shape \[3\], the model expects x\[batch, 3\] float32 \(2 dimensions\)"),
    ({"x": np.zeros((2, 3, 1), np.float32)}, r"shape \[2, 3, 1\], the model expects x\[batch, 3\] float32 \(2 dimensions\)"),
    ({"x": np.zeros((2, 2), np.float32)}, "dimension 1 is 2, not 3"),
    ({"x": np.array([[np.nan, 0, 0], [0, 0, 0], [0, np.inf, -np.inf]], np.float32)}, "NaN or Inf in 2 sample"),
    ({"x": np.zeros((2, 3), np.float32), "slice_r": np.array([0.0, 1.0])}, "'slice_r' must be a boolean mask, got "
                                                                           "float64"),
    ({"y": np.zeros((2, 3)), "labels": np.zeros(2, int), "slice_a": np.ones(2, bool)},
     r"no array for model input\(s\) \['x'\]; the file holds \['y'\]"),
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


@pytest.mark.parametrize("name, message", [
    ("d.csv", "unsupported data format '.csv'"), ("d.npy", "a single .npy has no input names")])
def test_unsupported_files_are_named(tmp_path, name, message):
    path = tmp_path / name
    np.save(path, np.zeros((2, 3))) if name.endswith(".npy") else path.write_text("1,2,3\n")
    with pytest.raises(BadInput, match=message):
        load_dataset(path, SPEC)


def test_a_pickled_array_in_a_folder_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput, match=r"x\.npy: cannot read data file \(Object arrays cannot be loaded"):
        load_dataset(tmp_path, SPEC)


def test_inputs_of_different_lengths_and_casts(tmp_path):
    specs = [InputSpec("a", ("batch", 2), "float32"), InputSpec("b", ("batch",), "int64")]
    with pytest.raises(BadInput, match=r"inputs have different sample counts: \{'a': 2, 'b': 3\}"):
        load_dataset(write(tmp_path, a=np.zeros((2, 2)), b=np.zeros(3, np.int64)), specs)
    data = load_dataset(write(tmp_path, a=np.zeros((2, 2), np.float64), b=np.array([1, 2], np.int32)), specs)
    assert data.inputs["a"].dtype == np.float32 and data.inputs["b"].dtype == np.int64  # same-kind casts
    assert data.labels is None and data.weights is None and data.slices == {}
    fixed = [InputSpec("a", (4, 2), "float32")]  # a fixed batch of 4 in the model: any sample count is data
    assert len(load_dataset(write(tmp_path, a=np.zeros((6, 2), np.float32)), fixed)) == 6


def test_selection_takes_exactly_the_count_asked_for(tmp_path):
    labels = np.repeat(np.arange(7), [40, 25, 13, 9, 6, 4, 3])  # uneven classes: remainders to share out
    data = load_dataset(write(tmp_path, x=np.zeros((100, 3), np.float32), labels=labels), SPEC)
    for count in (7, 10, 33, 64, 99):
        picked = select_samples(data, count, seed=3)
        assert len(picked) == count and len(np.unique(picked.labels)) == 7  # every class, however rare
    assert len(select_samples(data, 100)) == 100


def test_selection_shares_are_proportional_and_the_default_seed_is_0(tmp_path):
    labels = np.repeat(np.arange(7), [40, 25, 13, 9, 6, 4, 3])
    data = load_dataset(write(tmp_path, x=np.arange(300, dtype=np.float32).reshape(100, 3), labels=labels), SPEC)
    picked = select_samples(data, 50)
    assert np.array_equal(picked.inputs["x"], select_samples(data, 50, seed=0).inputs["x"])
    counts = np.bincount(picked.labels, minlength=7)
    quota = np.array([40, 25, 13, 9, 6, 4, 3]) * 50 / 100
    assert counts.sum() == 50 and (counts >= np.maximum(1, np.floor(quota))).all() and (counts <= np.ceil(quota)).all()
    assert (np.diff(picked.inputs["x"][:, 0]) > 0).all()  # in the data's order, no repeats


def test_selection_without_labels_or_slices_is_a_seeded_sample(tmp_path):
    data = load_dataset(write(tmp_path, x=np.arange(60, dtype=np.float32).reshape(20, 3)), SPEC)
    a, b = select_samples(data, 5, seed=4), select_samples(data, 5, seed=4)
    assert len(a) == 5 and np.array_equal(a.inputs["x"], b.inputs["x"]) and (np.diff(a.inputs["x"][:, 0]) > 0).all()
    assert not np.array_equal(a.inputs["x"], select_samples(data, 5, seed=5).inputs["x"])


def test_overlapping_slices_are_strata_of_their_own(tmp_path):
    a, b = np.zeros(100, bool), np.zeros(100, bool)
    a[:50], b[:10] = True, True  # b inside a: three strata, a&b, a only, neither
    data = load_dataset(write(tmp_path, x=np.zeros((100, 3), np.float32), slice_a=a, slice_b=b), SPEC)
    picked = select_samples(data, 10, seed=1)
    both, a_only = picked.slices["a"] & picked.slices["b"], picked.slices["a"] & ~picked.slices["b"]
    assert len(picked) == 10 and both.sum() == 1 and a_only.sum() == 4 and (~picked.slices["a"]).sum() == 5


def test_a_converters_example_is_the_first_samples_the_models_fixed_batch_or_zeros():
    import numpy as np

    from edge_distill.calibration import Dataset, example_batch

    dynamic = [InputSpec("x", ("batch", 3), "float32"), InputSpec("ids", ("batch", 4), "int64")]
    data = Dataset(source="calibration.npz", inputs={"x": np.arange(15, dtype=np.float32).reshape(5, 3),
                                                     "ids": np.arange(20).reshape(5, 4)})
    x, ids = example_batch(dynamic, data, 2)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]] and ids.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert x.flags.c_contiguous and ids.dtype == np.int64
    fixed = [InputSpec("x", (7, 3), "float32")]  # saved with batch 7: takes 7, the last sample repeated
    (seven,) = example_batch(fixed, Dataset(source="c", inputs={"x": data.inputs["x"]}), 1)
    assert seven.shape == (7, 3) and seven[5:].tolist() == [[12, 13, 14]] * 2
    zeros = example_batch(dynamic, None, 1)
    assert [(z.shape, z.dtype, z.any()) for z in zeros] == [((1, 3), np.float32, False), ((1, 4), np.int64, False)]
