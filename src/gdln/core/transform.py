"""The fitted input transform shared by every task: centring, per-feature standardisation, PCA.

Fitted on training rows only, in one pass over chunks (accumulating n, sum_i x_i and sum_i x_i x_i^T),
so inputs that do not fit in memory at once can be streamed. With mean m, covariance
C = (1/n) sum_i x_i x_i^T - m m^T, scale s (the per-feature standard deviations sqrt(C_kk) when
standardising, 1 otherwise) and basis B (the top d eigenvectors of D^-1 C D^-1, D = diag(s), as
rows; the identity without PCA), a row x maps to

    x -> ((x - m) / s) @ B.T

Sign rule: each principal direction is negated if needed so that its entry of largest absolute value
is positive (ties: the first such entry), which makes B a deterministic function of the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from gdln.errors import ConfigError


def fix_signs(basis: np.ndarray) -> np.ndarray:
    """``basis`` (d, n) with each row negated where needed so that its largest-magnitude entry is positive."""
    return basis * np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(1)])[:, None]


@dataclass(frozen=True, eq=False)
class Preprocessor:
    """x -> ((x - mean) / scale) @ basis.T (``basis`` None: no projection); see the module docstring."""

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray | None

    @classmethod
    def fit(cls, chunks: Iterable[np.ndarray], *, centre: bool = True, standardise: bool = False,
            pca: int | None = None) -> Preprocessor:
        """Fit on the rows of every chunk in one pass. ``centre``: subtract the mean (standardising
        always centres); ``standardise``: divide by each feature's standard deviation (constant
        features are left unscaled); ``pca``: project on the top ``pca`` principal directions."""
        total, second, n = 0.0, 0.0, 0
        for X in chunks:
            X = np.asarray(X, float)
            total, second, n = total + X.sum(0), second + X.T @ X, n + len(X)
        if n < 2:
            raise ConfigError("fitting the input transform needs at least 2 training inputs")
        mean = total / n if centre or standardise else np.zeros_like(total)
        cov = second / n - np.outer(mean, mean)
        std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        scale = np.where(std > 1e-12 * std.max(), std, 1.0) if standardise else np.ones_like(std)
        if pca is None:
            return cls(mean, scale, None)
        if not 1 <= pca <= min(n, len(mean)):
            raise ConfigError(f"pca={pca} must be between 1 and min(training inputs, features) = {min(n, len(mean))}")
        Q = np.linalg.eigh(cov / np.outer(scale, scale))[1]
        return cls(mean, scale, fix_signs(Q[:, ::-1][:, :pca].T))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, float) - self.mean) / self.scale
        return Z if self.basis is None else Z @ self.basis.T

    @property
    def dimension(self) -> int:
        return len(self.mean) if self.basis is None else len(self.basis)
