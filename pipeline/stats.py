"""Statistics over seeds: summarize a metric per variant, rank variants, test each against the best."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Mode = Literal["max", "min"]
Test = Literal["welch", "permutation"]


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1); 0.0 when n == 1
    ci_low: float | None  # Student-t confidence interval of the mean; None when n < 2
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    variant: str
    rank: int  # 1 = best
    summary: Summary
    p_value: float | None  # vs the best; None for the best itself or when either side has n < 2
    significant: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std and Student-t confidence interval of the mean."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"expected a flat sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot summarize an empty sequence")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"non-finite values {[float(x[i]) for i in bad]} at positions {bad.tolist()}")

    n = int(x.size)
    if x.min() == x.max():
        # np.std([0.1] * 3) is 1.7e-17, not 0: identical seeds (and n == 1) must read as exactly no spread
        mean = float(x[0])
        ci = (mean, mean) if n > 1 else (None, None)
        return Summary(n, mean, 0.0, *ci)
    # float summation can land an ulp outside the data range
    mean = float(np.clip(x.mean(), x.min(), x.max()))
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _p_value(a: np.ndarray, b: np.ndarray, sa: Summary, sb: Summary, test: Test, seed: int) -> float:
    if test == "permutation":
        # exact when C(na + nb, na) <= n_resamples; a fresh generator per pair keeps each p-value
        # independent of which other variants are in the comparison
        res = stats.permutation_test(
            (a, b),
            _mean_diff,
            vectorized=True,
            n_resamples=9999,
            alternative="two-sided",
            rng=np.random.default_rng(seed),
        )
        return float(res.pvalue)
    if sa.std == 0 and sb.std == 0:
        # Welch's statistic is 0/0 or x/0 here and scipy answers nan; constant groups either differ or not
        return 1.0 if sa.mean == sb.mean else 0.0
    # Welch from the summaries rather than ttest_ind on the raw values: the same test, but it uses the
    # exact zero spread of identical seeds instead of scipy's rounding-noise variance of them
    res = stats.ttest_ind_from_stats(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n, equal_var=False)
    return float(res.pvalue)


def compare(
    groups: Mapping[str, Sequence[float]],
    mode: Mode,
    alpha: float = 0.05,
    test: Test = "welch",
    seed: int = 0,
) -> list[Comparison]:
    """Rank variants by mean, best first (ties by name), and test each against the best."""
    if not groups:
        raise ValueError("compare needs at least one variant")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if test not in ("welch", "permutation"):
        raise ValueError(f"test must be 'welch' or 'permutation', got {test!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    data: dict[str, np.ndarray] = {}
    summaries: dict[str, Summary] = {}
    for name, values in groups.items():
        try:
            summaries[name] = summarize(values)
        except ValueError as e:
            raise ValueError(f"variant {name!r}: {e}") from None
        data[name] = np.asarray(values, dtype=float)

    sign = -1 if mode == "max" else 1
    order = sorted(summaries, key=lambda name: (sign * summaries[name].mean, name))
    best = order[0]
    out = []
    for rank, name in enumerate(order, start=1):
        s, sb = summaries[name], summaries[best]
        p = None
        if name != best and s.n >= 2 and sb.n >= 2:
            p = _p_value(data[name], data[best], s, sb, test, seed)
        out.append(Comparison(name, rank, s, p, p is not None and p < alpha))
    return out


def join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c' ('' for none): the one list-in-a-sentence of every report text."""
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _fmt_summary(s: Summary) -> str:
    if s.n == 1:
        return f"{s.mean:.4g}, n=1"
    if s.std == 0:
        return f"{s.mean:.4g} ± 0, n={s.n}"
    # round the mean to the precision of its spread: two significant digits of the std
    digits = min(10, max(0, 1 - math.floor(math.log10(s.std))))
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}, n={s.n}"


def describe_finding(comparisons: list[Comparison], metric: str, mode: str, *, alpha: float | None = None) -> str:
    """One or two sentences on the best variant and how it stands against the others (± is the sample std).

    `alpha`, when given, is named in the text; it must agree with the `significant` flags.
    """
    if not comparisons:
        raise ValueError("no comparisons to describe")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if alpha is not None and any(c.p_value is not None and (c.p_value < alpha) != c.significant for c in comparisons):
        raise ValueError(f"alpha {alpha} does not match the significance flags; pass the alpha compare used")

    ordered = sorted(comparisons, key=lambda c: c.rank)
    best, others = ordered[0], ordered[1:]
    extreme = "highest" if mode == "max" else "lowest"
    if not others:
        return (
            f"{best.variant} is the only variant ({metric} {_fmt_summary(best.summary)}); there is nothing to compare."
        )

    head = f"{best.variant} has the {extreme} {metric} ({_fmt_summary(best.summary)})"
    better = [f"{c.variant} ({_fmt_p(c.p_value)})" for c in others if c.p_value is not None and c.significant]
    same = [f"{c.variant} ({_fmt_p(c.p_value)})" for c in others if c.p_value is not None and not c.significant]
    untested = [c.variant for c in others if c.p_value is None]

    if not better and not same:
        if all(c.summary.n == 1 for c in ordered):
            return f"{head}; with one seed per variant no difference can be tested."
        if best.summary.n == 1:
            return f"{head}; with one seed for {best.variant} no difference from it can be tested."
        verb = "has" if len(untested) == 1 else "have"
        return f"{head}; {join(untested)} {verb} one seed, so no difference can be tested."

    clauses = []
    if better:
        clauses.append(f"significantly better than {join(better)}")
    if same:
        clauses.append(f"not distinguishable from {join(same)}")
    at = f" at alpha {alpha:g}" if alpha is not None else ""
    text = f"{head}; it is {', and '.join(clauses)}{at}."
    if untested:
        verb = "has" if len(untested) == 1 else "have"
        text += f" {join(untested)} {verb} a single seed and could not be tested."
    return text
