"""One gate for every sentence: the study's one multiplicity family, and a checker of the prose against it.

The family is every test a sentence of the report states: the headline comparisons (all pairs, or every variant
against the declared baseline, on the headline metric) and every inferential claim's tests. Each test is run
once, and every place that names it (the answer, the table's p column, the claims) shows that one result:

- `difference` (metric, a, b): Welch's t-test (`honest_stats.mean_test`: a one-sample t-test against an arm whose
  seeds are identical), one-sided in the direction a `better` or `extreme` claim states, else two-sided;
- `no_gain` (metric, a, b, margin): non-superiority, one-sided Welch against the declared margin;
- `chance` (metric, a, level, margin): TOST equivalence of a's mean to the chance level within ±margin;
- `trains` (metric, a, level, margin): one-sided test above chance + margin;
- `sooner` (a, b): the one-sided censored Gehan-Wilcoxon test of epochs to target.

Holm's step-down (statsmodels `multipletests`) adjusts all of them together. A one-sided test's opposite (the
claim contradicted) is judged in the same family: the member's p replaced by the opposite test's, re-adjusted.
docs/statistics.md gives the rules and the family-wise error measured by benchmarks/claims_fwer.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from statsmodels.stats.multitest import multipletests

from pipeline import honest_stats as hs
from pipeline.honest_stats import Alternative, MeanTest

FLIP = hs.FLIP  # the other side of a one-sided test


@dataclass
class Member:
    """One test of the family, about d = mean(a) - mean(b) (or - level) unless `hypothesis` is `sooner`."""

    key: tuple[Any, ...]
    hypothesis: str
    metric: str
    a: str
    b: str | None
    alternative: str  # of `main`, in (a, b)'s orientation; "equivalent" for TOST
    main: MeanTest
    opposite: MeanTest | None  # what contradicts a claim: None for a two-sided test
    difference: float
    values_a: list[float]
    values_b: list[float] | None = None
    level: float | None = None
    margin: float | None = None
    min_p: float | None = None  # a rank test's smallest possible p (`sooner`)
    used_by: list[str] = field(default_factory=list)
    p: float = 1.0  # Holm-adjusted over the family
    p_opposite: float = 1.0  # Holm-adjusted with this member's p replaced by its opposite's
    blocked: str = ""  # why the runs cannot decide it whatever the test says (a variant not converged): no more seeds
    alpha: float = 0.05  # the level it was judged at: its look's share of the study's alpha (`pipeline.sequential`)
    look: int = 0  # the look that tested it last (the one that decided it, once it is decided)

    def __post_init__(self) -> None:
        # mean_test names the arms "a" and "b"; a sentence names the variants
        for name in ("main", "opposite"):
            t = getattr(self, name)
            if t is not None and self.b is not None:
                method = t.method.replace("of a against b's", f"of {self.a} against {self.b}'s")
                setattr(
                    self, name, replace(t, method=method.replace("of b against a's", f"of {self.b} against {self.a}'s"))
                )

    @property
    def method(self) -> str:
        """The test in words, sidedness included."""
        m = self.main.method
        if self.hypothesis == "difference":
            return f"{'two' if self.alternative == 'two-sided' else 'one'}-sided {m}"
        if self.hypothesis == "no_gain":
            return f"non-superiority: one-sided {m} against the margin {self.margin:g}"
        return f"one-sided {m}" if self.hypothesis == "trains" else m

    @property
    def decided(self) -> bool:
        """Significant on one side at its level: its claimed side (either, for a two-sided test) or the opposite."""
        if self.main.reason:
            return False
        return self.p < self.alpha or (self.opposite is not None and self.p_opposite < self.alpha)

    @property
    def distance(self) -> float | None:
        """How far the observed value is from the test's null boundary, in the metric's units (None for `sooner`):
        what `pipeline.sequential.futile` asks more seeds to resolve."""
        if self.hypothesis == "difference":
            return self.difference
        if self.hypothesis in ("no_gain", "trains"):
            return self.difference - self.key[-1] * (self.margin or 0.0)  # the key ends with the claim's sign
        if self.hypothesis == "chance":
            return (self.margin or 0.0) - abs(self.difference)
        return None

    def record(self) -> dict[str, Any]:
        """The member as analysis.json's `family.tests` keeps it."""
        return {
            "hypothesis": self.hypothesis,
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "level": self.level,
            "margin": self.margin,
            "alternative": self.alternative,
            "method": self.method,
            "reason": self.main.reason,
            "difference": self.difference,
            "p_raw": self.main.p_value,
            "p": self.p,
            "p_opposite": self.p_opposite if self.opposite is not None else None,
            "alpha": self.alpha,
            "look": self.look,
            "decided": self.decided,
            "used_by": self.used_by,
        }


@dataclass
class View:
    """A member seen from the orientation (a, b) a sentence names it in."""

    member: Member
    a: str
    b: str
    alpha: float

    @property
    def flipped(self) -> bool:
        return self.member.a != self.a

    @property
    def difference(self) -> float:
        return -self.member.difference if self.flipped else self.member.difference

    def p_for(self, alternative: Alternative) -> float:
        """Holm-adjusted p of the test whose H1 is mean(a) > mean(b) ("greater") or < ("less") in this view."""
        m = self.member
        alt = FLIP[alternative] if self.flipped else alternative
        if m.alternative == "two-sided":
            return m.p if (m.difference > 0) == (alt == "greater") else 1.0
        return m.p if alt == m.alternative else m.p_opposite

    @property
    def side(self) -> int:
        """+1 when mean(a) > mean(b) is significant, -1 when mean(a) < mean(b) is, 0 when neither."""
        if self.member.main.reason:
            return 0
        if self.p_for("greater") < self.alpha:
            return 1
        return -1 if self.p_for("less") < self.alpha else 0

    @property
    def p(self) -> float:
        """The one p this pair is shown with everywhere: the significant side's, else the main test's."""
        s = self.side
        return self.p_for("greater" if s > 0 else "less") if s else self.member.p

    @property
    def method(self) -> str:
        m = self.member
        if m.alternative == "two-sided":
            return m.method
        claimed = FLIP[m.alternative] if self.flipped else m.alternative
        where = f"{self.a} {'above' if claimed == 'greater' else 'below'} {self.b}"
        return f"{m.method} (H1: {where}, as a claim states)"


class Family:
    """Collects the tests every sentence needs, runs each once and adjusts them together (`close`).

    In a study with sequential looks (`pipeline.report.settle`), `alpha` is the look's level and `settled` holds the
    tests an earlier look decided: each keeps its verdict, level, look and p, and leaves the Holm adjustment."""

    def __init__(
        self, alpha: float, *, settled: dict[tuple[Any, ...], Member] | None = None, look: int = 0, looks: int = 1
    ) -> None:
        self.alpha = alpha
        self.look, self.looks = look, looks
        self.settled = settled or {}
        self.members: dict[tuple[Any, ...], Member] = {}
        self.closed = False

    def _add(self, member: Member, by: str) -> tuple[Any, ...]:
        assert not self.closed, "the family is closed"
        if member.key in self.settled:
            member = self.settled[member.key]
        else:
            member.alpha, member.look = self.alpha, self.look
        old = self.members.get(member.key)
        if old is None or (old.alternative == "two-sided" and member.alternative != "two-sided"):
            if old is not None:
                member.used_by = old.used_by
            self.members[member.key] = member
        if by not in self.members[member.key].used_by:
            self.members[member.key].used_by.append(by)
        return member.key

    def difference(
        self,
        metric: str,
        a: str,
        b: str,
        va: Sequence[float],
        vb: Sequence[float],
        by: str,
        alternative: Alternative = "two-sided",
    ) -> tuple[Any, ...]:
        """mean(a) vs mean(b): one-sided when `alternative` is, which overrides a two-sided request of the pair."""
        main = hs.mean_test(va, vb, alternative=alternative)
        opp = hs.mean_test(va, vb, alternative=FLIP[alternative]) if alternative != "two-sided" else None
        diff = sum(va) / len(va) - sum(vb) / len(vb)
        key = ("difference", metric, *sorted((a, b)))
        return self._add(Member(key, "difference", metric, a, b, alternative, main, opp, diff, list(va), list(vb)), by)

    def no_gain(
        self, metric: str, a: str, b: str, va: Sequence[float], vb: Sequence[float], margin: float, sign: int, by: str
    ) -> tuple[Any, ...]:
        """H1: a's gain over b (sign = +1 when higher is better) is below `margin`."""
        alt: Alternative = "less" if sign > 0 else "greater"
        shift = sign * margin
        main = hs.mean_test(va, vb, alternative=alt, shift=shift)
        opp = hs.mean_test(va, vb, alternative=FLIP[alt], shift=shift)
        diff = sum(va) / len(va) - sum(vb) / len(vb)
        key = ("no_gain", metric, a, b, margin, sign)
        member = Member(key, "no_gain", metric, a, b, alt, main, opp, diff, list(va), list(vb), margin=margin)
        return self._add(member, by)

    def chance(self, metric: str, a: str, va: Sequence[float], level: float, margin: float, by: str) -> tuple[Any, ...]:
        """H1: |mean(a) - level| < margin (TOST); its opposite: beyond the margin on either side."""
        main, opp = hs.equivalence_test(va, level=level, margin=margin)
        diff = sum(va) / len(va) - level
        key = ("chance", metric, a, level, margin)
        member = Member(
            key, "chance", metric, a, None, "equivalent", main, opp, diff, list(va), level=level, margin=margin
        )
        return self._add(member, by)

    def trains(
        self, metric: str, a: str, va: Sequence[float], level: float, margin: float, sign: int, by: str
    ) -> tuple[Any, ...]:
        """H1: a is above chance (in the metric's better direction) by more than `margin`."""
        alt: Alternative = "greater" if sign > 0 else "less"
        main = hs.mean_test(va, level=level, alternative=alt, shift=sign * margin)
        opp = hs.mean_test(va, level=level, alternative=FLIP[alt], shift=sign * margin)
        diff = sum(va) / len(va) - level
        key = ("trains", metric, a, level, margin, sign)
        member = Member(key, "trains", metric, a, None, alt, main, opp, diff, list(va), level=level, margin=margin)
        return self._add(member, by)

    def sooner(self, a: str, b: str, data_a: tuple, data_b: tuple, by: str) -> tuple[Any, ...]:
        """H1: a reaches the target in fewer epochs than b (censored; `data_*` from `analysis.target_data`)."""
        (ra, ea, ma), (rb, eb, mb) = data_a, data_b
        tests = [
            hs.compare_time_to_target(ra, ea, rb, eb, max(ma, mb), alpha=self.alpha, alternative=alt)
            for alt in ("greater", "less")
        ]
        main, opp = (MeanTest(t.p_value, t.method) for t in tests)
        key = ("sooner", "epochs_to_target", a, b)
        member = Member(key, "sooner", "epochs_to_target", a, b, "greater", main, opp, tests[0].statistic, [])
        member.min_p = tests[0].min_p
        return self._add(member, by)

    def close(self) -> Family:
        """Holm over every member an earlier look has not decided; each one-sided member's opposite in the same
        family."""
        members = [m for k, m in self.members.items() if k not in self.settled]
        self.closed = True
        if not members:
            return self
        raw = [m.main.p_value for m in members]
        for m, p in zip(members, multipletests(raw, alpha=self.alpha, method="holm")[1]):
            m.p = float(p)
        for i, m in enumerate(members):
            if m.opposite is not None:
                swapped = [*raw[:i], m.opposite.p_value, *raw[i + 1 :]]
                m.p_opposite = float(multipletests(swapped, alpha=self.alpha, method="holm")[1][i])
        return self

    def view(self, key: tuple[Any, ...], a: str, b: str) -> View:
        assert self.closed, "close the family first"
        return View(self.members[key], a, b, self.members[key].alpha)

    def get(self, key: tuple[Any, ...]) -> Member:
        assert self.closed, "close the family first"
        return self.members[key]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def label(self) -> str:
        """How a sentence names the correction."""
        return f"Holm-adjusted over the study's {self.size} test{'s' if self.size != 1 else ''}"

    def label_of(self, m: Member) -> str:
        """How a sentence names the correction of one member: with its look's level once there are looks."""
        if self.looks == 1:
            return self.label
        return (
            f"Holm-adjusted over the tests still open at look {m.look + 1} of {self.looks}, at its level {m.alpha:.3g}"
        )

    def record(self) -> dict[str, Any]:
        return {
            "correction": "holm",
            "alpha": self.alpha,
            "look": self.look,
            "looks": self.looks,
            "size": self.size,
            "tests": [m.record() for m in self.members.values()],
        }


# --------------------------------------------------------------------------- the checker


# Words that rank or compare; a sentence with one must name only pairs the family found significant.
RANKING = re.compile(
    r"\b(best|ranks? first|ahead of|beats?|better than|worse than|outperforms?|shrinks?|raises?|higher than|"
    r"lower than)\b",
    re.IGNORECASE,
)
# Uses of those words that rank no variant: the checkpoint, the selected run, a bound of the metric.
NOT_RANKING = re.compile(
    r"best[- ](validation|checkpoint|epoch|run|possible|val_\w+|other variant|\w+ of each run)|"
    r"its epoch with the best|no better than|not (significantly )?(better|worse)|"
    r"significantly (better|worse) \(|what \w+ (shrinks|raises)",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n+")


def _variants_in(sentence: str, variants: Sequence[str]) -> list[str]:
    """The variants a sentence names, in the order it names them, each once. Longest names first, and a name must
    stand alone (not inside a longer name or number), so "[64]" is not read in "[64,64]" nor "3" in "0.3"."""
    found: list[tuple[int, str]] = []
    taken = sentence
    for v in sorted(variants, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w=.\[-])(?<!\w,)" + re.escape(v) + r"(?![\w=\]-]|[.,][\w\[])")
        for m in pattern.finditer(taken):
            found.append((m.start(), v))
            taken = taken[: m.start()] + " " * len(v) + taken[m.end() :]
    return list(dict.fromkeys(v for _, v in sorted(found)))


def significant_pairs(analysis: dict[str, Any]) -> set[frozenset[str]]:
    """The pairs the family found different, on any metric, in either direction (comparison tests only)."""
    alpha = analysis.get("alpha", 0.05)
    out = set()
    for t in (analysis.get("family") or {}).get("tests", []):
        if t["b"] is None or t["hypothesis"] not in ("difference", "sooner") or t["reason"]:
            continue
        if t["p"] < alpha or (t["p_opposite"] is not None and t["p_opposite"] < alpha):
            out.add(frozenset((t["a"], t["b"])))
    return out


def disagreements(analysis: dict[str, Any], summary_text: str) -> list[str]:
    """The sentences of a summary.md that rank or compare variants without the family's support.

    A sentence with a ranking word ("best", "ranks first", "ahead of", "beats", "better than", "worse than",
    "outperform", "shrink", "raise", "higher than", "lower than") must name at least two variants, and the first
    it names must differ significantly from each other one it names. The study's claims are the spec's words,
    not the report's findings, and are left out; so are the table rows."""
    variants = list(analysis.get("variants") or {})
    sig = significant_pairs(analysis)
    text = summary_text
    spec_words = [analysis.get("question") or ""] + [
        c["claim"] for c in analysis.get("claims", []) + analysis.get("checks", [])
    ]
    for words in filter(None, spec_words):
        text = text.replace(words, " ")
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("|") and "**" not in line:  # the table's rows; claims rows have **verdicts**
            continue
        for sentence in _SENTENCE.split(line):
            words = RANKING.findall(NOT_RANKING.sub(" ", sentence))
            if not words:
                continue
            named = _variants_in(sentence, variants)
            if len(named) < 2:
                out.append(f"ranks without naming a tested pair ({words[0]}): {sentence.strip()[:300]}")
                continue
            first, rest = named[0], named[1:]
            unsupported = [v for v in rest if frozenset((first, v)) not in sig]
            if unsupported:
                out.append(
                    f"'{words[0]}' for {first} vs {', '.join(unsupported)}, not significant in the study's family: "
                    f"{sentence.strip()[:300]}"
                )
    return out


def check_reports(folder: str) -> int:
    """`python -m pipeline.report.gate reports`: every study report under `folder` (its summary.md and analysis.json)
    checked by `disagreements`; one line per sentence that outruns its study's tests, exit 1 if there is any."""
    import json
    from pathlib import Path

    found, checked = 0, 0
    for analysis_file in sorted(Path(folder).glob("*/analysis.json")):
        summary = analysis_file.with_name("summary.md")
        if not summary.is_file():
            continue
        checked += 1
        for line in disagreements(json.loads(analysis_file.read_text()), summary.read_text()):
            print(f"{summary}: {line}")
            found += 1
    print(f"{checked} reports checked, {found} sentences rank or compare without their study's tests")
    return 1 if found or not checked else 0


if __name__ == "__main__":
    import sys

    sys.exit(check_reports(sys.argv[1] if len(sys.argv) > 1 else "reports"))
