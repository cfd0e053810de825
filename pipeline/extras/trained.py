"""Helpers for report sections that re-evaluate trained models: a run's best weights and its prepared data."""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from pipeline.data import Splits, load_prepared
from pipeline.extras import ExtraContext
from pipeline.stats import compare, describe_finding, summarize


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


def ok_runs(ctx: ExtraContext) -> list[dict[str, Any]]:
    return [r for r in ctx.runs if r["status"] == "FINISHED" and r["tags"].get("outcome") != "diverged"]


def by_variant(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by variant, variants in the study's order, runs by seed."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        out[r["tags"].get("variant", "base")].append(r)
    return {v: sorted(rs, key=lambda r: int(r["tags"].get("seed", 0))) for v, rs in out.items()}


def ranked_variants(ctx: ExtraContext) -> list[str]:
    """Variants best first, by the study's own ranking."""
    return sorted(ctx.analysis["variants"], key=lambda v: ctx.analysis["variants"][v].get("rank", 1e9))


def download(ctx: ExtraContext, run: dict[str, Any], artifact: str, folder: Path) -> Path:
    from pipeline import tracking

    return Path(tracking.client(ctx.sweep["tracking_uri"]).download_artifacts(run["run_id"], artifact, str(folder)))


def log_artifact(ctx: ExtraContext, run: dict[str, Any], path: Path, artifact_path: str | None = None) -> None:
    from pipeline import tracking

    tracking.client(ctx.sweep["tracking_uri"]).log_artifact(run["run_id"], str(path), artifact_path)


@functools.lru_cache(maxsize=4)
def _prepared(folder: str, name: str, options_yaml: str) -> Splits:
    return load_prepared(folder, name, yaml.safe_load(options_yaml))


def trained(ctx: ExtraContext, run: dict[str, Any]) -> tuple[nn.Module, dict[str, Any], Splits]:
    """(model with the run's best weights, in eval mode; the run's resolved config; its prepared data)."""
    from pipeline.models import build_model

    if ctx.data_dir is None:
        raise FileNotFoundError("this report section needs the prepared data folder (report --data)")
    with tempfile.TemporaryDirectory() as d:
        cfg = yaml.safe_load(download(ctx, run, "config.yaml", Path(d)).read_text())
        state = torch.load(download(ctx, run, "best_model.pt", Path(d)), weights_only=True)
    ds = cfg["dataset"]
    data = _prepared(str(ctx.data_dir), ds["name"], yaml.safe_dump(ds.get("options", {}), sort_keys=True))
    model = build_model(cfg["model"]["name"], cfg["model"].get("options", {}), data.info)
    model.load_state_dict(state)
    return model.eval(), cfg, data


def final(run: dict[str, Any], key: str) -> float | None:
    v = run["final"].get(key)
    return v if v is not None and math.isfinite(v) else None


def per_variant(ctx: ExtraContext, value: Callable[[dict[str, Any]], float | None]) -> dict[str, list[float]]:
    """variant -> one value per finished run (runs where `value` gives None are left out)."""
    out = {}
    for v, runs in by_variant(ok_runs(ctx)).items():
        vals = [x for r in runs if (x := value(r)) is not None]
        if vals:
            out[v] = vals
    return out


def comparison(groups: dict[str, list[float]], metric: str, mode: str) -> tuple[str, dict[str, Any]]:
    """A generated sentence ranking the variants on `metric`, and the table behind it."""
    if not groups:
        return f"No finished run reported {metric}.", {}
    comps = compare(groups, mode)
    table = {
        c.variant: {
            **summarize(groups[c.variant]).as_dict(),
            "values": groups[c.variant],
            "rank": c.rank,
            "p_vs_best": c.p_value,
        }
        for c in comps
    }
    return describe_finding(comps, metric, mode), table


def bar_stats(groups: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    return {v: {**summarize(vals).as_dict(), "values": vals} for v, vals in groups.items()}
