"""Chance levels: what a trivial predictor scores on a study's metric, from the prepared data a run trained on.

The trivial predictor depends on the task (docs/statistics.md, *Chance levels per task*):

- classification, binary, tagging, sentence classification: the majority class (tag) of the training labels;
  its accuracy, its macro-F1, and the cross-entropy of the training class frequencies (for a loss);
- language model: a unigram model of the training tokens (add-one smoothed): its perplexity and cross-entropy,
  and the accuracy of always predicting the most frequent token;
- regression: the mean of the training targets: its MSE (the loss).

Evaluated on the split the metric names (`test_*` on the test split, `val_*` on validation). Without the prepared
data the level is unknown and says so; it is never guessed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline import runs as rn
from pipeline.build import task_kind
from pipeline.data import Splits, load_prepared
from pipeline.runs import Run

log = logging.getLogger(__name__)

IGNORE = -100  # padding in sequence targets (pipeline.tasks)
CLASSIFICATION = ("classification", "classification_f1", "binary")


@dataclass(frozen=True)
class Chance:
    level: float | None  # None: unknown or not defined (see reason)
    what: str = ""  # the trivial predictor, for the text
    n_examples: int | None = None  # evaluation examples (tokens for sequences): the binomial noise of an accuracy
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_of(metric: str) -> str:
    """The data split a metric is measured on: `val_loss` -> val, `test_accuracy` -> test (else test)."""
    prefix = metric.split("_", 1)[0]
    return prefix if prefix in ("train", "val", "test") else "test"


def quantity_of(metric: str) -> str:
    """`test_accuracy` -> accuracy, `best_val_loss` -> loss."""
    parts = metric.split("_")
    while parts and parts[0] in ("best", "train", "val", "test"):
        parts = parts[1:]
    return "_".join(parts)


def _labels(y: torch.Tensor, task: str) -> torch.Tensor:
    """The class labels of a split as one flat long tensor, padding removed."""
    if task == "tagging":
        y = y[..., 0]
    y = y.reshape(-1)
    y = y.long() if task == "binary" else y
    return y[y != IGNORE]


def _prior_cross_entropy(train: torch.Tensor, ev: torch.Tensor, k: int) -> float:
    """Mean cross-entropy (nats) on `ev` of the training class frequencies, add-one smoothed over k classes."""
    counts = torch.bincount(train, minlength=k).double() + 1.0
    logq = torch.log(counts / counts.sum())
    return float(-logq[ev].mean())


def chance_level(task: str, metric: str, data: Splits) -> Chance:
    """The trivial predictor's score on `metric` for a run of `task` on `data` (see the module docstring)."""
    split = split_of(metric)
    q = quantity_of(metric)
    y_tr, y_ev = data.y_train, getattr(data, f"y_{split}")
    if task in (*CLASSIFICATION, "tagging"):
        train, ev = _labels(y_tr, task), _labels(y_ev, task)
        if train.numel() == 0 or ev.numel() == 0:
            return Chance(None, reason="no labels to compute a majority class from")
        k = max(int(data.info.num_classes), 2 if task == "binary" else 1, int(train.max()) + 1, int(ev.max()) + 1)
        majority = int(torch.bincount(train, minlength=k).argmax())
        classes = data.meta.get("classes") or data.info.extra.get("tags") or data.info.extra.get("classes") or []
        name = str(classes[majority]) if majority < len(classes) else str(majority)
        unit = "tag" if task == "tagging" else "class"
        n = int(ev.numel())
        hits = int((ev == majority).sum())
        if q == "accuracy":
            what = f"majority-{unit} accuracy (always {unit} {name!r}, the most frequent in the training labels)"
            return Chance(hits / n, what, n)
        if q == "f1" and task != "tagging":
            # macro-F1 over the classes in the labels: the majority class scores 2c / (2c + (n - c)), the others 0
            present = set(ev.unique().tolist()) | {majority}
            f1 = 2 * hits / (2 * hits + (n - hits)) / len(present)
            return Chance(f1, f"macro-F1 of always predicting the training majority {unit} {name!r}", n)
        if q == "loss":
            what = "cross-entropy of predicting the training class frequencies"
            return Chance(_prior_cross_entropy(train, ev, k), what, n)
    elif task == "language_model":
        train, ev = y_tr.reshape(-1), y_ev.reshape(-1)
        train, ev = train[train != IGNORE].long(), ev[ev != IGNORE].long()
        k = max(int(data.info.num_classes), int(train.max()) + 1, int(ev.max()) + 1)
        h = _prior_cross_entropy(train, ev, k)  # a unigram model: the training token frequencies
        if q == "perplexity":
            return Chance(math.exp(h), "perplexity of a unigram model of the training tokens", int(ev.numel()))
        if q == "loss":
            return Chance(h, "cross-entropy of a unigram model of the training tokens", int(ev.numel()))
        if q == "accuracy":
            top = int(torch.bincount(train, minlength=k).argmax())
            what = "accuracy of always predicting the most frequent training token"
            return Chance(float((ev == top).double().mean()), what, int(ev.numel()))
    elif task == "regression" and q == "loss":
        mean = y_tr.double().mean(dim=0)
        mse = float(((y_ev.double() - mean) ** 2).mean())
        return Chance(mse, "MSE of predicting the mean of the training targets", int(len(y_ev)))
    return Chance(None, reason=f"no trivial predictor is defined for {metric}")


class ChanceLevels:
    """`levels(runs_of_a_variant, metric)` -> Chance, from the prepared data each run's params name.

    Caches one answer per (dataset, options, task, metric): every variant of a study usually shares them."""

    def __init__(self, data_dir: str | Path | None):
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._data: dict[str, Splits] = {}
        self._levels: dict[str, Chance] = {}

    def __call__(self, runs: list[Run], metric: str) -> Chance:
        if self.data_dir is None:
            return Chance(None, reason="chance level unknown: no prepared data given (--data)")
        if not runs:
            return Chance(None, reason="chance level unknown: no run to read the dataset from")
        params = rn.unflatten(runs[0]["params"])
        dataset, model = params.get("dataset") or {}, params.get("model") or {}
        if "name" not in dataset or "name" not in model:
            return Chance(None, reason="chance level unknown: the runs' params name no dataset or model")
        options = dataset.get("options") or {}
        key = repr((dataset["name"], sorted(options.items()), model["name"], metric))
        if key not in self._levels:
            self._levels[key] = self._compute(dataset["name"], options, model["name"], metric)
        return self._levels[key]

    def _compute(self, dataset: str, options: dict[str, Any], model: str, metric: str) -> Chance:
        dkey = repr((dataset, sorted(options.items())))
        try:
            if dkey not in self._data:
                assert self.data_dir is not None
                self._data[dkey] = load_prepared(self.data_dir, dataset, options)
            data = self._data[dkey]
            return chance_level(task_kind(model, data.info), metric, data)
        except Exception as e:  # missing or damaged prepared data: the report still builds, without the level
            log.warning("chance level of %s unknown: %s: %s", metric, type(e).__name__, str(e)[:200])
            return Chance(None, reason=f"chance level unknown: prepared data of {dataset} not readable")
