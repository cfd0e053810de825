"""Degradation study (He et al. 2016, Fig. 1): training error by depth, for plain networks and their residual twins.

A deeper plain network that ends at a *higher training error* than a shallower one is not overfitting (that would
lower the training error): it is harder to optimize. Training error here is the best checkpoint re-evaluated on the
training samples it saw (eval mode, no augmentation), per seed for the claims (`degradation.train_error`,
`.train_loss`, `.val_error`), beside the per-epoch training loss curves the paper plots.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline import plots
from pipeline.runs import by_variant, ok_runs, series
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import (
    DESCRIBED,
    FRACTION,
    clean_fit,
    decided_by,
    describe,
    logged_config,
    single_thread,
    stat,
)


def conv_layers(options: dict[str, Any]) -> int:
    """Weighted layers of a CIFAR-style ResNet (or its plain twin): a stem, 2 convs per block, the classifier."""
    return 2 + 2 * int(options.get("blocks", 1)) * int(options.get("depth", 3))


def depth_rows(fits: dict[str, list[dict[str, float]]], shapes: dict[str, tuple[int, bool]]) -> dict[str, dict]:
    """Per variant: layers, residual or plain, and the clean training error, loss and validation error over seeds."""
    return {
        v: {
            "layers": shapes[v][0],
            "residual": shapes[v][1],
            "train_error": stat([1 - f["train_accuracy"] for f in fs], "train_error", FRACTION),
            "train_loss": stat([f["train_loss"] for f in fs], "train_loss"),
            "val_error": stat([1 - f["val_accuracy"] for f in fs], "val_error", FRACTION),
        }
        for v, fs in fits.items()
        if v in shapes
    }


def degradation_sentences(rows: dict[str, dict]) -> list[str]:
    """Training error per depth for the plain and the residual networks; no comparison (the claims test depth)."""
    parts = []
    for residual, kind in ((False, "plain"), (True, "residual")):
        same = sorted(
            (r["layers"], v) for v, r in rows.items() if r["residual"] == residual and "mean" in r["train_error"]
        )
        if same:
            parts.append(
                f"{kind}, " + ", ".join(f"{layers} layers {describe(rows[v]['train_error'], 4)}" for layers, v in same)
            )
    if not parts:
        return []
    return [
        f"Clean training error of the best-validation checkpoint on its training samples ({DESCRIBED}): "
        + "; ".join(parts)
        + "."
    ]


@register_section("degradation")
@single_thread()
def degradation(ctx: Context) -> Result:
    """Clean training error per variant (plain and residual, by depth) and the training-loss curves."""
    res = Result()
    runs = by_variant(ok_runs(ctx.runs))
    shapes: dict[str, tuple[int, bool]] = {}
    fits: dict[str, list[dict[str, float]]] = defaultdict(list)
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for v, rs in runs.items():
        cfg = logged_config(rs[0])
        if cfg is None:
            continue
        shapes[v] = (conv_layers(cfg.model.options), bool(cfg.model.options.get("residual", True)))
        label = f"{shapes[v][0]} layers, {'residual' if shapes[v][1] else 'plain'}"
        for r in rs:
            curves[label].append(series(r, "train_loss"))
            trained = ctx.loader(r)
            if trained is not None:
                fits[v].append(clean_fit(trained))
    if not fits:
        res.sentences.append(
            f"Training error was not measured: {ctx.loader.problem or 'no trained model could be loaded'}."
        )
        return res
    rows = depth_rows(dict(fits), shapes)
    res.tables["depth"] = rows
    res.tables["values"] = {
        "train_error": {v: [1 - f["train_accuracy"] for f in fs] for v, fs in fits.items()},
        "train_loss": {v: [f["train_loss"] for f in fs] for v, fs in fits.items()},
        "val_error": {v: [1 - f["val_accuracy"] for f in fs] for v, fs in fits.items()},
    }
    res.sentences += degradation_sentences(rows)
    res.sentences.append(decided_by(ctx, "train_error"))
    res.figures.append(
        plots.curves_with_band(
            dict(curves),
            ctx.out_dir / "figures" / "train_loss_by_depth.png",
            "training loss (epoch mean)",
            f"{ctx.study}: training loss, plain and residual, by depth",
        )
    )
    return res
