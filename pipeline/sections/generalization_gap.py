"""Augmentation study: per variant, the best checkpoint's clean training accuracy against its validation
accuracy (the train−val gap augmentation should shrink), per seed for the study's claims
(`generalization_gap.gap`, `.train_accuracy`, `.val_accuracy`). On handwritten digits a horizontal flip changes what
an image shows, so a flipping variant there is named as the label-breaking control it is."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline import plots
from pipeline.runs import Run, by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import ACCURACY_GAP, clean_fit, logged_config, ms, stat, verb
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


def gap_sentences(rows: dict[str, dict[str, Any]], baseline: str = "none") -> list[str]:
    """The gaps ranked, and which variants shrink the gap or raise val accuracy compared with `baseline`."""
    have = {v: r for v, r in rows.items() if "mean" in r["gap"]}
    if not have:
        return []
    out = []
    lo, hi = min(have, key=lambda v: have[v]["gap"]["mean"]), max(have, key=lambda v: have[v]["gap"]["mean"])
    out.append(
        "Train−val accuracy gap (best checkpoint re-evaluated on its clean training samples): "
        + "; ".join(
            f"{v} {ms(r['gap'])} (train {r['train_accuracy']['mean']:.3f}, val {r['val_accuracy']['mean']:.3f})"
            for v, r in sorted(have.items(), key=lambda kv: kv[1]["gap"]["mean"])
        )
        + f". The smallest gap is {lo}'s, the largest {hi}'s."
    )
    if baseline in have:
        base = have[baseline]
        smaller = [v for v, r in have.items() if v != baseline and r["gap"]["mean"] < base["gap"]["mean"]]
        better = [
            v for v, r in have.items() if v != baseline and r["val_accuracy"]["mean"] > base["val_accuracy"]["mean"]
        ]
        text = f"Compared with {baseline}, "
        text += f"{join(smaller)} {verb(smaller, 'shrinks')} the gap" if smaller else "no variant shrinks the gap"
        text += "; " + (
            f"{join(better)} {verb(better, 'raises')} val accuracy." if better else "none raises val accuracy."
        )
        out.append(text)
    return out


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
    res.sentences += gap_sentences(rows)
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
