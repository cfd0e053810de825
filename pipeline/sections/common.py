"""Helpers shared by several report sections: the text of a generated sentence, a run's logged config, the
clean re-evaluation of a best checkpoint, and statistics over seeds.

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
from pipeline.runs import Run, by_variant, ok_runs, unflatten
from pipeline.sections.base import Context
from pipeline.text import fmt_p, join
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


def verb(subjects: Sequence[str], singular: str) -> str:
    """'raises' for one subject, 'raise' for several."""
    return singular if len(subjects) == 1 else singular[:-1]


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


def ranked_variants(ctx: Context) -> list[str]:
    """Variants best first, by the study's own ranking."""
    return sorted(ctx.analysis["variants"], key=lambda v: ctx.analysis["variants"][v].get("rank", 1e9))


def comparison(groups: dict[str, list[float]], metric: str, mode: str) -> tuple[str, dict[str, Any]]:
    """A generated sentence ranking the variants on `metric`, and the table behind it (each variant's `stat`, its
    rank and its Holm-adjusted p against the first). Pairs are tested as the report's headline is (Welch's t-test,
    Holm-adjusted over every pair), so a section never calls a difference significant that the headline would not."""
    if not groups:
        return f"No finished run reported {metric}.", {}
    sign = 1 if mode == "max" else -1
    means = {v: sum(x) / len(x) for v, x in groups.items()}
    order = sorted(groups, key=lambda v: (-sign * means[v], v))
    best = order[0]
    tests = {frozenset((t.a, t.b)): t for t in hs.holm_all_pairs(groups)} if len(groups) > 1 else {}
    table = {
        v: {
            **stat(groups[v], metric),
            "rank": rank,
            "p_vs_best": None if v == best else tests[frozenset((v, best))].p_value,
        }
        for rank, v in enumerate(order, start=1)
    }
    head = f"On {metric}, {best} ranks first ({ms(table[best])}, n={len(groups[best])})"
    if len(order) == 1:
        return head + "; there is nothing to compare it with.", table
    beaten = [v for v in order[1:] if tests[frozenset((v, best))].significant]
    tied = [v for v in order[1:] if v not in beaten]
    clauses = []
    if beaten:
        ps = [f"{v} (Holm-adjusted {fmt_p(tests[frozenset((v, best))].p_value)})" for v in beaten]
        clauses.append(f"it is significantly {'higher' if mode == 'max' else 'lower'} than {join(ps)}")
    if tied:
        clauses.append(f"it cannot be told apart from {join(tied)} with these seeds")
    method = next(iter(tests.values())).method
    return f"{head}; {'; '.join(clauses)} ({method}).", table


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
