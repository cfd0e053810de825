"""Prepared data files: the contract between the `prepare` stage and the studies.

Layout of a prepared folder, one pair per dataset key (`digits`, or `digits-<hash>` with options):
    <key>.pt    torch.save of {x_train, y_train, x_val, y_val, x_test, y_test} tensors
    <key>.json  {"dataset", "options", "info", "normalization", "sizes", "sha256", "meta"}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

import torch

from pipeline.data.base import DATASETS, LoadContext, Splits
from pipeline.datainfo import DataInfo, TaskKind
from pipeline.errors import ConfigError

# What a reader of a damaged prepared file should do about it.
REPREPARE = "re-run the prepare stage (dvc repro prepare)"
SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def dataset_key(name: str, options: dict[str, Any]) -> str:
    """File stem for a dataset with options that differ from its defaults."""
    defaults = DATASETS.get(name).options().model_dump()
    changed = {k: v for k, v in sorted(options.items()) if defaults.get(k) != v}
    if not changed:
        return name
    return f"{name}-{hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]}"


def prepared_path(folder: str | Path, name: str, options: dict[str, Any]) -> Path:
    return Path(folder) / f"{dataset_key(name, options)}.pt"


def _normalize(splits: Splits) -> dict[str, Any]:
    """Standardize float inputs with training-split statistics (per channel, or per feature)."""
    x = splits.x_train
    if not x.is_floating_point() or not splits.info.extra.get("normalize", True):
        return {}
    dims = (0, *range(2, x.ndim)) if x.ndim > 2 else (0,)
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True).clamp_min(1e-6)
    for k in ("x_train", "x_val", "x_test"):
        setattr(splits, k, ((getattr(splits, k) - mean) / std).contiguous())
    return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist(), "computed_on": "train"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare(name: str, options: dict[str, Any], ctx: LoadContext, folder: str | Path) -> Path:
    """Load, normalize and write one dataset; returns the .pt path. Writes atomically."""
    entry = DATASETS.get(name)
    opts = entry.options.model_validate(options)
    splits: Splits = entry.fn(opts, ctx)
    norm = _normalize(splits)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = prepared_path(folder, name, opts.model_dump())
    tmp = path.with_suffix(".pt.tmp")
    torch.save(splits.tensors(), tmp)
    meta = {
        "dataset": name,
        "options": opts.model_dump(),
        "seed": ctx.seed,
        "info": asdict(splits.info),
        "normalization": norm,
        "sizes": {k: len(v) for k, v in splits.tensors().items() if k.startswith("x_")},
        "sha256": _sha256(tmp),
        "meta": splits.meta,
    }
    tmp.replace(path)
    # Also replaced whole: a reader never sees a half-written metadata file (a killed run leaves the old one,
    # whose checksum then refuses the new .pt).
    meta_tmp = path.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    meta_tmp.replace(path.with_suffix(".json"))
    return path


def _corrupt(path: Path, message: str, key: str | None = None) -> ConfigError:
    return ConfigError(f"{message}; {REPREPARE}", file=str(path), key=key)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    """A value as the error line quotes it: repr, cut short (a damaged file may hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """The metadata file, checked to hold every key `load_prepared` reads, with the type it needs."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(meta_path, f"not readable JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _corrupt(meta_path, f"must be a JSON object, got {_kind(meta)}")
    for key, kind in (("sha256", str), ("info", dict), ("meta", dict), ("normalization", dict)):
        if key not in meta:
            raise _corrupt(meta_path, "missing", key)
        if not isinstance(meta[key], kind):
            raise _corrupt(
                meta_path, f"must be a {'string' if kind is str else 'JSON object'}, got {_kind(meta[key])}", key
            )
    info = meta["info"]
    shape = info.get("input_shape")
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and d > 0 for d in shape):
        raise _corrupt(meta_path, f"must be a list of positive integers, got {_show(shape)}", "info.input_shape")
    if not _is_int(info.get("num_classes")) or info["num_classes"] < 0:
        raise _corrupt(meta_path, f"must be an integer >= 0, got {_show(info.get('num_classes'))}", "info.num_classes")
    tasks = get_args(TaskKind)
    if info.get("task") not in tasks:
        raise _corrupt(meta_path, f"must be one of {', '.join(tasks)}, got {_show(info.get('task'))}", "info.task")
    if not isinstance(info.get("extra"), dict):
        raise _corrupt(meta_path, f"must be a JSON object, got {_kind(info.get('extra'))}", "info.extra")
    sizes = meta.get("sizes", {})
    if not isinstance(sizes, dict) or not all(_is_int(n) for n in sizes.values()):
        raise _corrupt(meta_path, f"must map each split to its sample count, got {_show(sizes)}", "sizes")
    return meta


def _check_tensors(path: Path, tensors: Any, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """The six split tensors, x and y of each split of equal length and of the sizes the metadata records."""
    if not isinstance(tensors, dict):
        raise _corrupt(path, f"must hold a dict of the split tensors, got {_kind(tensors)}")
    for key in tensors:
        if key not in SPLIT_KEYS:
            raise _corrupt(path, f"unexpected entry; allowed: {', '.join(SPLIT_KEYS)}", str(key))
    for key in SPLIT_KEYS:
        if key not in tensors:
            raise _corrupt(path, "missing", key)
        if not isinstance(tensors[key], torch.Tensor) or tensors[key].ndim == 0:
            raise _corrupt(path, f"must be a tensor with a sample dimension, got {_kind(tensors[key])}", key)
    for split in ("train", "val", "test"):
        n_x, n_y = len(tensors[f"x_{split}"]), len(tensors[f"y_{split}"])
        if n_x != n_y:
            raise _corrupt(path, f"{n_x} inputs but {n_y} targets", f"y_{split}")
        if f"x_{split}" in sizes and sizes[f"x_{split}"] != n_x:
            raise _corrupt(path, f"{n_x} samples, the metadata says {sizes[f'x_{split}']}", f"x_{split}")
    return tensors


def load_prepared(folder: str | Path, name: str, options: dict[str, Any] | None = None) -> Splits:
    """Read a prepared dataset back, checked against its metadata.

    A damaged pair (truncated or hand-edited JSON, a checksum mismatch, a file torch cannot read, missing
    splits) is a ConfigError naming the file and saying to re-run the prepare stage.
    """
    opts = DATASETS.get(name).options.model_validate(options or {}).model_dump()
    path = prepared_path(folder, name, opts)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise ConfigError(
            f"prepared data missing ({path.name}); run the prepare stage (dvc repro prepare)", file=str(path)
        )
    meta = _read_meta(meta_path)
    if _sha256(path) != meta["sha256"]:
        raise _corrupt(path, f"checksum does not match the sha256 in {meta_path.name} (truncated or changed?)")
    try:
        loaded = torch.load(path, weights_only=True)
    except Exception as e:  # a damaged file raises RuntimeError, UnpicklingError, EOFError, ... depending on where
        raise _corrupt(path, f"not a readable torch file ({type(e).__name__})") from None
    t = _check_tensors(path, loaded, meta.get("sizes", {}))
    info = meta["info"]
    info = DataInfo(tuple(info["input_shape"]), info["num_classes"], info["task"], info["extra"])
    return Splits(
        **t,
        info=info,
        meta={**meta["meta"], "sha256": meta["sha256"], "normalization": meta["normalization"], "path": str(path)},
    )
