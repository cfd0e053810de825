"""The numbers of a report: per-variant statistics over seeds, the ranking, and the generated answer.

`analyze` turns the exported runs into `analysis.json`'s core; `metrics_file` picks the few numbers that
`dvc metrics show/diff` compare across revisions. A run's final value is `pipeline.runs.final`, the one
meaning every part of the report shares.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from pipeline import runs as rn
from pipeline.runs import Run
from pipeline.stats import Test, compare, describe_finding, summarize

ALPHA = 0.05
# Extra per-run numbers summarized per variant when present (final values; train_seconds is derived).
EXTRA_METRICS = (
    "test_accuracy",
    "test_loss",
    "val_loss",
    "train_loss",
    "epochs_to_target",
    "n_params",
    "flops_per_sample",
    "samples_per_s",
    "epoch_seconds",
    "train_seconds",
)
# Headline numbers besides the study metric that go to metrics.json (mean only).
METRICS_FILE_EXTRAS = ("test_accuracy", "epochs_to_target")


def _finite_finals(runs: list[Run], key: str) -> list[float]:
    return [v for r in runs if (v := rn.final(r, key)) is not None and math.isfinite(v)]


def analyze(
    runs: list[Run],
    metric: str,
    mode: str,
    target: dict[str, Any] | None = None,
    test: Test = "welch",
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Per-variant statistics, ranking, significance against the best, and the generated answer."""
    # Grouped in the runs' own order (not by seed): the per-seed value lists keep runs.json's order.
    by_variant: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_variant[rn.variant(r)].append(r)
    groups: dict[str, list[float]] = {}
    table: dict[str, dict[str, Any]] = {}
    for variant in rn.variant_order(runs):
        vruns = by_variant[variant]
        ok = [r for r in vruns if rn.is_ok(r)]
        values = _finite_finals(ok, metric)
        row: dict[str, Any] = {
            "runs": len(vruns),
            "finished": len(ok),
            "diverged": sum(r["tags"].get("outcome") == "diverged" for r in vruns),
            "failed": sum(r["status"] in ("FAILED", "KILLED") for r in vruns),
            "early_stopped": sum(r["tags"].get("end_reason") == "early_stopped" for r in vruns),
            "seeds": sorted(rn.seed(r) for r in ok),
            # every run, failed ones included, so the index can link each of them
            "run_ids": [{"seed": rn.seed(r), "run_id": r["run_id"], "status": r["status"]} for r in vruns],
            metric: {"values": values, **(summarize(values).as_dict() if values else {})},
        }
        for key in EXTRA_METRICS:
            vals = _finite_finals(ok, key)
            if vals and key != metric:
                row[key] = {"values": vals, **summarize(vals).as_dict()}
        table[variant] = row
        if values:
            groups[variant] = values
    comparisons = compare(groups, mode, alpha=alpha, test=test) if groups else []
    for c in comparisons:
        table[c.variant].update({"rank": c.rank, "p_vs_best": c.p_value, "significant_vs_best": c.significant})
    answer = (
        describe_finding(comparisons, metric, mode) if comparisons else "No run finished, so nothing can be compared."
    )
    extra = _target_sentences(runs, table, mode, target, test, alpha)
    n_div = sum(row["diverged"] for row in table.values())
    if n_div:
        per = ", ".join(f"{v}: {row['diverged']}/{row['runs']}" for v, row in table.items() if row["diverged"])
        extra.append(f"{n_div} run(s) diverged (loss became NaN/inf) — {per}.")
    if any("n_params" in row for row in table.values()):
        sizes = {v: int(row["n_params"]["mean"]) for v, row in table.items() if "n_params" in row}
        if len(set(sizes.values())) > 1:
            extra.append(
                "Parameter counts differ between variants: " + ", ".join(f"{v} {n:,}" for v, n in sizes.items()) + "."
            )
    return {
        "metric": metric,
        "mode": mode,
        "test": test,
        "alpha": alpha,
        "variants": table,
        "ranking": [c.as_dict() for c in comparisons],
        "answer": " ".join([answer, *extra]),
    }


def _target_sentences(
    runs: list[Run],
    table: dict[str, dict[str, Any]],
    mode: str,
    target: dict[str, Any] | None,
    test: Test,
    alpha: float,
) -> list[str]:
    """What the answer says about the study's target: never reached, or which variant reaches it fastest."""
    if not target:
        return []
    reached = [r["tags"]["target_reached"] == "true" for r in runs if rn.is_ok(r) and "target_reached" in r["tags"]]
    goal = f"{target['metric']} {'≥' if mode == 'max' else '≤'} {target['value']:g}"
    if reached and not any(reached):
        return [f"No run reached {goal} within its epochs."]
    if any("epochs_to_target" in row for row in table.values()):
        speed = {v: row["epochs_to_target"]["values"] for v, row in table.items() if "epochs_to_target" in row}
        fastest = compare(speed, "min", alpha=alpha, test=test)
        sentence = f"To reach {goal}: " + describe_finding(fastest, "epochs_to_target", "min").rstrip(".")
        return [sentence + " (a run that never reached it counts as epochs + 1)."]
    return []


def metrics_file(analysis: dict[str, Any]) -> dict[str, Any]:
    """The few numbers per variant that `dvc metrics show/diff` compare across revisions (numbers only)."""
    metric = analysis["metric"]
    out: dict[str, Any] = {}
    for variant, row in analysis["variants"].items():
        stat = row.get(metric, {})
        m: dict[str, Any] = {"runs": row["runs"], "n": stat.get("n", 0), "diverged": row["diverged"]}
        if "rank" in row:
            m["rank"] = row["rank"]
        if row.get("p_vs_best") is not None:
            m["p_vs_best"] = round(row["p_vs_best"], 6)
        if "mean" in stat:
            m[metric] = {k: stat[k] for k in ("mean", "std", "ci_low", "ci_high") if stat.get(k) is not None}
        for key in METRICS_FILE_EXTRAS:
            if key != metric and "mean" in row.get(key, {}):
                m[key] = row[key]["mean"]
        out[variant] = m
    return {"variants": out}
