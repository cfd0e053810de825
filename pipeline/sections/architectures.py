"""CNN-architectures study: accuracy, parameters, FLOPs per sample and training throughput per architecture,
and the Pareto fronts of accuracy against each cost."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import plots
from pipeline.runs import Run, by_variant, final, ok_runs, series
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import join, stat


def _steady_throughput(run: Run) -> float | None:
    """Training samples per second, the median over epochs after the first (which pays warm-up costs)."""
    vals = series(run, "samples_per_s")
    vals = vals[1:] if len(vals) > 1 else vals
    return float(np.median(vals)) if vals else None


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated by another point with cost <= and accuracy >= (one of them strictly)."""
    front = []
    for name, (cost, acc) in points.items():
        dominated = any(
            c2 <= cost and a2 >= acc and (c2 < cost or a2 > acc) for n2, (c2, a2) in points.items() if n2 != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def architecture_rows(runs: list[Run], metric: str) -> dict[str, dict[str, Any]]:
    """Per variant: the metric, test accuracy, parameters, FLOPs per sample and steady throughput over seeds."""
    rows = {}
    for v, rs in by_variant(runs).items():
        rows[v] = {
            metric: stat([final(r, metric) for r in rs]),
            "test_accuracy": stat([final(r, "test_accuracy") for r in rs]),
            "n_params": stat([final(r, "n_params") for r in rs]),
            "flops_per_sample": stat([final(r, "flops_per_sample") for r in rs]),
            "samples_per_s": stat([_steady_throughput(r) for r in rs]),
        }
    return rows


def architecture_sentences(rows: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """The cost table in words, the Pareto front against FLOPs and against parameters, and the speed ratio."""
    have = {v: r for v, r in rows.items() if all("mean" in r[k] for k in (metric, "n_params", "flops_per_sample"))}
    if not have:
        return ["No architecture has both an accuracy and a cost to compare."]
    out = [
        "Per architecture ("
        + metric
        + ", parameters, forward MFLOPs per sample, training samples/s): "
        + "; ".join(
            f"{v} {r[metric]['mean']:.3f}, {r['n_params']['mean']:,.0f}, {r['flops_per_sample']['mean'] / 1e6:.2f}, "
            + (f"{r['samples_per_s']['mean']:,.0f}" if "mean" in r["samples_per_s"] else "n/a")
            for v, r in have.items()
        )
        + "."
    ]
    for cost, label in (("flops_per_sample", "FLOPs"), ("n_params", "parameters")):
        front = pareto_front({v: (r[cost]["mean"], r[metric]["mean"]) for v, r in have.items()})
        dominated = [v for v in have if v not in front]
        out.append(
            f"On {metric} against {label} the Pareto front is {join(front)}"
            + (f"; {join(dominated)} {'is' if len(dominated) == 1 else 'are'} dominated." if dominated else ".")
        )
    speed = {v: r["samples_per_s"]["mean"] for v, r in have.items() if "mean" in r["samples_per_s"]}
    if len(speed) > 1:
        fast, slow = max(speed, key=speed.get), min(speed, key=speed.get)
        out.append(f"{fast} trains {speed[fast] / speed[slow]:.1f}× as many samples per second as {slow}.")
    return out


@register_section("architectures")
def architectures(ctx: Context) -> Result:
    """Accuracy, parameters, FLOPs per sample and training throughput per architecture, and the Pareto fronts."""
    res = Result()
    metric = ctx.analysis["metric"]
    rows = architecture_rows(ok_runs(ctx.runs), metric)
    res.tables["architectures"] = rows
    res.sentences += architecture_sentences(rows, metric)
    # metric against FLOPs and parameters: the generic report's cost plots
    speed = [
        {"variant": v, "rank": None, **r["samples_per_s"]} for v, r in rows.items() if "mean" in r["samples_per_s"]
    ]
    if speed:
        res.figures.append(
            plots.bars_with_ci(
                speed,
                ctx.out_dir / "figures" / "throughput.png",
                "training samples / s",
                f"{ctx.study}: training throughput (median epoch after the first)",
            )
        )
    return res
