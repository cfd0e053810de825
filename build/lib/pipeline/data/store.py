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
from typing import Any

import torch

from pipeline.data.base import DATASETS, LoadContext, Splits
from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError


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
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def load_prepared(folder: str | Path, name: str, options: dict[str, Any] | None = None) -> Splits:
    """Read a prepared dataset back, refusing a file whose checksum does not match its metadata."""
    opts = DATASETS.get(name).options.model_validate(options or {}).model_dump()
    path = prepared_path(folder, name, opts)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise ConfigError(
            f"prepared data missing ({path.name}); run the prepare stage (dvc repro prepare)", file=str(path)
        )
    meta = json.loads(meta_path.read_text())
    if _sha256(path) != meta["sha256"]:
        raise ConfigError("checksum does not match its metadata; re-run the prepare stage", file=str(path))
    t = torch.load(path, weights_only=True)
    info = meta["info"]
    info = DataInfo(tuple(info["input_shape"]), info["num_classes"], info["task"], info["extra"])
    return Splits(
        **t, info=info, meta={**meta["meta"], "sha256": meta["sha256"], "normalization": meta["normalization"]}
    )
