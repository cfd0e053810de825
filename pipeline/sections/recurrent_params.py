"""Recurrent-cells study: recurrent parameter counts per cell, counted on the built models (also per seed, for the
claims: `recurrent_params.recurrent_params`), and each cell's accuracy at equal hidden size and at equal parameter
budget, with its size. It describes; which cells differ is the study's one test family's to say."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from torch import nn

from pipeline import plots
from pipeline.config import TrialConfig
from pipeline.models.rnn import recurrent_parameter_count
from pipeline.runs import by_variant, final, ok_runs, variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, logged_config, stat, which


def recurrent_counts(configs: dict[str, TrialConfig], build: Callable[[TrialConfig], nn.Module]) -> dict[str, dict]:
    """Per variant: cell, hidden size, recurrent and total parameters, counted on the built model."""
    out = {}
    for v, cfg in configs.items():
        model = build(cfg)
        out[v] = {
            "cell": cfg.model.options["cell"],
            "param_budget": cfg.model.options.get("param_budget"),
            "hidden_size": int(getattr(model, "hidden_size", cfg.model.options["hidden_size"])),
            "recurrent_params": recurrent_parameter_count(model),
            "total_params": sum(p.numel() for p in model.parameters()),
        }
    return out


def ratio_sentence(counts: dict[str, dict]) -> str | None:
    """LSTM and GRU recurrent parameters over the vanilla RNN's, at equal hidden size (no budget)."""
    plain = {c["cell"]: c for c in counts.values() if c["param_budget"] is None}
    if "rnn" not in plain:
        return None
    base = plain["rnn"]["recurrent_params"]
    parts = []
    for cell, expected in (("lstm", 4), ("gru", 3)):
        if cell in plain and plain[cell]["hidden_size"] == plain["rnn"]["hidden_size"]:
            r = plain[cell]["recurrent_params"] / base
            verdict = (
                "as its gate count predicts" if abs(r - expected) < 0.01 * expected else f"not the {expected}× expected"
            )
            parts.append(f"the {cell.upper()} has {r:.2f}× ({plain[cell]['recurrent_params']:,}), {verdict}")
    if not parts:
        return None
    return (
        f"At equal hidden size {plain['rnn']['hidden_size']}, counted on the built models, the vanilla RNN has "
        f"{base:,} recurrent parameters; " + "; ".join(parts) + "."
    )


@register_section("recurrent_params")
def recurrent_params(ctx: Context) -> Result:
    """Recurrent parameter counts per cell (from the built models) and accuracy in both comparisons."""
    res = Result()
    runs = ok_runs(ctx.runs)
    configs = {}
    for r in runs:
        cfg = logged_config(r)
        if cfg is not None and "cell" in cfg.model.options:
            configs.setdefault(variant(r), cfg)
    if not configs:
        res.sentences.append("No finished recurrent run to count.")
        return res
    if ctx.data_dir is None:
        res.sentences.append("Parameters not counted: no prepared data folder given.")
        return res

    counts = recurrent_counts(configs, ctx.loader.untrained)
    metric = ctx.analysis["metric"]
    by_v = by_variant(runs)
    for v, row in counts.items():
        row[metric] = stat([final(r, metric) for r in by_v[v]], metric)
    res.tables["cells"] = counts
    # deterministic counts, repeated once per finished seed, for the claims (`recurrent_params.<quantity>`)
    res.tables["values"] = {
        q: {v: [float(row[q])] * len(by_v[v]) for v, row in counts.items()}
        for q in ("recurrent_params", "total_params")
    }
    if (s := ratio_sentence(counts)) is not None:
        res.sentences.append(s)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)  # regime -> cell -> statistics
    parts = []
    for regime, pick in (
        ("equal hidden size", lambda c: c["param_budget"] is None),
        ("equal parameters", lambda c: c["param_budget"] is not None),
    ):
        rows = {c["cell"]: c for c in counts.values() if pick(c) and "mean" in c[metric]}
        if not rows:
            continue
        text = f"at {regime}, " + ", ".join(
            f"{cell} (hidden {c['hidden_size']}, {c['recurrent_params']:,} recurrent and {c['total_params']:,} "
            f"parameters in all) {describe(c[metric])}"
            for cell, c in rows.items()
        )
        if len({c["total_params"] for c in rows.values()}) > 1 and regime == "equal hidden size":
            text += " (the cells differ in size here, so a difference between them is not one at matched parameters)"
        parts.append(text)
        for cell, c in rows.items():
            groups[regime][cell] = c[metric]
    if groups:
        res.sentences.append(f"Per cell, {which(metric)} ({DESCRIBED}): " + "; ".join(parts) + ".")
        res.sentences.append(decided_by(ctx, metric))
        res.figures.append(
            plots.grouped_bars(
                dict(groups), ctx.out_dir / "figures" / "cells_by_regime.png", metric, f"{ctx.study}: {metric} per cell"
            )
        )
    return res
