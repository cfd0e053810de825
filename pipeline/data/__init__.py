"""Datasets: a registry of loaders, each returning in-memory tensor splits.

A loader returns *raw* splits (train/val/test tensors plus a DataInfo). `prepare` normalizes them
with statistics from the training split only and writes them to one file per dataset that studies
read back with `load_prepared` (checksum-verified, `weights_only=True`).
"""

from __future__ import annotations

from pipeline.data import (
    tabular,  # noqa: E402,F401  (registers digits, synthetic, ...)
    vision,  # noqa: E402,F401  (registers mnist, fashion_mnist, cifar10)
)
from pipeline.data.base import DATASETS, Splits, register_dataset
from pipeline.data.store import load_prepared, prepare, prepared_path

__all__ = [
    "DATASETS",
    "Splits",
    "load_prepared",
    "prepare",
    "prepared_path",
    "register_dataset",
]

from pipeline.data import generative, text  # noqa: E402,F401  (grammar_*, text_lm, conllu_pos, tsv_sentiment, unit_images)
