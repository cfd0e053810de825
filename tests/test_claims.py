"""Claim verdicts (pipeline.report.claims) on synthetic runs whose truth we chose: for every kind, a case that
must come out confirmed, one contradicted and one inconclusive, with the reason saying why; each kind's own test,
in the study's one family (pipeline.report.gate) with the headline comparisons."""

from __future__ import annotations

import pytest

from pipeline.config import Claim, validate
from pipeline.errors import ConfigError
from pipeline.report.analysis import analyze
from pipeline.report.chance import Chance
from pipeline.report.claims import evaluate_claims

EPOCHS = 6


@pytest.fixture(autouse=True, scope="module")
def frozen_gc():
    """statsmodels' Holm runs gc.collect() on every call; frozen, a collection skips what the imports made."""
    import gc

    gc.freeze()
    yield
    gc.unfreeze()


def chance_fn(runs: list[dict], metric: str) -> Chance:
    """Chance 0.1 on 1,000 test examples (a 10-class majority baseline) for any accuracy."""
    return Chance(0.1, "majority-class accuracy", 1000) if metric.endswith("accuracy") else Chance(None, reason="none")


def make_runs(
    values: dict[str, list[float]],
    *,
    rising: tuple[str, ...] = (),
    finals: dict[str, dict[str, float]] | None = None,
    reached: dict[str, list[float | None]] | None = None,
) -> list[dict]:
    """runs.json rows: `values` are each seed's test_accuracy; validation curves flat at it (converged) unless
    the variant is `rising` (still climbing 0.05 an epoch); `finals` adds per-variant final metrics; `reached`
    gives each seed's epoch of reaching the target (None: never, stopped at EPOCHS)."""
    runs = []
    for v, xs in values.items():
        for seed, x in enumerate(xs):
            curve = [x - (0.05 * (EPOCHS - e) if v in rising else 0.0) for e in range(1, EPOCHS + 1)]
            hist = {
                "epoch": [[e, e] for e in range(1, EPOCHS + 1)],
                "val_accuracy": [[e, c] for e, c in enumerate(curve, 1)],
            }
            final = {"val_accuracy": curve[-1], "test_accuracy": x, **(finals or {}).get(v, {})}
            tags = {"variant": v, "seed": str(seed), "outcome": "completed"}
            if reached is not None:
                at = reached[v][seed]
                tags["target_reached"] = str(at is not None).lower()
                final["epochs_to_target"] = at if at is not None else EPOCHS + 1
            runs.append(
                {
                    "run_id": f"{v}-{seed}",
                    "run_name": f"s-{v}-{seed}",
                    "status": "FINISHED",
                    "tags": tags,
                    "params": {"train.epochs": str(EPOCHS)},
                    "final": final,
                    "history": hist,
                }
            )
    return runs


def verdicts(runs: list[dict], claims: list[dict], chance=chance_fn, extras: dict | None = None) -> list[dict]:
    analysis = analyze(runs, "val_accuracy", "max", chance=chance)
    if extras is not None:
        analysis["extras"] = extras
    entries, family = evaluate_claims([Claim(**c) for c in claims], runs, analysis, chance=chance)
    assert family.closed
    return entries


def one(runs: list[dict], claim: dict, **kw) -> dict:
    (got,) = verdicts(runs, [{"claim": "c", **claim}], **kw)
    assert set(got) == {"index", "claim", "kind", "type", "metric", "verdict", "reason", "brief", "details"}
    return got


HIGH = [0.90, 0.91, 0.92]
LOW = [0.80, 0.81, 0.82]
AT_CHANCE = [0.10, 0.11, 0.09]


# --------------------------------------------------------------------------- better


def test_better_confirmed_contradicted_inconclusive():
    runs = make_runs({"a": HIGH, "b": LOW})
    got = one(runs, {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "confirmed" and got["metric"] == "test_accuracy" and got["type"] == "claim"
    assert "one-sided Welch t-test (H1: a above b, as a claim states)" in got["reason"]
    assert "Holm-adjusted over the study's 1 test: p<0.001); runs valid" in got["reason"]
    worse = one(runs, {"kind": "better", "a": "b", "b": "a"})
    assert worse["verdict"] == "contradicted" and "the opposite one-sided test in the same family" in worse["reason"]
    close = make_runs({"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93]})
    got = one(close, {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive"
    assert "neither side significant" in got["reason"] and "could not have been detected" in got["reason"]
    assert "with ≤ 3 seeds, seed variance is poorly known" in got["reason"]
    # what it would take: 0.01 apart at std 0.02 needs far more seeds than 3
    assert "telling apart a difference of 0.01 would take " in got["reason"], got["reason"]


def test_better_is_one_sided_where_two_sided_would_not_confirm():
    """0.92 vs 0.88 at std 0.02 on 3 seeds: two-sided Welch p = 0.070, one-sided 0.035."""
    runs = make_runs({"a": [0.90, 0.92, 0.94], "b": [0.86, 0.88, 0.90]})
    got = one(runs, {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "confirmed" and "p=0.035" in got["reason"], got["reason"]
    # claimed the other way, the opposite one-sided test (p = 0.035) contradicts it in the same family
    assert one(runs, {"kind": "better", "a": "b", "b": "a"})["verdict"] == "contradicted"


def test_better_needs_valid_runs_and_is_then_never_contradicted():
    got = one(make_runs({"a": HIGH, "b": AT_CHANCE}), {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive" and "b is at chance" in got["reason"]
    assert "claimed side significant" in got["reason"]
    rising = make_runs({"a": HIGH, "b": LOW}, rising=("b",))
    got = one(rising, {"kind": "better", "a": "b", "b": "a"})  # significantly the other way, but b still climbs
    assert got["verdict"] == "inconclusive" and "b has not converged" in got["reason"], got["reason"]
    assert "opposite side significant" in got["reason"] and got["brief"] == "b has not converged"


def test_the_family_holds_the_headline_pairs_and_the_claims():
    """4 variants: 6 headline pairs, 2 of them also claimed (one-sided): a family of 6, each pair tested once."""
    values = {"a": [0.90, 0.92, 0.94], "b": [0.85, 0.87, 0.89], "c": [0.90, 0.92, 0.94], "d": [0.85, 0.87, 0.89]}
    runs = make_runs(values)
    claims = [
        {"claim": "ab", "kind": "better", "a": "a", "b": "b"},
        {"claim": "cd", "kind": "better", "a": "c", "b": "d"},
    ]
    two = verdicts(runs, claims)
    assert [c["verdict"] for c in two] == ["inconclusive", "inconclusive"]
    assert "Holm-adjusted over the study's 6 tests" in two[0]["reason"]
    analysis = analyze(runs, "val_accuracy", "max", chance=chance_fn)
    _, family = evaluate_claims([Claim(**c) for c in claims], runs, analysis, chance=chance_fn)
    assert family.size == 6
    by = {tuple(m.used_by): m.alternative for m in family.members.values()}
    assert by[("headline", "claim 1")] == "greater" and by[("headline",)] == "two-sided"


def test_better_with_lists_needs_every_member():
    runs = make_runs({"a1": HIGH, "a2": [0.81, 0.80, 0.83], "b": LOW})
    assert one(runs, {"kind": "better", "a": ["a1"], "b": "b"})["verdict"] == "confirmed"
    got = one(runs, {"kind": "better", "a": ["a1", "a2"], "b": "b"})
    assert got["verdict"] == "inconclusive" and got["reason"].startswith("a2 0.8133 vs b 0.81")
    worse = make_runs({"a1": HIGH, "a2": [0.70, 0.71, 0.72], "b": LOW})
    assert one(worse, {"kind": "better", "a": ["a1", "a2"], "b": "b"})["verdict"] == "contradicted"


def test_better_on_identical_seeds_is_never_significant():
    got = one(make_runs({"a": [0.9] * 3, "b": [0.8] * 3}), {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive" and "no spread: seeds agree exactly" in got["reason"]


def test_better_against_an_arm_with_zero_spread_is_a_one_sample_test():
    """degradation's claim: the shallow net's training error is 0 on every seed, the deep one's varies."""
    runs = make_runs({"shallow": HIGH + [0.93], "deep": LOW + [0.83]})
    err = {"shallow": [0.0] * 4, "deep": [0.51, 0.34, 0.3367, 0.4067]}
    claim = {"kind": "better", "a": "shallow", "b": "deep", "metric": "degradation.train_error", "direction": "min"}
    got = one(runs, claim, extras={"degradation": {"values": {"train_error": err}}})
    assert got["verdict"] == "confirmed", got["reason"]
    assert "one-sample t-test of deep against shallow's constant value (df 3)" in got["reason"]


def test_better_on_a_section_quantity():
    runs = make_runs({"a": HIGH, "b": LOW})
    claim = {"kind": "better", "a": "a", "b": "b", "metric": "capacity.gap", "direction": "min"}
    got = one(runs, claim)
    assert got["verdict"] == "inconclusive" and got["reason"] == "section capacity gave no gap"
    extras = {"capacity": {"values": {"gap": {"a": [0.01, 0.02, 0.015], "b": [0.10, 0.11, 0.12]}}}}
    got = one(runs, claim, extras=extras)
    assert got["verdict"] == "confirmed" and "a is significantly lower" in got["reason"]
    assert one(runs, {**claim, "direction": "max"}, extras=extras)["verdict"] == "contradicted"


def test_better_on_epochs_to_target_is_censored_and_one_sided():
    fast, never = [2.0] * 5, [None] * 5
    runs = make_runs({"a": HIGH + HIGH[:2], "b": LOW + LOW[:2]}, reached={"a": fast, "b": never})
    claim = {"kind": "better", "a": "a", "b": "b", "metric": "epochs_to_target"}
    got = one(runs, claim)  # 5 vs 5, every a run before any b run: one-sided exact p = 1 / C(10, 5) = 0.004
    assert got["verdict"] == "confirmed" and "a reaches the target sooner than b" in got["reason"]
    assert (
        "one-sided Gehan-Wilcoxon exact permutation test (5 vs 5 runs)" in got["reason"] and "p=0.004" in got["reason"]
    )
    assert one(runs, {**claim, "a": "b", "b": "a"})["verdict"] == "contradicted"
    three = make_runs({"a": HIGH[:2], "b": LOW[:2]}, reached={"a": fast[:2], "b": never[:2]})
    got = one(three, claim)
    assert got["verdict"] == "inconclusive" and "at these seeds no outcome could" in got["reason"], got["reason"]


def test_unknown_variant_or_direction_is_inconclusive():
    runs = make_runs({"a": HIGH, "b": LOW}, finals={"a": {"n_params": 10}, "b": {"n_params": 20}})
    got = one(runs, {"kind": "better", "a": "nosuch", "b": "b"})
    assert got["verdict"] == "inconclusive" and got["reason"] == "no variant nosuch in these runs (variants: a, b)"
    got = one(runs, {"kind": "better", "a": "a", "b": "b", "metric": "train_something"})
    assert got["verdict"] == "inconclusive"


# --------------------------------------------------------------------------- checks: ratio, extreme on counts


def test_ratio_is_an_arithmetic_check():
    runs = make_runs({"maxout": HIGH, "relu": LOW}, finals={"maxout": {"n_params": 42250}, "relu": {"n_params": 21450}})
    claim = {"kind": "ratio", "a": "maxout", "b": "relu", "metric": "n_params", "value": 2.0}
    got = one(runs, claim)
    assert got["verdict"] == "confirmed" and got["type"] == "check" and "= 1.97, claimed 2 ± 5%" in got["reason"]
    assert one(runs, {**claim, "value": 3.0})["verdict"] == "contradicted"
    assert one(runs, {**claim, "value": 2.0, "tolerance": 0.01})["verdict"] == "contradicted"
    got = one(runs, {**claim, "metric": "flops_per_sample"})
    assert got["verdict"] == "inconclusive" and got["reason"] == "no finished run logged flops_per_sample"


def test_extreme_on_a_count_is_a_check():
    finals = {"maxout": {"n_params": 42250}, "relu": {"n_params": 21450}, "tanh": {"n_params": 21450}}
    runs = make_runs({"maxout": HIGH, "relu": LOW, "tanh": LOW}, finals=finals)
    claim = {"kind": "extreme", "a": "maxout", "metric": "n_params", "direction": "max"}
    got = one(runs, claim)
    assert got["verdict"] == "confirmed" and got["type"] == "check" and "strictly beyond" in got["reason"]
    got = one(runs, {**claim, "a": "relu"})
    assert got["verdict"] == "contradicted" and "not beyond" in got["reason"]  # a tie is not "the highest"


def test_extreme_noisy_is_inferential():
    runs = make_runs({"a": HIGH, "b": LOW, "c": [0.70, 0.71, 0.72]})
    got = one(runs, {"kind": "extreme", "a": "a"})  # direction from the study's mode (max)
    assert got["verdict"] == "confirmed" and got["type"] == "claim" and "a is significantly better" in got["reason"]
    assert one(runs, {"kind": "extreme", "a": "c"})["verdict"] == "contradicted"
    close = make_runs({"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93], "c": LOW})
    got = one(close, {"kind": "extreme", "a": "a"})
    assert got["verdict"] == "inconclusive" and "neither side significant" in got["reason"]
    assert one(close, {"kind": "extreme", "a": "c", "direction": "min"})["verdict"] == "confirmed"


# --------------------------------------------------------------------------- chance and trains


@pytest.mark.parametrize("kind", ["chance", "no_gain"])
def test_equivalence_claims_need_a_declared_margin(kind):
    for margin in (None, 0.0):
        entry = {"claim": "c", "kind": kind, "a": "a", "b": None if kind == "chance" else "b"}
        if margin is not None:
            entry["margin"] = margin
        with pytest.raises(ConfigError, match=f"a {kind} claim is an equivalence test and needs a margin > 0") as e:
            validate(Claim, entry, file="experiments/x.yaml", prefix="expect.0")
        assert "experiments/x.yaml" in str(e.value) and "expect.0.margin" in str(e.value)
    with pytest.raises(ConfigError, match="a better claim takes no margin"):
        validate(Claim, {"claim": "c", "kind": "better", "a": "a", "b": "b", "margin": 0.1})


def test_chance_is_tost_and_trains_is_one_sided():
    runs = make_runs({"sigmoid": AT_CHANCE, "relu": HIGH})
    got = one(runs, {"kind": "chance", "a": "sigmoid", "margin": 0.05})
    assert got["verdict"] == "confirmed" and "TOST within ±0.05" in got["reason"]
    assert one(runs, {"kind": "chance", "a": "relu", "margin": 0.05})["verdict"] == "contradicted"
    assert one(runs, {"kind": "trains", "a": "relu"})["verdict"] == "confirmed"
    assert one(runs, {"kind": "trains", "a": "sigmoid", "margin": 0.05})["verdict"] == "contradicted"
    assert one(runs, {"kind": "trains", "a": ["relu", "sigmoid"], "margin": 0.05})["verdict"] == "contradicted"
    unknown = one(runs, {"kind": "trains", "a": "relu"}, chance=None)
    assert unknown["verdict"] == "inconclusive" and "chance level of test_accuracy unknown" in unknown["reason"]
    nodef = one(runs, {"kind": "chance", "a": "relu", "metric": "test_loss", "margin": 0.1})
    assert nodef["verdict"] == "inconclusive"


GAN = {
    "won": [0.65, 0.66, 0.75],
    "balanced": [0.48, 0.50, 0.52],
    "fooled": [0.46, 0.48, 0.50],
    "clear": [0.80, 0.81, 0.82],
}


def gan_runs(variant: str, rising: tuple[str, ...] = ()) -> list[dict]:
    """One GAN variant's discriminator accuracies (test_d_accuracy), beside a second variant so there is a family."""
    finals = {variant: GAN[variant], "other": [0.6, 0.61, 0.62]}
    runs = make_runs({v: HIGH for v in finals}, finals={v: {"test_d_accuracy": 0.0} for v in finals}, rising=rising)
    for r in runs:
        r["final"]["test_d_accuracy"] = finals[r["tags"]["variant"]][int(r["tags"]["seed"])]
    return runs


def test_chance_at_a_stated_level_is_an_equivalence_test():
    """A GAN discriminator's accuracy: the claim states chance (0.5) and the margin (0.1); 0.69 ± 0.06 on 3 seeds
    is neither shown within nor beyond 0.1 of it; 0.5 ± 0.02 is within, and so is 0.48 (the claim is two-sided)."""
    claim = {"kind": "chance", "metric": "test_d_accuracy", "value": 0.5, "margin": 0.1}
    won = one(gan_runs("won"), {**claim, "a": "won"})
    assert won["verdict"] == "inconclusive" and "nor its opposite (beyond ±0.1 of it" in won["reason"], won["reason"]
    assert one(gan_runs("balanced"), {**claim, "a": "balanced"})["verdict"] == "confirmed"
    assert one(gan_runs("fooled"), {**claim, "a": "fooled"})["verdict"] == "confirmed"
    assert one(gan_runs("clear"), {**claim, "a": "clear"})["verdict"] == "contradicted"


def test_a_not_converged_variant_makes_its_claim_inconclusive_and_says_why():
    claim = {"kind": "chance", "metric": "test_d_accuracy", "value": 0.5, "margin": 0.1, "a": "clear"}
    assert one(gan_runs("clear"), claim)["verdict"] == "contradicted"
    got = one(gan_runs("clear", rising=("clear",)), claim)  # the same values, but its validation curve still climbs
    assert got["verdict"] == "inconclusive" and "clear has not converged, so the runs cannot decide" in got["reason"]
    assert got["brief"] == "clear has not converged"


def test_a_constant_arm_at_chance_is_decided_by_its_value():
    runs = make_runs({"normal": [0.1] * 3, "relu": HIGH})
    got = one(runs, {"kind": "chance", "a": "normal", "margin": 0.05})
    assert got["verdict"] == "confirmed" and "identical over its 3 seeds, so the value decides" in got["reason"]


# --------------------------------------------------------------------------- no_gain


def test_no_gain_is_a_non_superiority_test():
    same = make_runs({"a": [0.900, 0.901, 0.902, 0.903, 0.904], "b": [0.901, 0.902, 0.903, 0.904, 0.905]})
    got = one(same, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert (
        got["verdict"] == "confirmed"
        and "non-superiority: one-sided Welch t-test against the margin 0.01" in got["reason"]
    )
    gain = make_runs({"a": [0.950, 0.951, 0.952], "b": [0.900, 0.901, 0.902]})
    got = one(gain, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert got["verdict"] == "contradicted" and "better by more than the margin" in got["reason"]
    noisy = make_runs({"a": [0.90, 0.93, 0.96], "b": [0.90, 0.92, 0.94]})
    got = one(noisy, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert got["verdict"] == "inconclusive" and "neither side significant" in got["reason"]
    # an invalid run cannot confirm "no gain": an untrained pair would show none either
    flat = make_runs({"a": AT_CHANCE, "b": [0.11, 0.10, 0.09]})
    got = one(flat, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.05})
    assert got["verdict"] == "inconclusive" and "are at chance" in got["reason"]


def test_no_gain_in_a_metrics_better_direction():
    # test_loss: lower is better, so a's gain is b's loss minus a's
    finals = {"a": {"test_loss": 0.30}, "b": {"test_loss": 0.50}}
    runs = make_runs({"a": HIGH, "b": HIGH}, finals=finals)
    for r in runs:  # a little seed noise on the loss
        r["final"]["test_loss"] += 0.001 * int(r["tags"]["seed"])
    got = one(runs, {"kind": "no_gain", "a": "a", "b": "b", "metric": "test_loss", "margin": 0.05})
    assert got["verdict"] == "contradicted"
    assert (
        one(runs, {"kind": "no_gain", "a": "b", "b": "a", "metric": "test_loss", "margin": 0.05})["verdict"]
        == "confirmed"
    )


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
