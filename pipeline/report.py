"""Build a study's report from its exported runs (`results/<study>/runs.json`).

Outputs, under the report folder:
    metrics.json        per-variant statistics of the headline numbers (DVC metrics)
    summary.md          the question, the generated answer, and a table per variant
    curves/<variant>.csv  epoch, mean, std of the study metric over seeds (DVC plots)
    figures/*.png       learning curves with bands, final metric with CI, per-layer gradient norms
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.stats import compare, describe_finding, summarize

# Extra per-run numbers summarized per variant when present (final values).
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
)
# Columns of the markdown table (all of the above stay in metrics.json).
TABLE_METRICS = ("test_accuracy", "epochs_to_target", "n_params", "samples_per_s")


def _series(run: dict[str, Any], key: str) -> list[float]:
    return [v for _, v in run["history"].get(key, [])]


def _final(run: dict[str, Any], key: str) -> float | None:
    """A metric's value at the last training epoch (not the final test-time log step)."""
    epochs = _series(run, "epoch")
    series = run["history"].get(key, [])
    if series and epochs and key not in ("n_params", "flops_per_sample"):
        last_epoch = int(max(epochs))
        by_step = {int(s): v for s, v in series}
        if last_epoch in by_step:
            return by_step[last_epoch]
    return run["final"].get(key)


def variant_order(runs: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in runs:
        seen.setdefault(r["tags"].get("variant", "base"), None)
    return list(seen)


def _is_ok(run: dict[str, Any]) -> bool:
    return run["status"] == "FINISHED" and run["tags"].get("outcome") != "diverged"


def analyze(runs: list[dict[str, Any]], metric: str, mode: str, target: dict | None = None) -> dict[str, Any]:
    """Per-variant statistics, ranking, significance and the generated answer."""
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_variant[r["tags"].get("variant", "base")].append(r)
    groups: dict[str, list[float]] = {}
    table: dict[str, dict[str, Any]] = {}
    for variant in variant_order(runs):
        vruns = by_variant[variant]
        ok = [r for r in vruns if _is_ok(r)]
        values = [v for r in ok if (v := _final(r, metric)) is not None and math.isfinite(v)]
        row: dict[str, Any] = {
            "runs": len(vruns),
            "finished": len(ok),
            "diverged": sum(r["tags"].get("outcome") == "diverged" for r in vruns),
            "failed": sum(r["status"] in ("FAILED", "KILLED") for r in vruns),
            "early_stopped": sum(r["tags"].get("end_reason") == "early_stopped" for r in vruns),
            "seeds": sorted(int(r["tags"].get("seed", 0)) for r in ok),
            metric: {"values": values, **(summarize(values).as_dict() if values else {})},
        }
        for key in EXTRA_METRICS:
            vals = [v for r in ok if (v := _final(r, key)) is not None and math.isfinite(v)]
            if vals and key != metric:
                row[key] = {"values": vals, **summarize(vals).as_dict()}
        table[variant] = row
        if values:
            groups[variant] = values
    comparisons = compare(groups, mode) if groups else []
    for c in comparisons:
        table[c.variant].update({"rank": c.rank, "p_vs_best": c.p_value, "significant_vs_best": c.significant})
    answer = (
        describe_finding(comparisons, metric, mode) if comparisons else "No run finished, so nothing can be compared."
    )
    extra = []
    if target and any("epochs_to_target" in row for row in table.values()):
        speed = {v: row["epochs_to_target"]["values"] for v, row in table.items() if "epochs_to_target" in row}
        fastest = compare(speed, "min")
        extra.append(
            f"To reach {target['metric']} ≥ {target['value']:g}: "
            + describe_finding(fastest, "epochs_to_target", "min").rstrip(".")
        )
        extra[-1] += " (a run that never reached it counts as epochs + 1)."
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
        "variants": table,
        "ranking": [c.as_dict() for c in comparisons],
        "answer": " ".join([answer, *extra]),
    }


def _fmt(stat: dict | None, digits: int = 4) -> str:
    if not stat or "mean" not in stat:
        return "–"
    s = f"{stat['mean']:.{digits}g} ± {stat['std']:.2g}"
    if stat.get("ci_low") is not None:
        s += f" [{stat['ci_low']:.{digits}g}, {stat['ci_high']:.{digits}g}]"
    return s


def summary_markdown(study: str, question: str, analysis: dict[str, Any], sweep: dict[str, Any]) -> str:
    metric = analysis["metric"]
    cols = [metric] + [k for k in TABLE_METRICS if k != metric and any(k in r for r in analysis["variants"].values())]
    lines = [
        f"# {study}",
        "",
        f"**Question.** {question}",
        "",
        f"**Answer (generated from the runs).** {analysis['answer']}",
        "",
        f"Profile `{sweep.get('profile')}`, seeds {sweep.get('seeds')}, metric `{metric}` ({analysis['mode']}), "
        f"MLflow experiment `{sweep.get('experiment_id')}`, parent run `{sweep.get('parent_run_id')}`.",
        "",
        "Values are mean ± std [95% CI] over seeds; p is Welch's t-test against the best variant.",
        "",
        "| rank | variant | n | " + " | ".join(cols) + " | p vs best | diverged |",
        "|---|---|---|" + "---|" * len(cols) + "---|---|",
    ]
    rows = sorted(analysis["variants"].items(), key=lambda kv: kv[1].get("rank", 1e9))
    for variant, row in rows:
        p = row.get("p_vs_best")
        ptxt = "–" if p is None else (f"{p:.3g}" + (" *" if row.get("significant_vs_best") else ""))
        lines.append(
            f"| {row.get('rank', '–')} | {variant} | {row['finished']}/{row['runs']} | "
            + " | ".join(_fmt(row.get(c)) for c in cols)
            + f" | {ptxt} | {row['diverged']} |"
        )
    lines += ["", "`*`: significant at alpha 0.05. Per-seed values are in `metrics.json`.", ""]
    if any("maxout" in v for v in analysis["variants"]):
        lines += [
            "Note: a maxout unit takes the max of 2 linear pieces, so a maxout layer has about twice the "
            "parameters of a plain layer of the same width (see n_params).",
            "",
        ]
    return "\n".join(lines)


def _curves(runs: list[dict], key: str) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = defaultdict(list)
    for r in runs:
        if _is_ok(r) and r["history"].get(key):
            epochs = {int(s) for s, _ in r["history"].get("epoch", [])}
            out[r["tags"].get("variant", "base")].append([v for s, v in r["history"][key] if int(s) in epochs])
    return dict(out)


def _first_epoch_layers(runs: list[dict], prefix: str) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of a per-layer diagnostic at epoch 1."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for key, series in r["history"].items():
            if key.startswith(prefix) and series:
                acc[r["tags"].get("variant", "base")][key[len(prefix) :]].append(series[0][1])
    return {v: {layer: float(np.mean(vals)) for layer, vals in layers.items()} for v, layers in acc.items()}


def build_report(
    results_dir: str | Path,
    out_dir: str | Path,
    question: str,
    metric: str,
    mode: str,
    target: dict | None = None,
    extras: list[str] = (),
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    results_dir, out = Path(results_dir), Path(out_dir)
    runs = json.loads((results_dir / "runs.json").read_text())
    sweep = json.loads((results_dir / "sweep.json").read_text())
    study = sweep["study"]
    analysis = analyze(runs, metric, mode, target)
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    made = []
    if extras:
        from pipeline.extras import ExtraContext, get_extra

        ctx = ExtraContext(study, runs, sweep, analysis, out, Path(data_dir) if data_dir else None)
        analysis["extras"] = {}
        for name in extras:
            res = get_extra(name)(ctx)
            analysis["answer"] = " ".join([analysis["answer"], *res.sentences])
            analysis["extras"][name] = res.tables
            made += res.figures

    metrics = {"answer": analysis["answer"], "metric": metric, "variants": {}}
    for v, row in analysis["variants"].items():
        m = {
            k: {kk: vv for kk, vv in stat.items() if kk != "values"}
            for k, stat in row.items()
            if isinstance(stat, dict) and "mean" in stat
        }
        m.update({k: row[k] for k in ("runs", "finished", "diverged", "rank", "p_vs_best") if k in row})
        metrics["variants"][v] = m
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (out / "analysis.json").write_text(json.dumps(analysis, indent=2, sort_keys=True) + "\n")
    (out / "summary.md").write_text(summary_markdown(study, question, analysis, sweep))

    curves_dir = out / "curves"
    curves_dir.mkdir(exist_ok=True)
    for variant, series in _curves(runs, metric).items():
        n = min(len(s) for s in series)
        arr = np.array([s[:n] for s in series], dtype=float)
        with (curves_dir / f"{_safe(variant)}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "mean", "std"])
            for i in range(n):
                w.writerow([i + 1, f"{np.mean(arr[:, i]):.6g}", f"{np.std(arr[:, i]):.6g}"])

    for key in dict.fromkeys([metric, "val_loss", "train_loss"]):
        c = _curves(runs, key)
        if c:
            made.append(plots.curves_with_band(c, figures / f"curve_{key}.png", key, f"{study}: {key} per epoch"))
    rows = [
        {"variant": v, "rank": r.get("rank"), **{k: x for k, x in r[metric].items()}}
        for v, r in analysis["variants"].items()
        if "mean" in r.get(metric, {})
    ]
    if rows:
        made.append(
            plots.bars_with_ci(
                rows, figures / f"final_{metric}.png", metric, f"{study}: final {metric} (mean, 95% CI, seeds as dots)"
            )
        )
    grads = _first_epoch_layers(runs, "grad_norm/")
    if grads:
        made.append(
            plots.layer_lines(
                grads,
                figures / "grad_norm_layers.png",
                "gradient norm (epoch 1)",
                f"{study}: per-layer gradient norm after epoch 1",
            )
        )
    sizes = [
        {"label": v, "x": r["n_params"]["mean"], "y": r[metric]["mean"], "yerr": r[metric]["std"]}
        for v, r in analysis["variants"].items()
        if "n_params" in r and "mean" in r.get(metric, {})
    ]
    if len({p["x"] for p in sizes}) > 2:
        made.append(
            plots.scatter_xy(
                sizes,
                figures / f"{metric}_vs_params.png",
                "parameters",
                metric,
                f"{study}: {metric} vs parameter count",
            )
        )
    return {"analysis": analysis, "figures": [str(p) for p in made]}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in name)
