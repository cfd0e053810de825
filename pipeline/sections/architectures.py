"""CNN-architectures study: accuracy, parameters, FLOPs per sample and training throughput per architecture, and
what each family pays in weights to see a 5x5 field (VGG's point: two stacked 3x3 convolutions see what one 5x5
sees, with 18 weights per channel pair instead of 25). The section describes; which accuracies differ is the study's
one test family's to say."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from pipeline import plots
from pipeline.runs import Run, by_variant, final, ok_runs, series
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, per_untrained_model, sizes, stat, which

COSTS = ("n_params", "flops_per_sample")
FIELD = 5  # the receptive field compared: one 5x5 filter (LeNet, AlexNet) or two stacked 3x3 (VGG, ResNet)


def _steady_throughput(run: Run) -> float | None:
    """Training samples per second, the median over epochs after the first (which pays warm-up costs)."""
    vals = series(run, "samples_per_s")
    vals = vals[1:] if len(vals) > 1 else vals
    return float(np.median(vals)) if vals else None


def architecture_rows(runs: list[Run], metric: str) -> dict[str, dict[str, Any]]:
    """Per variant: the metric, test accuracy, parameters, FLOPs per sample and steady throughput over seeds."""
    rows = {}
    for v, rs in by_variant(runs).items():
        rows[v] = {
            **{k: stat([final(r, k) for r in rs], k) for k in (metric, "test_accuracy", *COSTS)},
            "samples_per_s": stat([_steady_throughput(r) for r in rs], "samples_per_s"),
        }
    return rows


def architecture_sentence(rows: dict[str, dict[str, Any]], metric: str) -> str:
    """Each architecture's accuracy beside its costs, in words; no ranking (the study's one family compares)."""
    have = {v: r for v, r in rows.items() if "mean" in r[metric]}
    if not have:
        return f"No architecture reported {metric}."

    def cost(r: dict[str, Any], key: str, fmt: str, scale: float = 1.0) -> str:
        return format(r[key]["mean"] / scale, fmt) if "mean" in r[key] else "n/a"

    return (
        f"Per architecture, {which(metric)} ({DESCRIBED}), parameters, forward MFLOPs per sample and training "
        "samples/s (median epoch after the first): "
        + "; ".join(
            f"{v} {describe(r[metric])}, {cost(r, 'n_params', ',.0f')} parameters, "
            f"{cost(r, 'flops_per_sample', '.2f', 1e6)} MFLOPs, {cost(r, 'samples_per_s', ',.0f')} samples/s"
            for v, r in have.items()
        )
        + "."
    )


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
        f"{v} {w:g}" for v, w in per.items()
    )
    if "vgg" in per and "lenet" in per:  # an identity of the two designs, counted, not a measurement over seeds
        text += (
            f"; VGG's two stacked 3x3 convolutions use {per['vgg']:g}/{per['lenet']:g} = "
            f"{per['vgg'] / per['lenet']:.2f} of the weights of LeNet's one {FIELD}x{FIELD} (and add a nonlinearity "
            "between them)"
        )
    return text + "."


@register_section("architectures")
def architectures(ctx: Context) -> Result:
    """Accuracy, parameters, FLOPs per sample and training throughput per architecture, and the 5x5-field weights."""
    res = Result()
    metric = ctx.analysis["metric"]
    rows = architecture_rows(ok_runs(ctx.runs), metric)
    res.tables["architectures"] = rows
    res.sentences.append(architecture_sentence(rows, metric))
    res.sentences += [s for s in (sizes(ctx, counts=False), decided_by(ctx, metric, "throughput")) if s]
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
