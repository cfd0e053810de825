"""Helpers shared by several report sections: the text of a generated sentence, a run's logged config, the
clean re-evaluation of a best checkpoint, and statistics over seeds.

A section describes: each variant's values (`describe`: mean ± std [95% interval] (n)), which number of a run it
shows (`which`), the sizes where they differ (`sizes`), and which test decides a difference (`decided_by`). It never
ranks or tests variants itself: a pair is tested once, in the study's one family (`pipeline.report`).

`stat` is the one summary of a metric over seeds that a reader sees, here and in the generic report above this
layer (`pipeline.report` imports it): `honest_stats.summarize` inside the range the metric's name gives it
(`plots.metric_bounds`), because this is the lowest layer that sees both leaves."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline import honest_stats as hs
from pipeline import tracking
from pipeline.config import TrialConfig
from pipeline.plots import Bounds, metric_bounds
from pipeline.runs import Run, by_variant, ok_runs, per_variant, unflatten
from pipeline.sections.base import Context
from pipeline.text import join
from pipeline.train import evaluate
from pipeline.trained import Trained

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- statistics and text

# Ranges that a quantity's name does not give `metric_bounds`, for `stat`'s `bounds`.
FRACTION: Bounds = (0.0, 1.0)  # an error rate, a share, a mean probability
ACCURACY_GAP: Bounds = (-1.0, 1.0)  # train minus validation accuracy
NON_NEGATIVE: Bounds = (0.0, None)  # a KL divergence


def stat(
    values: Sequence[float | None], metric: str, bounds: Bounds | None | str = "auto", *, n_examples: int | None = None
) -> dict[str, Any]:
    """The finite values and their summary: n, mean, std and the 95% interval of the mean inside `bounds` (by
    default `metric_bounds(metric)`; pass them where the name does not say, e.g. an error rate's (0, 1)); just
    {"values": []} when none is finite. `n_examples`: the test-set size behind an accuracy (`hs.interval`)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"values": []}
    rng = metric_bounds(metric) if isinstance(bounds, str) else bounds
    return hs.summarize(vals, rng, n_examples=n_examples, name=metric).as_dict()


def ms(s: dict[str, Any], digits: int = 3) -> str:
    """mean ± std of a `stat` as text (std left out for a single value)."""
    if "mean" not in s:
        return "n/a"
    if s["n"] < 2:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def describe(s: dict[str, Any], digits: int = 3) -> str:
    """A `stat` as a section states one variant's value: 'mean ± std [95% interval of the mean] (n=k)', the
    interval left out where there is none (one seed, or seeds that agree exactly)."""
    if "mean" not in s:
        return "n/a"
    text = ms(s, digits)
    if s.get("ci_low") is not None and s.get("ci_high") is not None and s["ci_low"] < s["ci_high"]:
        text += f" [{s['ci_low']:.{digits}f}, {s['ci_high']:.{digits}f}]"
    return f"{text} (n={s['n']})"


# How `describe` writes a value, said once in the sentence that uses it.
DESCRIBED = "mean ± std over seeds [95% interval of the mean] (n = seeds)"


def which(metric: str) -> str:
    """Which number of a run `metric` is, as `runs.final` reads it: a test metric comes from the best-validation
    checkpoint, a per-epoch one from the last epoch."""
    if metric.startswith("test_"):
        return f"{metric} of each run's best-validation checkpoint"
    if metric.startswith(("train_", "val_")):
        return f"{metric} at each run's last epoch"
    return metric


def decided_by(ctx: Context, *quantities: str) -> str:
    """The sentence that closes a section's values: sections describe, and only the study's one test family
    compares (the headline's pairs and the claims, `pipeline.report`). `quantities`: what the section stated."""
    headline = ctx.analysis["metric"]
    others = [q for q in quantities if q != headline]
    parts = []
    if headline in quantities:
        parts.append(
            f"whether the variants differ on {headline} is decided once, by the study's one family of tests (see "
            "Comparisons and Claims)"
        )
    if others:
        parts.append(
            f"a difference between variants on {join(others)} is tested only where one of the study's claims names "
            "it (see Claims)"
        )
    text = "; ".join(parts) or "these values describe the runs"
    return text[0].upper() + text[1:] + "."


def sizes(ctx: Context, *, counts: bool = True) -> str | None:
    """The variants' parameter counts when they differ, said beside any cross-variant reading of a section's
    values: a comparison of models of different size is not one at matched parameters. None when they agree.
    `counts=False` where the section's own sentence already gives them."""
    n = {v: vals[0] for v, vals in per_variant(ctx.runs, "n_params").items() if vals}
    if len(set(n.values())) < 2:
        return None
    listed = " (" + ", ".join(f"{v} {k:,.0f}" for v, k in n.items()) + " parameters)" if counts else ""
    return f"The variants differ in size{listed}, so a difference between them is not one at matched parameters."


# --------------------------------------------------------------------------- runs and models


def logged_config(run: Run) -> TrialConfig | None:
    """The run's resolved config, rebuilt from its MLflow params (flattened, values as strings)."""
    try:
        return TrialConfig.model_validate(unflatten(run.get("params", {})))
    except Exception as e:  # a run logged by another version of the code
        log.warning("run %s: config not rebuilt from its params (%s)", run.get("run_id"), e)
        return None


def clean_fit(trained: Trained) -> dict[str, float]:
    """The best checkpoint re-evaluated on the training samples it saw (no augmentation, eval mode) and on
    the validation split: train_/val_ loss and accuracy from the same weights."""
    d, limit = trained.data, trained.config.train.train_limit
    x, y = (d.x_train[:limit], d.y_train[:limit]) if limit else (d.x_train, d.y_train)
    task = trained.task
    out = evaluate(trained.model, x, y, task, 1024, prefix="train")
    out.update(evaluate(trained.model, d.x_val, d.y_val, task, 1024, prefix="val"))
    return out


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """These models and batches are tiny: one intra-op thread is faster, and on a busy machine several
    threads spinning for cores turn seconds into minutes. A context manager, or a decorator: `@single_thread()`."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def log_artifact(ctx: Context, run: Run, path: Path, artifact_path: str | None = None) -> None:
    """Attach a file a section wrote to the run it describes."""
    tracking.client(ctx.sweep["tracking_uri"]).log_artifact(run["run_id"], str(path), artifact_path)


# --------------------------------------------------------------------------- statistics over variants


def bar_stats(groups: dict[str, list[float]], metric: str) -> dict[str, dict[str, Any]]:
    """Per variant, the `stat` of `metric` that `plots.grouped_bars` draws (mean, 95% interval, seeds)."""
    return {v: stat(vals, metric) for v, vals in groups.items()}


def per_untrained_model(
    ctx: Context,
    measure: Callable[[nn.Module], float | None],
    keep: Callable[[TrialConfig], bool] = lambda cfg: True,
) -> dict[str, list[float]]:
    """variant -> `measure` of each ok run's model as built before training (its logged config), in seed order;
    runs whose config is lost, that `keep` refuses or that `measure` gives None are left out ({} without data)."""
    if ctx.data_dir is None:
        return {}
    out: dict[str, list[float]] = {}
    for v, rs in by_variant(ok_runs(ctx.runs)).items():
        for r in rs:
            cfg = logged_config(r)
            if cfg is None or not keep(cfg):
                continue
            value = measure(ctx.loader.untrained(cfg))
            if value is not None:
                out.setdefault(v, []).append(float(value))
    return out
