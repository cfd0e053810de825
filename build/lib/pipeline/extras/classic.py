"""Report sections of the classic studies: regression, logistic regression, depth and width, CNN architectures,
initialization, augmentation, recurrent cells and gradient clipping.

Each section reads the exported runs; a few also re-evaluate a run's `best_model.pt` (the best epoch's
weights, an MLflow artifact) on the prepared data. The numbers behind every sentence go to analysis.json.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import plots
from pipeline.config import TrialConfig
from pipeline.data import Splits, load_prepared
from pipeline.extras import ExtraContext, ExtraResult, register_extra
from pipeline.extras.trained import by_variant, ok_runs
from pipeline.extras.trained import trained as load_trained
from pipeline.report import _final, _is_ok
from pipeline.stats import summarize

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- shared helpers


def run_config(run: dict[str, Any]) -> TrialConfig | None:
    """The run's resolved config, rebuilt from its MLflow params (flattened, values as strings)."""
    import yaml

    nested: dict[str, Any] = {}
    for key, raw in run.get("params", {}).items():
        try:
            value = None if raw == "None" else yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        return TrialConfig.model_validate(nested)
    except Exception as e:  # a run logged by another version of the code
        log.warning("run %s: config not rebuilt from its params (%s)", run.get("run_id"), e)
        return None


def _natural(name: str) -> tuple:
    """Sort key putting layer "11" after "9"."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _variant(run: dict[str, Any]) -> str:
    return run["tags"].get("variant", "base")


def _at_epoch(run: dict[str, Any], key: str, epoch: int) -> float | None:
    for step, value in run["history"].get(key, []):
        if int(step) == epoch:
            return value
    return None


def _stat(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {"values": vals, **summarize(vals).as_dict()} if vals else {"values": []}


def _ms(stat: dict[str, Any], digits: int = 3) -> str:
    """mean ± std as text (std left out for a single value)."""
    if "mean" not in stat:
        return "n/a"
    if stat["n"] < 2:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _verb(subjects: Sequence[str], singular: str) -> str:
    """'raises' for one subject, 'raise' for several."""
    return singular if len(subjects) == 1 else singular[:-1]


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


@dataclass
class Trained:
    model: nn.Module
    config: TrialConfig
    data: Splits


class ModelLoader:
    """A run's model with its best weights (`pipeline.extras.trained`), or None when that cannot be done.

    The reason goes to `problem` and the log, so a report still builds from runs.json alone when the MLflow
    store or the prepared data is not there.
    """

    def __init__(self, ctx: ExtraContext):
        self.ctx = ctx
        self.problem: str | None = None
        self._data: dict[str, Splits] = {}
        uri = ctx.sweep.get("tracking_uri")
        if ctx.data_dir is None:
            self.problem = "no prepared data folder given"
        elif not uri:
            self.problem = "sweep.json names no tracking_uri"
        elif uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
            self.problem = f"no MLflow database at {uri[len('sqlite:///') :]}"

    def data(self, cfg: TrialConfig) -> Splits:
        key = repr((cfg.dataset.name, sorted(cfg.dataset.options.items())))
        if key not in self._data:
            self._data[key] = load_prepared(self.ctx.data_dir, cfg.dataset.name, cfg.dataset.options)
        return self._data[key]

    def __call__(self, run: dict[str, Any]) -> Trained | None:
        if self.problem:
            return None
        try:
            model, cfg, data = load_trained(self.ctx, run)
        except Exception as e:  # no artifact (a run that never finished an epoch), or an unreachable store
            log.warning("run %s: best model not loaded (%s: %s)", run["run_id"], type(e).__name__, e)
            return None
        return Trained(model, TrialConfig.model_validate(cfg), data)


def task_of(trained: Trained):
    from pipeline.models import MODELS
    from pipeline.tasks import task_for

    return task_for(MODELS.get(trained.config.model.name).meta.get("task") or trained.data.info.task)


def clean_fit(trained: Trained) -> dict[str, float]:
    """The best checkpoint re-evaluated on the training samples it saw (no augmentation, eval mode) and on
    the validation split: train_/val_ loss and accuracy from the same weights."""
    from pipeline.train import evaluate

    d, limit = trained.data, trained.config.train.train_limit
    x, y = (d.x_train[:limit], d.y_train[:limit]) if limit else (d.x_train, d.y_train)
    task = task_of(trained)
    out = evaluate(trained.model, x, y, task, 1024, prefix="train")
    out.update(evaluate(trained.model, d.x_val, d.y_val, task, 1024, prefix="val"))
    return out


def gap_rows(fits: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per variant: clean train and val accuracy and their gap (mean, std over seeds)."""
    rows = {}
    for variant, per_seed in fits.items():
        rows[variant] = {
            "train_accuracy": _stat([f["train_accuracy"] for f in per_seed]),
            "val_accuracy": _stat([f["val_accuracy"] for f in per_seed]),
            "gap": _stat([f["train_accuracy"] - f["val_accuracy"] for f in per_seed]),
        }
    return rows


def _clean_fits(ctx: ExtraContext, runs: list[dict[str, Any]]) -> tuple[dict[str, list[dict]], str | None]:
    load = ModelLoader(ctx)
    fits: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        trained = load(r)
        if trained is not None:
            fits[_variant(r)].append({**clean_fit(trained), "run_id": r["run_id"]})
    return dict(fits), load.problem


# --------------------------------------------------------------------------- regression


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


def mse_rows(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per degree: final train and validation MSE over seeds (degree from each run's config)."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"train": [], "val": []})
    for r in runs:
        cfg = run_config(r)
        if cfg is None or "degree" not in cfg.model.options:
            continue
        d = int(cfg.model.options["degree"])
        for split in ("train", "val"):
            v = _final(r, f"{split}_loss")
            if v is not None:
                acc[d][split].append(v)
    return {d: {"train": _stat(v["train"]), "val": _stat(v["val"])} for d, v in sorted(acc.items())}


@register_extra("polynomial_fit")
def polynomial_fit(ctx: ExtraContext) -> ExtraResult:
    """MSE against degree (with the noise floor) and the recovered coefficients against the true ones."""
    runs = ok_runs(ctx)
    res = ExtraResult()
    mse = mse_rows(runs)
    if not mse:
        res.sentences.append("No finished polynomial run to compare degrees.")
        return res
    load = ModelLoader(ctx)
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
    series = {
        split: [(d, row[split]["mean"], row[split]["std"]) for d, row in mse.items() if "mean" in row[split]]
        for split in ("train", "val")
    }
    res.figures.append(
        plots.series_xy(
            {f"{s} MSE": pts for s, pts in series.items()},
            ctx.out_dir / "figures" / "mse_vs_degree.png",
            "polynomial degree",
            "mean squared error (last epoch)",
            f"{ctx.study}: MSE vs degree (mean ± std over seeds)",
            logy=True,
            hlines=hlines,
        )
    )
    vals = {d: row["val"]["mean"] for d, row in mse.items() if "mean" in row["val"]}
    best = min(vals, key=vals.get)
    text = f"Validation MSE is lowest at degree {best} ({_ms(mse[best]['val'], 4)})"
    if noise_var:
        within = [d for d, v in vals.items() if v <= 1.25 * noise_var]
        text += (
            f"; the noise variance is {noise_var:.3g}, and degrees {_join([str(d) for d in within])} come within 25% "
            "of it"
            if within
            else f"; no degree comes within 25% of the noise variance {noise_var:.3g}"
        )
        under = [f"{d} ({vals[d]:.3g})" for d in vals if vals[d] > 1.25 * noise_var]
        if under:
            text += f", while degree {_join(under)} underfit"
    trains = [mse[d]["train"].get("mean") for d in sorted(mse)]
    mono = all(a >= b - 1e-9 for a, b in zip(trains, trains[1:]))
    trend = "falls" if mono else "does not fall"
    text += f". Training MSE (mean over the last epoch's batches) {trend} monotonically with degree"
    text += f" ({' → '.join(f'{t:.3g}' for t in trains)} for degrees {', '.join(map(str, sorted(mse)))})."
    res.sentences.append(text)
    res.tables["mse"] = {str(d): row for d, row in mse.items()}

    if not learned or data is None:
        res.sentences.append(f"Coefficients not compared: {load.problem or 'no best_model.pt could be loaded'}.")
        return res
    truth = [float(c) for c in data.meta.get("true_coefficients", [])]
    x_tr, y_tr = data.x_train, data.y_train
    limits = {cfg.train.train_limit for r in runs if (cfg := run_config(r)) is not None}
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
            f"SGD has not reached the least-squares fit at degree {_join([str(d) for d in slow])} (largest coefficient "
            f"difference {_join([format(far[d], '.3f') for d in slow])}), so those fits are limited by optimization, "
            "not by the data."
        )
    n = max(len(truth), *(len(r["learned"]) for r in rows.values()))
    # colour: the truth and each degree's fit; x: the coefficient (plots.grouped_bars' layout)
    bars = {"true": {f"c{k}": {"mean": c, "std": 0.0} for k, c in enumerate(truth + [0.0] * (n - len(truth)))}}
    for d, row in rows.items():
        bars[f"degree {d}"] = {
            f"c{k}": {"mean": m, "std": sd} for k, (m, sd) in enumerate(zip(row["learned"], row["learned_std"]))
        }
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


# --------------------------------------------------------------------------- logistic regression


def bayes_reference(data: Splits) -> dict[str, float] | None:
    """The Bayes classifier of the two-Gaussian problem on the test split: its accuracy and log-loss.

    With means ±m and isotropic noise s the posterior log-odds are 2 m·x / s², linear in x.
    """
    means, s = data.meta.get("class_means"), data.meta.get("noise_std")
    if not means or not s:
        return None
    mu0, mu1 = torch.tensor(means[0]), torch.tensor(means[1])
    w = (mu1 - mu0) / s**2
    b = float((mu0 @ mu0 - mu1 @ mu1) / (2 * s**2))
    x, y = data.x_test.double(), data.y_test.view(-1).double()
    logits = x @ w.double() + b
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    acc = ((logits > 0).double() == y).double().mean()
    return {"accuracy": float(acc), "log_loss": float(loss), "w0": float(w[0]), "w1": float(w[1]), "b": b}


def boundary_angle(w: Sequence[float], reference: Sequence[float]) -> float:
    """Angle in degrees between two boundary normals (0 = parallel boundaries)."""
    u = np.asarray(w, dtype=float) / np.linalg.norm(w)
    v = np.asarray(reference, dtype=float) / np.linalg.norm(reference)
    v = v if u @ v >= 0 else -v  # a boundary's normal has no sign
    # 2·atan2(|u−v|, |u+v|) is exact near 0°, where acos of a dot product loses half its digits
    return math.degrees(2 * math.atan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))


def _best_run(ctx: ExtraContext) -> dict[str, Any] | None:
    ranking = ctx.analysis.get("ranking") or []
    if not ranking:
        return None
    metric, sign = ctx.analysis["metric"], (1 if ctx.analysis["mode"] == "max" else -1)
    cands = [
        (sign * v, r)
        for r in ok_runs(ctx)
        if _variant(r) == ranking[0]["variant"] and (v := _final(r, metric)) is not None and math.isfinite(v)
    ]
    return max(cands, key=lambda t: t[0])[1] if cands else None


@register_extra("decision_boundary")
def decision_boundary(ctx: ExtraContext) -> ExtraResult:
    """Accuracy and log-loss against the Bayes classifier, and the best run's boundary plotted."""
    res = ExtraResult()
    by_v = by_variant(ok_runs(ctx))
    rows = {
        v: {
            "test_accuracy": _stat([_final(r, "test_accuracy") for r in rs]),
            "test_log_loss": _stat([_final(r, "test_loss") for r in rs]),
            "val_log_loss": _stat([_final(r, "val_loss") for r in rs]),
        }
        for v, rs in by_v.items()
    }
    res.tables["variants"] = rows
    best = _best_run(ctx)
    trained = ModelLoader(ctx)(best) if best else None
    if trained is None:
        res.sentences.append("The decision boundary is not drawn: no best model could be loaded.")
        return res
    bayes = bayes_reference(trained.data)
    v = _variant(best)
    text = f"The best variant, {v}, reaches test accuracy {_ms(rows[v]['test_accuracy'])} and test log-loss "
    text += f"{_ms(rows[v]['test_log_loss'])}"
    if bayes:
        theory = trained.data.meta.get("bayes_accuracy")
        text += (
            f"; the Bayes classifier on the same test points scores accuracy {bayes['accuracy']:.3f} and "
            f"log-loss {bayes['log_loss']:.3f}" + (f" (its expected accuracy is {theory:.3f})" if theory else "")
        )
    worst = max(rows, key=lambda k: rows[k]["test_log_loss"].get("mean", -math.inf))
    if worst != v:
        text += f". The worst, {worst}, has test log-loss {_ms(rows[worst]['test_log_loss'])}"
    res.sentences.append(text + ".")

    model = trained.model
    data = trained.data
    x = data.x_test.numpy()
    y = data.y_test.view(-1).numpy()
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    with torch.no_grad():
        zz = model(torch.tensor(np.c_[xx.ravel(), yy.ravel()], dtype=torch.float32)).view(xx.shape).numpy()
    lines = {}
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if bayes:
        lines["Bayes boundary"] = (bayes["w0"], bayes["w1"], bayes["b"])
    if len(linear) == 1 and linear[0].weight.shape == (1, 2):
        w = linear[0].weight.detach().view(-1).tolist()
        b = float(linear[0].bias.detach()) if linear[0].bias is not None else 0.0
        res.tables["learned_boundary"] = {"w": w, "b": b, "run_id": best["run_id"]}
        if bayes:
            angle = boundary_angle(w, (bayes["w0"], bayes["w1"]))
            # signed distances of the two lines from the origin, along their own normals
            offset = -b / np.linalg.norm(w) + bayes["b"] / np.linalg.norm([bayes["w0"], bayes["w1"]])
            offset = round(float(offset), 2) + 0.0  # + 0.0 turns -0.0 into 0.0 for the text
            scale = np.linalg.norm(w) / np.linalg.norm([bayes["w0"], bayes["w1"]])
            res.tables["learned_boundary"].update({"angle_deg": angle, "offset": offset, "norm_ratio": scale})
            res.sentences.append(
                f"Its learned boundary {w[0]:.2f}·x0 + {w[1]:.2f}·x1 + {b:.2f} = 0 (seed {best['tags'].get('seed')}) "
                f"is at {angle:.1f}° to the Bayes boundary and shifted by {offset:+.2f} from it; its weights are "
                f"{scale:.2f}× the Bayes posterior's, so its probabilities are "
                f"{'less' if scale < 1 else 'more'} confident than the true ones."
            )
    res.figures.append(
        plots.decision_boundary(
            x,
            y,
            (xx, yy, zz),
            ctx.out_dir / "figures" / "decision_boundary.png",
            f"{ctx.study}: {v} seed {best['tags'].get('seed')} on the test split",
            lines=lines,
        )
    )
    return res


# --------------------------------------------------------------------------- depth and width


def depth_width(cfg: TrialConfig) -> tuple[int, int] | None:
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
    return {key: {k: _stat(v) for k, v in cell.items()} for key, cell in sorted(acc.items())}


def capacity_sentences(rows: dict[tuple[int, int], dict[str, Any]]) -> list[str]:
    out = []
    best = max(rows, key=lambda k: rows[k]["val_accuracy"].get("mean", -1))
    b = rows[best]
    out.append(
        f"The most accurate MLP is depth {best[0]} × width {best[1]} (val accuracy {_ms(b['val_accuracy'])}, "
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


@register_extra("capacity")
def capacity(ctx: ExtraContext) -> ExtraResult:
    """Accuracy against parameters and depth per width, and the train−val gap (overfitting)."""
    res = ExtraResult()
    load = ModelLoader(ctx)
    records = []
    for r in ok_runs(ctx):
        cfg = run_config(r)
        dw = depth_width(cfg) if cfg else None
        if dw is None:
            continue
        rec = {
            "depth": dw[0],
            "width": dw[1],
            "n_params": _final(r, "n_params"),
            "val_accuracy": _final(r, "val_accuracy"),
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
        return [(x(c), rows[c][y]["mean"], rows[c][y].get("std", 0.0)) for c in cells if "mean" in rows[c].get(y, {})]

    by_width = {f"width {w}": [(d, w) for d in depths if (d, w) in rows] for w in widths}
    by_depth = {f"depth {d}": [(d, w) for w in widths if (d, w) in rows] for d in depths}
    params = lambda c: rows[c]["n_params"]["mean"]
    res.figures.append(
        plots.series_xy(
            {k: points(cells, lambda c: c[0], "val_accuracy") for k, cells in by_width.items()},
            fig / "accuracy_vs_depth.png",
            "hidden layers",
            "val accuracy (last epoch)",
            f"{ctx.study}: accuracy vs depth per width (mean ± std over seeds)",
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


# --------------------------------------------------------------------------- CNN architectures


def _steady_throughput(run: dict[str, Any]) -> float | None:
    """Training samples per second, the median over epochs after the first (which pays warm-up costs)."""
    vals = [v for _, v in run["history"].get("samples_per_s", [])]
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


def architecture_rows(runs: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    rows = {}
    for v, rs in by_variant(runs).items():
        rows[v] = {
            metric: _stat([_final(r, metric) for r in rs]),
            "test_accuracy": _stat([_final(r, "test_accuracy") for r in rs]),
            "n_params": _stat([_final(r, "n_params") for r in rs]),
            "flops_per_sample": _stat([_final(r, "flops_per_sample") for r in rs]),
            "samples_per_s": _stat([_steady_throughput(r) for r in rs]),
        }
    return rows


def architecture_sentences(rows: dict[str, dict[str, Any]], metric: str) -> list[str]:
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
            f"On {metric} against {label} the Pareto front is {_join(front)}"
            + (f"; {_join(dominated)} {'is' if len(dominated) == 1 else 'are'} dominated." if dominated else ".")
        )
    speed = {v: r["samples_per_s"]["mean"] for v, r in have.items() if "mean" in r["samples_per_s"]}
    if len(speed) > 1:
        fast, slow = max(speed, key=speed.get), min(speed, key=speed.get)
        out.append(f"{fast} trains {speed[fast] / speed[slow]:.1f}× as many samples per second as {slow}.")
    return out


@register_extra("architectures")
def architectures(ctx: ExtraContext) -> ExtraResult:
    """Accuracy, parameters, FLOPs per sample and training throughput per architecture, and the Pareto fronts."""
    res = ExtraResult()
    metric = ctx.analysis["metric"]
    rows = architecture_rows(ok_runs(ctx), metric)
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


# --------------------------------------------------------------------------- initialization


def init_profiles(runs: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of a per-layer step-0 statistic (`init_act_std/`, `init_grad_std/`)."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for key, series in r["history"].items():
            if key.startswith(prefix) and series:
                acc[_variant(r)][key[len(prefix) :]].append(series[0][1])
    return {
        v: {layer: float(np.mean(layers[layer])) for layer in sorted(layers, key=_natural)} for v, layers in acc.items()
    }


def signal_ratio(profile: dict[str, float]) -> float | None:
    """Last layer's value over the first layer's: how much the signal shrinks (<1) or grows (>1) with depth."""
    vals = list(profile.values())
    if len(vals) < 2 or vals[0] <= 0:
        return None
    return vals[-1] / vals[0]


def _ratio_word(r: float) -> str:
    """How a signal changes from the first layer to the last, in words (thresholds on last/first)."""
    for bound, word in ((1e-2, "vanishes"), (0.5, "shrinks"), (2.0, "is preserved"), (100.0, "grows")):
        if r < bound:
            return word
    return "explodes"


@register_extra("init_signal")
def init_signal(ctx: ExtraContext) -> ExtraResult:
    """Loss after the first epoch, and activation and gradient std per layer at step 0."""
    res = ExtraResult()
    runs = ok_runs(ctx)
    by_v = by_variant(runs)
    first = {
        v: {
            "train_loss_epoch1": _stat([_at_epoch(r, "train_loss", 1) for r in rs]),
            "val_loss_epoch1": _stat([_at_epoch(r, "val_loss", 1) for r in rs]),
        }
        for v, rs in by_v.items()
    }
    res.tables["first_epoch"] = first
    ranked = sorted((row["val_loss_epoch1"]["mean"], v) for v, row in first.items() if "mean" in row["val_loss_epoch1"])
    if ranked:
        res.sentences.append(
            "Validation loss after the first epoch: "
            + ", ".join(f"{v} {_ms(first[v]['val_loss_epoch1'])}" for _, v in ranked)
            + "."
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
        "At step 0 the activation std from the first to the last activation layer goes: " + "; ".join(parts) + "."
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


# --------------------------------------------------------------------------- augmentation (train-val gap)


def gap_sentences(rows: dict[str, dict[str, Any]], baseline: str = "none") -> list[str]:
    have = {v: r for v, r in rows.items() if "mean" in r["gap"]}
    if not have:
        return []
    out = []
    lo, hi = min(have, key=lambda v: have[v]["gap"]["mean"]), max(have, key=lambda v: have[v]["gap"]["mean"])
    out.append(
        "Train−val accuracy gap (best checkpoint re-evaluated on its clean training samples): "
        + "; ".join(
            f"{v} {_ms(r['gap'])} (train {r['train_accuracy']['mean']:.3f}, val {r['val_accuracy']['mean']:.3f})"
            for v, r in sorted(have.items(), key=lambda kv: kv[1]["gap"]["mean"])
        )
        + f". The smallest gap is {lo}'s, the largest {hi}'s."
    )
    if baseline in have:
        base = have[baseline]
        smaller = [v for v, r in have.items() if v != baseline and r["gap"]["mean"] < base["gap"]["mean"]]
        better = [
            v for v, r in have.items() if v != baseline and r["val_accuracy"]["mean"] > base["val_accuracy"]["mean"]
        ]
        text = f"Compared with {baseline}, "
        text += f"{_join(smaller)} {_verb(smaller, 'shrinks')} the gap" if smaller else "no variant shrinks the gap"
        text += "; " + (
            f"{_join(better)} {_verb(better, 'raises')} val accuracy." if better else "none raises val accuracy."
        )
        out.append(text)
    return out


@register_extra("generalization_gap")
def generalization_gap(ctx: ExtraContext) -> ExtraResult:
    """Per variant, the best checkpoint's clean training accuracy against its validation accuracy."""
    res = ExtraResult()
    fits, problem = _clean_fits(ctx, ok_runs(ctx))
    if not fits:
        res.sentences.append(f"The train−val gap was not measured: {problem or 'no best_model.pt could be loaded'}.")
        return res
    rows = gap_rows(fits)
    res.tables["gap"] = rows
    res.sentences += gap_sentences(rows)
    res.figures.append(
        plots.grouped_bars(
            {
                f"{s} (clean)" if s == "train" else s: {v: r[f"{s}_accuracy"] for v, r in rows.items()}
                for s in ("train", "val")
            },
            ctx.out_dir / "figures" / "train_vs_val_accuracy.png",
            "accuracy (best checkpoint)",
            f"{ctx.study}: clean training vs validation accuracy",
        )
    )
    return res


# --------------------------------------------------------------------------- recurrent cells


def recurrent_counts(configs: dict[str, TrialConfig], build: Callable[[TrialConfig], nn.Module]) -> dict[str, dict]:
    """Per variant: cell, hidden size, recurrent and total parameters, counted on the built model."""
    from pipeline.models.rnn import recurrent_parameter_count

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


@register_extra("recurrent_params")
def recurrent_params(ctx: ExtraContext) -> ExtraResult:
    """Recurrent parameter counts per cell (from the built models) and accuracy in both comparisons."""
    from pipeline.models import build_model

    res = ExtraResult()
    runs = ok_runs(ctx)
    configs = {}
    for r in runs:
        cfg = run_config(r)
        if cfg is not None and "cell" in cfg.model.options:
            configs.setdefault(_variant(r), cfg)
    if not configs:
        res.sentences.append("No finished recurrent run to count.")
        return res
    load = ModelLoader(ctx)
    if ctx.data_dir is None:
        res.sentences.append("Parameters not counted: no prepared data folder given.")
        return res
    counts = recurrent_counts(configs, lambda cfg: build_model(cfg.model.name, cfg.model.options, load.data(cfg).info))
    metric = ctx.analysis["metric"]
    by_v = by_variant(runs)
    for v, row in counts.items():
        row[metric] = _stat([_final(r, metric) for r in by_v[v]])
    res.tables["cells"] = counts
    if (s := ratio_sentence(counts)) is not None:
        res.sentences.append(s)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)  # regime -> cell -> statistics
    for regime, pick in (
        ("equal hidden size", lambda c: c["param_budget"] is None),
        ("equal parameters", lambda c: c["param_budget"] is not None),
    ):
        rows = {c["cell"]: c for c in counts.values() if pick(c) and "mean" in c[metric]}
        if not rows:
            continue
        best = max(rows, key=lambda k: rows[k][metric]["mean"] * (1 if ctx.analysis["mode"] == "max" else -1))
        desc = ", ".join(
            f"{cell} {_ms(c[metric])} (hidden {c['hidden_size']}, {c['recurrent_params']:,} recurrent)"
            for cell, c in rows.items()
        )
        res.sentences.append(f"At {regime}: {desc}; {best} is best.")
        for cell, c in rows.items():
            groups[regime][cell] = c[metric]
    if groups:
        res.figures.append(
            plots.grouped_bars(
                dict(groups), ctx.out_dir / "figures" / "cells_by_regime.png", metric, f"{ctx.study}: {metric} per cell"
            )
        )
    return res


# --------------------------------------------------------------------------- gradient clipping


def clip_label(cfg: TrialConfig | None, variant: str) -> str:
    if cfg is None:
        return variant
    return "no clipping" if cfg.train.grad_clip is None else f"clip {cfg.train.grad_clip:g}"


def loss_rises(losses: Sequence[float]) -> int:
    """Epochs whose training loss is above the previous epoch's: the instability a threshold should remove."""
    return sum(b > a for a, b in zip(losses, losses[1:]))


def clipping_rows(runs: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Any]]:
    """Per variant: runs, diverged runs, final metric, worst train loss, mean pre-clip norm against the threshold."""
    rows: dict[str, dict[str, Any]] = {}
    for v, rs in by_variant(runs).items():
        cfg = run_config(rs[0])
        ok = [r for r in rs if _is_ok(r)]
        norms = [float(np.mean([x for _, x in r["history"].get("train_grad_norm", [])] or [np.nan])) for r in rs]
        rows[v] = {
            "label": clip_label(cfg, v),
            "grad_clip": cfg.train.grad_clip if cfg else None,
            "runs": len(rs),
            "diverged": sum(r["tags"].get("outcome") == "diverged" for r in rs),
            metric: _stat([_final(r, metric) for r in ok]),
            "loss_rises": _stat([loss_rises([x for _, x in r["history"].get("train_loss", [])]) for r in ok]),
            "mean_preclip_grad_norm": _stat([n for n in norms if math.isfinite(n)]),
        }
    return rows


def clipping_sentences(rows: dict[str, dict[str, Any]], metric: str, mode: str) -> list[str]:
    total = sum(r["diverged"] for r in rows.values())
    order = sorted(rows.values(), key=lambda r: (r["grad_clip"] is not None, -(r["grad_clip"] or 0)))
    out = [
        f"{total} of {sum(r['runs'] for r in rows.values())} runs diverged (loss NaN/inf): "
        + ", ".join(f"{r['label']} {r['diverged']}/{r['runs']}" for r in order)
        + "."
    ]
    out.append(
        f"Final {metric}: "
        + "; ".join(
            f"{r['label']} {_ms(r[metric])} (training loss rose in {_ms(r['loss_rises'], 1)} epochs)" for r in order
        )
        + "."
    )
    active = [
        r for r in order if r["grad_clip"] is not None and r["mean_preclip_grad_norm"].get("mean", 0) > r["grad_clip"]
    ]
    if active:
        out.append(
            f"At {_join([r['label'] for r in active])} the threshold lies below the mean pre-clip gradient norm "
            f"({_join([format(r['mean_preclip_grad_norm']['mean'], '.2f') for r in active])}), so most steps are "
            "rescaled: clipping there acts as a smaller effective step size as well as a guard against spikes."
        )
    return out


@register_extra("clipping")
def clipping(ctx: ExtraContext) -> ExtraResult:
    """Loss curves, pre-clip gradient-norm traces and divergence counts per clipping threshold."""
    res = ExtraResult()
    metric, mode = ctx.analysis["metric"], ctx.analysis["mode"]
    rows = clipping_rows(ctx.runs, metric)
    if not rows:
        res.sentences.append("No run to compare.")
        return res
    res.tables["thresholds"] = rows
    res.sentences += clipping_sentences(rows, metric, mode)
    fig = ctx.out_dir / "figures"
    for key, name in (("train_loss", "loss_traces.png"), ("train_grad_norm", "grad_norm_traces.png")):
        # every run, diverged ones included (up to their last finite epoch): instability is the point
        curves: dict[str, list[list[float]]] = defaultdict(list)
        for r in ctx.runs:
            series = [x for _, x in r["history"].get(key, []) if math.isfinite(x)]
            if series:
                curves[rows[_variant(r)]["label"]].append(series)
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
