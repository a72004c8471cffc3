import importlib.util
from pathlib import Path

import numpy as np
import pytest

from digitlab.data import dataset_status, load_dataset, load_digits20

ROOT = Path(__file__).resolve().parents[1]
DIGITS20 = ROOT / "src" / "digitlab" / "_data" / "digits20.npz"


def test_digits20_is_the_tutorials_load_data():
    X, y = load_digits20()
    assert X.shape == (5000, 400) and X.dtype == np.float32
    assert y.shape == (5000,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert y[1015] == 2
    assert (np.diff(y) >= 0).all(), "sorted by class"
    assert np.bincount(y).tolist() == [500] * 10


def test_digits20_test_part_is_separate():
    X, y = load_digits20("test")
    assert X.shape == (1000, 400) and np.bincount(y).tolist() == [100] * 10
    train, _ = load_digits20()
    # no test digit appears among the training digits
    assert not (set(map(bytes, X.astype(np.float16))) & set(map(bytes, train.astype(np.float16))))
    with pytest.raises(ValueError, match="part"):
        load_digits20("val")


def test_digits20_is_small_and_records_its_origin():
    assert DIGITS20.stat().st_size < 1_000_000
    with np.load(DIGITS20) as npz:
        assert npz["mnist_index_train"].shape == (5000,)
        assert len(set(npz["mnist_index_train"].tolist())) == 5000


def test_load_dataset_digits20_as_images():
    data = load_dataset("digits20")
    assert data.image_shape == (20, 20)
    assert data.x_train.shape == (5000, 20, 20) and data.x_test.shape == (1000, 20, 20)
    np.testing.assert_array_equal(data.x_train.reshape(5000, 400), load_digits20()[0])
    # the floats are made from the stored 8-bit pixels, once
    assert data.train_pixels.dtype == np.uint8 and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_test * 255, data.test_pixels.astype(np.float32))
    assert data.x_train is data.x_train
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar")


def test_dataset_status(tmp_path):
    infos = {i.name: i for i in dataset_status(tmp_path)}
    assert infos["digits20"].location.endswith("digits20.npz")
    assert infos["mnist"].location is None
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "mnist.npz").write_bytes(b"x")
    cache = tmp_path / "mnist"
    cache.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz"):
        (cache / name).write_bytes(b"x")
    infos = {i.name: i for i in dataset_status(tmp_path, others=[tmp_path / "keras/mnist.npz"])}
    assert infos["mnist"].location == str(cache)
    assert infos["mnist"].also_found == (str(tmp_path / "keras/mnist.npz"),)


def _script():
    spec = importlib.util.spec_from_file_location("make_digits20",
                                                  ROOT / "scripts" / "make_digits20.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_box_resize_averages_areas():
    script = _script()
    flat = np.full((28, 28), 100, np.uint8)
    assert (script.box_resize(flat) == 100).all()
    # a 7x7 bright block covers exactly 5x5 output pixels (28/20 = 1.4 = 7/5)
    block = np.zeros((28, 28), np.uint8)
    block[:7, :7] = 255
    small = script.box_resize(block)
    assert (small[:5, :5] == 255).all() and small[5:].max() == 0 and small[:, 5:].max() == 0
    # total ink is preserved by area averaging
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    rounding = 0.5 * 400 * 1.96  # each of 400 outputs rounds by at most half a level
    assert abs(script.box_resize(image).astype(float).sum() * 1.96 - image.sum()) <= rounding
    assert script.box_resize(np.full((28, 28), 255, np.uint8)).min() == 255


def test_pick_takes_the_first_of_each_class_in_order():
    labels = np.array([3, 1, 1, 0, 3, 1, 0, 2, 2, 3] + list(range(4, 10)) * 2)
    index = _script().pick(labels, 2)
    assert labels[index].tolist() == sorted([c for c in range(10) for _ in range(2)])
    assert index[:6].tolist() == [3, 6, 1, 2, 7, 8]
