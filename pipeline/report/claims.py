"""Verdicts on a study's claims (`expect:` in its spec, `pipeline.config.Claim`): confirmed, contradicted or
inconclusive, each with the reason, from the same runs and checks as the answer.

The rules (docs/statistics.md, *Claims*):

- `better`    confirmed when every pair (a, b) differs significantly in the claimed direction after Holm over all
              of the study's claim comparisons and both variants' runs are valid (converged, not at chance, not
              diverged); contradicted when a pair differs significantly the other way; else inconclusive, saying
              why (not significant and what these seeds could have detected, invalid runs, too few seeds).
              `epochs_to_target` is compared censored (Gehan-Wilcoxon, Bonferroni over those claims).
- `ratio`     mean(a) / mean(b) within `tolerance` (relative) of `value`: meant for deterministic quantities.
- `extreme`   a is the highest (lowest) and, when the metric varies over seeds, significantly beyond the best
              other variant (same Holm family); deterministic: strictly beyond.
- `chance`    a's mean is not above the trivial predictor's score by more than the noise; `trains`: it is.
- `no_gain`   the upper end of the 95% Welch interval of a's gain over b (in the metric's better direction) is
              below `margin` and the runs are valid; contradicted when the lower end is above `margin`; else
              inconclusive (absence of evidence is not evidence of absence).

`metric` is a run metric (its final value, `pipeline.runs.final`) or `<section>.<quantity>`, read from
`analysis["extras"][<section>]["values"][<quantity>][<variant>]` (per-seed values a report section computed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from statsmodels.stats.multitest import multipletests

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline.config import Claim
from pipeline.plots import metric_bounds
from pipeline.report.analysis import (
    ALPHA,
    ChanceFn,
    chance_noise,
    detectable_text,
    fmt,
    invalid_because,
    metric_direction,
    needed_text,
    target_data,
)
from pipeline.report.chance import Chance
from pipeline.runs import Run
from pipeline.sections import common
from pipeline.text import fmt_p

CONFIRMED, CONTRADICTED, INCONCLUSIVE = "confirmed", "contradicted", "inconclusive"


@dataclass
class Outcome:
    """One member pair's (or member's) verdict; a claim's verdict combines those of its members."""

    verdict: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def members(x: str | list[str] | None) -> list[str]:
    return [] if x is None else [x] if isinstance(x, str) else list(x)


def combine(outcomes: list[Outcome]) -> tuple[str, str]:
    """Any member contradicted: contradicted; all confirmed: confirmed; else inconclusive. The reason lists the
    members that decided it."""
    if not outcomes:
        return INCONCLUSIVE, "nothing to compare"
    for verdict in (CONTRADICTED, INCONCLUSIVE):
        hit = [o.reason for o in outcomes if o.verdict == verdict]
        if hit:
            return verdict, "; ".join(hit)
    return CONFIRMED, "; ".join(o.reason for o in outcomes)


class ClaimContext:
    """What every claim reads: the runs, the analysis (validity, extras), the chance levels and P(A > B)."""

    def __init__(
        self, claims: Sequence[Claim], runs: list[Run], analysis: dict[str, Any], chance: ChanceFn | None, alpha: float
    ):
        self.runs, self.analysis, self.chance, self.alpha = runs, analysis, chance, alpha
        self.by_variant = rn.by_variant(runs)
        self.variants = list(analysis["variants"])
        sup = analysis.get("superiority") or {}
        self.superiority = {(p["a"], p["b"]): p for p in sup.get("pairs", [])}
        # the censored comparisons of `better` claims on epochs_to_target form their own (Bonferroni) family
        self.n_time_tests = sum(
            len(members(c.a)) * len(members(c.b))
            for c in claims
            if c.kind == "better" and self.metric(c) == "epochs_to_target"
        )

    def metric(self, claim: Claim) -> str:
        return claim.metric or self.analysis["metric"]

    def direction(self, claim: Claim, metric: str) -> str | None:
        if claim.direction:
            return claim.direction
        if metric in (self.analysis["metric"], self.analysis.get("study_metric")):
            return self.analysis["mode"]
        return metric_direction(metric.rsplit(".", 1)[-1])

    def values(self, metric: str) -> tuple[dict[str, list[float]], str | None]:
        """variant -> per-seed values of `metric`, or ({}, why there are none)."""
        if "." in metric:
            section, quantity = metric.split(".", 1)
            extras = (self.analysis.get("extras") or {}).get(section) or {}
            got = (extras.get("values") or {}).get(quantity)
            if not isinstance(got, dict) or not got:
                return {}, f"section {section} gave no {quantity}"
            return {v: [float(x) for x in xs if x is not None and math.isfinite(x)] for v, xs in got.items()}, None
        got = rn.per_variant(self.runs, metric)
        return (got, None) if got else ({}, f"no finished run logged {metric}")

    def checks(self, variant: str) -> dict[str, Any]:
        return self.analysis["variants"].get(variant, {}).get("validity") or {}

    def invalid(self, *variants: str) -> str:
        """Why these variants' runs cannot confirm a claim ("b had diverged runs"), or ""."""
        return "; ".join(invalid_because({v: self.checks(v) for v in dict.fromkeys(variants)}))


# --------------------------------------------------------------------------- the Holm family of the claims


@dataclass
class Test:
    a: str
    b: str
    metric: str
    values_a: list[float]
    values_b: list[float]
    raw: hs.PairTest | None = None
    p_adjusted: float = 1.0


def family_tests(claims: Sequence[Claim], ctx: ClaimContext) -> dict[tuple[int, str, str], Test]:
    """The noisy pair tests of every `better` and `extreme` claim, Holm-adjusted together: the family is the
    study's claims, fixed before the runs were looked at."""
    tests: dict[tuple[int, str, str], Test] = {}
    for i, claim in enumerate(claims):
        metric = ctx.metric(claim)
        if claim.kind not in ("better", "extreme") or metric == "epochs_to_target":
            continue
        groups, _ = ctx.values(metric)
        direction = ctx.direction(claim, metric)
        for a, b in claim_pairs(claim, groups, direction):
            va, vb = groups.get(a), groups.get(b)
            if va and vb and not (claim.kind == "extreme" and hs.spread(va) == 0 and hs.spread(vb) == 0):
                tests[(i, a, b)] = Test(a, b, metric, va, vb)
    for t in tests.values():
        # one pair alone: Holm over one comparison is the raw Welch p, with honest_stats' rules for one seed and
        # for no spread
        t.raw = hs.holm_all_pairs({"a": t.values_a, "b": t.values_b}, alpha=ctx.alpha)[0]
    if tests:
        adjusted = multipletests([t.raw.p_value for t in tests.values()], method="holm")[1]  # type: ignore[union-attr]
        for t, p in zip(tests.values(), adjusted):
            t.p_adjusted = float(p)
    return tests


def claim_pairs(claim: Claim, groups: dict[str, list[float]], direction: str | None) -> list[tuple[str, str]]:
    """The (a, b) pairs a claim's test compares: every a against every b; for `extreme`, each a against the best
    variant outside a (or, when a member is not the extreme, against the variant that is)."""
    a_list = members(claim.a)
    if claim.kind != "extreme":
        return [(a, b) for a in a_list for b in members(claim.b)]
    if direction is None:
        return []
    sign = 1 if direction == "max" else -1
    means = {v: sum(x) / len(x) for v, x in groups.items() if x}
    others = [v for v in means if v not in a_list]
    if not others:
        return []
    rival = max(others, key=lambda v: sign * means[v])
    return [(a, rival) for a in a_list if a in means]


@dataclass
class Compared:
    """What a pairwise claim (`better`, `no_gain`) compares: per-seed values, +1/-1 for the metric's better
    direction, and the (a, b) pairs."""

    groups: dict[str, list[float]]
    sign: int
    pairs: list[tuple[str, str]]


def compared(claim: Claim, ctx: ClaimContext, metric: str) -> Compared | Outcome:
    """The pairs a pairwise claim compares, or the inconclusive outcome when it cannot be judged at all."""
    groups, why = ctx.values(metric)
    if why:
        return Outcome(INCONCLUSIVE, why)
    direction = ctx.direction(claim, metric)
    if direction is None:
        return Outcome(INCONCLUSIVE, f"which way {metric} is better is unknown; give the claim a direction")
    return Compared(groups, 1 if direction == "max" else -1, claim_pairs(claim, groups, direction))


def missing(metric: str, groups: dict[str, list[float]], a: str, b: str) -> Outcome | None:
    """An inconclusive outcome for a pair with a variant that has no values of `metric`."""
    gone = [v for v in (a, b) if v not in groups]
    return Outcome(INCONCLUSIVE, f"no {metric} for {gone[0]}") if gone else None


# --------------------------------------------------------------------------- one kind each


def pair_text(a: str, b: str, va: list[float], vb: list[float]) -> str:
    ma, mb = sum(va) / len(va), sum(vb) / len(vb)
    return f"{a} {fmt(ma)} vs {b} {fmt(mb)}"


def not_significant(t: Test, family: int, ctx: ClaimContext) -> str:
    """Why a non-significant claim test says little: what these seeds could have detected, and the seed count."""
    assert t.raw is not None
    na, nb = len(t.values_a), len(t.values_b)
    text = f"not significant (Holm-adjusted {fmt_p(t.p_adjusted)} over {family} claim comparisons"
    if t.raw.reason:
        return text + f"; {t.raw.reason})"
    sa, sb = hs.spread(t.values_a), hs.spread(t.values_b)
    det = hs.detectable_difference(sa, sb, na, nb, alpha=ctx.alpha / family)
    text += ")"
    if not math.isnan(det):
        text += f"; with {na} vs {nb} seeds " + detectable_text(det, metric_bounds(t.metric))
        needed = hs.seeds_needed(sa, sb, t.raw.difference, alpha=ctx.alpha / family)
        text += "; " + needed_text(needed, t.raw.difference)
    if min(na, nb) <= 3:
        text += f"; {hs.FEW_SEEDS}"
    return text


def better(claim: Claim, i: int, ctx: ClaimContext, tests: dict, family: int) -> list[Outcome]:
    metric = ctx.metric(claim)
    if metric == "epochs_to_target":
        return better_time(claim, ctx)
    c = compared(claim, ctx, metric)
    if isinstance(c, Outcome):
        return [c]
    groups, sign = c.groups, c.sign
    out = []
    for a, b in c.pairs:
        if gap := missing(metric, groups, a, b):
            out.append(gap)
            continue
        t = tests[(i, a, b)]
        assert t.raw is not None
        head = pair_text(a, b, t.values_a, t.values_b)
        gain = sign * t.raw.difference
        sig = t.p_adjusted < ctx.alpha and not t.raw.reason
        details = {"a": a, "b": b, "difference": t.raw.difference, "p_raw": t.raw.p_value, "p_holm": t.p_adjusted}
        sup = ctx.superiority.get((a, b))
        extra = f"; P({a} > {b}) over seeds and test examples {sup['p_a_better']:.2f}" if sup else ""
        if sig and gain < 0:
            out.append(
                Outcome(
                    CONTRADICTED,
                    f"{head}: {b} is significantly better (Holm-adjusted {fmt_p(t.p_adjusted)}){extra}",
                    details,
                )
            )
        elif sig:
            why_not = ctx.invalid(a, b)
            if why_not:
                out.append(
                    Outcome(
                        INCONCLUSIVE,
                        f"{head}: significant (Holm-adjusted {fmt_p(t.p_adjusted)}), but {why_not}{extra}",
                        details,
                    )
                )
            else:
                out.append(
                    Outcome(
                        CONFIRMED,
                        f"{head}, Holm-adjusted {fmt_p(t.p_adjusted)} over {family} claim comparisons; "
                        f"runs valid{extra}",
                        details,
                    )
                )
        else:
            text = f"{head}: {not_significant(t, family, ctx)}"
            why_not = ctx.invalid(a, b)
            if why_not:
                text += f"; besides, {why_not}"
            out.append(Outcome(INCONCLUSIVE, text + extra, details))
    return out


def better_time(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    """`better` on epochs_to_target: a reaches the target sooner, compared censored."""
    pairs = [(a, b) for a in members(claim.a) for b in members(claim.b)]
    m = max(ctx.n_time_tests, 1)
    out = []
    for a, b in pairs:
        ra, rb = ctx.by_variant.get(a), ctx.by_variant.get(b)
        da, db = target_data(ra or []), target_data(rb or [])
        if da is None or db is None:
            out.append(Outcome(INCONCLUSIVE, f"no target reached/epochs recorded for {a if da is None else b}"))
            continue
        c = hs.compare_time_to_target(da[0], da[1], db[0], db[1], max(da[2], db[2]), alpha=ctx.alpha / m)
        details = {"a": a, "b": b, **c.as_dict()}
        if c.min_p > ctx.alpha / m:
            out.append(Outcome(INCONCLUSIVE, f"{a} vs {b}: {c.verdict.removeprefix('inconclusive: ')}", details))
        elif c.significant and c.statistic > 0:
            why_not = ctx.invalid(a, b)
            verdict = INCONCLUSIVE if why_not else CONFIRMED
            text = f"{a} reaches the target sooner than {b} ({fmt_p(c.p_value)}, {c.method})"
            out.append(Outcome(verdict, text + (f", but {why_not}" if why_not else ""), details))
        elif c.significant:
            out.append(
                Outcome(
                    CONTRADICTED, f"{b} reaches the target sooner than {a} ({fmt_p(c.p_value)}, {c.method})", details
                )
            )
        else:
            level = f"{ctx.alpha / m:.3g}"
            if m > 1:
                level += f" (Bonferroni over {m} epochs-to-target claim comparisons)"
            out.append(
                Outcome(
                    INCONCLUSIVE,
                    f"{a} vs {b}: epochs to target not significantly different at the level {level} "
                    f"({fmt_p(c.p_value)}, {c.method})",
                    details,
                )
            )
    return out


def ratio(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    metric = ctx.metric(claim)
    groups, why = ctx.values(metric)
    if why:
        return [Outcome(INCONCLUSIVE, why)]
    if claim.value is None:
        return [Outcome(INCONCLUSIVE, "a ratio claim needs a value")]
    out = []
    for a, b in claim_pairs(claim, groups, None):
        if not groups.get(a) or not groups.get(b):
            out.append(Outcome(INCONCLUSIVE, f"no {metric} for {a if not groups.get(a) else b}"))
            continue
        ma, mb = sum(groups[a]) / len(groups[a]), sum(groups[b]) / len(groups[b])
        if mb == 0:
            out.append(Outcome(INCONCLUSIVE, f"{metric} of {b} is 0: no ratio"))
            continue
        r = ma / mb
        ok = abs(r - claim.value) <= claim.tolerance * abs(claim.value)
        noisy = hs.spread(groups[a]) > 0 or hs.spread(groups[b]) > 0
        text = (
            f"{metric} {a} / {b} = {fmt(ma)} / {fmt(mb)} = {r:.3g}, claimed {claim.value:g} ± {claim.tolerance:.0%}"
            + (" (a ratio of seed means: the quantity varies over seeds)" if noisy else "")
        )
        out.append(Outcome(CONFIRMED if ok else CONTRADICTED, text, {"a": a, "b": b, "ratio": r}))
    return out


def extreme(claim: Claim, i: int, ctx: ClaimContext, tests: dict, family: int) -> list[Outcome]:
    metric = ctx.metric(claim)
    groups, why = ctx.values(metric)
    if why:
        return [Outcome(INCONCLUSIVE, why)]
    direction = ctx.direction(claim, metric)
    if direction is None:
        return [Outcome(INCONCLUSIVE, f"which way {metric} is extreme is not given; give the claim a direction")]
    word = "highest" if direction == "max" else "lowest"
    sign = 1 if direction == "max" else -1
    pairs = claim_pairs(claim, groups, direction)
    missing = [a for a in members(claim.a) if a not in groups]
    if missing:
        return [Outcome(INCONCLUSIVE, f"no {metric} for {', '.join(missing)}")]
    if not pairs:
        return [Outcome(INCONCLUSIVE, "no other variant to compare with")]
    out = []
    for a, rival in pairs:
        va, vr = groups[a], groups[rival]
        gain = sign * (sum(va) / len(va) - sum(vr) / len(vr))
        head = f"{word} {metric}: {pair_text(a, rival, va, vr)} (the best other variant)"
        if hs.spread(va) == 0 and hs.spread(vr) == 0:  # a deterministic quantity: beyond or not
            verdict = CONFIRMED if gain > 0 else CONTRADICTED
            out.append(
                Outcome(verdict, f"{head}; identical over seeds, so {'strictly beyond' if gain > 0 else 'not beyond'}")
            )
            continue
        t = tests[(i, a, rival)]
        sig = t.p_adjusted < ctx.alpha and not (t.raw and t.raw.reason)
        caveat = ctx.invalid(a)
        tail = f" (note: {caveat})" if caveat else ""
        details = {"a": a, "rival": rival, "p_holm": t.p_adjusted}
        if gain > 0 and sig:
            out.append(
                Outcome(
                    CONFIRMED, f"{head}, significantly beyond it (Holm-adjusted {fmt_p(t.p_adjusted)}){tail}", details
                )
            )
        elif gain <= 0 and sig:
            out.append(
                Outcome(
                    CONTRADICTED,
                    f"{head}: {rival} is significantly beyond {a} (Holm-adjusted {fmt_p(t.p_adjusted)})",
                    details,
                )
            )
        else:
            where = "ranks first but" if gain > 0 else "does not rank first and"
            out.append(
                Outcome(INCONCLUSIVE, f"{head}: {a} {where} is {not_significant(t, family, ctx)}{tail}", details)
            )
    return out


def chance_check(variant: str, metric: str, groups: dict[str, list[float]], ctx: ClaimContext) -> dict[str, Any]:
    """The at-chance check of one variant on `metric`: the analysis's own for the headline metric."""
    if metric == ctx.analysis["metric"]:
        return ctx.checks(variant).get("at_chance") or {"flagged": None, "reason": "chance level unknown"}
    if ctx.chance is None or "." in metric:
        return {"flagged": None, "reason": f"chance level of {metric} unknown"}
    ok = rn.ok_runs(ctx.by_variant.get(variant, []))
    ch = ctx.chance(ok, metric)
    if ch.level is None:
        return {"flagged": None, "reason": ch.reason or f"chance level of {metric} unknown"}
    stat = common.stat(groups[variant], metric)
    direction = (
        ctx.analysis["mode"] if metric == ctx.analysis.get("study_metric") else metric_direction(metric) or "max"
    )
    c = hs.at_chance(stat["mean"], ch.level, chance_noise(stat, ch, metric), mode=direction)  # type: ignore[arg-type]
    return {**c.as_dict(), "chance": ch.level, "what": ch.what}


def near_value(variant: str, metric: str, groups: dict[str, list[float]], level: float) -> dict[str, Any]:
    """The at-chance check against a chance level the claim states (`value`, e.g. a discriminator's 0.5): the mean is
    within the noise of it on either side. The noise is the analysis's: twice the seed std, and at least twice the
    binomial standard error of a [0, 1] metric at that level on the test split's examples (else 1% of the level)."""
    stat = common.stat(groups[variant], metric)
    noise = chance_noise(stat, Chance(level), metric)
    gap = abs(stat["mean"] - level)
    near = gap <= noise
    where = "within" if near else "not within"
    reason = f"{stat['mean']:.4g} is {where} {noise:.3g} of the claimed chance level {level:g} (off by {gap:.3g})"
    return {"flagged": near, "reason": reason, "chance": level, "what": "the claim's chance level"}


def chance_or_trains(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    metric = ctx.metric(claim)
    groups, why = ctx.values(metric)
    if why:
        return [Outcome(INCONCLUSIVE, why)]
    want_chance = claim.kind == "chance"
    out = []
    for a in members(claim.a):
        if a not in groups:
            out.append(Outcome(INCONCLUSIVE, f"no finished run of {a} logged {metric}"))
            continue
        c = chance_check(a, metric, groups, ctx) if claim.value is None else near_value(a, metric, groups, claim.value)
        if c["flagged"] is None:
            out.append(Outcome(INCONCLUSIVE, f"{a}: {c['reason']}"))
            continue
        verdict = CONFIRMED if c["flagged"] == want_chance else CONTRADICTED
        out.append(Outcome(verdict, f"{a} on {metric}: {c['reason']}", {"a": a, **c}))
    return out


def no_gain(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    metric = ctx.metric(claim)
    c = compared(claim, ctx, metric)
    if isinstance(c, Outcome):
        return [c]
    groups, sign = c.groups, c.sign
    out = []
    for a, b in c.pairs:
        if gap := missing(metric, groups, a, b):
            out.append(gap)
            continue
        ci = hs.welch_difference_interval(groups[a], groups[b])
        head = pair_text(a, b, groups[a], groups[b])
        if ci is None:
            why = hs.ONE_SEED if min(len(groups[a]), len(groups[b])) < 2 else hs.NO_SPREAD
            out.append(Outcome(INCONCLUSIVE, f"{head}: no interval of the gain ({why})"))
            continue
        lo, hi = sorted((sign * ci[0], sign * ci[1]))  # the gain of a over b, better-is-positive
        span = f"95% Welch interval of {a}'s gain [{fmt(lo)}, {fmt(hi)}], margin {claim.margin:g}"
        details = {"a": a, "b": b, "gain_low": lo, "gain_high": hi, "margin": claim.margin}
        why_not = ctx.invalid(a, b)
        if hi < claim.margin and not why_not:
            out.append(Outcome(CONFIRMED, f"{head}: {span}, entirely below the margin; runs valid", details))
        elif lo > claim.margin:
            out.append(Outcome(CONTRADICTED, f"{head}: {span}: {a} is better by more than the margin", details))
        elif hi < claim.margin:
            out.append(Outcome(INCONCLUSIVE, f"{head}: {span}, below the margin, but {why_not}", details))
        else:
            few = f"; {hs.FEW_SEEDS}" if min(len(groups[a]), len(groups[b])) <= 3 else ""
            text = f"{head}: {span} reaches above the margin: absence of evidence, not evidence of no gain{few}"
            out.append(Outcome(INCONCLUSIVE, text, details))
    return out


# --------------------------------------------------------------------------- all of a study's claims


def unknown_variants(claim: Claim, variants: list[str]) -> list[str]:
    return [v for v in members(claim.a) + members(claim.b) if v not in variants]


def evaluate_claims(
    claims: Sequence[Claim],
    runs: list[Run],
    analysis: dict[str, Any],
    *,
    chance: ChanceFn | None = None,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """[{claim, kind, metric, verdict, reason, details}] for every claim, in the spec's order."""
    ctx = ClaimContext(claims, runs, analysis, chance, alpha)
    tests = family_tests(claims, ctx)
    family = len(tests)
    out = []
    for i, claim in enumerate(claims):
        unknown = unknown_variants(claim, ctx.variants)
        if unknown:
            outcomes = [
                Outcome(
                    INCONCLUSIVE, f"no variant {', '.join(unknown)} in these runs (variants: {', '.join(ctx.variants)})"
                )
            ]
        elif claim.kind == "better":
            outcomes = better(claim, i, ctx, tests, family)
        elif claim.kind == "ratio":
            outcomes = ratio(claim, ctx)
        elif claim.kind == "extreme":
            outcomes = extreme(claim, i, ctx, tests, family)
        elif claim.kind in ("chance", "trains"):
            outcomes = chance_or_trains(claim, ctx)
        else:
            outcomes = no_gain(claim, ctx)
        verdict, reason = combine(outcomes)
        out.append(
            {
                "claim": claim.claim,
                "kind": claim.kind,
                "metric": ctx.metric(claim),
                "verdict": verdict,
                "reason": reason,
                "details": [o.details for o in outcomes if o.details],
            }
        )
    return out
