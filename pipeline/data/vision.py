"""Image classification sets read with torchvision: MNIST, Fashion-MNIST and CIFAR-10.

Raw files live under the data root in torchvision's layout (`<root>/MNIST/raw/*-ubyte[.gz]`,
`<root>/FashionMNIST/raw/...`, `<root>/cifar-10-batches-py/` or `<root>/cifar-10-python.tar.gz`).
With `download: false` nothing touches the network: archives already in place are checked against
torchvision's md5 and unpacked here, because torchvision itself only unpacks them when asked to download.

Inputs are float32 in [0, 1] with shape (N, C, H, W); targets are int64 class ids. Validation is a seeded
slice of the official training set; the test split is the official test set.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, StrictInt

from pipeline.data.base import LoadContext, Splits, register_dataset, split_indices
from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.registry import Float, Options


def _how_to_get(files: str, where: Path) -> str:
    return f"set data.download: true in params.yaml, or copy {files} into {where}"


class VisionOptions(Options):
    val_fraction: Float = Field(0.1, gt=0, lt=0.5)  # carved from the official training set
    subset: StrictInt | None = Field(None, ge=1)  # keep the first N shuffled training samples (fast runs)


def train_val_indices(n: int, val_fraction: float, subset: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/val indices into the official training set; `subset` trims train only.

    Validation does not depend on `subset`, so runs on different training-set sizes are scored on the same data.
    """
    train, val, _ = split_indices(n, (val_fraction, 0.0), seed)
    return (train[:subset] if subset else train), val


def _is_cifar(cls: Any) -> bool:
    # CIFAR keeps its batches in one folder at the root; the MNIST family uses `<root>/<Class>/raw`.
    return hasattr(cls, "base_folder")


def _unpack_gz(src: Path, dst: Path) -> None:
    # Write beside the target and rename, so an interrupted unpack never leaves a truncated file
    # that torchvision would take for the real one (it only checks that the file exists).
    tmp = dst.with_name(dst.name + ".part")
    with gzip.open(src, "rb") as fin, tmp.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.replace(tmp, dst)


def _ensure_idx(name: str, cls: Any, root: Path) -> None:
    """Offline: make sure MNIST-style IDX files are unpacked under `<root>/<Class>/raw`, from their .gz if need be."""
    from torchvision.datasets.utils import check_integrity

    raw = root / cls.__name__ / "raw"
    missing = [gz for gz, _ in cls.resources if not (raw / gz).exists() and not (raw / gz.removesuffix(".gz")).exists()]
    if missing:
        raise ConfigError(
            f"{name}: raw files not found in {raw} (missing {', '.join(missing)}, or the same names without .gz); "
            + _how_to_get("the raw .gz files", raw)
        )
    for gz, md5 in cls.resources:
        unpacked = raw / gz.removesuffix(".gz")
        if unpacked.exists():
            continue
        if not check_integrity(raw / gz, md5):
            raise ConfigError(f"{name}: {raw / gz} does not match its published md5 {md5}; replace it and re-run")
        try:
            _unpack_gz(raw / gz, unpacked)
        except OSError as e:
            raise ConfigError(
                f"{name}: cannot unpack {raw / gz} ({e.strerror or e}); point the data root at a writable copy"
            ) from None


def _ensure_cifar(name: str, cls: Any, root: Path) -> None:
    """Offline: make sure `<root>/cifar-10-batches-py` exists, unpacking the official .tar.gz if it is there."""
    from torchvision.datasets.utils import check_integrity, extract_archive

    folder, archive = root / cls.base_folder, root / cls.filename
    needed = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if all((folder / f).exists() for f in needed):
        return
    if not archive.exists():
        raise ConfigError(
            f"{name}: raw files not found: expected {folder}/{{{','.join(needed)}}} or the archive {archive}; "
            + _how_to_get(cls.filename, root)
        )
    if not check_integrity(archive, cls.tgz_md5):
        raise ConfigError(f"{name}: {archive} does not match its published md5 {cls.tgz_md5}; replace it and re-run")
    try:
        extract_archive(archive, root)
    except OSError as e:
        raise ConfigError(
            f"{name}: cannot unpack {archive} ({e.strerror or e}); point the data root at a writable copy"
        ) from None


def _open(name: str, cls: Any, ctx: LoadContext, train: bool) -> Any:
    """Construct the torchvision data set, turning its errors into one ConfigError line."""
    try:
        return cls(root=str(ctx.root), train=train, download=ctx.download)
    except Exception as e:  # noqa: BLE001  (torchvision raises RuntimeError, URLError, OSError, pickle errors...)
        # torchvision's messages span lines and name no path; the user gets one line that says what to do.
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(":")
        where = Path(ctx.root) if _is_cifar(cls) else Path(ctx.root) / cls.__name__ / "raw"
        fix = f"copy the raw files into {where}" if ctx.download else _how_to_get("the raw files", where)
        raise ConfigError(f"{name}: could not load from {ctx.root} ({reason}); {fix}") from None


def _as_uint8_nchw(data: Any) -> torch.Tensor:
    """The whole data set as one uint8 tensor: MNIST keeps (N, H, W) tensors, CIFAR (N, H, W, C) arrays."""
    x = torch.as_tensor(data)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    # Index the uint8 tensor first and convert after: a float copy of all of CIFAR would be 600 MB.
    return x.float().div_(255.0).contiguous()


def _load(name: str, class_name: str, opts: VisionOptions, ctx: LoadContext) -> Splits:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    if not ctx.download:
        (_ensure_cifar if _is_cifar(cls) else _ensure_idx)(name, cls, Path(ctx.root))
    train_ds, test_ds = _open(name, cls, ctx, train=True), _open(name, cls, ctx, train=False)

    x_pool, y_pool = _as_uint8_nchw(train_ds.data), torch.as_tensor(train_ds.targets, dtype=torch.long)
    tr, va = train_val_indices(len(x_pool), opts.val_fraction, opts.subset, ctx.seed)
    x_test, y_test = _as_uint8_nchw(test_ds.data), torch.as_tensor(test_ds.targets, dtype=torch.long)

    info = DataInfo(input_shape=tuple(x_pool.shape[1:]), num_classes=len(train_ds.classes))
    meta = {
        "source": f"torchvision.datasets.{class_name}",
        "classes": list(train_ds.classes),
        "official_train_size": len(x_pool),
    }
    return Splits(
        _to_float(x_pool[tr]), y_pool[tr], _to_float(x_pool[va]), y_pool[va], _to_float(x_test), y_test, info, meta
    )


@register_dataset("mnist", VisionOptions, inputs="image", task="classification")
def load_mnist(opts: VisionOptions, ctx: LoadContext) -> Splits:
    """MNIST handwritten digits, 1x28x28, 60k train (minus validation) / 10k test."""
    return _load("mnist", "MNIST", opts, ctx)


@register_dataset("fashion_mnist", VisionOptions, inputs="image", task="classification")
def load_fashion_mnist(opts: VisionOptions, ctx: LoadContext) -> Splits:
    """Fashion-MNIST clothing images, 1x28x28, 60k train (minus validation) / 10k test."""
    return _load("fashion_mnist", "FashionMNIST", opts, ctx)


@register_dataset("cifar10", VisionOptions, inputs="image", task="classification")
def load_cifar10(opts: VisionOptions, ctx: LoadContext) -> Splits:
    """CIFAR-10 colour images, 3x32x32, 50k train (minus validation) / 10k test."""
    return _load("cifar10", "CIFAR10", opts, ctx)
