"""Initialization studies: loss after the first epoch, and activation and gradient std per layer at step 0
(before any update), from the first layer to the last."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipeline import plots
from pipeline.runs import Run, at_epoch, by_variant, natural_key, ok_runs, variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, stat


def init_profiles(runs: list[Run], prefix: str) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of a per-layer step-0 statistic (`init_act_std/`, `init_grad_std/`)."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for key, logged in r["history"].items():
            if key.startswith(prefix) and logged:
                acc[variant(r)][key[len(prefix) :]].append(logged[0][1])
    return {
        v: {layer: float(np.mean(layers[layer])) for layer in sorted(layers, key=natural_key)}
        for v, layers in acc.items()
    }


def signal_ratio(profile: dict[str, float]) -> float | None:
    """Last layer's value over the first layer's: how much the signal shrinks (<1) or grows (>1) with depth."""
    vals = list(profile.values())
    if len(vals) < 2 or vals[0] <= 0:
        return None
    return vals[-1] / vals[0]


def _ratio_word(r: float) -> str:
    """How a signal changes from the first layer to the last, in words (thresholds on last/first)."""
    for bound, word in ((1e-2, "vanishes"), (0.5, "decays"), (2.0, "is preserved"), (100.0, "grows")):
        if r < bound:
            return word
    return "explodes"


@register_section("init_signal")
def init_signal(ctx: Context) -> Result:
    """Loss after the first epoch, and activation and gradient std per layer at step 0."""
    res = Result()
    runs = ok_runs(ctx.runs)
    by_v = by_variant(runs)
    first = {
        v: {f"{key}_epoch1": stat([at_epoch(r, key, 1) for r in rs], key) for key in ("train_loss", "val_loss")}
        for v, rs in by_v.items()
    }
    res.tables["first_epoch"] = first
    have = [v for v, row in first.items() if "mean" in row["val_loss_epoch1"]]
    if have:
        res.sentences.append(
            f"Validation loss after the first epoch ({DESCRIBED}): "
            + ", ".join(f"{v} {describe(first[v]['val_loss_epoch1'])}" for v in have)
            + ". "
            + decided_by(ctx, "the first epoch's validation loss")
        )
    acts, grads = init_profiles(runs, "init_act_std/"), init_profiles(runs, "init_grad_std/")
    res.tables["step0_act_std"], res.tables["step0_grad_std"] = acts, grads
    if not acts:
        res.sentences.append("No step-0 statistics were logged (diagnostics off?).")
        return res
    parts = []
    for v in by_v:
        ra, rg = signal_ratio(acts.get(v, {})), signal_ratio(grads.get(v, {}))
        if ra is None:
            continue
        prof = list(acts[v].values())
        text = f"{v} {prof[0]:.3g} → {prof[-1]:.3g} ({_ratio_word(ra)}, ×{ra:.2g})"
        if rg:
            text += f", first-layer gradient std {1 / rg:.2g}× the last layer's"
        parts.append(text)
    res.sentences.append(
        "At step 0 (seeds averaged) the activation std from the first to the last activation layer goes: "
        + "; ".join(parts)
        + "."
    )
    fig = ctx.out_dir / "figures"
    res.figures.append(
        plots.layer_lines(
            acts, fig / "step0_act_std.png", "activation std at step 0", f"{ctx.study}: activations before training"
        )
    )
    if grads:
        res.figures.append(
            plots.layer_lines(
                grads,
                fig / "step0_grad_std.png",
                "gradient std at step 0",
                f"{ctx.study}: gradients before the first update",
            )
        )
    return res
