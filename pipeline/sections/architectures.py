"""CNN-architectures study: accuracy, parameters, FLOPs per sample and training throughput per architecture,
the Pareto fronts of accuracy against each cost, and what each family pays in weights to see a 5x5 field (VGG's
point: two stacked 3x3 convolutions see what one 5x5 sees, with 18 weights per channel pair instead of 25)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from pipeline import plots
from pipeline.runs import Run, by_variant, final, ok_runs, series
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import per_untrained_model, stat
from pipeline.text import join

COSTS = ("n_params", "flops_per_sample")
FIELD = 5  # the receptive field compared: one 5x5 filter (LeNet, AlexNet) or two stacked 3x3 (VGG, ResNet)


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
            **{k: stat([final(r, k) for r in rs], k) for k in (metric, "test_accuracy", *COSTS)},
            "samples_per_s": stat([_steady_throughput(r) for r in rs], "samples_per_s"),
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


def weights_to_reach(model: nn.Module, field: int = FIELD) -> float | None:
    """Kernel weights per input-output channel pair along the first chain of convolutions whose receptive field
    reaches `field` x `field`: the convolutions in module order, 1x1 ones skipped (they widen no field), each k x k
    one adding k - 1 to the field and k * k to the count. None when the model never reaches it."""
    reach, weights = 1, 0
    for m in model.modules():
        if not isinstance(m, nn.Conv2d) or max(m.kernel_size) == 1:
            continue
        kh, kw = m.kernel_size
        reach += (max(kh, kw) - 1) * max(m.dilation)
        weights += kh * kw
        if reach >= field:
            return float(weights)
    return None


def field_weights(ctx: Context) -> dict[str, list[float]]:
    """variant -> `weights_to_reach` of each ok run's built model, in seed order ({} without prepared data)."""
    return per_untrained_model(ctx, weights_to_reach)


def field_sentence(weights: dict[str, list[float]]) -> str | None:
    """'To see a 5x5 field: vgg 18 weights per channel pair, lenet 25, ...'."""
    if not weights:
        return None
    per = {v: x[0] for v, x in weights.items()}
    text = f"Weights per input-output channel pair to see a {FIELD}x{FIELD} field: " + ", ".join(
        f"{v} {w:g}" for v, w in sorted(per.items(), key=lambda kv: kv[1])
    )
    if "vgg" in per and "lenet" in per:
        text += (
            f"; VGG's two stacked 3x3 convolutions need {per['vgg'] / per['lenet']:.2f}× the weights of LeNet's one "
            f"{FIELD}x{FIELD} (and add a nonlinearity between them)"
        )
    return text + "."


@register_section("architectures")
def architectures(ctx: Context) -> Result:
    """Accuracy, parameters, FLOPs per sample and training throughput per architecture, and the Pareto fronts."""
    res = Result()
    metric = ctx.analysis["metric"]
    rows = architecture_rows(ok_runs(ctx.runs), metric)
    res.tables["architectures"] = rows
    res.sentences += architecture_sentences(rows, metric)
    weights = field_weights(ctx)
    if (text := field_sentence(weights)) is not None:
        res.sentences.append(text)
    res.tables["values"] = {f"rf{FIELD}_weights": weights}
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
