"""Build a study's report from its exported runs (`results/<study>/runs.json` and `sweep.json`).

Outputs, under the report folder:
    metrics.json          variants.<v>: rank, n, the study metric's mean/std/95% CI, p vs best (DVC metrics)
    analysis.json         everything: per-seed values, every summarized metric, run ids, the answer
    summary.md            the question, the generated answer, and a table per variant
    curves/<variant>.csv  epoch, mean, std, n of the study metric over seeds (DVC plots)
    figures/*.png         learning curves with bands, final metric with CI, per-layer gradient norms,
                          metric vs cost (parameters, FLOPs, wall time) and the best classifier's
                          confusion matrix, when they apply

The report builds from the files alone. The MLflow store is optional: when it is reachable the
figures and summary are also logged to the sweep's parent run, and the best run's model is
re-evaluated for the confusion matrix; when it is not, those steps are skipped with a warning.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import plots
from pipeline.stats import Test, compare, describe_finding, summarize

log = logging.getLogger(__name__)

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
# Columns of the markdown table (every summarized metric stays in analysis.json).
TABLE_METRICS = ("test_accuracy", "epochs_to_target", "n_params", "samples_per_s")
# Headline numbers besides the study metric that go to metrics.json (mean only).
METRICS_FILE_EXTRAS = ("test_accuracy", "epochs_to_target")
# Costs the study metric is plotted against when they differ between variants: key, axis label.
COSTS = (
    ("n_params", "parameters"),
    ("flops_per_sample", "FLOPs per sample (forward)"),
    ("train_seconds", "training wall time per run (s)"),
)
STATIC_METRICS = ("n_params", "flops_per_sample")  # logged once at step 0, not per epoch


def _series(run: dict[str, Any], key: str) -> list[float]:
    return [v for _, v in run["history"].get(key, [])]


def _final(run: dict[str, Any], key: str) -> float | None:
    """A metric's value at the last training epoch (not the final test-time log step)."""
    if key == "train_seconds":
        secs = _series(run, "epoch_seconds")
        return float(sum(secs)) if secs else None
    epochs = _series(run, "epoch")
    series = run["history"].get(key, [])
    if series and epochs and key not in STATIC_METRICS:
        last_epoch = int(max(epochs))
        by_step = {int(s): v for s, v in series}
        if last_epoch in by_step:
            return by_step[last_epoch]
    return run["final"].get(key)


def _variant(run: dict[str, Any]) -> str:
    return run["tags"].get("variant", "base")


def variant_order(runs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(_variant(r) for r in runs))


def _is_ok(run: dict[str, Any]) -> bool:
    return run["status"] == "FINISHED" and run["tags"].get("outcome") != "diverged"


def analyze(
    runs: list[dict[str, Any]],
    metric: str,
    mode: str,
    target: dict | None = None,
    test: Test = "welch",
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Per-variant statistics, ranking, significance against the best, and the generated answer."""
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_variant[_variant(r)].append(r)
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
            # every run, failed ones included, so the index can link each of them
            "run_ids": [
                {"seed": int(r["tags"].get("seed", 0)), "run_id": r["run_id"], "status": r["status"]} for r in vruns
            ],
            metric: {"values": values, **(summarize(values).as_dict() if values else {})},
        }
        for key in EXTRA_METRICS:
            vals = [v for r in ok if (v := _final(r, key)) is not None and math.isfinite(v)]
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
    extra = []
    reached = [r["tags"]["target_reached"] == "true" for r in runs if _is_ok(r) and "target_reached" in r["tags"]]
    goal = f"{target['metric']} {'≥' if mode == 'max' else '≤'} {target['value']:g}" if target else ""
    if target and reached and not any(reached):
        extra.append(f"No run reached {goal} within its epochs.")
    elif target and any("epochs_to_target" in row for row in table.values()):
        speed = {v: row["epochs_to_target"]["values"] for v, row in table.items() if "epochs_to_target" in row}
        fastest = compare(speed, "min", alpha=alpha, test=test)
        extra.append(f"To reach {goal}: " + describe_finding(fastest, "epochs_to_target", "min").rstrip("."))
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
        "test": test,
        "alpha": alpha,
        "variants": table,
        "ranking": [c.as_dict() for c in comparisons],
        "answer": " ".join([answer, *extra]),
    }


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


def _num(x: float, digits: int = 4) -> str:
    """`digits` significant digits; big numbers with thousands separators instead of an exponent."""
    if 10**digits <= abs(x) < 1e12:
        return f"{round(x, digits - 1 - math.floor(math.log10(abs(x)))):,.0f}"
    return f"{x:.{digits}g}"


def _fmt(stat: dict | None, digits: int = 4) -> str:
    if not stat or "mean" not in stat:
        return "–"
    if stat["std"] == 0:  # identical over seeds (a parameter count) or a single seed
        return _num(stat["mean"], digits) + (" (n=1)" if stat.get("n") == 1 else "")
    s = f"{_num(stat['mean'], digits)} ± {_num(stat['std'], 2)}"
    if stat.get("ci_low") is not None:
        s += f" [{_num(stat['ci_low'], digits)}, {_num(stat['ci_high'], digits)}]"
    return s


TEST_NAMES = {"welch": "Welch's t-test", "permutation": "a two-sided permutation test of the means"}


def table_columns(analysis: dict[str, Any]) -> list[str]:
    metric = analysis["metric"]
    return [metric] + [k for k in TABLE_METRICS if k != metric and any(k in r for r in analysis["variants"].values())]


def table_rows(analysis: dict[str, Any]) -> list[dict[str, str]]:
    """The comparison table as strings, best first: what summary.md, the index page and the CLI print."""
    cols = table_columns(analysis)
    out = []
    for variant, row in sorted(analysis["variants"].items(), key=lambda kv: kv[1].get("rank", 1e9)):
        p = row.get("p_vs_best")
        ptxt = "–" if p is None else (f"{p:.3g}" + (" *" if row.get("significant_vs_best") else ""))
        out.append(
            {
                "rank": str(row.get("rank", "–")),
                "variant": variant,
                "n": f"{row['finished']}/{row['runs']}",
                **{c: _fmt(row.get(c)) for c in cols},
                "p vs best": ptxt,
                "diverged": str(row["diverged"]),
            }
        )
    return out


def summary_markdown(study: str, question: str, analysis: dict[str, Any], sweep: dict[str, Any]) -> str:
    metric = analysis["metric"]
    rows = table_rows(analysis)
    header = list(rows[0]) if rows else ["rank", "variant"]
    test = TEST_NAMES.get(analysis.get("test", "welch"), analysis.get("test"))
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
        f"Values are mean ± std [95% CI] over seeds; p is {test} against the best variant.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r.values()) + " |" for r in rows),
        "",
        f"`*`: significant at alpha {analysis.get('alpha', ALPHA):g}. Per-seed values are in `analysis.json`.",
        "",
    ]
    conf = analysis.get("confusion") or {}
    if "accuracy" in conf:
        lines += [
            f"Confusion matrix: the best run ({conf['variant']}, seed {conf['seed']}, run `{conf['run_id']}`) "
            f"re-evaluated on the test split: accuracy {conf['accuracy']:.4g} on {conf['n']} samples"
            + (
                f"; most frequent error: true {conf['top_error'][0]} predicted as {conf['top_error'][1]} "
                f"({conf['top_error'][2]} times)."
                if conf.get("top_error")
                else "."
            ),
            "",
        ]
    if any("maxout" in v for v in analysis["variants"]):
        lines += [
            "Note: a maxout unit takes the max of 2 linear pieces, so a maxout layer has about twice the "
            "parameters of a plain layer of the same width (see n_params).",
            "",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- curves and figures


def _curves(runs: list[dict], key: str) -> dict[str, list[list[float]]]:
    """Per variant, each finished run's per-epoch series of `key` (runs may differ in length)."""
    out: dict[str, list[list[float]]] = defaultdict(list)
    for r in runs:
        if _is_ok(r) and r["history"].get(key):
            epochs = {int(s) for s, _ in r["history"].get("epoch", [])}
            out[_variant(r)].append([v for s, v in r["history"][key] if int(s) in epochs])
    return dict(out)


def _per_epoch(series: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and count per epoch over the runs that reached it (early-stopped runs end sooner)."""
    n = max(len(s) for s in series)
    arr = np.full((len(series), n), np.nan)
    for i, s in enumerate(series):
        arr[i, : len(s)] = s
    count = np.sum(np.isfinite(arr), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanstd(ddof=1) of a single run; replaced by 0 below
        mean = np.nanmean(arr, axis=0)
        std = np.where(count > 1, np.nanstd(arr, axis=0, ddof=1), 0.0)
    return mean, std, count


def _first_epoch_layers(runs: list[dict], prefix: str) -> dict[str, dict[str, float]]:
    """Per variant, the mean over seeds of a per-layer diagnostic at epoch 1."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for key, series in r["history"].items():
            if key.startswith(prefix) and series:
                acc[_variant(r)][key[len(prefix) :]].append(series[0][1])
    return {
        v: {layer: float(np.mean(layers[layer])) for layer in sorted(layers, key=_natural)} for v, layers in acc.items()
    }


def _natural(name: str) -> tuple:
    """Sort key putting layer "11" after "9" (runs.json keys come sorted as strings)."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _differ(values: list[float], rel: float = 0.05) -> bool:
    """True when the variants' values spread by more than `rel` of the largest (noise in timings aside)."""
    if len(values) < 2:
        return False
    top = max(abs(v) for v in values)
    return top > 0 and (max(values) - min(values)) > rel * top


def _cost_plots(study: str, analysis: dict[str, Any], figures: Path) -> list[Path]:
    metric = analysis["metric"]
    made = []
    for key, label in COSTS:
        points = [
            {"label": v, "x": r[key]["mean"], "xerr": r[key]["std"], "y": r[metric]["mean"], "yerr": r[metric]["std"]}
            for v, r in analysis["variants"].items()
            if "mean" in r.get(key, {}) and "mean" in r.get(metric, {})
        ]
        xs = [p["x"] for p in points]
        if not _differ(xs):
            continue
        made.append(
            plots.scatter_xy(
                points,
                figures / f"{metric}_vs_{key}.png",
                label,
                metric,
                f"{study}: {metric} vs {label}",
                logx=min(xs) > 0 and max(xs) / min(xs) > 10,
            )
        )
    return made


# --------------------------------------------------------------------------- MLflow (optional)


def store_problem(uri: str | None) -> str | None:
    """Why the MLflow store at `uri` cannot be used, or None when it looks reachable.

    Never creates a store: MLflow would silently make an empty SQLite file at a wrong path.
    """
    if not uri:
        return "sweep.json names no tracking_uri"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        return None if path.is_file() else f"no MLflow database at {path}"
    if uri.startswith("file:"):
        from urllib.parse import urlparse

        path = Path(urlparse(uri).path)
        return None if path.is_dir() else f"no MLflow file store at {path}"
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=3).raise_for_status()
        except requests.RequestException as e:
            return f"MLflow server {uri} unreachable ({type(e).__name__})"
    return None


def log_report(sweep: dict[str, Any], out: Path, summary: str) -> bool:
    """Log the figures and summary to the sweep's parent run; the summary becomes its description."""
    from pipeline import tracking

    uri, parent = sweep.get("tracking_uri"), sweep.get("parent_run_id")
    problem = store_problem(uri) or (None if parent else "sweep.json names no parent_run_id")
    if problem:
        log.warning("report not logged to MLflow: %s", problem)
        return False
    try:
        c = tracking.client(uri)
        c.get_run(parent)
        if (out / "figures").is_dir():
            c.log_artifacts(parent, str(out / "figures"), artifact_path="report/figures")
        c.log_artifact(parent, str(out / "summary.md"), artifact_path="report")
        # shown as the run's description in the MLflow UI (tag values are capped at a few thousand chars)
        c.set_tag(parent, "mlflow.note.content", summary[:4900])
    except Exception as e:  # the files are the report; the store is a convenience
        log.warning("report not logged to MLflow: %s: %s", type(e).__name__, e)
        return False
    return True


def best_run(runs: list[dict[str, Any]], analysis: dict[str, Any]) -> dict[str, Any] | None:
    """The best variant's best seed (by the study metric)."""
    if not analysis["ranking"]:
        return None
    best_variant = analysis["ranking"][0]["variant"]
    metric, sign = analysis["metric"], (1 if analysis["mode"] == "max" else -1)
    candidates = [
        (sign * v, r)
        for r in runs
        if _variant(r) == best_variant and _is_ok(r) and (v := _final(r, metric)) is not None and math.isfinite(v)
    ]
    return max(candidates, key=lambda t: t[0])[1] if candidates else None


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    """MLflow's flattened string params back into nested values (lists and numbers parsed)."""
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


def trial_model_config(client, run: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The run's resolved config: its config.yaml artifact, else its logged params."""
    import yaml

    try:
        return yaml.safe_load(Path(client.download_artifacts(run["run_id"], "config.yaml", str(workdir))).read_text())
    except Exception:
        return _unflatten(run["params"])


@contextlib.contextmanager
def _quiet_downloads():
    """No tqdm bars from artifact downloads in the stage's log."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def confusion(
    runs: list[dict[str, Any]], analysis: dict[str, Any], sweep: dict[str, Any], data_dir: Path | None
) -> dict[str, Any]:
    """Re-evaluate the best run's best_model.pt on the prepared test split: the confusion matrix.

    Returns {"skipped": reason} when it does not apply or cannot be done.
    """
    if data_dir is None:
        return {"skipped": "no prepared data folder given"}
    run = best_run(runs, analysis)
    if run is None:
        return {"skipped": "no finished run"}
    uri = sweep.get("tracking_uri")
    problem = store_problem(uri)
    if problem:
        return {"skipped": problem}

    import torch

    from pipeline import tracking
    from pipeline.config import Component, ModelSpec
    from pipeline.data import load_prepared
    from pipeline.models import MODELS, build_model

    c = tracking.client(uri)
    try:
        with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
            cfg = trial_model_config(c, run, Path(tmp))
            model_spec = ModelSpec.model_validate(cfg["model"])
            dataset = Component.model_validate(cfg["dataset"])
            data = load_prepared(data_dir, dataset.name, dataset.options)
            kind = MODELS.get(model_spec.name).meta.get("task") or data.info.task
            if kind not in ("classification", "binary") or (kind == "classification" and data.y_test.ndim != 1):
                return {"skipped": f"task {kind!r} is not single-label classification"}
            state = torch.load(
                c.download_artifacts(run["run_id"], "best_model.pt", tmp), map_location="cpu", weights_only=True
            )
        model = build_model(model_spec.name, model_spec.options, data.info)
        model.load_state_dict(state)
    except Exception as e:  # a report without the matrix beats no report
        reason = f"run {run['run_id']}: cannot rebuild its model ({type(e).__name__}: {str(e)[:200]})"
        log.warning("no confusion matrix: %s", reason)
        return {"skipped": reason}
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(data.x_test), 1024):
            out = model(data.x_test[i : i + 1024])
            preds.append((out.view(-1) > 0).long() if kind == "binary" else out.argmax(dim=-1))
    pred = torch.cat(preds).numpy()
    true = data.y_test.view(-1).long().numpy() if kind == "binary" else data.y_test.numpy()
    k = 2 if kind == "binary" else max(int(data.info.num_classes), int(true.max()) + 1, int(pred.max()) + 1)
    matrix = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    classes = data.meta.get("classes") or []
    labels = [str(x) for x in classes] if len(classes) == k else [str(i) for i in range(k)]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    top = np.unravel_index(int(off.argmax()), off.shape) if off.any() else None
    return {
        "run_id": run["run_id"],
        "variant": _variant(run),
        "seed": int(run["tags"].get("seed", 0)),
        "dataset": dataset.name,
        "n": int(matrix.sum()),
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "labels": labels,
        "matrix": matrix.tolist(),
        "top_error": [labels[top[0]], labels[top[1]], int(off[top])] if top else None,
    }


# --------------------------------------------------------------------------- the report


def build_report(
    results_dir: str | Path,
    out_dir: str | Path,
    question: str,
    metric: str,
    mode: str,
    target: dict | None = None,
    extras: list[str] = (),
    data_dir: str | Path | None = None,
    test: Test = "welch",
    log_to_mlflow: bool = True,
) -> dict[str, Any]:
    """Write the report folder (see the module docstring); returns {"analysis", "figures"}."""
    results_dir, out = Path(results_dir), Path(out_dir)
    runs = json.loads((results_dir / "runs.json").read_text())
    sweep = json.loads((results_dir / "sweep.json").read_text())
    study = sweep["study"]
    analysis = analyze(runs, metric, mode, target, test=test)
    analysis.update(
        {
            "study": study,
            "question": question,
            **{k: sweep.get(k) for k in ("profile", "seeds", "experiment_id", "parent_run_id", "tracking_uri")},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for stale in figures.glob("*.png"):  # a figure that no longer applies must not linger
        stale.unlink()
    tables = out / "tables"  # extras' long tables (Markdown); a DVC output, so it exists even when empty
    if tables.exists():
        shutil.rmtree(tables)
    tables.mkdir()
    made: list[Path] = []
    if extras:
        from pipeline.extras import ExtraContext, get_extra

        ctx = ExtraContext(study, runs, sweep, analysis, out, Path(data_dir) if data_dir else None)
        analysis["extras"] = {}
        for name in extras:
            res = get_extra(name)(ctx)
            analysis["answer"] = " ".join([analysis["answer"], *res.sentences])
            analysis["extras"][name] = res.tables
            made += res.figures

    curves_dir = out / "curves"
    curves_dir.mkdir(exist_ok=True)
    for stale in curves_dir.glob("*.csv"):
        stale.unlink()
    for variant, series in _curves(runs, metric).items():
        mean, std, count = _per_epoch(series)
        with (curves_dir / f"{_safe(variant)}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "mean", "std", "n"])
            for i in range(len(mean)):
                w.writerow([i + 1, f"{mean[i]:.6g}", f"{std[i]:.6g}", int(count[i])])

    for key in dict.fromkeys([metric, "val_loss", "train_loss"]):
        c = _curves(runs, key)
        if c:
            made.append(plots.curves_with_band(c, figures / f"curve_{key}.png", key, f"{study}: {key} per epoch"))
    rows = [
        {"variant": v, "rank": r.get("rank"), **r[metric]}
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
    made += _cost_plots(study, analysis, figures)

    conf = confusion(runs, analysis, sweep, Path(data_dir) if data_dir else None)
    analysis["confusion"] = conf
    if "matrix" in conf:
        made.append(
            plots.confusion(
                np.array(conf["matrix"]),
                figures / "confusion_best.png",
                f"{study}: {conf['variant']} seed {conf['seed']}, test accuracy {conf['accuracy']:.3f}",
                labels=conf["labels"],
            )
        )
    else:
        log.info("no confusion matrix: %s", conf["skipped"])

    analysis["figures"] = [p.relative_to(out).as_posix() for p in made if Path(p).is_relative_to(out)]
    summary = summary_markdown(study, question, analysis, sweep)
    (out / "metrics.json").write_text(json.dumps(metrics_file(analysis), indent=2, sort_keys=True) + "\n")
    (out / "analysis.json").write_text(json.dumps(analysis, indent=2, sort_keys=True) + "\n")
    (out / "summary.md").write_text(summary)
    if log_to_mlflow:
        analysis["logged_to_mlflow"] = log_report(sweep, out, summary)
    return {"analysis": analysis, "figures": [str(p) for p in made]}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in name)
