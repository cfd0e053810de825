"""Regression study: MSE against polynomial degree (with the noise floor), and the coefficients SGD recovers
against the true ones and the least-squares fit on the same training set."""

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
from pipeline.sections.common import logged_config, ms, stat
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


def mse_rows(runs: list[Run]) -> dict[int, dict[str, Any]]:
    """Per degree: final train and validation MSE over seeds (degree from each run's config)."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"train": [], "val": []})
    for r in runs:
        cfg = logged_config(r)
        if cfg is None or "degree" not in cfg.model.options:
            continue
        d = int(cfg.model.options["degree"])
        for split in ("train", "val"):
            v = final(r, f"{split}_loss")
            if v is not None:
                acc[d][split].append(v)
    return {d: {s: stat(v[s], f"{s}_loss") for s in ("train", "val")} for d, v in sorted(acc.items())}


@register_section("polynomial_fit")
def polynomial_fit(ctx: Context) -> Result:
    """MSE against degree (with the noise floor) and the recovered coefficients against the true ones."""
    runs = ok_runs(ctx.runs)
    res = Result()
    mse = mse_rows(runs)
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
    series = {split: [(d, row[split]) for d, row in mse.items() if "mean" in row[split]] for split in ("train", "val")}
    res.figures.append(
        plots.series_xy(
            {f"{s} MSE": pts for s, pts in series.items()},
            ctx.out_dir / "figures" / "mse_vs_degree.png",
            "polynomial degree",
            "mean squared error (last epoch)",
            f"{ctx.study}: MSE vs degree",
            logy=True,
            hlines=hlines,
        )
    )
    vals = {d: row["val"]["mean"] for d, row in mse.items() if "mean" in row["val"]}
    best = min(vals, key=vals.get)
    text = f"Validation MSE is lowest at degree {best} ({ms(mse[best]['val'], 4)})"
    if noise_var:
        within = [d for d, v in vals.items() if v <= 1.25 * noise_var]
        text += (
            f"; the noise variance is {noise_var:.3g}, and degrees {join([str(d) for d in within])} come within 25% "
            "of it"
            if within
            else f"; no degree comes within 25% of the noise variance {noise_var:.3g}"
        )
        under = [f"{d} ({vals[d]:.3g})" for d in vals if vals[d] > 1.25 * noise_var]
        if under:
            text += f", while degree {join(under)} underfit"
    trains = [mse[d]["train"].get("mean") for d in sorted(mse)]
    mono = all(a >= b - 1e-9 for a, b in zip(trains, trains[1:]))
    trend = "falls" if mono else "does not fall"
    text += f". Training MSE (mean over the last epoch's batches) {trend} monotonically with degree"
    text += f" ({' → '.join(f'{t:.3g}' for t in trains)} for degrees {', '.join(map(str, sorted(mse)))})."
    res.sentences.append(text)
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
