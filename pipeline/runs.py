"""How to read an exported run (one entry of `results/<study>/runs.json`, see `tracking.export_runs`).

The one place that says what a run's variant, seed and status mean and what its *final* value of a metric
is, so that the report's headline, its tables and every section read the same number. A leaf: it imports
nothing of the project.

A run is a dict: run_id, run_name, status, tags (variant, seed, outcome, end_reason, target_reached, ...),
params (MLflow's flattened strings), final (each metric's last logged value) and history (metric ->
[[step, value], ...], one step per epoch).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Run = dict[str, Any]

# Logged once, at step 0, not per epoch.
STATIC_METRICS = ("n_params", "flops_per_sample")


def variant(run: Run) -> str:
    return run["tags"].get("variant", "base")


def seed(run: Run) -> int:
    return int(run["tags"].get("seed", 0))


def is_ok(run: Run) -> bool:
    """Finished and not diverged: the runs whose numbers a comparison may use."""
    return run["status"] == "FINISHED" and run["tags"].get("outcome") != "diverged"


def ok_runs(runs: Iterable[Run]) -> list[Run]:
    return [r for r in runs if is_ok(r)]


def variant_order(runs: Iterable[Run]) -> list[str]:
    """The variants in the order the study's runs list them."""
    return list(dict.fromkeys(variant(r) for r in runs))


def by_variant(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by variant, variants in the study's order, each group sorted by seed."""
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        out[variant(r)].append(r)
    return {v: sorted(rs, key=seed) for v, rs in out.items()}


def series(run: Run, key: str) -> list[float]:
    """A metric's logged values in step order."""
    return [v for _, v in run["history"].get(key, [])]


def at_epoch(run: Run, key: str, epoch: int) -> float | None:
    for step, value in run["history"].get(key, []):
        if int(step) == epoch:
            return value
    return None


def final(run: Run, key: str) -> float | None:
    """A run's final value of `key`: the one meaning every part of the report uses.

    - a per-epoch metric (train_*, val_*, timings): its value at the last training epoch;
    - a metric logged once after training (test_* from the best-validation checkpoint, best_*,
      epochs_to_target) or once before it (n_params, flops_per_sample): that value;
    - train_seconds: the sum of the epochs' seconds.
    None when the run has no such value.
    """
    if key == "train_seconds":
        secs = series(run, "epoch_seconds")
        return float(sum(secs)) if secs else None
    epochs = series(run, "epoch")
    logged = run["history"].get(key, [])
    if logged and epochs and key not in STATIC_METRICS:
        last_epoch = int(max(epochs))
        by_step = {int(s): v for s, v in logged}
        if last_epoch in by_step:
            return by_step[last_epoch]
    return run["final"].get(key)


def finite_final(run: Run, key: str) -> float | None:
    """`final`, or None when it is missing, NaN or infinite."""
    v = final(run, key)
    return v if v is not None and math.isfinite(v) else None


def per_variant(runs: Iterable[Run], key: str) -> dict[str, list[float]]:
    """variant -> the finite final values of `key` over its ok runs (variants without one are left out)."""
    out: dict[str, list[float]] = {}
    for v, rs in by_variant(ok_runs(runs)).items():
        vals = [x for r in rs if (x := finite_final(r, key)) is not None]
        if vals:
            out[v] = vals
    return out


def best_run(runs: Iterable[Run], of_variant: str, metric: str, mode: str) -> Run | None:
    """The ok run of `of_variant` with the best final `metric`."""
    sign = 1 if mode == "max" else -1
    candidates = [
        (sign * v, r) for r in ok_runs(runs) if variant(r) == of_variant and (v := finite_final(r, metric)) is not None
    ]
    return max(candidates, key=lambda t: t[0])[1] if candidates else None


def natural_key(name: str) -> tuple:
    """Sort key putting layer "11" after "9" (runs.json keys come sorted as strings)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def unflatten(params: dict[str, str]) -> dict[str, Any]:
    """MLflow's flattened string params (`model.options.hidden` -> "[64, 64]") back into nested values."""
    import yaml

    out: dict[str, Any] = {}
    for key, raw in params.items():
        try:
            value = None if raw == "None" else yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(node, dict):
            node[last] = value
    return out


def int_param(run: Run, key: str) -> int | None:
    v = run["params"].get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None
