"""Depth-and-width study: per depth and width, the accuracy (the report's metric) with the parameter count, and the
train−val gap of the best checkpoint (overfitting). It describes each configuration; which ones differ is the
study's one test family's to say."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pipeline import plots
from pipeline.config import TrialConfig
from pipeline.runs import final, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import (
    ACCURACY_GAP,
    DESCRIBED,
    clean_fit,
    decided_by,
    describe,
    logged_config,
    stat,
    which,
)


def depth_width(cfg: TrialConfig) -> tuple[int, int] | None:
    """(hidden layers, width) of an MLP whose hidden layers all have one width, else None."""
    hidden = cfg.model.options.get("hidden")
    if not isinstance(hidden, list) or not hidden or len(set(hidden)) != 1:
        return None
    return len(hidden), int(hidden[0])


def capacity_rows(records: list[dict[str, Any]], metric: str) -> dict[tuple[int, int], dict[str, Any]]:
    """Records {depth, width, n_params, <metric>, gap?, train_accuracy?} per run -> per (depth, width) statistics."""
    acc: dict[tuple[int, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        cell = acc[(rec["depth"], rec["width"])]
        for k in ("n_params", metric, "gap", "train_accuracy"):
            if rec.get(k) is not None:
                cell[k].append(rec[k])
    return {
        key: {k: stat(v, k, ACCURACY_GAP if k == "gap" else "auto") for k, v in cell.items()}
        for key, cell in sorted(acc.items())
    }


def capacity_sentences(rows: dict[tuple[int, int], dict[str, Any]], metric: str) -> list[str]:
    """Per width, each depth's accuracy (with its parameter count) and train−val gap; no ranking (the study's one
    family compares)."""
    widths = sorted({w for _, w in rows})

    def cell(d: int, row: dict[str, Any], key: str) -> str:
        size = f" ({row['n_params']['mean']:,.0f} parameters)" if key == metric and "mean" in row["n_params"] else ""
        return f"depth {d}{size} {describe(row.get(key, {}))}"

    def by_width(key: str) -> str:
        return "; ".join(
            f"width {w}: " + ", ".join(cell(d, rows[(d, ww)], key) for d, ww in sorted(rows) if ww == w) for w in widths
        )

    out = [f"Per configuration, {which(metric)} ({DESCRIBED}): {by_width(metric)}."]
    if any("mean" in row.get("gap", {}) for row in rows.values()):
        out.append(
            "The train−val accuracy gap of the best-validation checkpoint (re-evaluated on its clean training "
            f"samples): {by_width('gap')}."
        )
    return out


@register_section("capacity")
def capacity(ctx: Context) -> Result:
    """Accuracy against parameters and depth per width, and the train−val gap (overfitting)."""
    res = Result()
    metric = ctx.analysis["metric"]
    load = ctx.loader
    records = []
    for r in ok_runs(ctx.runs):
        cfg = logged_config(r)
        dw = depth_width(cfg) if cfg else None
        if dw is None:
            continue
        rec = {
            "depth": dw[0],
            "width": dw[1],
            "n_params": final(r, "n_params"),
            metric: final(r, metric),
        }
        trained = load(r)
        if trained is not None:
            fit = clean_fit(trained)
            rec.update(train_accuracy=fit["train_accuracy"], gap=fit["train_accuracy"] - fit["val_accuracy"])
        records.append(rec)
    if not records:
        res.sentences.append("No finished run with equal-width hidden layers to compare.")
        return res
    rows = capacity_rows(records, metric)
    res.tables["grid"] = {f"depth={d},width={w}": row for (d, w), row in rows.items()}
    res.sentences += capacity_sentences(rows, metric)
    res.sentences.append(decided_by(ctx, metric, "the train−val gap"))
    if load.problem:
        res.sentences.append(f"The train−val gap was not measured: {load.problem}.")
    fig = ctx.out_dir / "figures"
    widths = sorted({w for _, w in rows})
    depths = sorted({d for d, _ in rows})

    def points(cells: list[tuple[int, int]], x: Callable[[tuple[int, int]], float], y: str) -> list[tuple]:
        return [(x(c), rows[c][y]) for c in cells if "mean" in rows[c].get(y, {})]

    by_width = {f"width {w}": [(d, w) for d in depths if (d, w) in rows] for w in widths}
    by_depth = {f"depth {d}": [(d, w) for w in widths if (d, w) in rows] for d in depths}
    params = lambda c: rows[c]["n_params"]["mean"]
    res.figures.append(
        plots.series_xy(
            {k: points(cells, lambda c: c[0], metric) for k, cells in by_width.items()},
            fig / "accuracy_vs_depth.png",
            "hidden layers",
            which(metric),
            f"{ctx.study}: accuracy vs depth per width",
        )
    )
    res.figures.append(
        plots.series_xy(
            {k: points(cells, params, metric) for k, cells in by_depth.items()},
            fig / "accuracy_vs_params_by_depth.png",
            "parameters",
            which(metric),
            f"{ctx.study}: accuracy vs parameters per depth",
            logx=True,
        )
    )
    if any("mean" in row.get("gap", {}) for row in rows.values()):
        res.figures.append(
            plots.series_xy(
                {k: points(cells, params, "gap") for k, cells in by_depth.items()},
                fig / "gap_vs_params.png",
                "parameters",
                "train − val accuracy (best checkpoint)",
                f"{ctx.study}: overfitting gap vs parameters",
                logx=True,
            )
        )
    return res
