"""Vision loaders against the real MNIST / Fashion-MNIST files in shared/data, plus the seeded tabular problems."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data import DATASETS, prepare
from pipeline.data.base import LoadContext
from pipeline.data.vision import train_val_indices
from pipeline.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Class counts of the official MNIST training set (shared/data/README.md).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

needs_shared = pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw").is_dir(), reason=f"real data folder {SHARED} is absent (it sits beside the repo)"
)


def _copy_raw(dest_root: Path, folder: str) -> Path:
    """Copy the read-only .gz files into a writable root, as torchvision writes beside them."""
    raw = dest_root / folder / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED / folder / "raw").glob("*.gz"):
        shutil.copyfile(f, raw / f.name)
    return dest_root


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_raw(tmp_path_factory.mktemp("vision"), "MNIST")


@pytest.fixture(scope="module")
def mnist(mnist_root: Path):
    # download=False with only the .gz files present: the loader must unpack them itself, offline.
    return DATASETS.build("mnist", {}, LoadContext(seed=0, root=mnist_root, download=False))


@needs_shared
def test_mnist_shapes_ranges_and_counts(mnist, mnist_root: Path) -> None:
    assert (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # unpacked offline
    assert mnist.x_train.shape == (54000, 1, 28, 28) and mnist.x_val.shape == (6000, 1, 28, 28)
    assert mnist.x_test.shape == (10000, 1, 28, 28) and mnist.y_test.shape == (10000,)
    for x in (mnist.x_train, mnist.x_val, mnist.x_test):
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert x.min() == 0.0 and x.max() == 1.0
    assert mnist.y_train.dtype == torch.long
    pool = torch.cat([mnist.y_train, mnist.y_val])
    assert torch.bincount(pool, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert mnist.info.input_shape == (1, 28, 28) and mnist.info.num_classes == 10
    assert mnist.meta["official_train_size"] == 60000 and len(mnist.meta["classes"]) == 10
    json.dumps(mnist.meta)  # recorded with the prepared data


@needs_shared
def test_mnist_val_is_the_seeded_slice_of_official_train(mnist, mnist_root: Path) -> None:
    import torchvision

    official = torchvision.datasets.MNIST(str(mnist_root), train=True, download=False)
    tr, va = train_val_indices(60000, 0.1, None, seed=0)
    assert torch.equal(mnist.y_val, official.targets[va])
    assert torch.equal(mnist.x_val[:100], official.data[va[:100]].unsqueeze(1).float() / 255)
    assert torch.equal(mnist.x_train[:100], official.data[tr[:100]].unsqueeze(1).float() / 255)


def test_train_val_indices_seeded_and_disjoint() -> None:
    tr, va = train_val_indices(1000, 0.1, None, seed=0)
    assert len(va) == 100 and len(tr) == 900
    assert not set(tr.tolist()) & set(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(1000))
    same_tr, same_va = train_val_indices(1000, 0.1, None, seed=0)
    assert torch.equal(tr, same_tr) and torch.equal(va, same_va)
    assert not torch.equal(va, train_val_indices(1000, 0.1, None, seed=1)[1])
    sub_tr, sub_va = train_val_indices(1000, 0.1, 50, seed=0)
    assert torch.equal(sub_tr, tr[:50]) and torch.equal(sub_va, va)  # subset never moves validation


@needs_shared
def test_mnist_subset_and_seed(mnist, mnist_root: Path) -> None:
    small = DATASETS.build("mnist", {"subset": 500}, LoadContext(seed=0, root=mnist_root, download=False))
    assert small.x_train.shape == (500, 1, 28, 28)
    assert torch.equal(small.x_train, mnist.x_train[:500]) and torch.equal(small.y_val, mnist.y_val)
    other = DATASETS.build("mnist", {"subset": 500}, LoadContext(seed=1, root=mnist_root, download=False))
    assert not torch.equal(other.y_val, mnist.y_val)
    assert torch.equal(other.x_test, mnist.x_test)  # the official test set, whatever the seed


@needs_shared
def test_fashion_mnist_download_true_is_offline_with_gz_files(tmp_path: Path) -> None:
    # torchvision finds the .gz files, checks their md5 and only unpacks: no network (shared/data/README.md).
    root = _copy_raw(tmp_path, "FashionMNIST")
    fm = DATASETS.build("fashion_mnist", {"val_fraction": 0.2}, LoadContext(seed=0, root=root, download=True))
    assert fm.x_train.shape == (48000, 1, 28, 28) and fm.x_val.shape == (12000, 1, 28, 28)
    assert torch.bincount(fm.y_test).tolist() == [1000] * 10
    assert torch.bincount(torch.cat([fm.y_train, fm.y_val])).tolist() == [6000] * 10
    assert 0.0 <= fm.x_test.min() and fm.x_test.max() <= 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", Path("MNIST", "raw")),
        ("fashion_mnist", Path("FashionMNIST", "raw")),
        ("cifar10", Path("cifar-10-python.tar.gz")),
    ],
)
def test_missing_files_is_one_line_config_error(tmp_path: Path, name: str, expected: Path) -> None:
    with pytest.raises(ConfigError) as err:
        DATASETS.build(name, {}, LoadContext(seed=0, root=tmp_path, download=False))
    msg = str(err.value)
    assert "\n" not in msg and name in msg and "data.download: true" in msg
    assert str(tmp_path / expected) in msg
    if name != "cifar10":
        assert "train-images-idx3-ubyte.gz" in msg


def test_corrupt_gz_is_config_error(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / f"{stem}.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(ConfigError, match="md5"):
        DATASETS.build("mnist", {}, LoadContext(seed=0, root=tmp_path, download=False))
    assert not (raw / "train-images-idx3-ubyte").exists()


def test_cifar10_is_converted_to_nchw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CIFAR files are shipped: stand in for torchvision's class to check the HWC -> CHW conversion."""
    import torchvision.datasets as tvd

    class FakeCIFAR10(tvd.CIFAR10):
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            n = 50 if train else 20
            self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
            self.data[..., 0], self.data[..., 1], self.data[..., 2] = 0, 51, 255  # one value per channel
            self.targets = [i % 10 for i in range(n)]
            self.classes = [f"c{i}" for i in range(10)]

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    s = DATASETS.build("cifar10", {"val_fraction": 0.2}, LoadContext(seed=0, root=tmp_path, download=True))
    assert s.x_train.shape == (40, 3, 32, 32) and s.x_val.shape == (10, 3, 32, 32) and s.x_test.shape == (20, 3, 32, 32)
    assert s.x_train[:, 0].max() == 0 and torch.all(s.x_train[:, 1] == 0.2) and torch.all(s.x_test[:, 2] == 1.0)
    assert s.info.input_shape == (3, 32, 32) and s.y_train.dtype == torch.long


# --- seeded tabular problems (pipeline/data/tabular.py) ---


def test_poly_regression_deterministic_with_true_coefficients(tmp_path: Path) -> None:
    ctx = LoadContext(seed=3, root=tmp_path, download=False)
    a = DATASETS.build("poly_regression", {"true_coefficients": [1.0, 0.0, -2.0], "noise": 0.0}, ctx)
    b = DATASETS.build("poly_regression", {"true_coefficients": [1.0, 0.0, -2.0], "noise": 0.0}, ctx)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors().values(), b.tensors().values(), strict=True))
    assert a.meta["true_coefficients"] == [1.0, 0.0, -2.0] and a.meta["degree"] == 2
    assert a.info.task == "regression" and a.info.num_classes == 1 and a.info.extra["normalize"] is False
    assert a.x_train.shape[1:] == (1,) and a.y_train.shape == (len(a.x_train), 1)
    assert a.x_train.abs().max() <= 1.0
    torch.testing.assert_close(a.y_train, 1.0 - 2.0 * a.x_train**2)  # no noise: exactly the polynomial
    other = DATASETS.build("poly_regression", {}, LoadContext(seed=4, root=tmp_path, download=False))
    assert not torch.equal(other.x_train[:10], DATASETS.build("poly_regression", {}, ctx).x_train[:10])


def test_poly_regression_least_squares_recovers_coefficients(tmp_path: Path) -> None:
    s = DATASETS.build("poly_regression", {}, LoadContext(seed=0, root=tmp_path, download=False))
    features = s.x_train ** torch.arange(4)
    fit = torch.linalg.lstsq(features, s.y_train).solution.flatten()
    torch.testing.assert_close(fit, torch.tensor(s.meta["true_coefficients"]), atol=0.1, rtol=0)


def test_poly_regression_prepare_keeps_raw_x(tmp_path: Path) -> None:
    path = prepare("poly_regression", {}, LoadContext(seed=0, root=tmp_path, download=False), tmp_path / "prepared")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["normalization"] == {} and meta["meta"]["true_coefficients"] == [0.5, -1.0, 0.0, 2.0]


def test_two_class_shapes_and_labels(tmp_path: Path) -> None:
    ctx = LoadContext(seed=0, root=tmp_path, download=False)
    s = DATASETS.build("two_class", {"n_samples": 500, "separation": 4.0}, ctx)
    assert s.info.task == "binary" and s.info.num_classes == 1 and s.info.input_shape == (2,)
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        assert x.shape == (len(x), 2) and y.shape == (len(x), 1) and y.dtype == torch.float32
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 500
    assert torch.cat([s.y_train, s.y_val, s.y_test]).sum() == 250
    # The recorded Bayes boundary x0 + x1 = 0 should score about the recorded Bayes accuracy.
    acc = ((s.x_test.sum(1, keepdim=True) > 0).float() == s.y_test).float().mean()
    assert abs(acc - s.meta["bayes_accuracy"]) < 0.06
    again = DATASETS.build("two_class", {"n_samples": 500, "separation": 4.0}, ctx)
    assert torch.equal(again.x_train, s.x_train) and torch.equal(again.y_train, s.y_train)
