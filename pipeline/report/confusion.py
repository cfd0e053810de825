"""The best run's confusion matrix: its best-validation model re-evaluated on the prepared test split."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import tracking
from pipeline.build import task_kind
from pipeline.config import Component, ModelSpec
from pipeline.data import Splits, load_prepared
from pipeline.runs import Run, best_run, seed, variant
from pipeline.trained import ModelLoader, quiet_downloads, run_config

log = logging.getLogger(__name__)


def confusion(
    runs: list[Run], analysis: dict[str, Any], sweep: dict[str, Any], data_dir: Path | None
) -> dict[str, Any]:
    """Re-evaluate the best run's best model on the prepared test split: the confusion matrix.

    The best run is the first-ranked variant's (analysis["ranking"][0]) best seed by the study metric (its
    validation score: picking the seed by its test score would select on the test split).
    Returns {"skipped": reason} when it does not apply or cannot be done.
    """
    if data_dir is None:
        return {"skipped": "no prepared data folder given"}
    ranking = analysis["ranking"]
    select = analysis.get("study_metric", analysis["metric"])
    if any(f"best_{select}" in r["final"] for r in runs):
        select = f"best_{select}"  # the checkpoint's own validation score, not the last epoch's
    run = best_run(runs, ranking[0]["variant"], select, analysis["mode"]) if ranking else None
    if run is None:
        return {"skipped": "no finished run"}
    loader = ModelLoader(sweep.get("tracking_uri"), data_dir)
    if loader.problem:  # no store (data_dir is given, so the store is the only problem left)
        return {"skipped": loader.problem}
    try:
        # The task comes first, from the run's config alone: a run of another task is skipped as such,
        # whether or not its model could be rebuilt.
        kind, single_label = _task(sweep["tracking_uri"], run, data_dir)
        if not single_label:
            return {"skipped": f"task {kind!r} is not single-label classification"}
        trained = loader.load(run)
    except Exception as e:  # a report without the matrix beats no report
        reason = f"run {run['run_id']}: cannot rebuild its model ({type(e).__name__}: {str(e)[:200]})"
        log.warning("no confusion matrix: %s", reason)
        return {"skipped": reason}
    return _matrix(trained.model, trained.data, kind, run, trained.config.dataset.name)


def _task(uri: str, run: Run, data_dir: Path) -> tuple[str, bool]:
    """The run's task kind, and whether its test labels are single-label classes."""
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        cfg = run_config(tracking.client(uri), run, Path(tmp))
    model = ModelSpec.model_validate(cfg["model"])
    dataset = Component.model_validate(cfg["dataset"])
    data = load_prepared(data_dir, dataset.name, dataset.options)
    kind = task_kind(model.name, data.info)
    single_label = kind == "binary" or (kind == "classification" and data.y_test.ndim == 1)
    return kind, single_label


def _matrix(model: nn.Module, data: Splits, kind: str, run: Run, dataset: str) -> dict[str, Any]:
    preds = []
    with torch.no_grad():
        for i in range(0, len(data.x_test), 1024):
            out = model(data.x_test[i : i + 1024])
            preds.append((out.view(-1) > 0).long() if kind == "binary" else out.argmax(dim=-1))
    pred = torch.cat(preds).numpy()
    true = data.y_test.view(-1).long().numpy() if kind == "binary" else data.y_test.numpy()
    k = 2 if kind == "binary" else max(int(data.info.num_classes), int(true.max()) + 1, int(pred.max()) + 1)
    matrix = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    classes = data.meta.get("classes") or []
    labels = [str(x) for x in classes] if len(classes) == k else [str(i) for i in range(k)]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    top = np.unravel_index(int(off.argmax()), off.shape) if off.any() else None
    return {
        "run_id": run["run_id"],
        "variant": variant(run),
        "seed": seed(run),
        "dataset": dataset,
        "n": int(matrix.sum()),
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "labels": labels,
        "matrix": matrix.tolist(),
        "top_error": [labels[top[0]], labels[top[1]], int(off[top])] if top else None,
    }
