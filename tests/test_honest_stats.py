"""pipeline.honest_stats on simulated studies with a known truth, hand-computed cases and independent references.

Every simulation has a fixed seed, and its tolerance leaves about 3 binomial standard errors to the limit, so a
pass is not luck and a real regression (a wrong scale, a missing correction, unpaired examples) fails.
"""

from __future__ import annotations

import ast
import gc
import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multicomp import pairwise_tukeyhsd

from pipeline import honest_stats as hs
from pipeline.honest_stats import (
    FEW_SEEDS,
    NO_SPREAD,
    at_ceiling,
    at_chance,
    compare_time_to_target,
    detectable_difference,
    diverged,
    dunnett_vs_baseline,
    holm_all_pairs,
    holm_vs_baseline,
    interval,
    not_converged,
    p_superiority,
    seeds_for_rank_test,
    summarize,
    time_to_target,
    tukey_all_pairs,
    underpowered,
)

MODULE = Path(__file__).resolve().parents[1] / "pipeline" / "honest_stats.py"


def beta_draws(rng: np.random.Generator, mean: float, std: float, size) -> np.ndarray:
    total = mean * (1 - mean) / std**2 - 1
    return rng.beta(mean * total, (1 - mean) * total, size)


@pytest.fixture
def frozen_gc():
    # statsmodels' multipletests(method="holm") runs gc.collect() on every call (~0.1 s in this process);
    # freezing the objects already allocated makes that cheap and changes no result
    gc.freeze()
    yield
    gc.unfreeze()


def test_module_is_a_leaf():
    tree = ast.parse(MODULE.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "pipeline" not in imported
    assert {"numpy", "scipy", "statsmodels"} <= imported


def test_results_are_plain_json():
    results = [
        interval([0.9, 0.92], (0.0, 1.0)),
        summarize([0.9, 0.92], (0.0, 1.0)),
        summarize([0.9], (0.0, 1.0)),
        *holm_all_pairs({"a": [1.0, 2.0], "b": [2.0, 4.0]}),
        *dunnett_vs_baseline({"a": [1.0, 2.0], "b": [2.0, 4.0]}, "a"),
        *tukey_all_pairs({"a": [1.0, 2.0], "b": [2.0, 4.0]}),
        p_superiority(np.ones((2, 5)), np.zeros((2, 5)), n_boot=20),
        time_to_target([True], [1], 3),
        compare_time_to_target([True], [1], [False], [None], 3),
        not_converged([[0.1, 0.2, 0.3]], "max"),
    ]
    for r in results:
        d = r.as_dict()
        assert json.loads(json.dumps(d)) == d


# --- interval ----------------------------------------------------------------------------------------------


T_975_DF2 = 4.302652729911275  # t(0.975, df=2), from a table


def _mean_sd(z: list[float]) -> tuple[float, float]:
    m = sum(z) / len(z)
    return m, math.sqrt(sum((v - m) ** 2 for v in z) / (len(z) - 1))


def test_interval_hand_computed_on_the_logit_scale():
    x = [0.91, 0.93, 0.92]
    m, s = _mean_sd([math.log(p / (1 - p)) for p in x])
    expit = lambda v: 1 / (1 + math.exp(-v))
    # Cox-type correction towards the arithmetic mean: k = 1 - 2 expit(m), centre m + k s^2 / 2,
    # se^2 = s^2 / n + k^2 s^4 / (2 (n - 1))
    k = 1 - 2 * expit(m)
    centre, se = m + k * s**2 / 2, math.sqrt(s**2 / 3 + k**2 * s**4 / 4)
    iv = interval(x, (0.0, 1.0))
    assert iv.scale == "logit" and iv.spread_known
    assert iv.low == pytest.approx(expit(centre - T_975_DF2 * se), rel=1e-9)
    assert iv.high == pytest.approx(expit(centre + T_975_DF2 * se), rel=1e-9)
    assert iv.mean == pytest.approx(0.92)


def test_interval_hand_computed_on_the_log_scale_is_cox():
    x = [2.1, 2.5, 2.2]
    m, s = _mean_sd([math.log(v) for v in x])
    centre, se = m + s**2 / 2, math.sqrt(s**2 / 3 + s**4 / 4)
    iv = interval(x, (0.0, None))
    assert iv.scale == "log"
    assert iv.low == pytest.approx(math.exp(centre - T_975_DF2 * se), rel=1e-9)
    assert iv.high == pytest.approx(math.exp(centre + T_975_DF2 * se), rel=1e-9)


def test_interval_stays_inside_the_range_where_the_raw_t_interval_leaves_it():
    x = np.array([0.2, 1.0, 0.99])
    raw_high = x.mean() + stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert raw_high > 1  # what the report's sections once drew: [.., 1.54]
    iv = interval(x, (0.0, 1.0), n_examples=1000)
    assert 0 <= iv.low < iv.high <= 1  # seeds this far apart honestly give nearly all of [0, 1]
    assert iv.low < 0.2 and iv.high > 0.99


@pytest.mark.parametrize(
    "values, bounds",
    [
        ([0.0, 0.0, 0.01], (0.0, 1.0)),
        ([0.999, 1.0, 1.0, 0.98], (0.0, 1.0)),
        ([55.0, 99.0, 100.0], (0.0, 100.0)),  # accuracy in percent
        ([0.0, 0.3, 2.5], (0.0, None)),  # a loss that hit 0
        ([1e-6, 3e3], (0.0, None)),
        ([-3.0, -2.9, -0.1], (None, 0.0)),  # bounded above only: log of the distance to the bound
    ],
)
def test_interval_inside_bounds_at_the_edges(values, bounds):
    iv = interval(values, bounds)
    lo, hi = bounds
    assert lo is None or iv.low >= lo
    assert hi is None or iv.high <= hi
    assert iv.low <= iv.high


def test_interval_inside_bounds_on_random_studies():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(2, 6))
        x = np.clip(rng.normal(rng.uniform(0.5, 1.0), rng.uniform(0.001, 0.2), n), 0, 1)
        iv = interval(x, (0.0, 1.0))
        assert 0 <= iv.low <= iv.high <= 1


@pytest.mark.parametrize(
    "truth, bounds, draw",
    [
        (0.9, (0.0, 1.0), lambda rng, size: beta_draws(rng, 0.9, 0.015, size)),
        (0.97, (0.0, 1.0), lambda rng, size: beta_draws(rng, 0.97, 0.01, size)),
        # log-normal: the truth is the arithmetic mean exp(mu + sigma^2 / 2), not the median the log scale centres on
        (2 * math.exp(0.2**2 / 2), (0.0, None), lambda rng, size: rng.lognormal(math.log(2), 0.2, size)),
    ],
)
def test_interval_covers_the_true_mean_at_three_seeds(truth, bounds, draw):
    rng = np.random.default_rng(7)
    x = draw(rng, (1000, 3))
    ivs = [interval(row, bounds) for row in x]
    covered = np.mean([iv.low <= truth <= iv.high for iv in ivs])
    assert covered >= 0.93  # nominal 0.95; 1000 studies: binomial SE 0.007


@pytest.mark.parametrize(
    "truth, bounds, draw",
    [
        (0.97, (0.0, 1.0), lambda rng, size: beta_draws(rng, 0.97, 0.015, size)),
        (2 * math.exp(0.5**2 / 2), (0.0, None), lambda rng, size: rng.lognormal(math.log(2), 0.5, size)),
    ],
)
def test_interval_covers_the_mean_not_the_median_of_skewed_seeds(truth, bounds, draw):
    # with 10 seeds the interval is narrow enough that centring it on the median / geometric mean (the plain
    # back-transformed t interval) covers the mean only ~0.90; the correction must bring it back
    rng = np.random.default_rng(17)
    covered = np.mean([(iv := interval(row, bounds)).low <= truth <= iv.high for row in draw(rng, (1000, 10))])
    assert covered >= 0.93


def test_interval_one_seed_and_identical_seeds_are_flagged():
    one = interval([0.8], (0.0, 1.0))
    assert one.low is None and one.high is None and not one.spread_known
    same = interval([0.8, 0.8, 0.8], (0.0, 1.0))
    assert same.low == same.high == 0.8 and not same.spread_known
    assert same.reason == NO_SPREAD


@pytest.mark.parametrize("values, bounds", [([0.5, 1.2], (0.0, 1.0)), ([-0.1, 0.5], (0.0, None))])
def test_interval_rejects_values_outside_the_bounds(values, bounds):
    with pytest.raises(ValueError, match="outside the bounds"):
        interval(values, bounds)


def test_interval_without_bounds_is_the_plain_t_interval():
    iv = interval([1, 2, 3, 4])
    # mean 2.5, sample std sqrt(5/3) = 1.290994; half-width t(0.975, 3) * std / 2 = 3.182446 * 1.290994 / 2
    assert iv.scale == "identity" and iv.mean == pytest.approx(2.5)
    assert (iv.low, iv.high) == pytest.approx((2.5 - 2.054260, 2.5 + 2.054260), abs=1e-6)
    iv90 = interval([1, 2, 3, 4], confidence=0.90)  # t(0.95, 3) = 2.353363
    assert (iv90.low, iv90.high) == pytest.approx((2.5 - 1.519090, 2.5 + 1.519090), abs=1e-6)


# --- summarize ---------------------------------------------------------------------------------------------


def test_summarize_identical_seeds_have_exactly_zero_spread():
    # np.std([0.1] * 3, ddof=1) is 1.7e-17 and np.mean is 0.10000000000000002; both must be exact here
    s = summarize([0.1, 0.1, 0.1], (0.0, 1.0))
    assert (s.mean, s.std, s.ci_low, s.ci_high, s.spread_known) == (0.1, 0.0, 0.1, 0.1, False)
    assert s.as_dict()["note"] == NO_SPREAD
    one = summarize([0.7], (0.0, 1.0)).as_dict()
    assert (one["std"], one["ci_low"], one["ci_high"]) == (0.0, None, None)


def test_summarize_is_interval_with_the_seeds_and_their_std():
    s = summarize([0.91, 0.93, 0.92], (0.0, 1.0), n_examples=500)
    iv = interval([0.91, 0.93, 0.92], (0.0, 1.0), n_examples=500)
    assert (s.ci_low, s.ci_high, s.scale, s.spread_known) == (iv.low, iv.high, iv.scale, iv.spread_known)
    assert s.values == [0.91, 0.93, 0.92] and s.std == pytest.approx(0.01)
    assert "note" not in s.as_dict()  # nothing to say: the record has no note


def test_summarize_drops_bounds_its_seeds_break_and_says_so():
    s = summarize([-0.1, 0.5, 0.6], (0.0, 1.0), name="val_gap")
    assert s.scale == "identity" and s.ci_low < 0
    assert s.note == "values outside the usual range (0.0, 1.0) of val_gap: interval not bounded"


@pytest.mark.parametrize(
    "values, match",
    [([], "non-empty"), ([1.0, float("nan"), 2.0], r"positions \[1\]"), ([[1.0, 2.0]], "flat")],
)
def test_summarize_rejects_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        summarize(values)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=30))
@example([-869459.1671774172] * 4 + [-869459.1671774173])  # np.mean lands an ulp above the max
def test_summarize_property(values):
    s = summarize(values)
    assert s.n == len(values)
    assert min(values) <= s.mean <= max(values)
    assert s.std >= 0 and math.isfinite(s.std)
    if s.n == 1:
        assert (s.std, s.ci_low, s.ci_high) == (0.0, None, None)
    else:
        assert s.ci_low <= s.mean <= s.ci_high


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=6))
def test_summarize_bounded_property(values):
    s = summarize(values, (0.0, 1.0))
    assert 0.0 <= s.ci_low <= s.ci_high <= 1.0


# --- comparisons -------------------------------------------------------------------------------------------


def test_dunnett_with_one_treatment_is_the_pooled_t_test():
    a, b = [0.90, 0.91, 0.93], [0.93, 0.95, 0.94]
    (res,) = dunnett_vs_baseline({"base": a, "new": b}, "base")
    assert res.a == "new" and res.b == "base"
    assert res.difference == pytest.approx(np.mean(b) - np.mean(a))
    assert res.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, abs=2e-3)


def _welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided p-value straight from the textbook formula."""
    na, nb = len(a), len(b)
    (ma, sa), (mb, sb) = _mean_sd(a), _mean_sd(b)
    se2 = sa**2 / na + sb**2 / nb
    df = se2**2 / ((sa**2 / na) ** 2 / (na - 1) + (sb**2 / nb) ** 2 / (nb - 1))
    return 2 * stats.t.sf(abs((ma - mb) / math.sqrt(se2)), df)


def test_welch_matches_the_textbook_formula():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0, 7.0]
    # t = (2.5 - 5) / sqrt(5/3/4 + 2.5/5) = -2.6112, df = 0.91667^2 / (0.41667^2/3 + 0.5^2/4) = 6.981
    assert _welch_p(a, b) == pytest.approx(0.0349, abs=5e-4)  # the formula itself is not broken
    (one,) = holm_vs_baseline({"a": a, "b": b}, "b")  # a family of one: Holm leaves p as it is
    assert one.p_value == pytest.approx(_welch_p(a, b), rel=1e-9) and one.significant
    a, b = [5.0, 5.0, 5.0], [4.0, 4.5, 4.2, 4.9]  # one constant group: still a real Welch test
    assert holm_vs_baseline({"a": a, "b": b}, "b")[0].p_value == pytest.approx(_welch_p(a, b), rel=1e-9)


def test_holm_all_pairs_hand_adjusted():
    g = {"a": [1.0, 2.0, 3.0], "b": [2.5, 3.5, 4.0], "c": [5.0, 6.0, 6.5]}
    raw = {
        ("a", "b"): stats.ttest_ind(g["a"], g["b"], equal_var=False).pvalue,
        ("a", "c"): stats.ttest_ind(g["a"], g["c"], equal_var=False).pvalue,
        ("b", "c"): stats.ttest_ind(g["b"], g["c"], equal_var=False).pvalue,
    }
    # Holm: smallest p times 3, next times 2 (at least the previous), largest times 1 (at least the previous)
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for factor, pair in zip((3, 2, 1), order):
        running = max(running, min(1.0, factor * raw[pair]))
        expected[pair] = running
    got = {(r.a, r.b): r.p_value for r in holm_all_pairs(g)}
    assert got == pytest.approx(expected)


def test_tukey_matches_statsmodels_independent_implementation():
    rng = np.random.default_rng(3)
    g = {name: rng.normal(mu, 1.0, 4) for name, mu in zip("abcd", (0.0, 0.3, 1.5, 2.5))}
    ours = {(r.a, r.b): r.p_value for r in tukey_all_pairs(g)}
    ref = pairwise_tukeyhsd(np.concatenate(list(g.values())), np.repeat(list(g), 4))
    theirs = {(str(a), str(b)): p for (a, b), p in zip(combinations(ref.groupsunique, 2), ref.pvalues)}
    # statsmodels interpolates a table of the studentized range: agreement to ~1e-2
    for pair, p in ours.items():
        assert p == pytest.approx(theirs[pair], abs=0.02)


def _null_studies(sims: int, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = 0.9 + 0.01 * rng.standard_normal((sims, 5, n))
    return [dict(zip(["v0", "v1", "v2", "v3", "v4"], s)) for s in x]


def test_fwer_under_the_null_dunnett_and_holm(frozen_gc):
    studies = _null_studies(300, 3, seed=11)
    for name, run in {
        "dunnett": lambda g, i: dunnett_vs_baseline(g, "v0", rng=i),
        "holm vs baseline": lambda g, i: holm_vs_baseline(g, "v0"),
        "holm all pairs": lambda g, i: holm_all_pairs(g),
    }.items():
        fwer = np.mean([any(r.significant for r in run(g, i)) for i, g in enumerate(studies)])
        assert fwer <= 0.07, name  # nominal 0.05; 300 studies: SE 0.013


def test_fwer_under_the_null_tukey():
    # scipy integrates the studentized range for every cell (~0.15 s a study), too slow for 300 studies here:
    # tukey_all_pairs must decide as "max q > critical q" does on a sample, and that rule's FWER is measured
    k, n = 5, 3
    crit = stats.studentized_range.ppf(0.95, k, k * (n - 1))

    def rule(g: dict[str, np.ndarray]) -> bool:
        x = np.array(list(g.values()))
        q = (x.mean(1).max() - x.mean(1).min()) / math.sqrt(x.var(1, ddof=1).mean() / n)
        return bool(q > crit)

    sample = _null_studies(6, n, seed=12)
    shifted = [{**g, "v4": g["v4"] + 0.03} for g in _null_studies(6, n, seed=13)]  # so both answers occur
    decisions = [rule(g) for g in sample + shifted]
    assert any(decisions) and not all(decisions)
    assert [any(r.significant for r in tukey_all_pairs(g)) for g in sample + shifted] == decisions
    assert np.mean([rule(g) for g in _null_studies(1000, n, seed=14)]) <= 0.07


@pytest.mark.parametrize(
    "groups",
    [
        {"a": [0.9, 0.9, 0.9], "b": [0.95, 0.95, 0.95]},
        {"a": [0.9, 0.9, 0.9], "b": [0.95, 0.95, 0.95], "c": [1.0, 1.0, 1.0]},
        {"a": [0.1] * 3, "b": [0.1] * 3},
    ],
)
def test_zero_spread_never_gives_p_zero(groups):
    for results in (
        dunnett_vs_baseline(groups, "a"),
        holm_vs_baseline(groups, "a"),
        tukey_all_pairs(groups),
        holm_all_pairs(groups),
    ):
        for r in results:
            assert r.p_value == 1.0 and not r.significant
            assert r.reason == NO_SPREAD


def test_one_constant_group_among_noisy_ones_gets_a_real_p():
    g = {"a": [0.90, 0.92, 0.91], "b": [0.95, 0.95, 0.95], "c": [0.89, 0.93, 0.91]}
    for results in (dunnett_vs_baseline(g, "a"), tukey_all_pairs(g), holm_all_pairs(g)):
        for r in results:
            assert 0 < r.p_value <= 1 and r.reason == ""


def test_one_seed_variant_is_reported_untested():
    g = {"a": [0.90, 0.92, 0.91], "b": [0.95], "c": [0.89, 0.93, 0.91]}
    for results in (dunnett_vs_baseline(g, "a"), tukey_all_pairs(g), holm_all_pairs(g)):
        untested = [r for r in results if "b" in (r.a, r.b)]
        assert untested and all(r.p_value == 1.0 and "one seed" in r.reason for r in untested)


def test_unknown_baseline_names_the_variants():
    with pytest.raises(ValueError, match=r"'x' is not a variant.*\['a', 'b'\]"):
        dunnett_vs_baseline({"a": [1, 2], "b": [2, 3]}, "x")


# --- P(A > B) ----------------------------------------------------------------------------------------------


def test_p_superiority_clearly_better_and_identical():
    rng = np.random.default_rng(5)
    a = (rng.random((3, 2000)) < 0.90).astype(float)
    b = (rng.random((3, 2000)) < 0.80).astype(float)
    res = p_superiority(a, b, n_boot=1000, rng=1)
    assert res.p_a_better > 0.99
    assert res.diff_low < 0.10 < res.diff_high and res.diff_low > 0
    same = p_superiority(b, b, n_boot=1000, rng=1)
    assert abs(same.p_a_better - 0.5) < 0.05


def test_p_superiority_pairs_test_examples():
    # B gets the easy half right; A also 20 hard ones. Every seed agrees, so only the examples vary: paired,
    # A never loses; resampling the examples of A and B independently would give P(A > B) of only ~0.75
    easy = np.arange(2000) < 1000
    b = np.tile(easy.astype(float), (3, 1))
    a = b.copy()
    a[:, 1000:1020] = 1.0
    assert p_superiority(a, b, n_boot=500, rng=2).p_a_better > 0.99


def test_p_superiority_losses_and_seed_flag():
    rng = np.random.default_rng(6)
    low, high = rng.exponential(0.5, (5, 500)), rng.exponential(0.8, (5, 500))
    res = p_superiority(low, high, n_boot=500, higher_is_better=False)
    assert res.p_a_better > 0.99 and res.difference < 0
    assert not res.few_seeds and res.note == ""
    few = p_superiority(low[:3], high[:3], n_boot=200, higher_is_better=False)
    assert few.few_seeds and few.note == FEW_SEEDS


def test_p_superiority_rejects_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        p_superiority(np.ones((3, 10)), np.ones((3, 11)))


# --- time to target ----------------------------------------------------------------------------------------


def test_time_to_target_hand_computed():
    t = time_to_target([True, True, False, True], [3, 5, None, 4], max_epochs=10)
    # Kaplan-Meier: S = 3/4 after epoch 3, 3/4 * 2/3 = 1/2 after epoch 4 -> median 4
    assert (t.n, t.n_reached, t.fraction, t.median_epochs) == (4, 3, 0.75, 4.0)
    # Clopper-Pearson upper end for 3 of 4: Beta(4, 1).ppf(0.975) = 0.975 ** (1/4)
    assert t.fraction_high == pytest.approx(0.975**0.25)


def test_time_to_target_all_and_none_reached_exact_interval_ends():
    all_in = time_to_target([True] * 4, [1, 2, 3, 4], 10)
    assert all_in.fraction_low == pytest.approx(0.025**0.25) and all_in.fraction_high == 1.0
    none = time_to_target([False] * 4, [None] * 4, 10)
    assert none.fraction_low == 0.0 and none.fraction_high == pytest.approx(1 - 0.025**0.25)
    assert none.median_epochs is None


def test_time_to_target_median_needs_half_the_runs():
    assert time_to_target([True, False, False, False], [2, None, None, None], 10).median_epochs is None
    # two of four: S drops to exactly 1/2 at the second event
    assert time_to_target([True, True, False, False], [2, 7, None, None], 10).median_epochs == 7.0
    # imputing max_epochs for the three that never got there would claim a median of 10
    assert time_to_target([True, True, False, False, False], [2, 4, None, None, None], 10).median_epochs is None


def test_time_to_target_censored_before_max_epochs():
    # run 2 stopped at epoch 3 without reaching: at epoch 6 two runs are at risk, S = 3/4 * 1/2 = 3/8
    t = time_to_target([True, False, True, True], [2, 3, 6, 8], 10)
    assert t.median_epochs == 6.0


def test_time_to_target_rejects_reached_without_epoch():
    with pytest.raises(ValueError, match="no epoch"):
        time_to_target([True, False], [None, None], 10)


def test_three_vs_three_is_inconclusive_by_construction():
    res = compare_time_to_target([True] * 3, [1, 2, 3], [True] * 3, [7, 8, 9], max_epochs=10)
    # perfectly separated: the exact two-sided p is 2 / C(6, 3) = 0.1
    assert res.p_value == pytest.approx(0.1) and res.min_p == pytest.approx(0.1)
    assert not res.significant and res.verdict.startswith("inconclusive")
    assert res.seeds_needed == 4 and "needs ≥ 4 seeds" in res.verdict  # 2 / C(8, 4) = 0.029


def test_seeds_for_rank_test_hand_computed():
    # 2 / C(2k, k): k=3 -> 0.1, k=4 -> 0.029, k=5 -> 0.0079
    assert seeds_for_rank_test(0.05) == 4
    assert seeds_for_rank_test(0.01) == 5
    assert seeds_for_rank_test(0.2) == 3


def test_time_comparison_without_censoring_is_exact_mann_whitney():
    a, b = [3.0, 5.0, 6.0, 9.0], [4.0, 7.0, 8.0, 10.0, 11.0]
    res = compare_time_to_target([True] * 4, a, [True] * 5, b, max_epochs=20)
    assert res.p_value == pytest.approx(stats.mannwhitneyu(a, b, method="exact").pvalue)


def test_time_comparison_with_a_single_run():
    # 1 vs 3, the lone A run fastest: it is the fastest in 1 of the 4 relabellings, two-sided p = 2 / 4
    res = compare_time_to_target([True], [1], [True] * 3, [4, 5, 6], max_epochs=10)
    assert res.statistic == 3 and res.p_value == pytest.approx(0.5) and res.min_p == pytest.approx(0.5)
    assert res.verdict.startswith("inconclusive")
    flipped = compare_time_to_target([True] * 3, [4, 5, 6], [True], [1], max_epochs=10)
    assert flipped.statistic == -3 and flipped.p_value == pytest.approx(0.5)


def test_time_comparison_counts_never_reached_as_slower():
    res = compare_time_to_target([True] * 5, [2, 3, 4, 5, 6], [False] * 5, [None] * 5, max_epochs=10)
    assert res.significant and res.p_value == pytest.approx(2 / 252)
    assert res.verdict.startswith("A reaches the target sooner")
    neither = compare_time_to_target([False] * 5, [None] * 5, [False] * 5, [None] * 5, max_epochs=10)
    assert neither.p_value == 1.0 and not neither.significant


# --- detectable difference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, std_a, std_b", [(3, 0.01, 0.01), (5, 0.005, 0.02)])
def test_welch_detects_the_detectable_difference_with_the_stated_power(n, std_a, std_b):
    d = detectable_difference(std_a, std_b, n, n, alpha=0.05, power=0.8)
    rng = np.random.default_rng(99)  # independent of the module's own draws
    a, b = rng.normal(d, std_a, (20000, n)), rng.normal(0.0, std_b, (20000, n))
    power = np.mean(stats.ttest_ind(a, b, axis=-1, equal_var=False).pvalue < 0.05)
    assert power == pytest.approx(0.8, abs=0.02)


def test_detectable_difference_large_n_matches_the_normal_formula():
    # (z_0.975 + z_0.8) * sqrt(2 sigma^2 / n) = (1.959964 + 0.841621) * 0.01 * sqrt(2 / 200)
    assert detectable_difference(0.01, 0.01, 200, 200) == pytest.approx(2.801585 * 0.01 * 0.1, rel=0.02)


def test_detectable_difference_shrinks_with_seeds_and_is_nan_without_spread():
    ds = [detectable_difference(0.01, 0.01, n, n) for n in (2, 3, 5, 10)]
    assert ds == sorted(ds, reverse=True)
    assert math.isnan(detectable_difference(0.0, 0.0, 3, 3))
    assert math.isnan(detectable_difference(0.01, 0.01, 1, 3))


# --- validity checks ---------------------------------------------------------------------------------------


def test_not_converged_on_rising_and_flat_curves():
    rng = np.random.default_rng(8)
    epochs = np.arange(20)
    rising = 0.5 + 0.02 * epochs + rng.normal(0, 0.005, (3, 20))
    flat = 0.9 + rng.normal(0, 0.01, (3, 1)) + rng.normal(0, 0.003, (3, 20))
    assert not_converged(rising, "max").flagged
    assert not not_converged(flat, "max").flagged
    # a loss still falling, and the same loss read with the wrong mode
    loss = 2.0 * np.exp(-epochs / 30) + rng.normal(0, 0.005, (3, 20))
    assert not_converged(loss, "min").flagged
    assert not not_converged(loss, "max").flagged
    # one seed: the noise is its scatter around the fitted line
    assert not_converged(rising[0], "max").flagged
    assert not not_converged(flat[0], "max").flagged


def test_not_converged_needs_three_epochs():
    res = not_converged([[0.1, 0.9]], "max")
    assert not res.flagged and "cannot judge" in res.reason


def test_at_chance_at_ceiling_diverged_underpowered():
    assert at_chance(0.26, chance=0.25, noise=0.02).flagged
    assert not at_chance(0.90, chance=0.25, noise=0.02).flagged
    assert at_chance(990.0, chance=1000.0, noise=20.0, mode="min").flagged  # perplexity near a unigram model's
    assert not at_chance(120.0, chance=1000.0, noise=20.0, mode="min").flagged
    assert at_ceiling([1.0, 1.0, 0.999], 1.0).flagged
    assert not at_ceiling([0.90, 0.91, 0.92], 1.0).flagged
    assert diverged(0.2).flagged and not diverged(0.0).flagged
    assert underpowered(0.035, 0.01).flagged
    assert not underpowered(0.035, -0.05).flagged
    assert underpowered(math.nan, 0.5).flagged


def test_seeds_needed_inverts_the_detectable_difference():
    n = hs.seeds_needed(0.01, 0.012, 0.0083, alpha=0.025)
    assert n is not None and 20 < n < 50  # the normal approximation says 34
    assert (
        hs.detectable_difference(0.01, 0.012, n, n, 0.025)
        <= 0.0083
        < hs.detectable_difference(0.01, 0.012, n - 1, n - 1, 0.025)
    )
    assert hs.seeds_needed(0.01, 0.012, -0.0083, alpha=0.025) == n  # either direction
    assert hs.seeds_needed(0.05, 0.05, 0.0001) is None  # beyond 64 seeds
    assert hs.seeds_needed(0.0, 0.0, 0.1) is None and hs.seeds_needed(0.01, 0.01, 0.0) is None
    # at that many seeds, Welch's test finds a true difference of that size about 80% of the time
    gen = np.random.default_rng(1)
    hits = [
        stats.ttest_ind(gen.normal(0.0083, 0.01, n), gen.normal(0, 0.012, n), equal_var=False).pvalue < 0.025
        for _ in range(2000)
    ]
    assert 0.76 < np.mean(hits) < 0.86


# --------------------------------------------------------------------------- tests of one family member


def test_mean_test_is_scipys_welch_one_or_two_sided():
    a, b = [0.90, 0.92, 0.94], [0.86, 0.88, 0.90]
    for alt in ("two-sided", "greater", "less"):
        want = stats.ttest_ind(a, b, equal_var=False, alternative=alt).pvalue
        assert hs.mean_test(a, b, alternative=alt).p_value == pytest.approx(want, rel=1e-9)
    # one-sided in the observed direction halves the two-sided p: confirmed where two-sided would not be
    two, one = hs.mean_test(a, b).p_value, hs.mean_test(a, b, alternative="greater").p_value
    assert one == pytest.approx(two / 2) and one < 0.05 < two
    # a shift tests against a margin: mean(a) - mean(b) < 0.1
    want = stats.ttest_ind([x - 0.1 for x in a], b, equal_var=False, alternative="less").pvalue
    assert hs.mean_test(a, b, alternative="less", shift=0.1).p_value == pytest.approx(want, rel=1e-9)


def test_mean_test_against_a_constant_arm_is_a_one_sample_t_test():
    noisy, flat = [0.51, 0.34, 0.3367, 0.4067], [0.0] * 4  # degradation's training errors
    got = hs.mean_test(flat, noisy, alternative="less")
    want = stats.ttest_1samp(noisy, 0.0, alternative="greater").pvalue
    assert got.p_value == pytest.approx(want, rel=1e-9) and "one-sample t-test of b against a's constant" in got.method
    assert "(df 3)" in got.method and not got.reason
    assert got.p_value < 0.0125 / 2  # two-sided Welch at Holm's 0.025 missed it (t = 4.10 < 4.18)
    both = hs.mean_test(flat, [0.5] * 4)
    assert both.p_value == 1.0 and both.reason == NO_SPREAD
    assert hs.mean_test([0.5], noisy).reason.startswith("one seed")


def test_mean_test_against_a_level():
    x = [0.70, 0.75, 0.62]
    want = stats.ttest_1samp(x, 0.55, alternative="greater").pvalue
    assert hs.mean_test(x, level=0.5, alternative="greater", shift=0.05).p_value == pytest.approx(want, rel=1e-9)
    # identical seeds against a fixed level: no noise at all, the value decides
    at = hs.mean_test([0.078] * 4, level=0.078, alternative="less", shift=0.05)
    assert at.p_value == 0.0 and "the value decides" in at.method
    assert hs.mean_test([0.2] * 4, level=0.078, alternative="less", shift=0.05).p_value == 1.0
    with pytest.raises(ValueError, match="give b or a level"):
        hs.mean_test(x)


def test_equivalence_test_is_statsmodels_tost():
    from statsmodels.stats.weightstats import DescrStatsW

    x = np.array([0.49, 0.52, 0.50, 0.47])
    tost, beyond = hs.equivalence_test(x, level=0.5, margin=0.05)
    want = DescrStatsW(x).ttost_mean(0.45, 0.55)[0]
    assert tost.p_value == pytest.approx(want, rel=1e-9) and tost.p_value < 0.05 and beyond.p_value > 0.5
    far_tost, far = hs.equivalence_test([0.65, 0.66, 0.75], level=0.5, margin=0.05)
    assert far_tost.p_value > 0.5 and far.p_value < 0.05
    with pytest.raises(ValueError, match="margin must be > 0"):
        hs.equivalence_test(x, level=0.5, margin=0)


def test_one_sided_time_to_target_halves_the_floor():
    sooner, later = [True] * 4, [True] * 4
    one = compare_time_to_target(sooner, [1, 2, 2, 3], later, [5, 6, 7, 8], 10, alternative="greater")
    two = compare_time_to_target(sooner, [1, 2, 2, 3], later, [5, 6, 7, 8], 10)
    assert one.min_p == pytest.approx(1 / 70) and two.min_p == pytest.approx(2 / 70)
    assert one.p_value == pytest.approx(1 / 70) and "one-sided" in one.method
    assert compare_time_to_target(sooner, [1, 2, 2, 3], later, [5, 6, 7, 8], 10, alternative="less").p_value == 1.0
    assert seeds_for_rank_test(0.05, sides=1) == 3 and seeds_for_rank_test(0.05) == 4
    assert seeds_for_rank_test(0.05 / 13, sides=1) == 6
