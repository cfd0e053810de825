"""The numbers of a report and the answer they support.

One definition everywhere: each run's checkpoint is its best validation epoch (by the study metric), and the
headline metric is that checkpoint's test metric (`test_X` for a study metric `val_X`, when the runs logged it).
The ranking, the table, the bar chart, the sections and the claims all read the headline metric; only the
learning curves are per-epoch validation values.

The statistics are `pipeline.honest_stats` (docs/statistics.md): per-variant intervals that stay inside the
metric's range (`pipeline.sections.common.stat`, the summary every section uses too), Welch t-tests Holm-adjusted
over a family fixed in advance (every variant against the declared baseline, else all pairs), the smallest
difference a non-significant test could have detected, validity checks (not converged, at chance, at ceiling,
diverged, underpowered) and censored epochs-to-target. The answer's verb follows the evidence: "X is better than
Y" only when the difference is significant after correction and both variants' runs are valid.

`analyze` turns the exported runs into `analysis.json`'s core; `metrics_file` picks the few flat numbers that
`dvc metrics show/diff` and `dvc exp show` compare across revisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline.plots import metric_bounds
from pipeline.report.chance import Chance
from pipeline.report.markdown import format_number
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


def comparisons(
    groups: dict[str, list[float]], baseline: str | None, alpha: float
) -> tuple[str, str | None, list[hs.PairTest], str]:
    """(design, baseline, tests, note): every variant against the declared baseline, else all pairs, Welch + Holm.

    `groups` in rank order, so an all-pairs test (a, b) has a ranked above b."""
    if len(groups) < 2:
        return "none", None, [], ""
    if baseline is not None:
        if baseline in groups:
            return "vs_baseline", baseline, hs.holm_vs_baseline(groups, baseline, alpha), ""
        note = f"The declared baseline {baseline} has no finished run, so all pairs are compared instead."
        return "all_pairs", None, hs.holm_all_pairs(groups, alpha), note
    return "all_pairs", None, hs.holm_all_pairs(groups, alpha), ""


def pair_record(
    t: hs.PairTest, stats: dict[str, dict[str, Any]], family: int, alpha: float, shown: bool
) -> dict[str, Any]:
    """A test as analysis.json keeps it, with the smallest detectable difference when it is one the text names."""
    rec = t.as_dict()
    if shown and not t.significant:
        sa, sb = stats[t.a], stats[t.b]
        det = hs.detectable_difference(sa["std"], sb["std"], sa["n"], sb["n"], alpha=alpha / max(family, 1))
        rec["detectable_difference"] = None if math.isnan(det) else det
        rec["underpowered"] = hs.underpowered(det, t.difference).as_dict()
        if not math.isnan(det):
            rec["seeds_needed"] = hs.seeds_needed(sa["std"], sb["std"], t.difference, alpha=alpha / max(family, 1))
    return rec


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


def target_analysis(
    by_v: dict[str, list[Run]], mode: str, target: dict[str, Any], alpha: float
) -> tuple[dict[str, Any], list[str]]:
    """Fraction of runs reaching the target (exact interval) and Kaplan-Meier median epochs per variant; the
    fastest against each other variant with the censored Gehan-Wilcoxon test (Bonferroni over those tests)."""
    goal = f"{target['metric']} {'≥' if mode == 'max' else '≤'} {target['value']:g}"
    per: dict[str, dict[str, Any]] = {}
    data: dict[str, tuple[list[bool], list[float | None], float]] = {}
    for v, rs in by_v.items():
        got = target_data(rs)
        if got is None:
            continue
        data[v] = got
        per[v] = hs.time_to_target(*got).as_dict()
    out: dict[str, Any] = {"goal": goal, "variants": per, "comparisons": []}
    if not per:
        return out, []
    if not any(t["n_reached"] for t in per.values()):
        return out, [f"No run reached {goal} within its epochs."]

    def speed(v: str) -> tuple[float, float]:
        t = per[v]
        return (t["median_epochs"] if t["median_epochs"] is not None else math.inf, -t["fraction"])

    order = sorted(per, key=speed)
    fastest, others = order[0], order[1:]
    parts = []
    for v in order:
        t = per[v]
        med = f"median {t['median_epochs']:g} epochs" if t["median_epochs"] is not None else "median not reached"
        parts.append(f"{v} {t['n_reached']}/{t['n']} runs ({med})")
    text = [f"Reaching {goal} (validation, per epoch): {join(parts)}."]
    if others:
        m = len(others)
        verdicts = []
        for v in others:
            (ra, ea, mx), (rb, eb, mxb) = data[fastest], data[v]
            c = hs.compare_time_to_target(ra, ea, rb, eb, max(mx, mxb), alpha=alpha / m)
            out["comparisons"].append({"a": fastest, "b": v, **c.as_dict()})
            if c.min_p > alpha / m:
                verdicts.append(("inconclusive", v, c.verdict.removeprefix("inconclusive: ")))
            elif c.significant:
                who = f"{fastest} gets there sooner than {v}" if c.statistic > 0 else f"{v} gets there sooner"
                verdicts.append(("significant", v, f"{who} ({fmt_p(c.p_value)})"))
            else:
                verdicts.append(("no_difference", v, f"no detectable difference from {v} ({fmt_p(c.p_value)})"))
        how = f"Gehan-Wilcoxon permutation test on censored epochs, Bonferroni over {m}"
        if all(k == "inconclusive" for k, _, _ in verdicts) and len({w for _, _, w in verdicts}) == 1:
            text.append(
                f"{fastest} is fastest by median, but against the others ({how}) the comparison is inconclusive: "
                f"{verdicts[0][2]}."
            )
        else:
            text.append(
                f"{fastest} is fastest by median; against the others ({how}): "
                + "; ".join(w for _, _, w in verdicts)
                + "."
            )
    return out, text


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
    groups = {v: stats[v]["values"] for v in ranked}
    design, base, tests, note = comparisons(groups, baseline, alpha)
    first = ranked[0] if ranked else None
    anchor = base or first
    pairs = [pair_record(t, stats, len(tests), alpha, shown=anchor in (t.a, t.b)) for t in tests]
    for rec in pairs:
        if anchor in (rec["a"], rec["b"]):
            other = rec["b"] if rec["a"] == anchor else rec["a"]
            table[other]["p_vs_anchor"] = rec["p_value"]
            table[other]["significant_vs_anchor"] = rec["significant"]
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
            "design": design,
            "baseline": base,
            "anchor": anchor,
            "method": tests[0].method if tests else "",
            "family_size": len(tests),
            "pairs": pairs,
        },
        "variants": table,
        "ranking": [
            {"variant": v, "rank": table[v]["rank"], "mean": stats[v]["mean"], "n": stats[v]["n"]} for v in ranked
        ],
        "chance": {v: c.as_dict() for v, c in chances.items()},
    }
    sentences = answer_sentences(analysis, stats, describe_headline(head, source, metric), note)
    if target:
        analysis["time_to_target"], tt_text = target_analysis(by_v, mode, target, alpha)
        sentences += tt_text
    n_div = sum(row["diverged"] for row in table.values())
    if n_div:
        per = ", ".join(f"{v}: {row['diverged']}/{row['runs']}" for v, row in table.items() if row["diverged"])
        sentences.append(f"{n_div} run(s) diverged (loss became NaN/inf) — {per}; the statistics leave them out.")
    n_failed = sum(row["failed"] for row in table.values())
    if n_failed:
        sentences.append(f"{n_failed} run(s) failed and are left out.")
    sizes = {v: int(row["n_params"]["mean"]) for v, row in table.items() if "n_params" in row}
    if len(set(sizes.values())) > 1:
        sentences.append("Parameter counts differ: " + ", ".join(f"{v} {n:,}" for v, n in sizes.items()) + ".")
    analysis["answer"] = " ".join(sentences)
    return analysis


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


def answer_sentences(analysis: dict[str, Any], stats: dict[str, dict[str, Any]], headline: str, note: str) -> list[str]:
    """The answer: what is measured and how, the ranking, what the comparisons support, and the checks."""
    table, comp = analysis["variants"], analysis["comparisons"]
    ranked = [r["variant"] for r in analysis["ranking"]]
    if not ranked:
        return ["No run finished, so nothing can be compared."]
    ns = [stats[v]["n"] for v in ranked]
    out = [f"Measured on {headline}; {seeds_text(ns)} per variant, 95% intervals of the mean over seeds."]
    first = ranked[0]
    if len(ranked) == 1:
        out.append(f"{first} is the only variant with a finished run ({fmt_ci(stats[first])}); nothing to compare.")
        return out + validity_sentences(analysis, ranked)
    second = ranked[1]
    if stats[first]["mean"] == stats[second]["mean"]:  # the order of a tie is only the names'
        lead = f"{first} and {second} tie for first ({fmt_ci(stats[first])} and {fmt_ci(stats[second])})."
    else:
        lead = f"{first} ranks first ({fmt_ci(stats[first])}), ahead of {second} ({fmt_ci(stats[second])})."
    out.append(lead + (f" {note}" if note else ""))
    family = comp["family_size"]
    out.append(f"Comparisons: {comp['method']} (alpha {analysis['alpha']:g}).")
    anchor = comp["anchor"]
    shown = [p for p in comp["pairs"] if anchor in (p["a"], p["b"])]

    def other(p: dict[str, Any]) -> str:
        return p["b"] if p["a"] == anchor else p["a"]

    def favours_anchor(p: dict[str, Any]) -> bool:
        d = p["difference"] if p["a"] == anchor else -p["difference"]
        return d * (1 if analysis["mode"] == "max" else -1) > 0

    better, worse, invalid, untold = [], [], [], []
    for p in sorted(shown, key=lambda p: ranked.index(other(p))):
        o = other(p)
        if p["significant"]:
            why = invalid_because({v: table[v]["validity"] for v in dict.fromkeys([anchor, o])})
            if why:
                invalid.append((p, why))
            elif favours_anchor(p):
                better.append(p)
            else:
                worse.append(p)
        else:
            untold.append(p)
    if better:
        out.append(f"{anchor} is better than {join([named_p(other(p), p) for p in better])}.")
    if worse:
        out.append(f"{anchor} is worse than {join([named_p(other(p), p) for p in worse])}.")
    for p, why in invalid:
        verb = "scores above" if favours_anchor(p) else "scores below"
        out.append(
            f"{anchor} {verb} {other(p)} ({fmt_p(p['p_value'])}), but {join(why)}, so that is no finding about "
            "trained models."
        )
    if untold:
        p0 = untold[0]
        n0 = min(stats[anchor]["n"], stats[other(p0)]["n"])
        det = p0.get("detectable_difference")
        detail = f"difference {fmt(abs(p0['difference']))}, Holm-adjusted {fmt_p(p0['p_value'])}"
        if p0.get("reason"):
            detail += f"; {p0['reason']}"
        elif det is not None:
            detail += "; " + detectable_text(det, analysis["bounds"])
            detail += "; " + needed_text(p0.get("seeds_needed"), p0["difference"])
        text = f"{anchor} and {other(p0)} cannot be told apart with {n0} seed{'s' if n0 != 1 else ''} ({detail})"
        why = invalid_because({v: table[v]["validity"] for v in dict.fromkeys([anchor, other(p0)])})
        if why:
            text += f"; besides, {join(why)}"
        rest = untold[1:]
        if rest:
            lowest = min(p["p_value"] for p in rest)
            names = ", ".join(other(p) for p in rest)
            text += f"; nor can {anchor} be told apart from {names} (Holm-adjusted p ≥ {lowest:.2g})"
        out.append(text + ".")
    if family > 1 and comp["design"] == "all_pairs":
        n_sig = sum(p["significant"] for p in comp["pairs"])
        out.append(f"{n_sig} of {family} pairs differ significantly.")
    return out + validity_sentences(analysis, ranked)


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
    variant won (the details stay in analysis.json)."""
    metric, ranking = analysis["metric"], analysis["ranking"]
    table = analysis["variants"]
    out: dict[str, Any] = {
        "runs": sum(r["runs"] for r in table.values()),
        # not usable by the statistics: failed, killed or diverged
        "runs_failed": sum(r["runs"] - r["finished"] for r in table.values()),
        "significant_pairs": sum(p["significant"] for p in analysis["comparisons"]["pairs"]),
    }
    if ranking:
        out[f"best_{metric}"] = ranking[0]["mean"]
    if len(ranking) > 1:
        out["margin_to_runner_up"] = abs(ranking[0]["mean"] - ranking[1]["mean"])
    claims = analysis.get("claims") or []
    out["claims_total"] = len(claims)
    out["claims_confirmed"] = sum(c["verdict"] == "confirmed" for c in claims)
    return out
