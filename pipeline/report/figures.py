"""The report's curves and standard figures, drawn with the primitives in `pipeline.plots`.

`curves/<variant>.csv` holds epoch, mean, std and n of the study metric over seeds (DVC plots); under
`figures/` go the per-epoch learning curves (validation and training) with a ±1 SD band, the headline metric
(the best-validation checkpoint's test score) per variant with its 95% interval, the per-layer gradient norms
after epoch 1, the headline metric against each cost that differs between variants (both with their 95%
intervals), and the best run's confusion matrix. The intervals are analysis.json's own (`honest_stats`); every
axis of a bounded metric stays inside its range (`pipeline.plots.metric_bounds`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import plots
from pipeline import runs as rn
from pipeline.runs import Run

# Costs the study metric is plotted against when they differ between variants: key, axis label.
COSTS = (
    ("n_params", "parameters"),
    ("flops_per_sample", "FLOPs per sample (forward)"),
    ("train_seconds", "training wall time per run (s)"),
)


def curves(runs: list[Run], key: str) -> dict[str, list[list[float]]]:
    """Per variant, each finished run's per-epoch series of `key` (runs may differ in length)."""
    out: dict[str, list[list[float]]] = defaultdict(list)
    for r in runs:
        if rn.is_ok(r) and r["history"].get(key):
            epochs = {int(s) for s, _ in r["history"].get("epoch", [])}
            out[rn.variant(r)].append([v for s, v in r["history"][key] if int(s) in epochs])
    return dict(out)


def write_curve_csvs(runs: list[Run], metric: str, curves_dir: Path) -> None:
    """`curves_dir/<variant>.csv` for every variant, replacing the CSVs of an earlier build."""
    curves_dir.mkdir(exist_ok=True)
    for stale in curves_dir.glob("*.csv"):
        stale.unlink()
    for variant, series in curves(runs, metric).items():
        mean, std, count = plots.per_epoch(series)
        with (curves_dir / f"{_safe(variant)}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "mean", "std", "n"])
            for i in range(len(mean)):
                w.writerow([i + 1, f"{mean[i]:.6g}", f"{std[i]:.6g}", int(count[i])])


def first_epoch_layers(runs: list[Run], prefix: str) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of a per-layer diagnostic at epoch 1."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for key, series in r["history"].items():
            if key.startswith(prefix) and series:
                acc[rn.variant(r)][key[len(prefix) :]].append(series[0][1])
    return {
        v: {layer: float(np.mean(layers[layer])) for layer in sorted(layers, key=rn.natural_key)}
        for v, layers in acc.items()
    }


def _differ(values: list[float], rel: float = 0.05) -> bool:
    """True when the variants' values spread by more than `rel` of the largest (noise in timings aside)."""
    if len(values) < 2:
        return False
    top = max(abs(v) for v in values)
    return top > 0 and (max(values) - min(values)) > rel * top


def cost_plots(study: str, analysis: dict[str, Any], figures: Path) -> list[Path]:
    """The headline metric against each cost (COSTS) that differs between the variants, with 95% intervals."""
    metric = analysis["metric"]
    made = []
    for key, label in COSTS:
        points = [
            {"label": v, "x": r[key], "y": r[metric]}
            for v, r in analysis["variants"].items()
            if "mean" in r.get(key, {}) and "mean" in r.get(metric, {})
        ]
        xs = [p["x"]["mean"] for p in points]
        if not _differ(xs):
            continue
        made.append(
            plots.scatter_xy(
                points,
                figures / f"{metric}_vs_{key}.png",
                label,
                metric,
                f"{study}: {metric} (best-validation checkpoint) vs {label}",
                logx=min(xs) > 0 and max(xs) / min(xs) > 10,
            )
        )
    return made


def curve_title(study: str, key: str) -> str:
    """Curves are per-epoch values, not the checkpoint the headline uses: the title says which split (the legend
    says what the band is)."""
    split = {"val": "validation", "train": "training", "test": "test"}.get(key.split("_", 1)[0], "")
    return f"{study}: {split + ' ' if split else ''}{key} per epoch"


def standard_figures(study: str, runs: list[Run], analysis: dict[str, Any], figures: Path) -> list[Path]:
    """Learning curves, the headline metric with its interval, per-layer gradient norms and cost plots."""
    metric, study_metric = analysis["metric"], analysis.get("study_metric", analysis["metric"])
    made = []
    for key in dict.fromkeys([study_metric, "val_loss", "train_loss"]):
        c = curves(runs, key)
        if c:
            made.append(plots.curves_with_band(c, figures / f"curve_{key}.png", key, curve_title(study, key)))
    rows = [
        {"variant": v, "rank": r.get("rank"), **r[metric]}
        for v, r in sorted(analysis["variants"].items(), key=lambda kv: kv[1].get("rank", 1e9))
        if "mean" in r.get(metric, {})
    ]
    if rows:
        made.append(
            plots.bars_with_ci(
                rows,
                figures / f"final_{metric}.png",
                metric,
                f"{study}: {metric} of the best-validation checkpoint",
            )
        )
    grads = first_epoch_layers(runs, "grad_norm/")
    if grads:
        made.append(
            plots.layer_lines(
                grads,
                figures / "grad_norm_layers.png",
                "gradient norm (epoch 1)",
                f"{study}: per-layer gradient norm after epoch 1",
            )
        )
    return made + cost_plots(study, analysis, figures)


def confusion_figure(study: str, conf: dict[str, Any], figures: Path) -> Path:
    """`figures/confusion_best.png` from a `pipeline.report.confusion.confusion` result with a matrix."""
    return plots.confusion(
        np.array(conf["matrix"]),
        figures / "confusion_best.png",
        f"{study}: {conf['variant']} seed {conf['seed']}, test accuracy {conf['accuracy']:.3f}",
        labels=conf["labels"],
    )


def _safe(name: str) -> str:
    """A variant name as a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in name)
