"""Depth-and-width study: accuracy against parameters and depth per width, and the train−val gap of the best
checkpoint (overfitting)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from pipeline import plots
from pipeline.config import TrialConfig
from pipeline.runs import final, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import ACCURACY_GAP, clean_fit, logged_config, ms, stat


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def depth_width(cfg: TrialConfig) -> tuple[int, int] | None:
    """(hidden layers, width) of an MLP whose hidden layers all have one width, else None."""
    hidden = cfg.model.options.get("hidden")
    if not isinstance(hidden, list) or not hidden or len(set(hidden)) != 1:
        return None
    return len(hidden), int(hidden[0])


def capacity_rows(records: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, Any]]:
    """Records {depth, width, n_params, val_accuracy, gap?} per run -> per (depth, width) statistics."""
    acc: dict[tuple[int, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        cell = acc[(rec["depth"], rec["width"])]
        for k in ("n_params", "val_accuracy", "gap", "train_accuracy"):
            if rec.get(k) is not None:
                cell[k].append(rec[k])
    return {
        key: {k: stat(v, k, ACCURACY_GAP if k == "gap" else "auto") for k, v in cell.items()}
        for key, cell in sorted(acc.items())
    }


def capacity_sentences(rows: dict[tuple[int, int], dict[str, Any]]) -> list[str]:
    """The best configuration, the best depth per width, and how accuracy and gap follow parameter count."""
    out = []
    best = max(rows, key=lambda k: rows[k]["val_accuracy"].get("mean", -1))
    b = rows[best]
    out.append(
        f"The most accurate MLP is depth {best[0]} × width {best[1]} (val accuracy {ms(b['val_accuracy'])}, "
        f"{b['n_params']['mean']:,.0f} parameters)."
    )
    widths = sorted({w for _, w in rows})
    parts, best_depth = [], {}
    for w in widths:
        by_d = sorted((d, rows[(d, ww)]["val_accuracy"]["mean"]) for d, ww in rows if ww == w)
        parts.append(f"width {w}: " + " → ".join(f"{a:.3f}" for _, a in by_d))
        best_depth[w] = max(by_d, key=lambda t: t[1])[0]
    depths = sorted({d for d, _ in rows})
    out.append(
        f"Val accuracy by depth {', '.join(map(str, depths))}: {'; '.join(parts)}; the best depth is "
        + ", ".join(f"{best_depth[w]} at width {w}" for w in widths)
        + "."
    )
    params = [rows[k]["n_params"]["mean"] for k in rows]
    accs = [rows[k]["val_accuracy"]["mean"] for k in rows]
    rho = _spearman(params, accs)
    if rho is not None:
        out.append(
            f"Across the {len(rows)} configurations, Spearman's ρ between parameter count and accuracy is {rho:+.2f}."
        )
    gaps = {k: rows[k]["gap"]["mean"] for k in rows if "mean" in rows[k].get("gap", {})}
    if len(gaps) >= 3:
        rho_g = _spearman([rows[k]["n_params"]["mean"] for k in gaps], list(gaps.values()))
        hi, lo = max(gaps, key=gaps.get), min(gaps, key=gaps.get)
        out.append(
            f"The train−val accuracy gap (best checkpoint re-evaluated on its training samples) ranges from "
            f"{gaps[lo]:.3f} at depth {lo[0]} × width {lo[1]} to {gaps[hi]:.3f} at depth {hi[0]} × width {hi[1]}"
            + (f"; Spearman's ρ between parameters and gap is {rho_g:+.2f}." if rho_g is not None else ".")
        )
    return out


@register_section("capacity")
def capacity(ctx: Context) -> Result:
    """Accuracy against parameters and depth per width, and the train−val gap (overfitting)."""
    res = Result()
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
            "val_accuracy": final(r, "val_accuracy"),
        }
        trained = load(r)
        if trained is not None:
            fit = clean_fit(trained)
            rec.update(train_accuracy=fit["train_accuracy"], gap=fit["train_accuracy"] - fit["val_accuracy"])
        records.append(rec)
    if not records:
        res.sentences.append("No finished run with equal-width hidden layers to compare.")
        return res
    rows = capacity_rows(records)
    res.tables["grid"] = {f"depth={d},width={w}": row for (d, w), row in rows.items()}
    res.sentences += capacity_sentences(rows)
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
            {k: points(cells, lambda c: c[0], "val_accuracy") for k, cells in by_width.items()},
            fig / "accuracy_vs_depth.png",
            "hidden layers",
            "val accuracy (last epoch)",
            f"{ctx.study}: accuracy vs depth per width",
        )
    )
    res.figures.append(
        plots.series_xy(
            {k: points(cells, params, "val_accuracy") for k, cells in by_depth.items()},
            fig / "accuracy_vs_params_by_depth.png",
            "parameters",
            "val accuracy (last epoch)",
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
