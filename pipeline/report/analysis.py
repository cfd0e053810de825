"""The numbers of a report and the answer they support.

One definition everywhere: each run's checkpoint is its best validation epoch (by the study metric), and the
headline metric is that checkpoint's test metric (`test_X` for a study metric `val_X`, when the runs logged it).
The ranking, the table, the bar chart, the sections and the claims all read the headline metric; only the
learning curves are per-epoch validation values.

The statistics are `pipeline.honest_stats` (docs/statistics.md): per-variant intervals that stay inside the
metric's range (`pipeline.sections.common.stat`, the summary every section uses too), validity checks (not
converged, at chance, at ceiling, diverged) and censored epochs to target. The headline comparisons (every variant
against the declared baseline, else all pairs) are fixed here and tested in the study's one family
(`pipeline.report.gate`) together with the claims, once the sections have run.

`analyze` turns the exported runs into `analysis.json`'s core; `fill_comparisons` puts the closed family's results
for the headline pairs in it; `answer_parts` writes the answer from them: the claims' verdicts, the headline, the
detail. Its verb follows the family: "X is better than Y" only when that pair's test is significant after Holm and
both variants' runs are valid. `metrics_file` picks the few flat numbers that `dvc metrics show/diff` and
`dvc exp show` compare across revisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline.plots import metric_bounds
from pipeline.report.chance import Chance
from pipeline.report.gate import Family, View
from pipeline.report.markdown import VERDICTS, format_number
from pipeline.runs import Run
from pipeline.sections import common
from pipeline.text import fmt_p, join

ALPHA = 0.05
# Per-run numbers summarized per variant when present (final values; train_seconds is derived).
EXTRA_METRICS = (
    "test_accuracy",
    "test_loss",
    "val_loss",
    "train_loss",
    "n_params",
    "flops_per_sample",
    "samples_per_s",
    "epoch_seconds",
    "train_seconds",
)
MAX_WORDS = ("accuracy", "f1", "samples_per_s", "elbo", "throughput")
MIN_WORDS = ("loss", "perplexity", "fd", "error", "seconds", "bce", "mse", "epochs_to_target")

# chance(runs of one variant, metric) -> Chance; pipeline.report.chance.ChanceLevels is one.
ChanceFn = Callable[[list[Run], str], Chance]


# --------------------------------------------------------------------------- which number, in which direction


def headline_metric(runs: Sequence[Run], study_metric: str) -> tuple[str, str]:
    """(the metric claims and the headline are made on, where it comes from: "test" | "checkpoint" | "last_epoch").

    For a study metric `val_X`: `test_X` when the runs logged it (the best-validation checkpoint on the test split);
    else `best_val_X` (the checkpoint's own validation value); else the study metric's last-epoch value."""
    ok = rn.ok_runs(runs)

    def logged(key: str) -> bool:
        return any(rn.finite_final(r, key) is not None for r in ok)

    if study_metric.startswith("val_") and logged("test_" + study_metric[4:]):
        return "test_" + study_metric[4:], "test"
    if logged("best_" + study_metric):
        return "best_" + study_metric, "checkpoint"
    return study_metric, "last_epoch"


def describe_headline(metric: str, source: str, study_metric: str) -> str:
    """What the headline number is, in words, for the answer."""
    if source == "test":
        best = f"its epoch with the best {study_metric}"
        return f"{metric}, the test score of each run's best-validation checkpoint ({best})"
    if source == "checkpoint":
        return (
            f"{metric}, the {study_metric} of each run's best-validation checkpoint (chosen on the same split, so "
            "optimistic; the runs logged no test metric)"
        )
    return f"{metric} at each run's last epoch (the runs logged neither a test metric nor their checkpoint's value)"


def metric_direction(name: str) -> str | None:
    """ "max" or "min" when a metric's name says which way is better (accuracy up, loss down), else None."""
    n = name.lower()
    if any(w in n for w in MIN_WORDS):
        return "min"
    if any(w in n for w in MAX_WORDS):
        return "max"
    return None


# --------------------------------------------------------------------------- one variant's numbers


def seed_curves(runs: Sequence[Run], key: str) -> np.ndarray | None:
    """(seeds, epochs) of a per-epoch metric over the runs that ran the most epochs (an early-stopped run is
    shorter and says nothing about the end of training), finite values only; None when there is no curve."""
    series = []
    for r in runs:
        epochs = {int(s) for s, _ in r["history"].get("epoch", [])}
        s = [v for step, v in r["history"].get(key, []) if int(step) in epochs]
        if s and all(math.isfinite(v) for v in s):
            series.append(s)
    if not series:
        return None
    n = max(map(len, series))
    return np.array([s for s in series if len(s) == n], dtype=float)


def chance_noise(stat: dict[str, Any], chance: Chance, metric: str) -> float:
    """How far above chance a mean must be to count as above it: twice the seed std, and at least twice the
    binomial standard error of an accuracy at chance on this many examples (else 1% of the chance level)."""
    noise = 2 * stat["std"]
    level = float(chance.level or 0.0)
    if metric_bounds(metric) == (0.0, 1.0) and chance.n_examples:
        return max(noise, 2 * math.sqrt(level * (1 - level) / chance.n_examples))
    return max(noise, 0.01 * abs(level))


def check_variant(
    vruns: list[Run], stat: dict[str, Any] | None, metric: str, study_metric: str, mode: str, chance: Chance | None
) -> dict[str, Any]:
    """The validity checks of one variant: not converged, diverged, at chance, at ceiling; and `valid`."""
    ok = rn.ok_runs(vruns)
    curves = seed_curves(ok, study_metric)
    if curves is None:
        nc = hs.Check(False, f"cannot judge convergence: no per-epoch {study_metric}")
    else:
        nc = hs.not_converged(curves, mode)  # type: ignore[arg-type]
    n_div = sum(r["tags"].get("outcome") == "diverged" for r in vruns)
    dv = hs.diverged(n_div / len(vruns) if vruns else 0.0)
    out: dict[str, Any] = {"not_converged": nc.as_dict(), "diverged": dv.as_dict()}
    if chance is None or chance.level is None:
        out["at_chance"] = {"flagged": None, "reason": (chance.reason if chance else "") or "chance level unknown"}
    elif stat is not None:
        c = hs.at_chance(stat["mean"], chance.level, chance_noise(stat, chance, metric), mode=mode)  # type: ignore[arg-type]
        out["at_chance"] = {**c.as_dict(), "chance": chance.level, "what": chance.what}
    bounds = metric_bounds(metric)
    best = (bounds[1] if mode == "max" else bounds[0]) if bounds is not None else None
    if stat is not None and best is not None:
        tol = 0.5 / chance.n_examples if chance is not None and chance.n_examples else 0.0
        out["at_ceiling"] = hs.at_ceiling(stat["values"], best, tol=tol).as_dict()
    out["valid"] = stat is not None and not (
        nc.flagged or dv.flagged or out.get("at_chance", {}).get("flagged") is True
    )
    return out


PROBLEMS = (  # (check, said of one variant, said of several)
    ("not_converged", "has not converged", "have not converged"),
    ("at_chance", "is at chance", "are at chance"),
    ("diverged", "had diverged runs", "had diverged runs"),
)


def invalid_because(checks: dict[str, dict[str, Any]]) -> list[str]:
    """Why these variants' runs cannot support a finding, as clauses ("relu and tanh have not converged"), from
    each variant's validity checks."""
    out = []
    for key, one, several in PROBLEMS:
        names = [v for v, c in checks.items() if (c.get(key) or {}).get("flagged") is True]
        if names:
            out.append(f"{join(names)} {one if len(names) == 1 else several}")
    return out


# --------------------------------------------------------------------------- text helpers


def fmt(x: float | None) -> str:
    return "–" if x is None else format_number(x, 4)


def fmt_ci(stat: dict[str, Any]) -> str:
    """`0.9712 [0.9672, 0.9752]`, or what stands in for an interval when there is none."""
    if stat.get("ci_low") is None:
        return f"{fmt(stat['mean'])}, one seed"
    if not stat.get("spread_known", True):
        return f"{fmt(stat['mean'])}, seeds identical"
    return f"{fmt(stat['mean'])} [{fmt(stat['ci_low'])}, {fmt(stat['ci_high'])}]"


def detectable_text(det: float, bounds: Sequence[float | None] | None) -> str:
    """What a non-significant test could have found: the smallest detectable difference, or, when that exceeds
    the metric's whole range (2 seeds under a large Holm family), that no possible difference was detectable."""
    if bounds is not None and None not in bounds and det >= bounds[1] - bounds[0]:  # type: ignore[operator]
        return "no difference within the metric's range could have been detected"
    return f"a difference below {fmt(det)} could not have been detected"


def needed_text(n: int | None, difference: float) -> str:
    """What it would take to tell the two apart: seeds per variant for the observed difference (power 0.8)."""
    size = fmt(abs(difference))
    if n is None:
        return f"telling apart a difference of {size} would take more than 64 seeds per variant at this seed spread"
    return f"telling apart a difference of {size} would take about {n} seeds per variant (power 0.8, this seed spread)"


def named_p(name: str, pair: dict[str, Any]) -> str:
    """`relu (p=0.003)`: a variant with the Holm-adjusted p of its test."""
    return f"{name} ({fmt_p(pair['p_value'])})"


def seeds_text(ns: Sequence[int]) -> str:
    lo, hi = min(ns), max(ns)
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}-{hi} seeds"


# --------------------------------------------------------------------------- comparisons


def design(variants: list[str], baseline: str | None) -> tuple[str, str | None, list[tuple[str, str]], str]:
    """(design, baseline, pairs, note): every variant against the declared baseline, else all pairs (in rank order,
    so an all-pairs pair (a, b) has a ranked above b). The family is fixed here, before any test is read."""
    if len(variants) < 2:
        return "none", None, [], ""
    if baseline is not None and baseline in variants:
        return "vs_baseline", baseline, [(v, baseline) for v in variants if v != baseline], ""
    note = (
        f"The declared baseline {baseline} has no finished run, so all pairs are compared instead." if baseline else ""
    )
    return "all_pairs", None, list(combinations(variants, 2)), note


def add_headline(family: Family, analysis: dict[str, Any]) -> None:
    """Put the headline comparisons into the study's family (two-sided unless a claim orients the pair)."""
    metric = analysis["metric"]
    for a, b in analysis["comparisons"]["planned"]:
        va, vb = (analysis["variants"][v][metric]["values"] for v in (a, b))
        family.difference(metric, a, b, va, vb, "headline")


def pair_record(view: View, stats: dict[str, dict[str, Any]], family: Family, shown: bool) -> dict[str, Any]:
    """A headline pair as analysis.json keeps it: the family's one result, with the smallest detectable difference
    (and the seeds that would tell the two apart) when it is not significant and the text names it."""
    m = view.member
    rec: dict[str, Any] = {
        "a": view.a,
        "b": view.b,
        "difference": view.difference,
        "p_value": view.p,
        "significant": view.side != 0,
        "method": view.method,
        "reason": m.main.reason,
    }
    if shown and not view.side:
        sa, sb = stats[view.a], stats[view.b]
        # the per-comparison level of Holm's first step; a one-sided test at a is a two-sided one at 2a
        level = min(m.alpha / family.size * (1 if m.alternative == "two-sided" else 2), 0.5)
        det = hs.detectable_difference(sa["std"], sb["std"], sa["n"], sb["n"], alpha=level)
        rec["detectable_difference"] = None if math.isnan(det) else det
        rec["underpowered"] = hs.underpowered(det, view.difference).as_dict()
        if not math.isnan(det):
            rec["seeds_needed"] = hs.seeds_needed(sa["std"], sb["std"], view.difference, alpha=level)
    return rec


def fill_comparisons(analysis: dict[str, Any], family: Family) -> None:
    """The headline pairs' results from the closed family: `comparisons.pairs`, the table's p column."""
    comp, table, metric = analysis["comparisons"], analysis["variants"], analysis["metric"]
    stats = {v: row[metric] for v, row in table.items() if "mean" in row[metric]}
    anchor = comp["anchor"]
    pairs = []
    for a, b in comp["planned"]:
        view = family.view(("difference", metric, *sorted((a, b))), a, b)
        pairs.append(pair_record(view, stats, family, shown=anchor in (a, b)))
    label = family.label
    if family.looks > 1:
        label += f", Holm at each of {family.looks} looks' share of alpha"
    comp.update(pairs=pairs, family_size=family.size, method=f"Welch t-tests, {label}" if pairs else "")
    if family.looks > 1:
        comp["looks"] = family.looks
    for rec in pairs:
        if anchor in (rec["a"], rec["b"]):
            other = rec["b"] if rec["a"] == anchor else rec["a"]
            table[other]["p_vs_anchor"] = rec["p_value"]
            table[other]["significant_vs_anchor"] = rec["significant"]


# --------------------------------------------------------------------------- epochs to target


def target_data(runs: Sequence[Run]) -> tuple[list[bool], list[float | None], float] | None:
    """(reached, epochs, max_epochs) of the finished runs that recorded the target, for `honest_stats`' censored
    functions: a run that never got there is censored where it stopped, not given a made-up number of epochs."""
    ok = [r for r in rn.ok_runs(runs) if "target_reached" in r["tags"]]
    if not ok:
        return None
    reached = [r["tags"]["target_reached"] == "true" for r in ok]
    ran = [len(rn.series(r, "epoch")) for r in ok]
    max_ep = float(max([rn.int_param(r, "train.epochs") or 0 for r in ok] + ran) or 1)
    epochs: list[float | None] = []
    for i, (r, n) in enumerate(zip(ok, ran)):
        at = rn.final(r, "epochs_to_target") if reached[i] else None
        reached[i] = at is not None  # a "reached" tag without its epoch cannot be placed: counted as not reached
        epochs.append(min(float(at), max_ep) if at is not None else (min(float(n), max_ep) if n else None))
    return reached, epochs, max_ep


def target_analysis(by_v: dict[str, list[Run]], mode: str, target: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Fraction of runs reaching the target (exact interval) and Kaplan-Meier median epochs per variant, described;
    a pair is compared (censored, in the study's family) only where a claim names it."""
    goal = f"{target['metric']} {'≥' if mode == 'max' else '≤'} {target['value']:g}"
    per = {v: hs.time_to_target(*got).as_dict() for v, rs in by_v.items() if (got := target_data(rs)) is not None}
    out: dict[str, Any] = {"goal": goal, "variants": per}
    if not per:
        return out, []
    if not any(t["n_reached"] for t in per.values()):
        return out, [f"No run reached {goal} within its epochs."]
    parts = []
    for v, t in per.items():
        med = f"median {t['median_epochs']:g} epochs" if t["median_epochs"] is not None else "median not reached"
        parts.append(f"{v} {t['n_reached']}/{t['n']} runs ({med})")
    return out, [
        f"Reaching {goal} (validation, per epoch; Kaplan-Meier medians, runs that never got there censored): "
        f"{join(parts)}. Epochs to target are tested only for the pairs a claim names (Claims)."
    ]


# --------------------------------------------------------------------------- the whole analysis


def analyze(
    runs: list[Run],
    metric: str,
    mode: str,
    target: dict[str, Any] | None = None,
    *,
    baseline: str | None = None,
    chance: ChanceFn | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Per-variant statistics and checks, the ranking, the comparisons and the generated answer.

    `metric` and `mode` are the study's (its checkpoint selection); the headline metric is derived from them
    (`headline_metric`). `chance` gives the chance level of a variant's runs (None: unknown)."""
    head, source = headline_metric(runs, metric)
    by_v = rn.by_variant(runs)
    order = rn.variant_order(runs)
    table: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, Any]] = {}
    chances: dict[str, Chance] = {}
    for v in order:
        vruns = [r for r in runs if rn.variant(r) == v]  # runs.json's own order: per-seed lists keep it
        ok = rn.ok_runs(vruns)
        ch = chance(ok or vruns, head) if chance is not None else None
        if ch is not None:
            chances[v] = ch
        n_ex = ch.n_examples if ch is not None else None
        values = [x for r in ok if (x := rn.finite_final(r, head)) is not None]
        row: dict[str, Any] = {
            "runs": len(vruns),
            "finished": len(ok),
            "diverged": sum(r["tags"].get("outcome") == "diverged" for r in vruns),
            "failed": sum(r["status"] in ("FAILED", "KILLED") for r in vruns),
            "early_stopped": sum(r["tags"].get("end_reason") == "early_stopped" for r in vruns),
            "seeds": sorted(rn.seed(r) for r in ok),
            # every run, failed ones included, so the index can link each of them
            "run_ids": [{"seed": rn.seed(r), "run_id": r["run_id"], "status": r["status"]} for r in vruns],
        }
        if values:
            n_acc = n_ex if metric_bounds(head) == (0.0, 1.0) else None
            stats[v] = row[head] = common.stat(values, head, n_examples=n_acc)
        else:
            row[head] = {"values": []}
        for key in EXTRA_METRICS:
            vals = [x for r in ok if (x := rn.finite_final(r, key)) is not None]
            if vals and key != head:
                row[key] = common.stat(vals, key)
        row["validity"] = check_variant(vruns, stats.get(v), head, metric, mode, ch)
        row["valid"] = row["validity"].pop("valid")
        table[v] = row

    sign = 1 if mode == "max" else -1
    ranked = sorted(stats, key=lambda v: (-sign * stats[v]["mean"], v))
    for i, v in enumerate(ranked, start=1):
        table[v]["rank"] = i
    kind, base, planned, note = design(ranked, baseline)
    analysis: dict[str, Any] = {
        "metric": head,
        "metric_source": source,
        "study_metric": metric,
        "mode": mode,
        "checkpoint": f"best validation epoch by {metric}",
        "bounds": list(b) if (b := metric_bounds(head)) is not None else None,
        "alpha": alpha,
        "test": "welch_holm",
        "comparisons": {
            "design": kind,
            "baseline": base,
            "anchor": base or (ranked[0] if ranked else None),
            "note": note,
            "planned": planned,
            "method": "",
            "family_size": 0,
            "pairs": [],
        },
        "variants": table,
        "ranking": [
            {"variant": v, "rank": table[v]["rank"], "mean": stats[v]["mean"], "n": stats[v]["n"]} for v in ranked
        ],
        "chance": {v: c.as_dict() for v, c in chances.items()},
        "headline": describe_headline(head, source, metric),
    }
    if target:
        analysis["time_to_target"], analysis["target_text"] = target_analysis(by_v, mode, target)
    return analysis


# --------------------------------------------------------------------------- the answer, once the family is closed


def answer_parts(analysis: dict[str, Any], detail: Sequence[str] = ()) -> dict[str, list[str]]:
    """The answer in its three parts: the claims' verdicts (one line each), the headline comparison, the detail
    (validity, time to target, runs lost, sizes, then `detail`: P(A > B) and the sections' sentences)."""
    table = analysis["variants"]
    rest = validity_sentences(analysis, [r["variant"] for r in analysis["ranking"]])
    rest += analysis.get("target_text") or []
    n_div = sum(row["diverged"] for row in table.values())
    if n_div:
        per = ", ".join(f"{v}: {row['diverged']}/{row['runs']}" for v, row in table.items() if row["diverged"])
        rest.append(f"{n_div} run(s) diverged (loss became NaN/inf) — {per}; the statistics leave them out.")
    n_failed = sum(row["failed"] for row in table.values())
    if n_failed:
        rest.append(f"{n_failed} run(s) failed and are left out.")
    sizes = {v: int(row["n_params"]["mean"]) for v, row in table.items() if "n_params" in row}
    if len(set(sizes.values())) > 1:
        rest.append("Parameter counts differ: " + ", ".join(f"{v} {n:,}" for v, n in sizes.items()) + ".")
    return {"claims": claim_lines(analysis), "headline": headline_sentences(analysis), "detail": rest + list(detail)}


def answer_text(parts: dict[str, list[str]]) -> str:
    """analysis.json's `answer`: the claims' lines, then the headline and the detail as paragraphs."""
    blocks = ["\n".join(parts["claims"]), " ".join(parts["headline"]), " ".join(parts["detail"])]
    return "\n\n".join(b for b in blocks if b)


def claim_lines(analysis: dict[str, Any]) -> list[str]:
    """One line per claim ("- confirmed: <claim> (<why, briefly>)"), then one for the arithmetic checks."""
    claims, checks = analysis.get("claims") or [], analysis.get("checks") or []
    out = []
    if claims:
        counts = ", ".join(f"{sum(c['verdict'] == v for c in claims)} {v}" for v in VERDICTS)
        out.append(f"Claims ({len(claims)}, tested in the study's family: {counts}):")
        out += [f"- {c['verdict']}: {c['claim']} ({c['brief']})" for c in claims]
    if checks:
        held = sum(c["verdict"] == "confirmed" for c in checks)
        out.append(f"Arithmetic checks, not inference: {held} of {len(checks)} hold.")
    return out


def lead_sentence(analysis: dict[str, Any], first: str, second: str) -> str:
    """The top two by mean: ranked only when the family's test of that pair is significant and both are valid."""
    stats = {v: analysis["variants"][v][analysis["metric"]] for v in (first, second)}
    both = f"{first} ({fmt_ci(stats[first])}) and {second} ({fmt_ci(stats[second])})"
    pair = next(
        (p for p in analysis["comparisons"]["pairs"] if {p["a"], p["b"]} == {first, second}),
        None,
    )
    if pair is None:
        return f"The two highest means are {both}; the design tests each variant against the baseline only."
    valid = not invalid_because({v: analysis["variants"][v]["validity"] for v in (first, second)})
    if pair["significant"] and valid and sign_of(analysis, pair, first) > 0:
        return (
            f"{first} ranks first ({fmt_ci(stats[first])}), ahead of {second} ({fmt_ci(stats[second])}; "
            f"{fmt_p(pair['p_value'])})."
        )
    return f"The two highest means are {both}; {pair_words(analysis, pair)}."


def sign_of(analysis: dict[str, Any], pair: dict[str, Any], who: str) -> int:
    """+1 when the pair's significant side favours `who` in the metric's better direction, -1 against, 0 none."""
    if not pair["significant"]:
        return 0
    d = pair["difference"] if pair["a"] == who else -pair["difference"]
    return 1 if d * (1 if analysis["mode"] == "max" else -1) > 0 else -1


def pair_words(analysis: dict[str, Any], pair: dict[str, Any]) -> str:
    """What the family's test of a pair says, for a sentence that names both."""
    if pair["significant"]:
        return f"they differ ({fmt_p(pair['p_value'])}, {pair['method']})"
    return f"the test cannot tell them apart ({fmt_p(pair['p_value'])}, {pair['method']})"


def headline_sentences(analysis: dict[str, Any]) -> list[str]:
    """What is measured and how, the top two, and what the family's tests of the anchor's pairs support."""
    table, comp = analysis["variants"], analysis["comparisons"]
    ranked = [r["variant"] for r in analysis["ranking"]]
    if not ranked:
        return ["No run finished, so nothing can be compared."]
    stats = {v: table[v][analysis["metric"]] for v in ranked}
    out = [
        f"Measured on {analysis['headline']}; {seeds_text([stats[v]['n'] for v in ranked])} per variant, 95% "
        "intervals of the mean over seeds."
    ]
    first = ranked[0]
    if len(ranked) == 1:
        return out + [f"{first} is the only variant with a finished run ({fmt_ci(stats[first])}); nothing to compare."]
    out.append(lead_sentence(analysis, first, ranked[1]) + (f" {comp['note']}" if comp["note"] else ""))
    out.append(
        f"Comparisons: {comp['method']} (alpha {analysis['alpha']:g}"
        f"{' spent over the looks' if comp.get('looks', 1) > 1 else ''}), one per pair wherever the report names it."
    )
    out += anchor_sentences(analysis, ranked)
    if comp["family_size"] > 1 and comp["design"] == "all_pairs":
        n_sig = sum(p["significant"] for p in comp["pairs"])
        out.append(f"{n_sig} of {len(comp['pairs'])} pairs differ significantly.")
    return out


def anchor_sentences(analysis: dict[str, Any], ranked: list[str]) -> list[str]:
    """The anchor's (the baseline's, else the first-ranked variant's) pairs: better / worse only where the family's
    test is significant and both variants' runs are valid, else "cannot be told apart" with what it would take."""
    table, comp = analysis["variants"], analysis["comparisons"]
    anchor = comp["anchor"]
    stats = {v: table[v][analysis["metric"]] for v in ranked}

    def other(p: dict[str, Any]) -> str:
        return p["b"] if p["a"] == anchor else p["a"]

    shown = sorted((p for p in comp["pairs"] if anchor in (p["a"], p["b"])), key=lambda p: ranked.index(other(p)))
    better, worse, invalid, untold = [], [], [], []
    for p in shown:
        why = invalid_because({v: table[v]["validity"] for v in dict.fromkeys([anchor, other(p)])})
        if not p["significant"]:
            untold.append(p)
        elif why:
            invalid.append((p, why))
        else:
            (better if sign_of(analysis, p, anchor) > 0 else worse).append(p)
    out = []
    if better:
        out.append(f"{anchor} is better than {join([named_p(other(p), p) for p in better])}.")
    if worse:
        out.append(f"{anchor} is worse than {join([named_p(other(p), p) for p in worse])}.")
    for p, why in invalid:
        verb = "scores above" if sign_of(analysis, p, anchor) > 0 else "scores below"
        out.append(
            f"{anchor} {verb} {other(p)} ({fmt_p(p['p_value'])}), but {join(why)}, so that is no finding about "
            "trained models."
        )
    if untold:
        out.append(untold_sentence(analysis, anchor, other, untold, stats))
    return out


def untold_sentence(
    analysis: dict[str, Any],
    anchor: str,
    other: Callable[[dict[str, Any]], str],
    untold: list[dict[str, Any]],
    stats: dict[str, dict[str, Any]],
) -> str:
    """The anchor and the variants its tests cannot tell apart: the first with what it would take, then the rest."""
    p0 = untold[0]
    n0 = min(stats[anchor]["n"], stats[other(p0)]["n"])
    det = p0.get("detectable_difference")
    detail = f"difference {fmt(abs(p0['difference']))}, {p0['method']}, {fmt_p(p0['p_value'])}"
    if p0.get("reason"):
        detail += f"; {p0['reason']}"
    elif det is not None:
        detail += "; " + detectable_text(det, analysis["bounds"])
        detail += "; " + needed_text(p0.get("seeds_needed"), p0["difference"])
    text = f"{anchor} and {other(p0)} cannot be told apart with {n0} seed{'s' if n0 != 1 else ''} ({detail})"
    why = invalid_because({v: analysis["variants"][v]["validity"] for v in dict.fromkeys([anchor, other(p0)])})
    if why:
        text += f"; besides, {join(why)}"
    rest = untold[1:]
    if rest:
        lowest = min(p["p_value"] for p in rest)
        text += f"; nor can {anchor} be told apart from {', '.join(other(p) for p in rest)} (p ≥ {lowest:.2g})"
    return text + "."


def chance_sentence(analysis: dict[str, Any]) -> str:
    """The chance level(s) the checks used, or why there is none."""
    known = {v: c for v, c in analysis["chance"].items() if c["level"] is not None}
    if not analysis["chance"]:
        return "Chance level unknown (no prepared data given)."
    if not known:
        reasons = sorted({c["reason"] for c in analysis["chance"].values()})
        text = "; ".join(reasons)
        return (text[0].upper() + text[1:] if text.startswith("chance level") else f"No chance level: {text}") + "."
    levels = {(round(c["level"], 12), c["what"]) for c in known.values()}
    if len(levels) == 1:
        ((level, what),) = levels
        return f"Chance level: {fmt(level)}, the {what}."
    return "Chance levels: " + "; ".join(f"{v} {fmt(c['level'])} ({c['what']})" for v, c in known.items()) + "."


def validity_sentences(analysis: dict[str, Any], ranked: list[str]) -> list[str]:
    """The checks: chance level, at chance, not converged, at ceiling, diverged; the few-seeds caveat."""
    table = analysis["variants"]
    out = [chance_sentence(analysis)]

    def flagged(check: str) -> list[str]:
        return [v for v in ranked if table[v]["validity"].get(check, {}).get("flagged") is True]

    at_chance = flagged("at_chance")
    if at_chance:
        vals = [f"{v} {fmt(table[v][analysis['metric']]['mean'])}" for v in at_chance]
        out.append(f"At chance (not above it by more than the noise): {join(vals)}.")
    nc = flagged("not_converged")
    if nc:
        out.append(
            f"Not converged (validation {analysis['study_metric']} still improving over the last epochs by more "
            f"than the seed noise): {join(nc)}."
        )
    ceiling = flagged("at_ceiling")
    if ceiling:
        out.append(f"At the ceiling of the metric, where variants stop being distinguishable: {join(ceiling)}.")
    diverged = [v for v in ranked if table[v]["validity"]["diverged"]["flagged"]]
    chance_known = any(table[v]["validity"].get("at_chance", {}).get("flagged") is False for v in ranked)
    fine = "converged" + (", above chance" if chance_known else "") + " and without diverged runs"
    if not (at_chance or nc or diverged):
        out.append(f"Every variant: {fine}.")
    elif len(set(at_chance + nc + diverged)) < len(ranked):
        out.append(f"The other variants: {fine}.")
    if min(table[v][analysis["metric"]]["n"] for v in ranked) <= 3:
        out.append(
            hs.FEW_SEEDS[0].upper() + hs.FEW_SEEDS[1:] + ": intervals are wide and small differences go undetected."
        )
    return out


def metrics_file(analysis: dict[str, Any]) -> dict[str, Any]:
    """A handful of flat numbers for `dvc metrics show/diff` and `dvc exp show`, named independently of which
    variant won (the details stay in analysis.json). Inferential claims and arithmetic checks are counted apart."""
    metric, ranking = analysis["metric"], analysis["ranking"]
    table = analysis["variants"]
    out: dict[str, Any] = {
        "runs": sum(r["runs"] for r in table.values()),
        # not usable by the statistics: failed, killed or diverged
        "runs_failed": sum(r["runs"] - r["finished"] for r in table.values()),
        "significant_pairs": sum(p["significant"] for p in analysis["comparisons"]["pairs"]),
        "family_size": (analysis.get("family") or {}).get("size", 0),
    }
    if ranking:
        out[f"best_{metric}"] = ranking[0]["mean"]
    if len(ranking) > 1:
        out["margin_to_runner_up"] = abs(ranking[0]["mean"] - ranking[1]["mean"])
    claims, checks = analysis.get("claims") or [], analysis.get("checks") or []
    out["claims_total"] = len(claims)
    for verdict in VERDICTS:
        out[f"claims_{verdict}"] = sum(c["verdict"] == verdict for c in claims)
    out["checks_total"] = len(checks)
    out["checks_passed"] = sum(c["verdict"] == "confirmed" for c in checks)
    return out
