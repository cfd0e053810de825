"""pipeline.stats: hand-computed summaries and p-values, ranking, the finding sentence, and properties."""

import json
import math
from dataclasses import fields

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.stats import Comparison, Summary, compare, describe_finding, summarize

# --- summarize ---------------------------------------------------------------------------------------------


def test_summarize_hand_computed():
    s = summarize([1, 2, 3, 4])
    # mean = 10 / 4 = 2.5
    # sample variance = ((1.5^2 + 0.5^2) * 2) / 3 = 5 / 3, std = sqrt(5/3) = 1.290994
    # half-width = t(0.975, df=3) * std / sqrt(4) = 3.182446 * 1.290994 / 2 = 2.054260
    assert s.n == 4
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx(1.290994, abs=1e-6)
    assert s.ci_low == pytest.approx(2.5 - 2.054260, abs=1e-6)
    assert s.ci_high == pytest.approx(2.5 + 2.054260, abs=1e-6)


def test_summarize_confidence_level_changes_the_interval():
    s = summarize([1, 2, 3, 4], confidence=0.90)
    # half-width = t(0.95, df=3) * std / 2 = 2.353363 * 1.290994 / 2 = 1.519090
    assert s.ci_low == pytest.approx(2.5 - 1.519090, abs=1e-6)
    assert s.ci_high == pytest.approx(2.5 + 1.519090, abs=1e-6)


def test_summarize_single_value_has_no_interval():
    assert summarize([0.7]) == Summary(n=1, mean=0.7, std=0.0, ci_low=None, ci_high=None)


def test_summarize_identical_values_have_exactly_zero_spread():
    # np.std([0.1] * 3, ddof=1) is 1.7e-17 and np.mean is 0.10000000000000002; both must be exact here
    assert summarize([0.1, 0.1, 0.1]) == Summary(n=3, mean=0.1, std=0.0, ci_low=0.1, ci_high=0.1)


@pytest.mark.parametrize(
    "values, match",
    [
        ([], "empty"),
        ([1.0, float("nan"), 2.0], r"nan.*positions \[1\]"),
        ([float("inf"), 1.0, float("-inf")], r"inf.*positions \[0, 2\]"),
        ([[1.0, 2.0]], "flat"),
    ],
)
def test_summarize_rejects_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        summarize(values)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_summarize_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        summarize([1, 2], confidence=confidence)


def test_as_dict_is_json_with_the_field_names():
    c = compare({"a": [1, 2, 3], "b": [2, 3, 4]}, "max")[1]
    d = json.loads(json.dumps(c.as_dict()))
    assert list(d) == [f.name for f in fields(Comparison)]
    assert list(d["summary"]) == [f.name for f in fields(Summary)]
    assert d["summary"]["mean"] == pytest.approx(2.0)
    assert d["p_value"] == c.p_value


# --- compare: Welch ----------------------------------------------------------------------------------------


def _welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided p-value straight from the textbook formula."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return 2 * stats.t.sf(abs(t), df)


def test_welch_p_value_matches_the_formula():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0, 7.0]
    # t = (2.5 - 5) / sqrt(5/3/4 + 2.5/5) = -2.6112, df = 0.91667^2 / (0.41667^2/3 + 0.5^2/4) = 6.981
    expected = _welch_p(a, b)
    assert expected == pytest.approx(0.0349, abs=5e-4)  # the formula itself is not broken
    b_first, a_second = compare({"a": a, "b": b}, "max")
    assert (b_first.variant, b_first.p_value) == ("b", None)
    assert a_second.p_value == pytest.approx(expected, rel=1e-9)
    assert a_second.significant
    assert a_second.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)


def test_welch_one_constant_group():
    a, b = [5.0, 5.0, 5.0], [4.0, 4.5, 4.2, 4.9]
    assert compare({"a": a, "b": b}, "max")[1].p_value == pytest.approx(_welch_p(a, b), rel=1e-9)


@pytest.mark.parametrize(
    "a, b, p",
    [
        ([1.0, 1.0, 1.0], [1.0, 1.0], 1.0),
        ([0.1, 0.1, 0.1], [0.1, 0.1], 1.0),  # rounding noise in np.std must not look like a difference
        ([2.0, 2.0], [1.0, 1.0, 1.0], 0.0),
    ],
)
def test_welch_both_groups_constant(a, b, p):
    c = compare({"a": a, "b": b}, "max")[1]
    assert c.p_value == p
    assert c.significant is (p == 0.0)


def test_alpha_decides_significance():
    groups = {"a": [1.0, 2.0, 3.0, 4.0], "b": [3.0, 4.0, 5.0, 6.0, 7.0]}  # p = 0.0349
    assert compare(groups, "max", alpha=0.05)[1].significant
    assert not compare(groups, "max", alpha=0.01)[1].significant


# --- compare: permutation ----------------------------------------------------------------------------------


def test_permutation_is_exact_on_small_groups():
    # [1,2,3] vs [4,5,6]: of the C(6,3) = 20 splits only the observed one and its mirror reach |diff| >= 3,
    # so the exact two-sided p-value is 2/20
    c = compare({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}, "max", test="permutation")[1]
    assert c.p_value == pytest.approx(0.1)
    assert not c.significant


def test_permutation_agrees_roughly_with_welch():
    a = [0.35, 0.82, 0.33, -1.3, 0.91, 0.45, -0.54, 0.58, 0.36, 0.29]
    b = [1.23, 1.75, 0.46, 1.04, 0.72, 1.8, 1.24, 0.91, 0.42, 0.94]
    welch = compare({"a": a, "b": b}, "max")[1].p_value
    perm = compare({"a": a, "b": b}, "max", test="permutation")[1].p_value
    assert welch < 0.01 and perm < 0.01
    assert 1 / 3 < perm / welch < 3


def test_permutation_well_separated_groups():
    a = [0.71, 0.74, 0.69, 0.73, 0.72, 0.70, 0.75, 0.71]
    b = [0.80, 0.83, 0.79, 0.82, 0.81, 0.84, 0.80, 0.82]
    for test in ("welch", "permutation"):
        c = compare({"a": a, "b": b}, "max", test=test)[1]
        # C(16, 8) = 12870 > 9999 resamples, so the permutation p bottoms out near 2 / 10000
        assert c.p_value <= 0.001 and c.significant, test


def test_permutation_is_reproducible_with_a_seed():
    groups = {"a": [0.1, 0.5, 0.3, 0.4, 0.2, 0.6, 0.35, 0.45], "b": [0.3, 0.6, 0.5, 0.7, 0.4, 0.55, 0.65, 0.5]}
    # C(16, 8) = 12870 > 9999, so this p-value comes from random resamples
    ps = {seed: [compare(groups, "max", test="permutation", seed=seed)[1].p_value for _ in range(3)] for seed in (3, 4)}
    assert len(set(ps[3])) == 1 and len(set(ps[4])) == 1
    assert ps[3][0] != ps[4][0]
    assert 0.03 < ps[3][0] < 0.08  # Welch gives 0.056 here


# --- compare: ranking and errors ---------------------------------------------------------------------------


GROUPS = {"tanh": [0.5, 0.6], "relu": [0.9, 0.8], "sigmoid": [0.1, 0.2], "gelu": [0.7]}


def test_rank_mode_max():
    out = compare(GROUPS, "max")
    assert [c.variant for c in out] == ["relu", "gelu", "tanh", "sigmoid"]
    assert [c.rank for c in out] == [1, 2, 3, 4]
    assert out[0].p_value is None and not out[0].significant
    assert out[1].p_value is None  # gelu has one seed
    assert out[2].p_value is not None and out[3].p_value is not None


def test_rank_mode_min():
    out = compare(GROUPS, "min")
    assert [c.variant for c in out] == ["sigmoid", "tanh", "gelu", "relu"]
    assert out[0].p_value is None


def test_best_with_one_seed_makes_everything_untestable():
    out = compare({"a": [1.0], "b": [0.2, 0.3, 0.4]}, "max")
    assert [c.p_value for c in out] == [None, None]
    assert not any(c.significant for c in out)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_ties_are_broken_by_name(mode):
    out = compare({"b": [1.0, 2.0], "c": [1.5, 1.5], "a": [2.0, 1.0]}, mode)
    assert [c.variant for c in out] == ["a", "b", "c"]
    assert out[1].p_value == pytest.approx(1.0)


@pytest.mark.parametrize(
    "groups, kwargs, match",
    [
        ({}, {}, "at least one"),
        ({"a": [1.0]}, {"mode": "best"}, "mode"),
        ({"a": [1.0]}, {"test": "mann-whitney"}, "test"),
        ({"a": [1.0]}, {"alpha": 1.5}, "alpha"),
        ({"a": [1.0], "b": []}, {}, "'b'.*empty"),
        ({"a": [1.0, float("nan")]}, {}, "'a'.*non-finite"),
    ],
)
def test_compare_rejects_bad_input(groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare(groups, **{"mode": "max", **kwargs})


# --- describe_finding --------------------------------------------------------------------------------------


def _c(variant: str, rank: int, mean: float, n: int, p: float | None, alpha: float = 0.05) -> Comparison:
    std = 0.004 if n > 1 else 0.0
    return Comparison(variant, rank, Summary(n, mean, std, None, None), p, p is not None and p < alpha)


def test_describe_finding_full_sentence():
    comps = [
        _c("relu", 1, 0.962, 3, None),
        _c("leaky_relu", 2, 0.960, 3, 0.41),
        _c("tanh", 3, 0.95, 3, 0.03),
        _c("sigmoid", 4, 0.90, 3, 0.001),
    ]
    assert describe_finding(comps, "val_accuracy", "max", alpha=0.05) == (
        "relu has the highest val_accuracy (0.9620 ± 0.0040, n=3); it is significantly better than "
        "tanh (p=0.03) and sigmoid (p=0.001), and not distinguishable from leaky_relu (p=0.41) at alpha 0.05."
    )


def test_describe_finding_from_compare_min_mode():
    out = compare({"adam": [0.20, 0.21, 0.19], "sgd": [0.50, 0.52, 0.49], "rmsprop": [0.22, 0.20, 0.21]}, "min")
    text = describe_finding(out, "val_loss", "min")
    # std 0.01 shown to two significant digits, the mean rounded to match
    assert text.startswith("adam has the lowest val_loss (0.200 ± 0.010, n=3); it is significantly better than sgd")
    assert "not distinguishable from rmsprop" in text
    assert "alpha" not in text


def test_describe_finding_one_variant():
    text = describe_finding(compare({"relu": [0.9, 0.92]}, "max"), "acc", "max")
    assert text == "relu is the only variant (acc 0.910 ± 0.014, n=2); there is nothing to compare."


def test_describe_finding_one_seed_per_variant():
    text = describe_finding(compare({"a": [0.9], "b": [0.8], "c": [0.7]}, "max"), "acc", "max")
    assert text == "a has the highest acc (0.9, n=1); with one seed per variant no difference can be tested."


def test_describe_finding_best_has_one_seed():
    text = describe_finding(compare({"a": [0.9], "b": [0.8, 0.7]}, "max"), "acc", "max")
    assert text.endswith("with one seed for a no difference from it can be tested.")


def test_describe_finding_names_untested_variants():
    comps = [_c("a", 1, 0.9, 3, None), _c("b", 2, 0.8, 3, 0.2), _c("c", 3, 0.7, 1, None), _c("d", 4, 0.6, 1, None)]
    text = describe_finding(comps, "acc", "max")
    assert "not distinguishable from b (p=0.2)." in text
    assert text.endswith(" c and d have a single seed and could not be tested.")
    only_untested = describe_finding([comps[0], comps[2]], "acc", "max")
    assert only_untested.endswith("; c has one seed, so no difference can be tested.")


def test_describe_finding_small_p_and_lists_of_three():
    comps = [_c("a", 1, 0.9, 3, None), _c("b", 2, 0.5, 3, 4e-4), _c("c", 3, 0.4, 3, 0.02), _c("d", 4, 0.3, 3, 0.01)]
    assert "better than b (p<0.001), c (p=0.02) and d (p=0.01)." in describe_finding(comps, "acc", "max")


def test_describe_finding_uses_rank_not_list_order():
    comps = [_c("b", 2, 0.8, 3, 0.3), _c("a", 1, 0.9, 3, None)]
    assert describe_finding(comps, "acc", "max").startswith("a has the highest acc")


def test_describe_finding_rejects_wrong_alpha_and_bad_input():
    comps = [_c("a", 1, 0.9, 3, None), _c("b", 2, 0.8, 3, 0.03)]  # significant at 0.05
    with pytest.raises(ValueError, match="alpha"):
        describe_finding(comps, "acc", "max", alpha=0.01)
    with pytest.raises(ValueError, match="mode"):
        describe_finding(comps, "acc", "highest")
    with pytest.raises(ValueError, match="no comparisons"):
        describe_finding([], "acc", "max")


# --- properties --------------------------------------------------------------------------------------------

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


@settings(max_examples=150, deadline=None)
@given(
    groups=st.dictionaries(st.sampled_from("abcdef"), st.lists(finite, min_size=1, max_size=6), min_size=1, max_size=4),
    mode=st.sampled_from(["max", "min"]),
    test=st.sampled_from(["welch", "permutation"]),
)
def test_compare_property(groups, mode, test):
    out = compare(groups, mode, test=test)
    assert sorted(c.variant for c in out) == sorted(groups)
    assert [c.rank for c in out] == list(range(1, len(groups) + 1))
    means = [c.summary.mean for c in out]
    assert means == sorted(means, reverse=mode == "max")
    assert out[0].p_value is None
    for c in out[1:]:
        testable = c.summary.n >= 2 and out[0].summary.n >= 2
        assert (c.p_value is not None) == testable
        if testable:
            assert 0.0 <= c.p_value <= 1.0  # also false for nan
        assert c.significant == (c.p_value is not None and c.p_value < 0.05)
    assert describe_finding(out, "m", mode).startswith(out[0].variant)
