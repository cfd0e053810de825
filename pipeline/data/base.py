"""The dataset registry and the in-memory split container every loader returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.datainfo import DataInfo, InputKind, TaskKind
from pipeline.registry import Options, Registry


@dataclass
class Splits:
    """Tensors for each split. `x_*` are inputs (float or token ids), `y_*` targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: DataInfo
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able facts recorded with the data

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}

    def limit(self, n_train: int | None) -> Splits:
        """Keep the first n_train training samples (the tiny profile and small-data studies)."""
        if not n_train or n_train >= len(self.x_train):
            return self
        return Splits(
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_val,
            self.y_val,
            self.x_test,
            self.y_test,
            self.info,
            {**self.meta, "train_limit": n_train},
        )


@dataclass(frozen=True)
class LoadContext:
    """What every loader may use besides its own options."""

    seed: int
    root: Path  # where downloadable/raw data sets live
    download: bool


DATASETS: Registry[Splits] = Registry("dataset")


def register_dataset(name: str, options: type[Options], *, inputs: InputKind, task: TaskKind) -> Callable:
    """File a loader under `name` with what it gives, known without loading anything (the preflight matches
    models to data sets by it): its input kind and the task its labels are for. tests/test_preflight.py checks both
    against every loader that runs offline."""
    return DATASETS.register(name, options, inputs=inputs, task=task)


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded permutation cut into train/val/test index tensors (val and test fractions given)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val, n_test = round(n * fractions[0]), round(n * fractions[1])
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]
