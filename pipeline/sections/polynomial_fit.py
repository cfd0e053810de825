"""Regression study: MSE per polynomial degree beside the noise floor, and the coefficients SGD recovers beside the
true ones and the least-squares fit on the same training set. It describes each degree; which degrees differ is
the study's one test family's to say."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pipeline import plots
from pipeline.data import Splits
from pipeline.runs import Run, final, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, decided_by, describe, logged_config, stat, which
from pipeline.text import join


def least_squares(x: torch.Tensor, y: torch.Tensor, degree: int) -> list[float]:
    """Closed-form least-squares coefficients [c_0..c_degree] of a 1-D polynomial: what SGD should reach."""
    v = x.double().view(-1, 1) ** torch.arange(degree + 1, dtype=torch.float64)
    return torch.linalg.lstsq(v, y.double().view(-1, 1)).solution.view(-1).tolist()


def coefficient_rows(
    learned: dict[int, list[list[float]]], truth: Sequence[float], lstsq: dict[int, list[float]] | None = None
) -> dict[int, dict[str, Any]]:
    """Per degree: mean learned coefficients over seeds against the true ones (zero-padded to the longer).

    max_abs_error compares every coefficient up to the larger of the two degrees, so a fit that puts weight
    on powers the truth lacks is charged for it; a degree below the truth's is charged for what it misses.
    """
    rows = {}
    for degree, per_seed in sorted(learned.items()):
        mean = np.mean(np.array(per_seed, dtype=float), axis=0)
        n = max(len(mean), len(truth))
        t = np.zeros(n)
        t[: len(truth)] = truth
        m = np.zeros(n)
        m[: len(mean)] = mean
        row = {
            "learned": mean.tolist(),
            "learned_std": np.std(np.array(per_seed, dtype=float), axis=0, ddof=1).tolist()
            if len(per_seed) > 1
            else [0.0] * len(mean),
            "true": t[: len(mean)].tolist(),
            "max_abs_error": float(np.max(np.abs(m - t))),
            "seeds": len(per_seed),
        }
        if lstsq and degree in lstsq:
            ls = np.zeros(n)
            ls[: len(lstsq[degree])] = lstsq[degree]
            row["least_squares"] = list(lstsq[degree])
            row["max_abs_error_least_squares"] = float(np.max(np.abs(ls - t)))
        rows[degree] = row
    return rows


def _coefs(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:+.3f}" for v in values) + "]"


def mse_rows(runs: list[Run], metric: str) -> dict[int, dict[str, Any]]:
    """Per degree: the last epoch's training MSE and the report's `metric` over seeds (degree from each run's
    config)."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"train": [], metric: []})
    for r in runs:
        cfg = logged_config(r)
        if cfg is None or "degree" not in cfg.model.options:
            continue
        d = int(cfg.model.options["degree"])
        for key in ("train", metric):
            v = final(r, "train_loss" if key == "train" else key)
            if v is not None:
                acc[d][key].append(v)
    return {d: {k: stat(x, "train_loss" if k == "train" else k) for k, x in v.items()} for d, v in sorted(acc.items())}


@register_section("polynomial_fit")
def polynomial_fit(ctx: Context) -> Result:
    """MSE against degree (with the noise floor) and the recovered coefficients against the true ones."""
    runs = ok_runs(ctx.runs)
    metric = ctx.analysis["metric"]
    res = Result()
    mse = mse_rows(runs, metric)
    if not mse:
        res.sentences.append("No finished polynomial run to compare degrees.")
        return res
    load = ctx.loader
    learned: dict[int, list[list[float]]] = defaultdict(list)
    data: Splits | None = None
    for r in runs:
        trained = load(r)
        if trained is None:
            continue
        data = trained.data
        learned[int(trained.config.model.options["degree"])].append(trained.model.coefficients().tolist())
    noise_var = None
    if data is not None and "noise_std" in data.meta:
        noise_var = float(data.meta["noise_std"]) ** 2
    hlines = {f"noise variance {noise_var:.3g}": noise_var} if noise_var else None
    labels = {"train": "train MSE (last epoch)", metric: which(metric)}
    series = {key: [(d, row[key]) for d, row in mse.items() if "mean" in row[key]] for key in labels}
    res.figures.append(
        plots.series_xy(
            {labels[k]: pts for k, pts in series.items()},
            ctx.out_dir / "figures" / "mse_vs_degree.png",
            "polynomial degree",
            "mean squared error",
            f"{ctx.study}: MSE vs degree",
            logy=True,
            hlines=hlines,
        )
    )
    vals = {d: row[metric]["mean"] for d, row in mse.items() if "mean" in row[metric]}
    text = f"Per degree, {which(metric)} ({DESCRIBED}): " + ", ".join(
        f"degree {d}: {describe(mse[d][metric], 4)}" for d in vals
    )
    if noise_var:
        within = [str(d) for d, v in vals.items() if v <= 1.25 * noise_var]
        under = [f"{d} ({vals[d]:.3g})" for d in vals if vals[d] > 1.25 * noise_var]
        text += f". Against the noise variance {noise_var:.3g}, the floor of any fit: "
        text += f"degrees {join(within)} are within 25% of it" if within else "no degree is within 25% of it"
        text += f"; degrees {join(under)} are not (they underfit)" if under else ""
    trains = {d: mse[d]["train"]["mean"] for d in sorted(mse) if "mean" in mse[d]["train"]}
    text += ". Training MSE (mean over the last epoch's batches) per degree: "
    text += ", ".join(f"{d} {t:.3g}" for d, t in trains.items()) + "."
    res.sentences += [text, decided_by(ctx, metric)]
    res.tables["mse"] = {str(d): row for d, row in mse.items()}

    if not learned or data is None:
        res.sentences.append(f"Coefficients not compared: {load.problem or 'no trained model could be loaded'}.")
        return res
    truth = [float(c) for c in data.meta.get("true_coefficients", [])]
    x_tr, y_tr = data.x_train, data.y_train
    limits = {cfg.train.train_limit for r in runs if (cfg := logged_config(r)) is not None}
    if len(limits) == 1 and (limit := limits.pop()):
        x_tr, y_tr = x_tr[:limit], y_tr[:limit]
    lstsq = {d: least_squares(x_tr, y_tr, d) for d in learned}
    rows = coefficient_rows(learned, truth, lstsq)
    res.tables["coefficients"] = {str(d): row for d, row in rows.items()}
    true_degree = len(truth) - 1
    if true_degree in rows:
        row = rows[true_degree]
        res.sentences.append(
            f"At the true degree {true_degree} SGD recovers {_coefs(row['learned'])} against the true "
            f"{_coefs(truth)} (largest error {row['max_abs_error']:.3f}; least squares on the same training set: "
            f"{_coefs(row['least_squares'])}, largest error {row['max_abs_error_least_squares']:.3f})."
        )
    far = {d: max(abs(a - b) for a, b in zip(row["learned"], row["least_squares"])) for d, row in rows.items()}
    slow = [d for d in sorted(far) if far[d] > 0.05]
    if slow:
        res.sentences.append(
            f"SGD has not reached the least-squares fit at degree {join([str(d) for d in slow])} (largest coefficient "
            f"difference {join([format(far[d], '.3f') for d in slow])}), so those fits are limited by optimization, "
            "not by the data."
        )
    n = max(len(truth), *(len(r["learned"]) for r in rows.values()))
    # colour: the truth (a known value, no whisker) and each degree's fit over seeds; x: the coefficient
    bars = {"true": {f"c{k}": {"mean": c} for k, c in enumerate(truth + [0.0] * (n - len(truth)))}}
    for d, per_seed in sorted(learned.items()):
        bars[f"degree {d}"] = {f"c{k}": stat(c, f"c{k}", None) for k, c in enumerate(zip(*per_seed))}
    res.figures.append(
        plots.grouped_bars(
            bars,
            ctx.out_dir / "figures" / "coefficients.png",
            "coefficient",
            f"{ctx.study}: learned vs true coefficients",
        )
    )
    top = max(rows)
    if top > true_degree:
        row = rows[top]
        extra = row["learned"][true_degree + 1 :]
        res.sentences.append(
            f"At degree {top} the powers above {true_degree} get {_coefs(extra)} and the largest error over all "
            f"coefficients is {row['max_abs_error']:.3f} (least squares: {row['max_abs_error_least_squares']:.3f})."
        )
    return res
