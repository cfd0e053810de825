"""Gradient-clipping study: divergence counts, final metric and loss rises per clipping threshold (and learning
rate, when the study varies it: the smaller-step control), the thresholds below the typical pre-clip gradient norm,
the loss and gradient-norm traces, and per-seed values for the claims (`clipping.final_train_loss`,
`clipping.loss_rises`)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.config import TrialConfig
from pipeline.runs import Run, by_variant, final, is_ok, series, variant
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, logged_config, ms, stat, which
from pipeline.text import join


def clip_label(cfg: TrialConfig | None, name: str, with_lr: bool = False) -> str:
    """'no clipping' or 'clip 0.5' from the run's config ('lr 8, clip 0.5' with `with_lr`); the variant's `name`
    when the config is unknown."""
    if cfg is None:
        return name
    text = "no clipping" if cfg.train.grad_clip is None else f"clip {cfg.train.grad_clip:g}"
    return f"lr {cfg.train.lr:g}, {text}" if with_lr else text


def loss_rises(losses: Sequence[float]) -> int:
    """Epochs whose training loss is above the previous epoch's: the instability a threshold should remove."""
    return sum(b > a for a, b in zip(losses, losses[1:]))


def final_train_loss(run: Run) -> float | None:
    """The training loss of a run's last epoch, None when it is not finite (a diverged run)."""
    losses = series(run, "train_loss")
    return losses[-1] if losses and math.isfinite(losses[-1]) else None


def clipping_rows(runs: list[Run], metric: str) -> dict[str, dict[str, Any]]:
    """Per variant: runs, diverged runs, final metric, worst train loss, mean pre-clip norm against the threshold."""
    rows: dict[str, dict[str, Any]] = {}
    groups = by_variant(runs)
    configs = {v: logged_config(rs[0]) for v, rs in groups.items()}
    with_lr = len({c.train.lr for c in configs.values() if c is not None}) > 1
    for v, rs in groups.items():
        cfg = configs[v]
        ok = [r for r in rs if is_ok(r)]
        norms = [float(np.mean(series(r, "train_grad_norm") or [np.nan])) for r in rs]
        # loss rises count epochs after the first: 0 to epochs - 1 is the range their interval keeps
        rises_range = (0.0, float(max([len(series(r, "train_loss")) - 1 for r in ok] + [1])))
        rows[v] = {
            "label": clip_label(cfg, v, with_lr),
            "lr": cfg.train.lr if cfg else None,
            "grad_clip": cfg.train.grad_clip if cfg else None,
            "runs": len(rs),
            "diverged": sum(r["tags"].get("outcome") == "diverged" for r in rs),
            metric: stat([final(r, metric) for r in ok], metric),
            "loss_rises": stat([loss_rises(series(r, "train_loss")) for r in ok], "loss_rises", rises_range),
            "final_train_loss": stat([final_train_loss(r) for r in ok], "final_train_loss"),
            "mean_preclip_grad_norm": stat([n for n in norms if math.isfinite(n)], "mean_preclip_grad_norm"),
        }
    return rows


def clipping_sentences(rows: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """Divergences per threshold, the metric with the loss rises, and where the threshold is active; no ranking
    (the study's one family compares)."""
    total = sum(r["diverged"] for r in rows.values())
    order = sorted(rows.values(), key=lambda r: (-(r["lr"] or 0), r["grad_clip"] is not None, -(r["grad_clip"] or 0)))
    out = [
        f"{total} of {sum(r['runs'] for r in rows.values())} runs diverged (loss NaN/inf): "
        + ", ".join(f"{r['label']} {r['diverged']}/{r['runs']}" for r in order)
        + "."
    ]
    out.append(
        f"Per setting, {which(metric)} ({DESCRIBED}), with the training loss at the last epoch and the number of "
        "epochs whose training loss rose (mean ± std over the same seeds): "
        + "; ".join(
            f"{r['label']} {describe(r[metric])}, final training loss {ms(r['final_train_loss'], 2)}, rose in "
            f"{ms(r['loss_rises'], 1)} epochs"
            for r in order
        )
        + "."
    )
    active = [
        r for r in order if r["grad_clip"] is not None and r["mean_preclip_grad_norm"].get("mean", 0) > r["grad_clip"]
    ]
    if active:
        out.append(
            f"At {join([r['label'] for r in active])} the mean pre-clip gradient norm "
            f"({join([format(r['mean_preclip_grad_norm']['mean'], '.2f') for r in active])}) exceeds the threshold, "
            "so most steps are rescaled: clipping there acts as a smaller effective step size as well as a guard "
            "against spikes."
        )
    return out


@register_section("clipping")
def clipping(ctx: Context) -> Result:
    """Loss curves, pre-clip gradient-norm traces and divergence counts per clipping threshold."""
    res = Result()
    metric = ctx.analysis["metric"]
    rows = clipping_rows(ctx.runs, metric)
    if not rows:
        res.sentences.append("No run to compare.")
        return res
    res.tables["thresholds"] = rows
    res.tables["values"] = {
        "final_train_loss": {v: r["final_train_loss"]["values"] for v, r in rows.items()},
        "loss_rises": {v: r["loss_rises"]["values"] for v, r in rows.items()},
    }
    res.sentences += clipping_sentences(rows, metric)
    res.sentences.append(decided_by(ctx, metric, "final_train_loss", "loss_rises"))
    fig = ctx.out_dir / "figures"
    for key, name in (("train_loss", "loss_traces.png"), ("train_grad_norm", "grad_norm_traces.png")):
        # every run, diverged ones included (up to their last finite epoch): instability is the point
        curves: dict[str, list[list[float]]] = defaultdict(list)
        for r in ctx.runs:
            finite = [x for x in series(r, key) if math.isfinite(x)]
            if finite:
                curves[rows[variant(r)]["label"]].append(finite)
        if curves:
            res.figures.append(
                plots.curves_with_band(
                    dict(curves),
                    fig / name,
                    key + (" (pre-clip, epoch mean)" if key == "train_grad_norm" else ""),
                    f"{ctx.study}: {key} per epoch",
                )
            )
    return res
