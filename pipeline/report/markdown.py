"""The report as text: number formatting, the comparison table, and `summary.md`.

The table rows are shared by summary.md, the index page (`pipeline.html`) and `pipeline show`.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.report.analysis import ALPHA

# Columns of the table besides the study metric (every summarized metric stays in analysis.json).
TABLE_METRICS = ("test_accuracy", "epochs_to_target", "n_params", "samples_per_s")
TEST_NAMES = {"welch": "Welch's t-test", "permutation": "a two-sided permutation test of the means"}


def format_number(x: float, digits: int = 4) -> str:
    """`digits` significant digits; big numbers with thousands separators instead of an exponent."""
    if 10**digits <= abs(x) < 1e12:
        return f"{round(x, digits - 1 - math.floor(math.log10(abs(x)))):,.0f}"
    return f"{x:.{digits}g}"


def format_stat(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """A summarized metric as `mean ± std [ci_low, ci_high]`, or "–" when there is none."""
    if not stat or "mean" not in stat:
        return "–"
    if stat["std"] == 0:  # identical over seeds (a parameter count) or a single seed
        return format_number(stat["mean"], digits) + (" (n=1)" if stat.get("n") == 1 else "")
    s = f"{format_number(stat['mean'], digits)} ± {format_number(stat['std'], 2)}"
    if stat.get("ci_low") is not None:
        s += f" [{format_number(stat['ci_low'], digits)}, {format_number(stat['ci_high'], digits)}]"
    return s


def table_columns(analysis: dict[str, Any]) -> list[str]:
    """The study metric, then the TABLE_METRICS some variant has."""
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
                **{c: format_stat(row.get(c)) for c in cols},
                "p vs best": ptxt,
                "diverged": str(row["diverged"]),
            }
        )
    return out


def summary_markdown(study: str, question: str, analysis: dict[str, Any], sweep: dict[str, Any]) -> str:
    """`summary.md`: the question, the generated answer, the table, and the best run's confusion matrix."""
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
    return "\n".join(lines)
