"""Verdicts on a study's claims (`expect:` in its spec, `pipeline.config.Claim`): confirmed, contradicted or
inconclusive, each with the reason, from the study's one test family (`pipeline.report.gate`).

Each kind has its test (docs/statistics.md, *Claims*), Holm-adjusted with the headline comparisons and every other
claim's tests:

- `better`    one-sided Welch in the claimed direction (a one-sample t-test against an arm with identical seeds;
              censored one-sided Gehan-Wilcoxon on `epochs_to_target`): confirmed when significant; contradicted
              when the opposite one-sided test is significant in the same family.
- `extreme`   the same test of a against the best other variant; on a quantity identical over seeds (a FLOP
              count) it is an arithmetic check: strictly beyond or not.
- `no_gain`   non-superiority: one-sided Welch that a's gain over b is below the declared `margin`; contradicted
              when the gain is significantly above it.
- `chance`    TOST: a's mean within ±`margin` of the chance level (or of the stated `value`); contradicted when
              significantly beyond the margin.
- `trains`    one-sided: a's mean above the chance level by more than `margin` (default 0); contradicted when
              significantly below that.
- `ratio`     mean(a) / mean(b) within `tolerance` (relative) of `value`: an arithmetic check, not inference.

A variant that has not converged or had diverged runs (and, for the comparisons, one at chance) makes its claims
inconclusive, never contradicted, and the reason says why. `metric` is a run metric (its final value,
`pipeline.runs.final`) or `<section>.<quantity>`, read from `analysis["extras"][<section>]["values"][<quantity>]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline.config import Claim
from pipeline.plots import metric_bounds
from pipeline.report.analysis import (
    ALPHA,
    ChanceFn,
    add_headline,
    detectable_text,
    fmt,
    invalid_because,
    metric_direction,
    needed_text,
    target_data,
)
from pipeline.report.gate import FLIP, Family, Member
from pipeline.runs import Run
from pipeline.text import fmt_p

CONFIRMED, CONTRADICTED, INCONCLUSIVE = "confirmed", "contradicted", "inconclusive"
# what makes a variant's runs unable to decide a claim: all kinds / the comparisons (a model at chance compared
# with another says nothing about trained models; a `chance` claim is about being there)
UNFIT = ("not_converged", "diverged")
UNFIT_TO_COMPARE = ("not_converged", "diverged", "at_chance")
SHORT = {  # each hypothesis's test, in a few words
    "difference": "one-sided Welch",
    "sooner": "one-sided Gehan-Wilcoxon",
    "no_gain": "non-superiority Welch",
    "chance": "TOST",
    "trains": "one-sided t-test",
}


@dataclass
class Outcome:
    """One member pair's (or member's) verdict; a claim's verdict combines those of its members."""

    verdict: str
    reason: str
    brief: str = ""  # a few words for the answer's one line per claim
    details: dict[str, Any] = field(default_factory=dict)


def members(x: str | list[str] | None) -> list[str]:
    return [] if x is None else [x] if isinstance(x, str) else list(x)


def combine(outcomes: list[Outcome]) -> tuple[str, str, str]:
    """(verdict, reason, brief): any member contradicted: contradicted; all confirmed: confirmed; else
    inconclusive. The reason lists the members that decided it."""
    if not outcomes:
        return INCONCLUSIVE, "nothing to compare", "nothing to compare"
    for verdict in (CONTRADICTED, INCONCLUSIVE, CONFIRMED):
        hit = [o for o in outcomes if o.verdict == verdict]
        if hit:
            reasons = hit if verdict != CONFIRMED else outcomes
            brief = "; ".join(dict.fromkeys(o.brief or o.reason for o in hit))
            return verdict, "; ".join(o.reason for o in reasons), brief
    raise AssertionError("unreachable")


class ClaimContext:
    """What every claim reads: the runs, the analysis (validity, extras, chance levels) and the family."""

    def __init__(self, runs: list[Run], analysis: dict[str, Any], chance: ChanceFn | None, family: Family):
        self.runs, self.analysis, self.chance, self.family = runs, analysis, chance, family
        self.alpha = family.alpha
        self.by_variant = rn.by_variant(runs)
        self.variants = list(analysis["variants"])
        sup = analysis.get("superiority") or {}
        self.superiority = {(p["a"], p["b"]): p for p in sup.get("pairs", [])}

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

    def invalid(self, variants: Sequence[str], checks: Sequence[str] = UNFIT_TO_COMPARE) -> str:
        """Why these variants' runs cannot decide a claim ("b had diverged runs"), or ""."""
        table = self.analysis["variants"]
        got = {
            v: {k: c for k, c in (table.get(v, {}).get("validity") or {}).items() if k in checks}
            for v in dict.fromkeys(variants)
        }
        return "; ".join(invalid_because(got))

    def level(self, claim: Claim, variant: str, metric: str) -> tuple[float | None, str]:
        """The chance level a `chance` / `trains` claim tests against: the claim's `value`, else the trivial
        predictor's score (the analysis's for the headline metric), else (None, why not)."""
        if claim.value is not None:
            return claim.value, "the claim's chance level"
        if metric == self.analysis["metric"]:
            c = self.analysis["chance"].get(variant) or {}
            return c.get("level"), c.get("reason") or f"chance level of {metric} unknown"
        if self.chance is None or "." in metric:
            return None, f"chance level of {metric} unknown"
        ch = self.chance(rn.ok_runs(self.by_variant.get(variant, [])), metric)
        return ch.level, ch.reason or ch.what or f"chance level of {metric} unknown"


# --------------------------------------------------------------------------- what each claim puts in the family

# A planned test: (a, b or None, the member's key) or the outcome that says why there is none.
Plan = tuple[str, str | None, tuple[Any, ...]] | Outcome


def sign_of(direction: str) -> int:
    return 1 if direction == "max" else -1


def plan_claim(claim: Claim, i: int, ctx: ClaimContext) -> list[Plan] | None:
    """Put a claim's tests into the family; None for an arithmetic check (no test)."""
    by = f"claim {i + 1}"
    metric = ctx.metric(claim)
    if claim.kind == "better" and metric == "epochs_to_target":
        return plan_sooner(claim, ctx, by)
    groups, why = ctx.values(metric)
    if claim.kind == "ratio" or (claim.kind == "extreme" and not why and deterministic(groups)):
        return None
    if why:
        return [Outcome(INCONCLUSIVE, why)]
    direction = ctx.direction(claim, metric)
    if direction is None and claim.kind != "chance":
        return [Outcome(INCONCLUSIVE, f"which way {metric} is better is unknown; give the claim a direction")]
    plans: list[Plan] = []
    for a, b in claim_pairs(claim, groups, direction):
        gone = [v for v in (a, b) if v is not None and not groups.get(v)]
        if gone:
            plans.append(Outcome(INCONCLUSIVE, f"no {metric} for {gone[0]}"))
        elif claim.kind in ("better", "extreme"):
            alt = "greater" if sign_of(direction) > 0 else "less"  # type: ignore[arg-type]
            plans.append((a, b, ctx.family.difference(metric, a, b, groups[a], groups[b], by, alt)))  # type: ignore[index,arg-type]
        elif claim.kind == "no_gain":
            key = ctx.family.no_gain(metric, a, b, groups[a], groups[b], claim.margin, sign_of(direction), by)  # type: ignore[arg-type,index]
            plans.append((a, b, key))
        else:
            plans.append(plan_level(claim, a, groups[a], metric, direction, ctx, by))
    return plans


def plan_level(
    claim: Claim, a: str, values: list[float], metric: str, direction: str | None, ctx: ClaimContext, by: str
) -> Plan:
    """A `chance` or `trains` test of one variant against its chance level."""
    level, why = ctx.level(claim, a, metric)
    if level is None:
        return Outcome(INCONCLUSIVE, f"{a}: {why}")
    if claim.kind == "chance":
        return a, None, ctx.family.chance(metric, a, values, level, claim.margin, by)  # type: ignore[arg-type]
    return a, None, ctx.family.trains(metric, a, values, level, claim.margin or 0.0, sign_of(direction or "max"), by)


def plan_sooner(claim: Claim, ctx: ClaimContext, by: str) -> list[Plan]:
    plans: list[Plan] = []
    for a, b in claim_pairs(claim, {}, None):
        da, db = target_data(ctx.by_variant.get(a) or []), target_data(ctx.by_variant.get(b) or [])
        if da is None or db is None:
            plans.append(Outcome(INCONCLUSIVE, f"no target reached/epochs recorded for {a if da is None else b}"))
        else:
            plans.append((a, b, ctx.family.sooner(a, b, da, db, by)))
    return plans


def deterministic(groups: dict[str, list[float]]) -> bool:
    """Every variant's values identical over its seeds: a count of the built model, not a measurement."""
    return all(hs.spread(x) == 0 for x in groups.values() if x)


def claim_pairs(claim: Claim, groups: dict[str, list[float]], direction: str | None) -> list[tuple[str, str | None]]:
    """The (a, b) pairs a claim's test compares: every a against every b; for `extreme`, each a against the best
    variant outside a (by mean); for `chance` and `trains`, each a alone."""
    a_list = members(claim.a)
    if claim.kind in ("chance", "trains"):
        return [(a, None) for a in a_list]
    if claim.kind != "extreme":
        return [(a, b) for a in a_list for b in members(claim.b)]
    sign = sign_of(direction or "max")
    means = {v: sum(x) / len(x) for v, x in groups.items() if x}
    others = [v for v in means if v not in a_list]
    if not others:
        return []
    rival = max(others, key=lambda v: sign * means[v])
    return [(a, rival) for a in a_list]


# --------------------------------------------------------------------------- verdicts from the closed family


def judged(
    claimed_p: float,
    opposite_p: float,
    member: Member,
    why_not: str,
    head: str,
    says: tuple[str, str],
    ctx: ClaimContext,
    method: str = "",
) -> Outcome:
    """The verdict of one test: confirmed when the claimed side is significant in the family, contradicted when
    the opposite side is, inconclusive when neither or when a variant's runs cannot decide (never contradicted)."""
    fam = ctx.family
    test = f"{method or member.method}, {fam.label_of(member)}"
    details = {
        "test": method or member.method,
        "p_holm": claimed_p,
        "p_opposite_holm": opposite_p,
        **key_details(member),
    }
    if member.main.reason:
        return Outcome(
            INCONCLUSIVE, f"{head}: no test ({member.main.reason})", "no test: " + member.main.reason, details
        )
    if why_not:
        member.blocked = why_not
        side = (
            "claimed side"
            if claimed_p < member.alpha
            else "opposite side"
            if opposite_p < member.alpha
            else "neither side"
        )
        p = min(claimed_p, opposite_p)
        return Outcome(
            INCONCLUSIVE,
            f"{head}: {why_not}, so the runs cannot decide ({side} significant: {test}, {fmt_p(p)})",
            why_not,
            details,
        )
    short = f"{SHORT[member.hypothesis]}, Holm-adjusted"
    if claimed_p < member.alpha:
        text = f"{head}: {says[0]} ({test}: {fmt_p(claimed_p)}); runs valid"
        return Outcome(CONFIRMED, text, f"{short} {fmt_p(claimed_p)}", details)
    if opposite_p < member.alpha:
        text = f"{head}: {says[1]} (the opposite one-sided test in the same family: {fmt_p(opposite_p)})"
        return Outcome(CONTRADICTED, text, f"the opposite holds: {short} {fmt_p(opposite_p)}", details)
    text = f"{head}: {not_significant(member, claimed_p, ctx)}"
    if member.hypothesis != "difference":  # a difference's opposite is the same test's other tail
        text += f"; nor its opposite ({says[1]}: {fmt_p(opposite_p)})"
    return Outcome(INCONCLUSIVE, text, f"not significant: {short} {fmt_p(claimed_p)}", details)


def key_details(m: Member) -> dict[str, Any]:
    return {k: v for k, v in (("a", m.a), ("b", m.b), ("level", m.level), ("margin", m.margin)) if v is not None} | {
        "difference": m.difference
    }


def not_significant(m: Member, p: float, ctx: ClaimContext) -> str:
    """Why a non-significant test says little: what these seeds could have detected, what it would take."""
    fam = ctx.family
    text = f"neither side significant ({m.method}, {fam.label_of(m)}: {fmt_p(p)})"
    if m.hypothesis == "sooner":
        return text + rank_floor(m, ctx)
    va, vb = m.values_a, m.values_b
    if m.hypothesis != "difference" or vb is None:
        return text + (f"; {hs.FEW_SEEDS}" if len(va) <= 3 else "")
    sa, sb = hs.spread(va), hs.spread(vb)
    level = min(2 * m.alpha / fam.size, 0.5)  # Holm's first step, one-sided as a two-sided level
    det = hs.detectable_difference(sa, sb, len(va), len(vb), alpha=level)
    if not math.isnan(det):
        text += f"; with {len(va)} vs {len(vb)} seeds " + detectable_text(det, metric_bounds(m.metric))
        text += "; " + needed_text(hs.seeds_needed(sa, sb, m.difference, alpha=level), m.difference)
    if min(len(va), len(vb)) <= 3:
        text += f"; {hs.FEW_SEEDS}"
    return text


def rank_floor(m: Member, ctx: ClaimContext) -> str:
    """When no outcome of a rank test at these seeds could pass Holm's first step, say so and what would."""
    first = m.alpha / ctx.family.size
    if m.min_p is None or m.min_p <= first:
        return ""
    need = hs.seeds_for_rank_test(first, sides=1)
    return (
        f"; at these seeds no outcome could: the smallest p a one-sided rank test can give is {m.min_p:.2g}, above "
        f"Holm's first threshold {first:.2g}; it needs ≥ {need} seeds per group in this family"
    )


def pair_text(a: str, b: str, va: list[float], vb: list[float]) -> str:
    return f"{a} {fmt(sum(va) / len(va))} vs {b} {fmt(sum(vb) / len(vb))}"


def verdict_of(claim: Claim, plan: Plan, ctx: ClaimContext) -> Outcome:
    if isinstance(plan, Outcome):
        return plan
    a, b, key = plan
    m = ctx.family.get(key)
    if m.hypothesis == "difference":
        return difference_verdict(claim, a, b, m, ctx)  # type: ignore[arg-type]
    if m.hypothesis == "sooner":
        says = (f"{a} reaches the target sooner than {b}", f"{b} reaches the target sooner than {a}")
        return judged(m.p, m.p_opposite, m, ctx.invalid([a, b]), f"{a} vs {b}, epochs to target", says, ctx)
    if m.hypothesis == "no_gain":
        head = pair_text(a, b, m.values_a, m.values_b or [])  # type: ignore[arg-type]
        says = (
            f"{a}'s gain over {b} is below the margin {m.margin:g}",
            f"{a} is better by more than the margin {m.margin:g}",
        )
        return judged(m.p, m.p_opposite, m, ctx.invalid([a, b]), head, says, ctx)  # type: ignore[list-item]
    head = f"{a} on {m.metric} {fmt(sum(m.values_a) / len(m.values_a))}, chance level {m.level:g}"
    if m.hypothesis == "chance":
        says = (f"within ±{m.margin:g} of it", f"beyond ±{m.margin:g} of it")
    else:
        says = (f"above it by more than {m.margin:g}", f"not above it by more than {m.margin:g}")
    return judged(m.p, m.p_opposite, m, ctx.invalid([a], UNFIT), head, says, ctx)


def difference_verdict(claim: Claim, a: str, b: str, m: Member, ctx: ClaimContext) -> Outcome:
    """`better` and `extreme`: the claimed direction of mean(a) - mean(b), the family's one test of the pair."""
    view = ctx.family.view(m.key, a, b)
    sign = sign_of(ctx.direction(claim, m.metric) or "max")
    claimed = "greater" if sign > 0 else "less"
    va, vb = (m.values_a, m.values_b) if not view.flipped else (m.values_b, m.values_a)
    head = pair_text(a, b, va, vb or [])  # type: ignore[arg-type]
    if claim.kind == "extreme":
        head = f"{'highest' if sign > 0 else 'lowest'} {m.metric}: {head} (the best other variant)"
    word = "better" if m.metric == ctx.analysis["metric"] else "higher" if sign > 0 else "lower"
    says = (f"{a} is significantly {word}", f"{b} is significantly {word}")
    p, q = view.p_for(claimed), view.p_for(FLIP[claimed])  # type: ignore[arg-type]
    out = judged(p, q, m, ctx.invalid([a, b]), head, says, ctx, view.method)
    sup = ctx.superiority.get((a, b))
    if sup and m.metric == ctx.analysis["metric"]:
        out.reason += f"; P({a} > {b}) over seeds and test examples {sup['p_a_better']:.2f}"
    return out


# --------------------------------------------------------------------------- arithmetic checks


def ratio(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    metric = ctx.metric(claim)
    groups, why = ctx.values(metric)
    if why:
        return [Outcome(INCONCLUSIVE, why)]
    if claim.value is None:
        return [Outcome(INCONCLUSIVE, "a ratio claim needs a value")]
    out = []
    for a, b in claim_pairs(claim, groups, None):
        if not groups.get(a) or not groups.get(b or ""):
            out.append(Outcome(INCONCLUSIVE, f"no {metric} for {a if not groups.get(a) else b}"))
            continue
        assert b is not None
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
        out.append(Outcome(CONFIRMED if ok else CONTRADICTED, text, f"{r:.3g}", {"a": a, "b": b, "ratio": r}))
    return out


def extreme_check(claim: Claim, ctx: ClaimContext) -> list[Outcome]:
    """`extreme` on a quantity identical over every variant's seeds: strictly beyond the best other, or not."""
    metric = ctx.metric(claim)
    groups, _ = ctx.values(metric)
    direction = ctx.direction(claim, metric)
    if direction is None:
        return [Outcome(INCONCLUSIVE, f"which way {metric} is extreme is not given; give the claim a direction")]
    word = "highest" if direction == "max" else "lowest"
    missing = [a for a in members(claim.a) if a not in groups]
    if missing:
        return [Outcome(INCONCLUSIVE, f"no {metric} for {', '.join(missing)}")]
    pairs = claim_pairs(claim, groups, direction)
    if not pairs:
        return [Outcome(INCONCLUSIVE, "no other variant to compare with")]
    out = []
    for a, rival in pairs:
        va, vr = groups[a], groups[rival]  # type: ignore[index]
        beyond = sign_of(direction) * (va[0] - vr[0]) > 0
        text = f"{word} {metric}: {pair_text(a, rival, va, vr)} (the best other variant); identical over seeds, so "  # type: ignore[arg-type]
        text += "strictly beyond" if beyond else "not beyond"
        out.append(Outcome(CONFIRMED if beyond else CONTRADICTED, text, "strictly beyond" if beyond else "not beyond"))
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
    family: Family | None = None,
) -> tuple[list[dict[str, Any]], Family]:
    """([{claim, kind, type, metric, verdict, reason, brief, details}] in the spec's order, the closed family).

    The family holds the headline comparisons of `analysis` and every claim's tests; `type` is "claim"
    (inferential) or "check" (arithmetic: `ratio`, `extreme` on a quantity identical over seeds)."""
    family = family or Family(alpha)
    add_headline(family, analysis)
    ctx = ClaimContext(runs, analysis, chance, family)
    plans: list[list[Plan] | None | Outcome] = []
    for i, claim in enumerate(claims):
        unknown = unknown_variants(claim, ctx.variants)
        if unknown:
            text = f"no variant {', '.join(unknown)} in these runs (variants: {', '.join(ctx.variants)})"
            plans.append(Outcome(INCONCLUSIVE, text))
        else:
            plans.append(plan_claim(claim, i, ctx))
    family.close()
    out = []
    for claim, plan in zip(claims, plans):
        if isinstance(plan, Outcome):
            outcomes, kind = [plan], "claim"
        elif plan is None:
            check: Callable[[Claim, ClaimContext], list[Outcome]] = ratio if claim.kind == "ratio" else extreme_check
            outcomes, kind = check(claim, ctx), "check"
        else:
            outcomes, kind = [verdict_of(claim, p, ctx) for p in plan], "claim"
        verdict, reason, brief = combine(outcomes)
        out.append(
            {
                "index": len(out) + 1,
                "claim": claim.claim,
                "kind": claim.kind,
                "type": kind,
                "metric": ctx.metric(claim),
                "verdict": verdict,
                "reason": reason,
                "brief": brief,
                "details": [o.details for o in outcomes if o.details],
            }
        )
    return out, family
