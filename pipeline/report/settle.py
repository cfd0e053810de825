"""Sequential looks: which seeds a study's claims still need, replayed from its runs (docs/statistics.md, section 9).

A study with `seeds: {min: m, max: M}` is analysed at planned looks (`pipeline.sequential.Design`): every variant at
m seeds first; after each look, only the variants that an undecided, not futile claim names get the next look's
seeds. Each look tests, with Holm at that look's share of alpha, every test of the study's family (`gate.Family`)
that no earlier look decided; a decided test keeps its verdict, look and p.

`replay` is a pure function of the runs: it takes, look by look, the first n seeds of each variant that the rule
asked for, so the study stage (which trains what the next look needs) and the report (which states how each claim
was settled) replay the same looks from the same runs. The analysis of one look is passed in (`Analyse`): the
report's own, sections included, on that look's runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import honest_stats as hs
from pipeline import runs as rn
from pipeline.config import Study
from pipeline.report.gate import Family, Member
from pipeline.runs import Run
from pipeline.sequential import Design, futile

# One look's analysis: (the look's runs, its family) -> the analysis with its claims (`index`: 1-based, in the
# spec's order), the family closed
Analyse = Callable[[list[Run], Family], dict[str, Any]]
Key = tuple[Any, ...]


@dataclass
class Look:
    """What one look saw and decided."""

    index: int  # 0-based
    seeds: dict[str, int]  # per variant
    level: float
    spent: float
    decided: list[int] = field(default_factory=list)  # the claims (0-based) this look decided
    needs: list[str] = field(default_factory=list)  # the variants the next look gives more seeds

    def record(self) -> dict[str, Any]:
        return {
            "look": self.index + 1,
            "seeds": self.seeds,
            "level": self.level,
            "alpha_spent": self.spent,
            "claims_decided": [i + 1 for i in self.decided],
            "more_seeds_for": self.needs,
        }


@dataclass
class Settlement:
    """The looks replayed so far, and what comes next."""

    design: Design
    looks: list[Look]
    settled: dict[Key, Member]  # every test decided before the last look
    runs: list[Run]  # the last look's runs
    wanted: dict[str, int] | None  # seeds per variant the next look needs (None: the study is settled)
    analysis: dict[str, Any] | None = None  # the last look's

    @property
    def last(self) -> Look:
        return self.looks[-1]

    def family(self) -> Family:
        """A new family for the last look, as it was tested (for the report's own analysis of that look)."""
        k = self.last.index
        return Family(self.design.level(k), settled=dict(self.settled), look=k, looks=len(self.design.looks()))


def seeds_of(runs: list[Run]) -> dict[str, set[int]]:
    """variant -> the seeds it has a run of (finished or not: a failed trial is not trained again)."""
    out: dict[str, set[int]] = {}
    for r in runs:
        out.setdefault(rn.variant(r), set()).add(rn.seed(r))
    return out


def runs_at(runs: list[Run], seeds: dict[str, int], base: int) -> list[Run]:
    """Each variant's runs of its first `seeds[variant]` seeds (base, base + 1, ...), in runs.json's order."""
    return [r for r in runs if rn.seed(r) - base < seeds.get(rn.variant(r), 0)]


def replay(study: Study, variants: list[str], runs: list[Run], analyse: Analyse) -> Settlement:
    """The study's looks over `runs`, as far as they go: the last look's analysis, and the seeds the next look needs
    (`wanted`, None once settled). `variants`: every variant of the study's grid, in its order."""
    design, base = Design.of(study.spec.seeds), study.params.seed
    have = seeds_of(runs)
    n = dict.fromkeys(variants, design.looks()[0])
    settled: dict[Key, Member] = {}
    decided_now: dict[Key, Member] = {}
    looks: list[Look] = []
    sub: list[Run] = []
    analysis: dict[str, Any] | None = None
    for k in range(len(design.looks())):
        if any(not set(range(base, base + n[v])) <= have.get(v, set()) for v in variants):
            return Settlement(design, looks, _before(settled, decided_now), sub, dict(n), analysis)
        sub = runs_at(runs, n, base)
        family = Family(design.level(k), settled=dict(settled), look=k, looks=len(design.looks()))
        analysis = analyse(sub, family)
        look = Look(k, dict(n), design.level(k), design.spent(k))
        decided_now = {key: m for key, m in family.members.items() if key not in settled and m.decided}
        look.decided = [c["index"] - 1 for c in analysis["claims"] if _decided_at(c, family, k)]
        settled.update(decided_now)
        look.needs = needs(analysis["claims"], family, design)
        looks.append(look)
        more = design.next_seeds(k)
        if not look.needs or more is None:
            return Settlement(design, looks, _before(settled, decided_now), sub, None, analysis)
        for v in look.needs:
            n[v] = more
    raise AssertionError("unreachable: the last look returns")


def _before(settled: dict[Key, Member], last: dict[Key, Member]) -> dict[Key, Member]:
    """The tests decided before the last look (the last look's own decisions are made again when it is re-run)."""
    return {k: m for k, m in settled.items() if k not in last}


def _decided_at(claim: dict[str, Any], family: Family, look: int) -> bool:
    """A claim with a verdict whose deciding test was decided at this look."""
    if claim["verdict"] not in ("confirmed", "contradicted"):
        return False
    return any(m.look == look and m.decided for m in claim_members(family, claim["index"] - 1))


def claim_members(family: Family, i: int) -> list[Member]:
    return [m for m in family.members.values() if f"claim {i + 1}" in m.used_by]


def needs(claims: list[dict[str, Any]], family: Family, design: Design) -> list[str]:
    """The variants that an undecided claim's open tests name: not decided, not blocked by runs that cannot decide
    (not converged, diverged, no test), and not futile (`pipeline.sequential.futile`)."""
    out: list[str] = []
    for c in claims:
        if c["verdict"] != "inconclusive":
            continue
        for m in claim_members(family, c["index"] - 1):
            if is_open(m, design):
                out += [v for v in (m.a, m.b) if v is not None]
    return list(dict.fromkeys(out))


def is_open(m: Member, design: Design) -> bool:
    """More seeds could decide this test."""
    if m.decided or m.main.reason or m.blocked:
        return False
    distance = m.distance
    if distance is None:  # a rank test of epochs to target: no power model; more seeds until max
        return True
    sd_b = hs.spread(m.values_b) if m.values_b is not None else 0.0
    return not futile(hs.spread(m.values_a), sd_b, distance, design)


def claim_settlement(claims: list[dict[str, Any]], family: Family, plan: Settlement) -> list[dict[str, Any]]:
    """How each claim was settled, for analysis.json: the look that decided it, the seeds per variant, the alpha
    spent so far; or, for one still undecided, why it stays so."""
    design = plan.design
    out = []
    for c in claims:
        i = c["index"] - 1
        ms = claim_members(family, i)
        variants = list(dict.fromkeys(v for m in ms for v in (m.a, m.b) if v is not None))
        seeds = {v: plan.last.seeds.get(v) for v in variants}
        if c["verdict"] in ("confirmed", "contradicted") and ms:
            look = max(m.look for m in ms if m.decided)
            at = next(lk for lk in plan.looks if lk.index == look)
            rec = {"look": look + 1, "seeds": {v: at.seeds.get(v) for v in variants}, "alpha_spent": at.spent}
        else:
            rec = {"look": None, "seeds": seeds, "alpha_spent": plan.last.spent, "why": why_open(ms, design, plan)}
        out.append({"claim": i + 1, **rec})
    return out


def why_open(ms: list[Member], design: Design, plan: Settlement) -> str:
    if not ms:
        return "no test: the claim could not be put to the runs (see its reason)"
    blocked = next((m.blocked for m in ms if m.blocked), "")
    if blocked:
        return f"more seeds cannot decide it: {blocked}"
    if any(m.main.reason for m in ms):
        return "more seeds cannot decide it: no test (see its reason)"
    if plan.wanted is None and any(is_open(m, design) for m in ms):
        return f"still undecided at the last look ({design.max_seeds} seeds per variant, the most the study allows)"
    return (
        f"futile: at the spread seen, even {design.max_seeds} seeds per variant would be unlikely to decide it "
        "(80% power at the last look's level), so it got no more seeds"
    )


def seeds_text(seeds: dict[str, int | None]) -> str:
    """'4 vs 2 seeds (0.03, 0.3)', or '3 seeds' when the variants agree."""
    counts = [n for n in seeds.values() if n is not None]
    if not counts:
        return "no seeds"
    if len(set(counts)) == 1:
        return f"{counts[0]} seed{'s' if counts[0] != 1 else ''} per variant"
    return " vs ".join(map(str, counts)) + f" seeds ({', '.join(seeds)})"


def settled_texts(claims: list[dict[str, Any]], family: Family, plan: Settlement | None) -> list[str]:
    """For each claim, in a few words: the seeds it used and, with looks, the look that decided it and the alpha
    spent by then, or why it is still undecided."""
    if plan is None:
        out = []
        for c in claims:
            ms = claim_members(family, c["index"] - 1)
            seeds: dict[str, int | None] = {}
            for m in ms:
                seeds[m.a] = len(m.values_a)
                if m.b is not None and m.values_b is not None:
                    seeds[m.b] = len(m.values_b)
            out.append(seeds_text(seeds) if ms else "")
        return out
    looks = len(plan.design.looks())
    out = []
    for rec in claim_settlement(claims, family, plan):
        spent = f"alpha spent {rec['alpha_spent']:.3g} of {plan.design.alpha:g}"
        if rec["look"] is not None:
            out.append(f"decided at look {rec['look']} of {looks}: {seeds_text(rec['seeds'])}; {spent}")
        else:
            out.append(
                f"undecided after look {plan.last.index + 1} of {looks}: {seeds_text(rec['seeds'])}; {spent}; "
                f"{rec['why']}"
            )
    return out
