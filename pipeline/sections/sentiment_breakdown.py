"""Sentiment study: test F1 per variant, and test accuracy on the sentences with a negation word, with a
contrast ("but"), and with neither, re-evaluated from each run's best weights (per seed for the claims:
`sentiment_breakdown.accuracy_negation`, `.accuracy_contrast`, `.accuracy_neither`, `.test_f1`)."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.data.text import is_negator
from pipeline.runs import by_variant, ok_runs, per_variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import bar_stats, comparison, single_thread


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
    sentences, tables, figs = [], {}, []
    if f1:
        s, tables["f1"] = comparison(f1, "test_f1", "max")
        sentences.append("Test macro-F1: " + s)
    if ctx.data_dir is None:
        return Result(sentences, figs, {**tables, "values": {"test_f1": f1}})
    acc: dict[str, dict[str, list[float]]] = {name: {} for name in SUBSETS}
    sizes: dict[str, int] = {}
    for variant, runs in by_variant(ok_runs(ctx.runs)).items():
        for run in runs:
            trained = ctx.loader.load(run)
            model, data = trained.model, trained.data
            vocab = data.info.extra["vocab"]
            words = [{vocab[i] for i in row.tolist()} for row in data.x_test]
            for name, (_, member) in SUBSETS.items():
                mask = torch.tensor([member(w) for w in words], dtype=torch.bool)
                sizes[name] = int(mask.sum())
                a = _subset_accuracy(model, data.x_test[mask], data.y_test[mask])
                if a is not None:
                    acc[name].setdefault(variant, []).append(a)
    for name, (desc, _) in SUBSETS.items():
        if acc[name]:
            s, tables[name] = comparison(acc[name], f"accuracy_{name}", "max")
            sentences.append(f"On the {sizes[name]} test sentences {desc}: " + s)
    if any(acc.values()):
        figs.append(
            plots.grouped_bars(
                {
                    f"{desc} (n={sizes[name]})": bar_stats(acc[name], f"accuracy_{name}")
                    for name, (desc, _) in SUBSETS.items()
                    if acc[name]
                },
                ctx.out_dir / "figures" / "negation_accuracy.png",
                "test accuracy",
                f"{ctx.study}: accuracy by kind of sentence",
            )
        )
    tables["subset_sizes"] = sizes
    tables["values"] = {"test_f1": f1, **{f"accuracy_{name}": acc[name] for name in SUBSETS}}
    return Result(sentences, figs, tables)
