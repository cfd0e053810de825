"""Statistics over 2-5 seeds that hold up: bounded intervals, comparisons with multiplicity control, P(A > B)
over seeds and test examples, censored time-to-target, detectable differences and validity checks.

A leaf module: numpy, scipy and statsmodels only, nothing of the project. Why each method was chosen and the
coverage / error rates measured by benchmarks/stats_coverage.py are in docs/statistics.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

Mode = Literal["max", "min"]
Scale = Literal["logit", "log", "identity"]
Bounds = tuple[float | None, float | None]
Seed = int | np.random.Generator | None

NO_SPREAD = "no spread: seeds agree exactly; a test needs variation"
ONE_SEED = "one seed: a test needs at least two per variant"
FEW_SEEDS = "with ≤ 3 seeds, seed variance is poorly known"


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


def _flat(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{what}: expected a non-empty flat sequence of numbers, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{what}: non-finite values at positions {bad.tolist()}")
    return x


def _check_prob(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


# --- 1. interval of a variant's mean -----------------------------------------------------------------------


@dataclass(frozen=True)
class Interval(_AsDict):
    n: int
    mean: float  # arithmetic mean of the seeds
    low: float | None  # None when n == 1
    high: float | None
    confidence: float
    scale: Scale  # the scale the Student-t interval was computed on
    spread_known: bool  # False for one seed or identical seeds: the interval then knows nothing about noise
    reason: str = ""


def scale_for(bounds: Bounds | None) -> Scale:
    """logit for a metric bounded on both sides, log for one bound (loss, perplexity, seconds), else identity."""
    if bounds is None:
        return "identity"
    lo, hi = bounds
    if lo is not None and hi is not None:
        if not lo < hi:
            raise ValueError(f"bounds must have lo < hi, got {bounds}")
        return "logit"
    return "identity" if lo is None and hi is None else "log"


def _to_scale(x: np.ndarray, bounds: Bounds | None, scale: Scale, eps: float) -> np.ndarray:
    lo, hi = bounds if bounds is not None else (None, None)
    if scale == "logit":
        # clipped so that a seed at exactly 0 or 1 gets a finite logit; eps ~ half a test example
        u = np.clip((x - lo) / (hi - lo), eps, 1 - eps)
        return special.logit(u)
    if scale == "log":
        d = x - lo if lo is not None else hi - x
        # a value on the bound (a loss of exactly 0) is moved eps (relative) inside it
        return np.log(np.maximum(d, eps * d.max()))
    return x


def _from_scale(z: np.ndarray, bounds: Bounds | None, scale: Scale) -> np.ndarray:
    lo, hi = bounds if bounds is not None else (None, None)
    if scale == "logit":
        return lo + (hi - lo) * special.expit(z)
    if scale == "log":
        return lo + np.exp(z) if lo is not None else hi - np.exp(z)
    return z


def interval(
    values: Sequence[float] | np.ndarray,
    bounds: Bounds | None = None,
    confidence: float = 0.95,
    *,
    n_examples: int | None = None,
) -> Interval:
    """Interval of the arithmetic mean that stays inside the metric's range: Student-t on a transformed scale
    (logit / log / identity, see `scale_for`) with a Cox-type correction for the back-transform, mapped back.
    `n_examples` (test-set size) sets the logit clipping to half an example; otherwise 1e-4."""
    _check_prob(confidence, "confidence")
    x = _flat(values)
    scale = scale_for(bounds)
    lo, hi = bounds if bounds is not None else (None, None)
    if (lo is not None and x.min() < lo) or (hi is not None and x.max() > hi):
        raise ValueError(f"values {x.tolist()} fall outside the bounds {bounds}")
    n = int(x.size)
    mean = float(np.clip(x.mean(), x.min(), x.max()))  # float summation can land an ulp outside the data
    if n == 1:
        return Interval(1, mean, None, None, confidence, scale, False, "one seed: no interval")
    if x.min() == x.max():
        return Interval(n, float(x[0]), float(x[0]), float(x[0]), confidence, scale, False, NO_SPREAD)
    eps = 0.5 / n_examples if n_examples else 1e-4
    z = _to_scale(x, bounds, scale, eps)
    if z.min() == z.max():
        # distinct seeds merged by the clipping: report their range, but the spread is not measured
        reason = f"seeds differ only within the clipping precision {eps:g}"
        return Interval(n, mean, float(x.min()), float(x.max()), confidence, scale, False, reason)
    m, s2 = float(z.mean()), float(z.var(ddof=1))
    # Mapped back, the plain t interval of mean(z) is one for the seeds' median (logit) or geometric mean (log),
    # which misses the arithmetic mean by ~k s^2 / 2 on this scale (k = g''/g' of the back-map g: 1 - 2p for
    # expit, 1 for exp). Cox's correction for the log-normal mean, generalized: shift the centre by that much
    # and add the variance of estimating the shift. Without it, coverage at 5-10 seeds fell to 0.82-0.92.
    k = {"logit": 1 - 2 * float(special.expit(m)), "log": 1.0, "identity": 0.0}[scale]
    se = math.sqrt(s2 / n + k**2 * s2**2 / (2 * (n - 1)))
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * se
    centre = m + k * s2 / 2
    ends = _from_scale(np.array([centre - half, centre + half]), bounds, scale)
    return Interval(n, mean, float(ends.min()), float(ends.max()), confidence, scale, True)


def spread(values: Sequence[float] | np.ndarray) -> float:
    """Sample std (ddof=1); exactly 0.0 for one value or identical values (np.std of identical floats is not 0)."""
    x = np.asarray(values, dtype=float)
    return 0.0 if x.size < 2 or _constant(x) else float(x.std(ddof=1))


@dataclass(frozen=True)
class Summary(_AsDict):
    """One variant's numbers as a report keeps them: the seeds, their mean and sample std, and `interval`'s
    interval of the mean (`ci_low`, `ci_high`: None for one seed)."""

    values: list[float]
    n: int
    mean: float
    std: float
    ci_low: float | None
    ci_high: float | None
    scale: Scale
    spread_known: bool
    note: str = ""  # why the interval is missing, degenerate or unbounded

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.note:  # the record says nothing rather than an empty note
            del d["note"]
        return d


def summarize(
    values: Sequence[float] | np.ndarray,
    bounds: Bounds | None = None,
    confidence: float = 0.95,
    *,
    n_examples: int | None = None,
    name: str = "the metric",
) -> Summary:
    """The seeds' mean, sample std and `interval` inside `bounds`. Seeds outside `bounds` (a metric whose name
    suggests a range its values do not keep, `name` in the note) get the identity-scale interval and a note
    saying so, rather than an error: the bounds are a guess from the name, the values are what was measured."""
    x = _flat(values)
    vals = x.tolist()
    note = ""
    lo, hi = bounds if bounds is not None else (None, None)
    if (lo is not None and x.min() < lo) or (hi is not None and x.max() > hi):
        bounds, note = None, f"values outside the usual range {lo, hi} of {name}: interval not bounded"
    iv = interval(x, bounds, confidence, n_examples=n_examples)
    note = "; ".join(s for s in (iv.reason, note) if s)
    return Summary(vals, iv.n, iv.mean, spread(x), iv.low, iv.high, iv.scale, iv.spread_known, note)


# --- 2. comparisons with multiplicity control --------------------------------------------------------------


@dataclass(frozen=True)
class PairTest(_AsDict):
    a: str
    b: str
    difference: float  # mean(a) - mean(b)
    p_value: float  # adjusted for the whole family; 1.0 when no test is defined (see reason)
    significant: bool
    method: str
    reason: str = ""


def _groups(groups: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    if not groups:
        raise ValueError("need at least one variant")
    out = {}
    for name, values in groups.items():
        out[name] = _flat(values, f"variant {name!r}")
    return out


def _constant(x: np.ndarray) -> bool:
    # exact, not std == 0: np.std([0.1] * 3) is 1.7e-17
    return bool(x.min() == x.max())


def _untestable(name_a: str, name_b: str, data: dict[str, np.ndarray], method: str, reason: str) -> PairTest:
    diff = float(data[name_a].mean() - data[name_b].mean())
    return PairTest(name_a, name_b, diff, 1.0, False, method, reason)


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # scipy warns about "precision loss" when a group's seeds are identical; the pooled variance is still right
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss", category=RuntimeWarning)
        return fn(*args, **kwargs)


def dunnett_vs_baseline(
    groups: Mapping[str, Sequence[float]], baseline: str, alpha: float = 0.05, rng: Seed = 0
) -> list[PairTest]:
    """Every variant against the baseline the study declared (Dunnett's many-to-one test, two-sided)."""
    _check_prob(alpha, "alpha")
    data = _groups(groups)
    if baseline not in data:
        raise ValueError(f"baseline {baseline!r} is not a variant; variants: {sorted(data)}")
    others = [name for name in data if name != baseline]
    tested = [name for name in others if data[name].size >= 2]
    method = f"Dunnett's test against {baseline!r} ({len(tested)} comparisons)"
    if data[baseline].size < 2:
        return [_untestable(n, baseline, data, method, f"baseline {ONE_SEED}") for n in others]
    if all(_constant(data[n]) for n in [baseline, *tested]):
        return [_untestable(n, baseline, data, method, NO_SPREAD if n in tested else ONE_SEED) for n in others]
    p = {}
    if tested:
        # Dunnett's p-values come from a multivariate t integrated by quasi-Monte Carlo: a fixed rng keeps the
        # report reproducible
        res = _quiet(stats.dunnett, *[data[n] for n in tested], control=data[baseline], rng=rng)
        p = dict(zip(tested, np.atleast_1d(res.pvalue).tolist()))
    out = []
    for name in others:
        if name not in p:
            out.append(_untestable(name, baseline, data, method, ONE_SEED))
            continue
        diff = float(data[name].mean() - data[baseline].mean())
        out.append(PairTest(name, baseline, diff, float(p[name]), p[name] < alpha, method))
    return out


def tukey_all_pairs(groups: Mapping[str, Sequence[float]], alpha: float = 0.05) -> list[PairTest]:
    """All pairs (in input order) with Tukey's HSD (Tukey-Kramer for unequal seed counts)."""
    _check_prob(alpha, "alpha")
    data = _groups(groups)
    names = list(data)
    tested = [n for n in names if data[n].size >= 2]
    method = f"Tukey HSD ({len(tested) * (len(tested) - 1) // 2} pairs)"
    pvals: dict[tuple[str, str], float] = {}
    reason = ""
    if len(tested) >= 2:
        if all(_constant(data[n]) for n in tested):
            reason = NO_SPREAD  # pooled variance 0: scipy would answer p = 0 for any difference
        else:
            res = _quiet(stats.tukey_hsd, *[data[n] for n in tested])
            for i, j in combinations(range(len(tested)), 2):
                pvals[tested[i], tested[j]] = float(res.pvalue[i, j])
    out = []
    for a, b in combinations(names, 2):
        if (a, b) in pvals:
            p = pvals[a, b]
            out.append(PairTest(a, b, float(data[a].mean() - data[b].mean()), p, p < alpha, method))
        else:
            both = a in tested and b in tested
            out.append(_untestable(a, b, data, method, reason if both else ONE_SEED))
    return out


def _welch_p(x: np.ndarray, y: np.ndarray) -> float | None:
    """Two-sided Welch p; None when both groups are constant (0/0). Identical seeds count as exactly zero
    variance, not scipy's rounding noise."""
    cx, cy = _constant(x), _constant(y)
    if cx and cy:
        return None
    res = stats.ttest_ind_from_stats(x.mean(), spread(x), x.size, y.mean(), spread(y), y.size, equal_var=False)
    return float(res.pvalue)


def _welch_holm(pairs: list[tuple[str, str]], data: dict[str, np.ndarray], alpha: float, method: str) -> list[PairTest]:
    # pairs without a defined test (one seed, or no spread on either side) get p = 1.0 and stay in the family:
    # conservative, and the family stays the one fixed in advance rather than one chosen by the data
    if not pairs:
        return []
    raw, reasons = [], []
    for a, b in pairs:
        if data[a].size < 2 or data[b].size < 2:
            raw.append(1.0)
            reasons.append(ONE_SEED)
            continue
        p = _welch_p(data[a], data[b])
        raw.append(1.0 if p is None else p)
        reasons.append(NO_SPREAD if p is None else "")
    adjusted = multipletests(raw, alpha=alpha, method="holm")[1]
    return [
        PairTest(a, b, float(data[a].mean() - data[b].mean()), float(p), bool(p < alpha and not why), method, why)
        for (a, b), p, why in zip(pairs, adjusted, reasons)
    ]


def holm_all_pairs(groups: Mapping[str, Sequence[float]], alpha: float = 0.05) -> list[PairTest]:
    """All pairs (in input order) with Welch's t-test, Holm-adjusted over the whole family of pairs."""
    _check_prob(alpha, "alpha")
    data = _groups(groups)
    pairs = list(combinations(data, 2))
    return _welch_holm(pairs, data, alpha, f"Welch t-test, Holm-adjusted over {len(pairs)} pairs")


def holm_vs_baseline(groups: Mapping[str, Sequence[float]], baseline: str, alpha: float = 0.05) -> list[PairTest]:
    """Every variant against the baseline with Welch's t-test, Holm-adjusted: unlike Dunnett it does not assume
    the variants' seed spreads are equal (docs/statistics.md measures what that assumption costs)."""
    _check_prob(alpha, "alpha")
    data = _groups(groups)
    if baseline not in data:
        raise ValueError(f"baseline {baseline!r} is not a variant; variants: {sorted(data)}")
    others = [name for name in data if name != baseline]
    method = f"Welch t-test against {baseline!r}, Holm-adjusted over {len(others)} comparisons"
    return _welch_holm([(name, baseline) for name in others], data, alpha, method)


# --- 2b. one test of a family: directed, against a margin, or against a fixed level ----------------------

Alternative = Literal["two-sided", "greater", "less"]
FLIP: dict[str, Alternative] = {"greater": "less", "less": "greater", "two-sided": "two-sided"}


@dataclass(frozen=True)
class MeanTest(_AsDict):
    """One raw test about d = mean(a) - reference - shift (reference: mean(b), or a fixed level): H1 is d > 0
    ("greater"), d < 0 ("less") or d != 0. `p_value` is raw (a family adjusts it); 1.0 when no test is defined."""

    p_value: float
    method: str
    reason: str = ""  # why no test is defined, when none is


def _decided(d: float, alternative: str, what: str) -> MeanTest:
    # no variation anywhere: the value decides, exactly (p 0 on H1's side, else 1)
    hit = d > 0 if alternative == "greater" else d < 0 if alternative == "less" else d != 0
    return MeanTest(0.0 if hit else 1.0, f"no test: {what}, so the value decides")


def mean_test(
    a: Sequence[float],
    b: Sequence[float] | None = None,
    *,
    level: float | None = None,
    alternative: Alternative = "two-sided",
    shift: float = 0.0,
) -> MeanTest:
    """Welch's t-test of mean(a) - mean(b) - shift, or a one-sample t-test of mean(a) - level - shift.

    Identical seeds on one arm: that arm's mean has no seed noise to estimate, and Welch's statistic reduces to a
    one-sample t-test of the other arm against that constant (df = n - 1), which is what runs, named so. Identical
    seeds on both arms: no test is defined (p = 1, `NO_SPREAD`), as for `holm_all_pairs`. A single arm of
    identical seeds against a fixed level (a model collapsed to one output, exactly at chance): no noise at all,
    so its value decides (p = 0 when on the alternative's side, else 1), and the method says so."""
    x = _flat(a, "a")
    if b is None:
        if level is None:
            raise ValueError("give b or a level")
        ref = level + shift
        if x.size < 2:
            return MeanTest(1.0, "one-sample t-test", ONE_SEED)
        if _constant(x):
            return _decided(float(x[0]) - ref, alternative, f"identical over its {x.size} seeds")
        res = stats.ttest_1samp(x, ref, alternative=alternative)
        return MeanTest(float(res.pvalue), f"one-sample t-test (df {x.size - 1})")
    y = _flat(b, "b")
    if x.size < 2 or y.size < 2:
        return MeanTest(1.0, "Welch t-test", ONE_SEED)
    cx, cy = _constant(x), _constant(y)
    if cx and cy:
        return MeanTest(1.0, "Welch t-test", NO_SPREAD)
    if cy:
        res = stats.ttest_1samp(x, float(y[0]) + shift, alternative=alternative)
        return MeanTest(float(res.pvalue), f"one-sample t-test of a against b's constant value (df {x.size - 1})")
    if cx:
        res = stats.ttest_1samp(y, float(x[0]) - shift, alternative=FLIP[alternative])
        return MeanTest(float(res.pvalue), f"one-sample t-test of b against a's constant value (df {y.size - 1})")
    res = stats.ttest_ind_from_stats(
        x.mean() - shift, spread(x), x.size, y.mean(), spread(y), y.size, equal_var=False, alternative=alternative
    )
    return MeanTest(float(res.pvalue), "Welch t-test")


def equivalence_test(
    a: Sequence[float], b: Sequence[float] | None = None, *, level: float | None = None, margin: float
) -> tuple[MeanTest, MeanTest]:
    """(TOST that |mean(a) - reference| < margin, its opposite: that it exceeds the margin on either side).

    TOST: the larger p of the two one-sided tests at -margin and +margin (Schuirmann; `statsmodels`' `ttost_ind`
    and `DescrStatsW.ttost_mean` compute the same, without `mean_test`'s handling of identical seeds). The
    opposite is the smaller p of the one-sided tests beyond each end: the two regions are disjoint, so at either
    boundary its size is at most alpha plus the other side's (negligible) rejection rate."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be > 0, got {margin}")
    lo = mean_test(a, b, level=level, alternative="greater", shift=-margin)
    hi = mean_test(a, b, level=level, alternative="less", shift=margin)
    out_hi = mean_test(a, b, level=level, alternative="greater", shift=margin)
    out_lo = mean_test(a, b, level=level, alternative="less", shift=-margin)
    reason = lo.reason or hi.reason
    tost = MeanTest(max(lo.p_value, hi.p_value), f"TOST within ±{margin:g}, two one-sided tests ({lo.method})", reason)
    beyond = MeanTest(min(out_hi.p_value, out_lo.p_value), f"beyond ±{margin:g} ({lo.method})", reason)
    return tost, beyond


# --- 3. P(A > B) over seeds and test examples --------------------------------------------------------------


@dataclass(frozen=True)
class Superiority(_AsDict):
    p_a_better: float  # fraction of resamples where A's mean beats B's (ties count half)
    difference: float  # observed mean(A) - mean(B), in the metric's own sign
    diff_low: float  # percentile interval of the resampled difference
    diff_high: float
    confidence: float
    n_boot: int
    seeds_a: int
    seeds_b: int
    n_examples: int
    few_seeds: bool  # ≤ 3 seeds on either side
    note: str


def _seed_counts(draws: np.ndarray, n: int) -> np.ndarray:
    # (m, n) draws -> (m, n) multiplicities; n is a seed count (2-5), so the broadcast is small
    return (draws[:, :, None] == np.arange(n)).sum(axis=1)


def p_superiority(
    a_examples: np.ndarray | Sequence[Sequence[float]],
    b_examples: np.ndarray | Sequence[Sequence[float]],
    n_boot: int = 2000,
    rng: Seed = 0,
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> Superiority:
    """P(A better than B) by resampling seeds and test examples (Bouthillier et al., MLSys 2021).

    Inputs are (seeds, examples): per-example correctness (0/1) or per-example losses (`higher_is_better=False`).
    Each resample draws seeds of A and of B independently and one set of test examples shared by both, so the
    comparison stays paired by example (the same hard examples count against both)."""
    _check_prob(confidence, "confidence")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    a, b = np.asarray(a_examples, dtype=float), np.asarray(b_examples, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or 0 in a.shape or 0 in b.shape:
        raise ValueError(f"expected (seeds, examples) arrays over the same examples, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-example values must be finite")
    gen = np.random.default_rng(rng)
    (sa, n_ex), sb = a.shape, b.shape[0]
    diffs = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // n_ex))  # bounds memory at ~16 MB per (resamples, examples) array
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        ex = gen.integers(0, n_ex, size=(m, n_ex))
        # per-example mean over resampled seeds, then averaged over the resampled examples
        rows_a = _seed_counts(gen.integers(0, sa, size=(m, sa)), sa) @ a / sa
        rows_b = _seed_counts(gen.integers(0, sb, size=(m, sb)), sb) @ b / sb
        diffs[start : start + m] = (np.take_along_axis(rows_a, ex, 1) - np.take_along_axis(rows_b, ex, 1)).mean(1)
    better = diffs if higher_is_better else -diffs
    p = float((better > 0).mean() + 0.5 * (better == 0).mean())
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    few = min(sa, sb) <= 3
    note = FEW_SEEDS if few else ""
    if min(sa, sb) == 1:
        note = "one seed on a side: only test-example variance is resampled; seed variance is unknown"
    return Superiority(
        p, float(a.mean() - b.mean()), float(low), float(high), confidence, n_boot, sa, sb, n_ex, few, note
    )


# --- 4. censored epochs to target --------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeToTarget(_AsDict):
    n: int
    n_reached: int
    fraction: float
    fraction_low: float  # Clopper-Pearson (exact binomial) interval of the fraction reached
    fraction_high: float
    median_epochs: float | None  # Kaplan-Meier median; None when the survival curve never drops to 1/2
    max_epochs: float


def _censored(
    reached: Sequence[bool], epochs: Sequence[float | None], max_epochs: float
) -> tuple[np.ndarray, np.ndarray]:
    if len(reached) != len(epochs) or not reached:
        raise ValueError(f"reached and epochs need the same non-zero length, got {len(reached)} and {len(epochs)}")
    times, events = [], []
    for i, (hit, ep) in enumerate(zip(reached, epochs)):
        if hit and ep is None:
            raise ValueError(f"run {i} reached the target but has no epoch")
        t = float(max_epochs if ep is None else ep)
        if not 0 <= t <= max_epochs:
            raise ValueError(f"run {i}: epoch {t} is outside [0, max_epochs={max_epochs}]")
        times.append(t)  # an unreached run is censored at its last epoch, max_epochs when not given
        events.append(bool(hit))
    return np.array(times), np.array(events)


def _km_median(times: np.ndarray, events: np.ndarray) -> float | None:
    surv = 1.0
    for t in np.unique(times[events]):
        at_risk = int((times >= t).sum())  # runs censored at t were still running at t
        surv *= 1 - int(((times == t) & events).sum()) / at_risk
        if surv <= 0.5 + 1e-12:
            return float(t)
    return None


def time_to_target(reached: Sequence[bool], epochs: Sequence[float | None], max_epochs: float) -> TimeToTarget:
    """Fraction of runs that reached the target (with an exact interval) and the Kaplan-Meier median epochs,
    treating a run that never reached it as censored, not as having taken max_epochs."""
    times, events = _censored(reached, epochs, max_epochs)
    n, k = int(times.size), int(events.sum())
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return TimeToTarget(n, k, k / n, float(ci.low), float(ci.high), _km_median(times, events), float(max_epochs))


@dataclass(frozen=True)
class TimeComparison(_AsDict):
    statistic: float  # Gehan score: pairs where A reached sooner minus pairs where B did
    p_value: float
    significant: bool
    min_p: float  # smallest p any permutation of these group sizes can give
    seeds_needed: int  # seeds per group at which min_p ≤ alpha
    method: str
    verdict: str


def seeds_for_rank_test(alpha: float, sides: int = 2) -> int:
    """Smallest k for which an exact rank/permutation test (two-sided, or one-sided with `sides=1`) with k vs k
    runs can reach alpha."""
    _check_prob(alpha, "alpha")
    k = 2
    while sides / math.comb(2 * k, k) > alpha:
        k += 1
    return k


def compare_time_to_target(
    reached_a: Sequence[bool],
    epochs_a: Sequence[float | None],
    reached_b: Sequence[bool],
    epochs_b: Sequence[float | None],
    max_epochs: float,
    alpha: float = 0.05,
    rng: Seed = 0,
    alternative: Alternative = "two-sided",
) -> TimeComparison:
    """Does A reach the target sooner than B? Gehan's generalized Wilcoxon score with an (exact when feasible)
    permutation test: censored runs count as slower than any run that reached the target before they stopped,
    never as having taken a made-up number of epochs. Without censoring it is the exact Mann-Whitney test.
    `alternative="greater"`: H1 is that A reaches it sooner (a one-sided test, smallest p half the two-sided one)."""
    _check_prob(alpha, "alpha")
    ta, ea = _censored(reached_a, epochs_a, max_epochs)
    tb, eb = _censored(reached_b, epochs_b, max_epochs)
    t, e = np.concatenate([ta, tb]), np.concatenate([ea, eb])
    # score[i, j] = +1 when run i certainly reached the target before run j, -1 when certainly after
    sooner = e[:, None] & ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :]))
    score = sooner.astype(float) - sooner.T.astype(float)

    def gehan(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.moveaxis(x, axis, -1).astype(int), np.moveaxis(y, axis, -1).astype(int)
        return score[x[..., :, None], y[..., None, :]].sum(axis=(-2, -1))

    na, nb = ta.size, tb.size
    if min(na, nb) >= 2:
        idx = np.arange(na + nb, dtype=float)  # permute run indices; the statistic looks the scores up
        res = stats.permutation_test(
            (idx[:na], idx[na:]), gehan, vectorized=True, n_resamples=9999, alternative=alternative, rng=rng
        )
        stat, p = float(res.statistic), float(res.pvalue)
    else:
        # scipy wants two runs per group; with one, the n relabellings are which run is the lone one
        null = score.sum(1) if na == 1 else -score.sum(1)
        stat = float(null[0] if na == 1 else null[-1])
        up, down = float((null >= stat).mean()), float((null <= stat).mean())
        p = {"greater": up, "less": down}.get(alternative, min(1.0, 2 * min(up, down)))
    exact = math.comb(na + nb, na) <= 9999
    sides = 2 if alternative == "two-sided" else 1
    method = f"Gehan-Wilcoxon {'exact' if exact else 'Monte Carlo'} permutation test ({na} vs {nb} runs)"
    if sides == 1:
        method = "one-sided " + method
    min_p = min(1.0, sides / math.comb(na + nb, na))
    need = seeds_for_rank_test(alpha, sides)
    if min_p > alpha:
        verdict = (
            f"inconclusive: with n={na} vs {nb} per group no rank test can reach alpha={alpha:g} "
            f"(smallest possible p = {min_p:.2g}); needs ≥ {need} seeds per group"
        )
        return TimeComparison(stat, p, False, min_p, need, method, verdict)
    if p < alpha:
        who = "A" if stat > 0 else "B"
        verdict = f"{who} reaches the target sooner (p={p:.2g}, {method})"
    else:
        verdict = f"no detectable difference in time to target (p={p:.2g}, {method})"
    return TimeComparison(stat, p, p < alpha, min_p, need, method, verdict)


# --- 5. smallest detectable difference ---------------------------------------------------------------------


def detectable_difference(
    std_a: float, std_b: float, n_a: int, n_b: int, alpha: float = 0.05, power: float = 0.8, *, draws: int = 20_000
) -> float:
    """Smallest true difference of means a two-sided Welch t-test at `alpha` detects with probability `power`,
    taking the observed stds as the true ones (so still optimistic when they are estimated from 2-3 seeds).

    The power is that of Welch's test itself, simulated with fixed draws (deterministic, about ±0.005): the
    noncentral-t formula with the Welch-Satterthwaite df treats the estimated df and standard error as known
    and measured optimistic at 2-3 seeds (power 0.47 / 0.70 instead of 0.8, docs/statistics.md). Pass the
    per-comparison alpha of a corrected family (alpha / m for Holm's first step). nan when no test is defined
    (fewer than 2 seeds on a side, or no spread on either)."""
    _check_prob(alpha, "alpha")
    _check_prob(power, "power")
    if n_a < 2 or n_b < 2 or std_a < 0 or std_b < 0 or std_a == std_b == 0:
        return math.nan
    gen = np.random.default_rng(0)
    za, zb = gen.standard_normal((draws, n_a)), gen.standard_normal((draws, n_b))
    noise = std_a * za.mean(1) - std_b * zb.mean(1)
    va, vb = std_a**2 * za.var(1, ddof=1) / n_a, std_b**2 * zb.var(1, ddof=1) / n_b
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    reach = stats.t.ppf(1 - alpha / 2, df) * np.sqrt(va + vb)  # Welch rejects when |difference| > reach

    def achieved(d: float) -> float:
        return float((np.abs(d + noise) > reach).mean())

    # the one-sided rejections alone reach `power` at this quantile, so the answer lies below it
    lo, hi = 0.0, float(np.quantile(reach - noise, power))
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if achieved(mid) >= power else (mid, hi)
    return hi


def seeds_needed(
    std_a: float, std_b: float, difference: float, alpha: float = 0.05, power: float = 0.8, *, most: int = 64
) -> int | None:
    """Seeds per variant (equal on both sides) at which a two-sided Welch t-test at `alpha` detects a true
    difference of `difference` with probability `power`, taking the observed stds as the true ones
    (`detectable_difference`, which it inverts; as optimistic as it is when the stds come from 2-3 seeds).
    None when more than `most` would be needed or no test is defined (no spread on either side, no difference)."""
    if not math.isfinite(difference) or difference == 0 or std_a < 0 or std_b < 0 or std_a == std_b == 0:
        return None

    def detects(n: int) -> bool:
        return detectable_difference(std_a, std_b, n, n, alpha, power) <= abs(difference)

    if not detects(most):
        return None
    lo, hi = 1, most  # detects(hi); lo = 1 has no test
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if detects(mid) else (mid, hi)
    return hi


# --- 7. validity checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check(_AsDict):
    flagged: bool
    reason: str


def not_converged(per_seed_curves: np.ndarray | Sequence[Sequence[float]], mode: Mode) -> Check:
    """Still improving over the last 20% of epochs (at least 2) by more than the seed noise.

    Improvement = least-squares slope over that window (one slope, an intercept per seed) times its length: a
    fit, so one noisy epoch does not decide. Flagged when it is both real (one-sided t-test of the slope
    against the epoch-to-epoch scatter, 5%) and larger than the between-seed std at the last epoch (with one
    seed, the scatter alone)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    y = np.asarray(per_seed_curves, dtype=float)
    y = y[None, :] if y.ndim == 1 else y
    if y.ndim != 2 or y.size == 0:
        raise ValueError(f"expected (seeds, epochs) curves, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("curves contain non-finite values; flag those runs with diverged() instead")
    seeds, n_ep = y.shape
    w = max(2, math.ceil(0.2 * n_ep))
    if n_ep < w + 1:
        return Check(False, f"cannot judge convergence from {n_ep} epochs (needs at least 3)")
    win = y[:, -(w + 1) :] * (1 if mode == "max" else -1)  # "better" is up from here on
    x = np.arange(w + 1) - w / 2
    centred = win - win.mean(1, keepdims=True)
    slope = float((centred @ x).mean() / (x @ x))
    df = seeds * w - 1
    scatter = math.sqrt(float(((centred - slope * x) ** 2).sum()) / df)
    gain = slope * w
    floor = 1e-12 * max(1.0, float(np.abs(y[:, -1]).mean()))  # below this a "gain" is float rounding
    if scatter == 0:
        real = gain > floor  # a noiseless curve: any rise is real
    else:
        real = stats.t.sf(slope / (scatter / math.sqrt(seeds * (x @ x))), df) < 0.05
    noise = float(y[:, -1].std(ddof=1)) if seeds >= 2 else scatter
    if real and gain > max(noise, floor):
        return Check(True, f"still improving: {gain:.3g} over the last {w} epochs, more than seed noise ({noise:.3g})")
    return Check(False, f"converged: change over the last {w} epochs ({gain:+.3g}) is within noise ({noise:.3g})")


def at_chance(value: float, chance: float, noise: float, *, mode: Mode = "max") -> Check:
    """Not better than chance by more than `noise` (e.g. 2 × the seed std or the binomial SE at chance).

    `chance`: majority-class accuracy, a unigram model's perplexity, predict-the-mean MSE, ... (`mode="min"`
    for metrics where lower is better)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    margin = (value - chance) if mode == "max" else (chance - value)
    if margin <= noise:
        return Check(True, f"at chance: {value:.4g} is within {noise:.3g} of chance ({chance:.4g}) or worse")
    return Check(False, f"above chance: {value:.4g} beats chance ({chance:.4g}) by {margin:.3g} > {noise:.3g}")


def at_ceiling(values: Sequence[float] | np.ndarray, bound: float, *, tol: float = 0.0) -> Check:
    """The mean is within one between-seed std (or `tol`) of the metric's best possible value: variants pile up
    against the bound and stop being distinguishable."""
    x = _flat(values)
    noise = spread(x)
    gap = abs(bound - float(x.mean()))
    if gap <= max(noise, tol):
        return Check(True, f"at ceiling: mean {x.mean():.4g} is within {max(noise, tol):.3g} of the bound {bound:g}")
    return Check(False, f"below ceiling: mean {x.mean():.4g} is {gap:.3g} from the bound {bound:g}")


def diverged(fraction: float, *, tolerate: float = 0.0) -> Check:
    """More than `tolerate` of the runs diverged (non-finite loss): the survivors' mean is biased upwards."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if fraction > tolerate:
        return Check(True, f"{fraction:.0%} of runs diverged; statistics over the others overstate the variant")
    return Check(False, "no run diverged" if fraction == 0 else f"{fraction:.0%} of runs diverged (tolerated)")


def underpowered(detectable_difference: float, observed_difference: float) -> Check:
    """The observed difference is smaller than what these seeds could detect: "not significant" says little."""
    if math.isnan(detectable_difference):
        return Check(True, "no detectable difference can be computed (one seed or no spread)")
    if abs(observed_difference) < detectable_difference:
        return Check(
            True,
            f"underpowered: the observed difference {abs(observed_difference):.3g} is below the smallest "
            f"detectable one ({detectable_difference:.3g})",
        )
    return Check(False, f"the observed difference {abs(observed_difference):.3g} is detectable")
