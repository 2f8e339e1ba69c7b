"""Readers for full MNIST (IDX) and CIFAR-10 (pickle batches) on small files written here, the
stratified split, and the fitted input transform (chunked fit, PCA sign rule)."""

import gzip
import pickle

import numpy as np
import pytest

from gdln.core.transform import Preprocessor
from gdln.datasets.images import load_cifar10, load_mnist, preprocess, read_idx, stratified_split
from gdln.errors import ConfigError, DataError


def idx_bytes(a: np.ndarray, code: int, dtype: str) -> bytes:
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">i4").tobytes()
    return header + a.astype(dtype).tobytes()


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 7
    (tmp_path / "a").write_bytes(idx_bytes(a, 0x0B, ">i2"))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a, 0x0B, ">i2")))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0b\x01\x00\x00\x00\x05" + b"\x00" * 4)
    with pytest.raises(DataError, match=r"header says \(5,\)"):
        read_idx(tmp_path / "bad")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_mnist_reader(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 0x08, ">u1")))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08, ">u1"))
    X, y = load_mnist(tmp_path, "test")
    assert X.shape == (5, 784) and X.dtype == float
    np.testing.assert_array_equal(X, images.reshape(5, -1))
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(DataError, match="no train-images-idx3-ubyte or train-images-idx3-ubyte.gz in"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ConfigError, match="split"):
        load_mnist(tmp_path, "val")


def test_cifar10_reader(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = []
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [i, 9 - i]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
        batches.append(batch)
    X, y = load_cifar10(tmp_path)  # the parent folder works too
    assert X.shape == (10, 3072)
    np.testing.assert_array_equal(X[2:4], batches[1][b"data"])
    np.testing.assert_array_equal(y, [1, 8, 2, 7, 3, 6, 4, 5, 5, 4])
    with pytest.raises(DataError, match="CIFAR-10 test: no test_batch in"):
        load_cifar10(folder, "test")


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = stratified_split(labels, 10, seed=3)
    assert len(test) == 10 and len(train) == 90 and not set(train) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[test]), [5, 3, 2])
    again = stratified_split(labels, 10, seed=3)
    np.testing.assert_array_equal(again[1], test)
    _, odd = stratified_split(labels, 7, seed=0)  # 3.5, 2.1, 1.4 -> largest remainders first
    np.testing.assert_array_equal(np.bincount(labels[odd]), [4, 2, 1])
    with pytest.raises(ConfigError, match="n_test=100"):
        stratified_split(labels, 100)


def test_mnist1d_is_generated_offline_and_leaves_global_random_state_alone():
    from gdln.datasets.images import images

    np.random.seed(7)
    expected = np.random.random_sample()
    np.random.seed(7)
    X, y = images("mnist1d")
    assert np.random.random_sample() == expected
    assert X.shape == (5000, 40) and np.all(np.bincount(y) == 500)
    np.testing.assert_array_equal(images("mnist1d")[0], X)


def _anisotropic(seed=0, n=300, d=6):
    """Rows with distinct variances along a random orthonormal frame, mean 3."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return rng.standard_normal((n, d)) @ np.diag(np.arange(d, 0, -1.0)) @ Q.T + 3.0


@pytest.mark.parametrize("options", [{}, {"pca": 3}, {"standardise": True, "pca": 4}, {"centre": False, "pca": 2}])
def test_chunked_fit_equals_whole_fit(options):
    X = _anisotropic()
    whole = Preprocessor.fit([X], **options)
    chunked = Preprocessor.fit(iter([X[:7], X[7:150], X[150:]]), **options)
    np.testing.assert_allclose(chunked(X), whole(X), atol=1e-10)
    np.testing.assert_allclose(whole(X), (X - whole.mean) / whole.scale @ (
        np.eye(6) if whole.basis is None else whole.basis.T))


def test_pca_sign_rule_is_deterministic_and_invariant_to_flipping_the_data():
    """Negating the data along any principal direction leaves the fitted basis unchanged, and every
    basis row has its largest-magnitude entry positive."""
    X = _anisotropic(1)
    basis = Preprocessor.fit([X], pca=4).basis
    assert np.all(basis[np.arange(4), np.abs(basis).argmax(1)] > 0)
    frame = Preprocessor.fit([X], pca=6).basis  # all principal directions of X
    centred = X - X.mean(0)
    for flips in ([-1, 1, 1, 1, 1, 1], [1, -1, -1, 1, 1, -1], [-1] * 6):
        flipped = X.mean(0) + centred @ frame.T @ np.diag(flips) @ frame  # reflected along those directions
        np.testing.assert_allclose(Preprocessor.fit([flipped], pca=4).basis, basis, atol=1e-10)
    # the binary-task preprocessing uses the same basis: z_k = u_k . (x - mean), rows then scaled
    Z = preprocess(X, X[:5], pca=4)[0]
    expected = centred @ basis.T
    np.testing.assert_allclose(Z, 2 * expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-10)
