"""Sentiment study: test F1 per variant, and test accuracy on the sentences with a negation word, with a
contrast ("but"), and with neither, re-evaluated from each run's best weights (per seed for the claims:
`sentiment_breakdown.accuracy_negation`, `.accuracy_contrast`, `.accuracy_neither`, `.test_f1`)."""

from __future__ import annotations

from typing import Any

import torch

from pipeline import plots
from pipeline.data.text import is_negator
from pipeline.runs import by_variant, ok_runs, per_variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, bar_stats, decided_by, describe, single_thread, sizes


@torch.no_grad()
def _subset_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float | None:
    if len(x) == 0:
        return None
    return float((model(x).argmax(-1) == y).float().mean())


CONTRAST = frozenset({"but", "however", "although", "though", "yet", "whereas"})
SUBSETS = {  # name -> (description, does a sentence's word set belong to it)
    "negation": ("with a negation word", lambda words: any(is_negator(w) for w in words)),
    "contrast": ('with a contrast ("but")', lambda words: bool(CONTRAST & words)),
    "neither": ("with neither", lambda words: not any(is_negator(w) for w in words) and not CONTRAST & words),
}


@register_section("sentiment_breakdown")
@single_thread()
def sentiment_breakdown(ctx: Context) -> Result:
    """Test F1 per variant, and test accuracy on the sentences with a negation word, with a contrast ("but"),
    and with neither, re-evaluated from each run's best weights: word order matters where a negation or a
    contrast decides the meaning, and an order-blind model should lose exactly there."""
    f1 = per_variant(ctx.runs, "test_f1")
    sentences, figs = [], []
    tables: dict[str, Any] = {"f1": bar_stats(f1, "test_f1")}
    if f1:
        sentences.append(
            f"Test macro-F1 of each run's best-validation checkpoint ({DESCRIBED}): "
            + ", ".join(f"{v} {describe(s)}" for v, s in tables["f1"].items())
            + "."
        )
    if ctx.data_dir is None:
        sentences += [s for s in (sizes(ctx), decided_by(ctx, "test_f1")) if s]
        return Result(sentences, figs, {**tables, "values": {"test_f1": f1}})
    acc: dict[str, dict[str, list[float]]] = {name: {} for name in SUBSETS}
    counts: dict[str, int] = {}
    for variant, runs in by_variant(ok_runs(ctx.runs)).items():
        for run in runs:
            trained = ctx.loader.load(run)
            model, data = trained.model, trained.data
            vocab = data.info.extra["vocab"]
            words = [{vocab[i] for i in row.tolist()} for row in data.x_test]
            for name, (_, member) in SUBSETS.items():
                mask = torch.tensor([member(w) for w in words], dtype=torch.bool)
                counts[name] = int(mask.sum())
                a = _subset_accuracy(model, data.x_test[mask], data.y_test[mask])
                if a is not None:
                    acc[name].setdefault(variant, []).append(a)
    parts = []
    for name, (desc, _) in SUBSETS.items():
        if acc[name]:
            tables[name] = bar_stats(acc[name], f"accuracy_{name}")
            parts.append(
                f"on the {counts[name]} test sentences {desc}, "
                + ", ".join(f"{v} {describe(s)}" for v, s in tables[name].items())
            )
    if parts:
        sentences.append(
            f"Test accuracy of the best-validation checkpoint by kind of sentence ({DESCRIBED}): {'; '.join(parts)}."
        )
    sentences += [
        s for s in (sizes(ctx), decided_by(ctx, "test_f1", *(f"accuracy_{n}" for n in SUBSETS if acc[n]))) if s
    ]
    if any(acc.values()):
        figs.append(
            plots.grouped_bars(
                {f"{desc} (n={counts[name]})": tables[name] for name, (desc, _) in SUBSETS.items() if acc[name]},
                ctx.out_dir / "figures" / "negation_accuracy.png",
                "test accuracy",
                f"{ctx.study}: accuracy by kind of sentence",
            )
        )
    tables["subset_sizes"] = counts
    tables["values"] = {"test_f1": f1, **{f"accuracy_{name}": acc[name] for name in SUBSETS}}
    return Result(sentences, figs, tables)
