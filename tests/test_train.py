"""The plain training loop, with no Ray: learning, determinism, divergence, resume."""

from __future__ import annotations

import math

import torch

from pipeline.config import TrainConfig
from pipeline.data import load_prepared
from pipeline.models import build_model
from pipeline.tasks import task_for
from pipeline.train import evaluate, fit


def _fit(data, seed=0, **train):
    torch.manual_seed(seed)
    model = build_model("mlp", {"hidden": [32, 32], "activation": "relu"}, data.info)
    cfg = TrainConfig(**{"epochs": 4, "lr": 0.05, **train})
    return model, fit(model, data, task_for("classification"), cfg, seed=seed)


def test_fit_learns_synthetic_data(prepared_dir):
    data = load_prepared(prepared_dir, "synthetic")
    model, result = _fit(data)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["val_accuracy"] > 0.6  # 4 balanced classes: chance is 0.25
    assert result.best_epoch is not None and result.best_state is not None
    # The reported metric equals an independent evaluation of the same weights.
    model.load_state_dict(result.best_state)
    again = evaluate(model, data.x_val, data.y_val, task_for("classification"), 100)
    assert again["val_accuracy"] == result.best_metric
    for key in ("epoch_seconds", "samples_per_s", "lr", "peak_memory_mb"):
        assert last[key] > 0
    assert any(k.startswith("grad_norm/") for k in last) and any(k.startswith("dead_frac/") for k in last)


def test_same_seed_same_numbers_different_seed_differs(prepared_dir):
    data = load_prepared(prepared_dir, "digits")
    a = _fit(data, seed=3, diagnostics=False)[1].history
    b = _fit(data, seed=3, diagnostics=False)[1].history
    c = _fit(data, seed=4, diagnostics=False)[1].history
    strip = lambda h: [
        {k: v for k, v in row.items() if k not in ("epoch_seconds", "samples_per_s", "peak_memory_mb")} for row in h
    ]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_divergence_stops_training(prepared_dir):
    data = load_prepared(prepared_dir, "digits")
    _, result = _fit(data, lr=1e6, epochs=5)
    assert result.diverged
    assert result.history[-1]["diverged"] == 1.0
    assert len(result.history) < 5
    assert not math.isfinite(result.history[-1]["train_loss"])


def test_resume_from_checkpoint_continues_identically(prepared_dir):
    data = load_prepared(prepared_dir, "digits")
    _, full = _fit(data, seed=1, epochs=4, diagnostics=False)
    saved = {}

    def report(metrics, checkpoint):
        if metrics["epoch"] == 2:
            saved.update(checkpoint())

    torch.manual_seed(1)
    model = build_model("mlp", {"hidden": [32, 32], "activation": "relu"}, data.info)
    cfg = TrainConfig(epochs=2, lr=0.05, diagnostics=False)
    fit(model, data, task_for("classification"), cfg, report, seed=1)
    model2 = build_model("mlp", {"hidden": [32, 32], "activation": "relu"}, data.info)
    resumed = fit(model2, data, task_for("classification"), cfg.model_copy(update={"epochs": 4}), seed=1, resume=saved)
    pick = lambda h: [(r["epoch"], r["train_loss"], r["val_accuracy"]) for r in h]
    assert pick(resumed.history) == pick(full.history)
