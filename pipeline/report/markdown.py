"""The report as text: number formatting, the comparison table, the claims and checks tables and `summary.md`.

The table rows are shared by summary.md, the index page (`pipeline.html`) and `pipeline show`. This module
imports nothing of the project, so the index page does not load the statistics to print a table.
"""

from __future__ import annotations

import math
from typing import Any

# Columns of the table besides the headline metric (every summarized metric stays in analysis.json).
TABLE_METRICS = ("n_params", "samples_per_s")
VERDICTS = ("confirmed", "contradicted", "inconclusive")


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
    """The headline metric, then the TABLE_METRICS some variant has."""
    metric = analysis["metric"]
    return [metric] + [k for k in TABLE_METRICS if k != metric and any(k in r for r in analysis["variants"].values())]


def checks_cell(row: dict[str, Any]) -> str:
    """The validity checks of a variant in a few words: "ok", "not converged", "at chance", ..."""
    v = row.get("validity") or {}
    flags = []
    if (v.get("not_converged") or {}).get("flagged"):
        flags.append("not converged")
    if (v.get("at_chance") or {}).get("flagged") is True:
        flags.append("at chance")
    if (v.get("at_ceiling") or {}).get("flagged"):
        flags.append("at ceiling")
    if row.get("diverged"):
        flags.append(f"diverged {row['diverged']}/{row['runs']}")
    return ", ".join(flags) or ("ok" if v else "–")


def p_column(analysis: dict[str, Any]) -> str:
    comp = analysis.get("comparisons") or {}
    return "p vs baseline" if comp.get("design") == "vs_baseline" else "p vs 1st"


def target_cell(analysis: dict[str, Any], variant: str) -> str:
    t = ((analysis.get("time_to_target") or {}).get("variants") or {}).get(variant)
    if not t:
        return "–"
    med = f", median {t['median_epochs']:g}" if t.get("median_epochs") is not None else ""
    return f"{t['n_reached']}/{t['n']}{med}"


def table_rows(analysis: dict[str, Any]) -> list[dict[str, str]]:
    """The comparison table as strings, best first: what summary.md, the index page and the CLI print."""
    cols = table_columns(analysis)
    pcol = p_column(analysis)
    target = bool((analysis.get("time_to_target") or {}).get("variants"))
    out = []
    for variant, row in sorted(analysis["variants"].items(), key=lambda kv: kv[1].get("rank", 1e9)):
        p = row.get("p_vs_anchor")
        ptxt = "–" if p is None else (f"{p:.3g}" + (" *" if row.get("significant_vs_anchor") else ""))
        cells = {
            "rank": str(row.get("rank", "–")),
            "variant": variant,
            "n": f"{row['finished']}/{row['runs']}",
            cols[0]: format_stat(row.get(cols[0])),
            pcol: ptxt,
            "checks": checks_cell(row),
        }
        if target:
            cells["reached target"] = target_cell(analysis, variant)
        cells.update({c: format_stat(row.get(c)) for c in cols[1:]})
        out.append(cells)
    return out


def claim_rows(analysis: dict[str, Any], which: str = "claims") -> list[dict[str, str]]:
    """The study's inferential claims (`which="claims"`) or arithmetic checks (`"checks"`) with their verdicts, in
    the spec's order."""
    return [
        {
            "claim": str(c["claim"]),
            "verdict": str(c["verdict"]),
            "reason": str(c["reason"]),
            "settled": str(c.get("settled") or ""),
        }
        for c in analysis.get(which) or []
    ]


def verdict_counts(rows: list[dict[str, str]]) -> str:
    """'2 confirmed, 0 contradicted, 1 inconclusive'."""
    return ", ".join(f"{sum(r['verdict'] == v for r in rows)} {v}" for v in VERDICTS)


def claims_markdown(analysis: dict[str, Any]) -> list[str]:
    """The claims table (inferential, counted) and, apart, the arithmetic checks."""
    lines: list[str] = []
    claims, checks = claim_rows(analysis), claim_rows(analysis, "checks")
    family = analysis.get("family") or {}
    if claims:
        lines += [
            f"**Claims** (the study's expectations, each tested in the study's one family of {family.get('size', 0)} "
            f"Holm-adjusted tests: {verdict_counts(claims)}):",
            "",
            "| claim | verdict | seeds | reason |",
            "|---|---|---|---|",
            *(
                f"| {_cell(c['claim'])} | **{c['verdict']}** | {_cell(c['settled'])} | {_cell(c['reason'])} |"
                for c in claims
            ),
            "",
        ]
    if checks:
        held = sum(c["verdict"] == "confirmed" for c in checks)
        lines += [
            f"**Checks** (arithmetic identities of the built models, not inference: {held} of {len(checks)} hold):",
            "",
            "| check | verdict | arithmetic |",
            "|---|---|---|",
            *(f"| {_cell(c['claim'])} | **{c['verdict']}** | {_cell(c['reason'])} |" for c in checks),
            "",
        ]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def how_measured(analysis: dict[str, Any]) -> str:
    """One line under the table: what the numbers are and how they were tested."""
    comp = analysis.get("comparisons") or {}
    against = "the baseline" if comp.get("design") == "vs_baseline" else "the first-ranked variant"
    alpha = f"alpha {analysis.get('alpha', 0.05):g}"
    if comp.get("looks", 1) > 1:  # sequential looks: each test at the level of the look that decided it
        alpha = f"the level of the look that tested it ({alpha} spent over the looks)"
    return (
        "Values are mean ± std over seeds [95% interval of the mean, kept inside the metric's range]; "
        f"p: {comp.get('method') or 'no test'}, shown against {against}; `*` significant at {alpha}. Checks: "
        "convergence of the validation curve, chance level, ceiling, diverged runs. Per-seed values and every pair "
        "are in `analysis.json`."
    )


def summary_markdown(study: str, question: str, analysis: dict[str, Any], sweep: dict[str, Any]) -> str:
    """`summary.md`: the question, the generated answer (the claims' verdicts, the headline, the detail), the claims
    and checks tables, the table, and one run's confusion matrix."""
    metric = analysis["metric"]
    rows = table_rows(analysis)
    header = list(rows[0]) if rows else ["rank", "variant"]
    lines = [
        f"# {study}",
        "",
        f"**Question.** {question}",
        "",
        "**Answer (generated from the runs).**",
        "",
        analysis["answer"],
        "",
    ]
    lines += claims_markdown(analysis)
    study_metric = analysis.get("study_metric", metric)
    lines += [
        f"Profile `{sweep.get('profile')}`, seeds {sweep.get('seeds')}; headline metric `{metric}` "
        f"({analysis['mode']}) of each run's best-validation checkpoint (selected by `{study_metric}`); "
        f"MLflow experiment `{sweep.get('experiment_id')}`, parent run `{sweep.get('parent_run_id')}`.",
        "",
        how_measured(analysis),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(x) for x in r.values()) + " |" for r in rows),
        "",
    ]
    conf = analysis.get("confusion") or {}
    if "accuracy" in conf:
        lines += [
            f"Confusion matrix of one run ({conf['variant']}, the variant with the highest mean; its seed "
            f"{conf['seed']} with the highest validation score, run `{conf['run_id']}`) "
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
