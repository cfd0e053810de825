"""Augmentation study: per variant, the best checkpoint's clean training accuracy beside its validation accuracy
(the train−val gap the study's claims test), per seed for the study's claims
(`generalization_gap.gap`, `.train_accuracy`, `.val_accuracy`). On handwritten digits a horizontal flip changes what
an image shows, so a flipping variant there is named as the label-breaking control it is."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline import plots
from pipeline.runs import Run, by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import ACCURACY_GAP, DESCRIBED, clean_fit, decided_by, describe, logged_config, stat
from pipeline.text import join

# Data sets of digits, which a mirror image does not keep (clothing and CIFAR's objects it does).
MIRROR_BREAKS_LABEL = frozenset({"digits", "mnist"})
FLIPPING = frozenset({"flip", "crop_flip", "strong"})


def gap_rows(fits: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per variant: clean train and val accuracy and their gap (mean, std and 95% interval over seeds)."""
    rows = {}
    for v, per_seed in fits.items():
        rows[v] = {
            "train_accuracy": stat([f["train_accuracy"] for f in per_seed], "train_accuracy"),
            "val_accuracy": stat([f["val_accuracy"] for f in per_seed], "val_accuracy"),
            "gap": stat([f["train_accuracy"] - f["val_accuracy"] for f in per_seed], "gap", ACCURACY_GAP),
        }
    return rows


def _clean_fits(ctx: Context, runs: list[Run]) -> tuple[dict[str, list[dict]], str | None]:
    load = ctx.loader
    fits: dict[str, list[dict]] = defaultdict(list)
    for v, rs in by_variant(runs).items():  # seed order, as the claims' per-seed values need
        for r in rs:
            trained = load(r)
            if trained is not None:
                fits[v].append({**clean_fit(trained), "run_id": r["run_id"]})
    return dict(fits), load.problem


def per_seed_values(fits: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """quantity -> variant -> one value per seed: clean train and val accuracy of the best checkpoint and the gap."""
    return {
        "gap": {v: [f["train_accuracy"] - f["val_accuracy"] for f in fs] for v, fs in fits.items()},
        "train_accuracy": {v: [f["train_accuracy"] for f in fs] for v, fs in fits.items()},
        "val_accuracy": {v: [f["val_accuracy"] for f in fs] for v, fs in fits.items()},
    }


def label_breaking(runs: list[Run]) -> list[str]:
    """Variants that mirror images of a data set whose labels a mirror image does not keep (digits)."""
    out = []
    for v, rs in by_variant(runs).items():
        cfg = logged_config(rs[0])
        if cfg is not None and cfg.train.augment in FLIPPING and cfg.dataset.name in MIRROR_BREAKS_LABEL:
            out.append(v)
    return out


def control_sentence(variants: list[str]) -> str | None:
    if not variants:
        return None
    return (
        f"On handwritten digits a horizontal flip changes what the image shows (a mirrored 2, 3, 4, 5, 7 or 9 is no "
        f"digit): {join(variants)} {'is' if len(variants) == 1 else 'are'} the label-breaking control, not a "
        "candidate augmentation."
    )


def gap_sentence(rows: dict[str, dict[str, Any]]) -> str | None:
    """Each variant's gap with its clean train and val accuracy; no ranking (the study's claims test the gap)."""
    have = {v: r for v, r in rows.items() if "mean" in r["gap"]}
    if not have:
        return None
    return (
        "Train−val accuracy gap of the best-validation checkpoint, re-evaluated on its clean training samples and on "
        f"the validation split ({DESCRIBED}; train and val accuracy as means): "
        + "; ".join(
            f"{v} {describe(r['gap'])} (train {r['train_accuracy']['mean']:.3f}, val {r['val_accuracy']['mean']:.3f})"
            for v, r in have.items()
        )
        + "."
    )


@register_section("generalization_gap")
def generalization_gap(ctx: Context) -> Result:
    """Per variant, the best checkpoint's clean training accuracy against its validation accuracy."""
    res = Result()
    fits, problem = _clean_fits(ctx, ok_runs(ctx.runs))
    if not fits:
        res.sentences.append(f"The train−val gap was not measured: {problem or 'no trained model could be loaded'}.")
        return res
    rows = gap_rows(fits)
    res.tables["gap"] = rows
    res.tables["values"] = per_seed_values(fits)
    res.sentences += [s for s in (gap_sentence(rows), decided_by(ctx, "gap", "val_accuracy")) if s]
    if (text := control_sentence(label_breaking(ok_runs(ctx.runs)))) is not None:
        res.sentences.append(text)
    res.figures.append(
        plots.grouped_bars(
            {
                f"{s} (clean)" if s == "train" else s: {v: r[f"{s}_accuracy"] for v, r in rows.items()}
                for s in ("train", "val")
            },
            ctx.out_dir / "figures" / "train_vs_val_accuracy.png",
            "accuracy (best checkpoint)",
            f"{ctx.study}: clean training vs validation accuracy",
        )
    )
    return res
