"""Claim verdicts (pipeline.report.claims) on synthetic runs whose truth we chose: for every kind, a case that
must come out confirmed, one contradicted and one inconclusive, with the reason saying why."""

from __future__ import annotations

import pytest

from pipeline.config import Claim
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
    return evaluate_claims([Claim(**c) for c in claims], runs, analysis, chance=chance)


def one(runs: list[dict], claim: dict, **kw) -> dict:
    (got,) = verdicts(runs, [{"claim": "c", **claim}], **kw)
    assert set(got) == {"claim", "kind", "metric", "verdict", "reason", "details"}
    return got


HIGH = [0.90, 0.91, 0.92]
LOW = [0.80, 0.81, 0.82]
AT_CHANCE = [0.10, 0.11, 0.09]


# --------------------------------------------------------------------------- better


def test_better_confirmed_contradicted_inconclusive():
    runs = make_runs({"a": HIGH, "b": LOW})
    got = one(runs, {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "confirmed" and got["metric"] == "test_accuracy"
    assert "Holm-adjusted p<0.001 over 1 claim comparisons; runs valid" in got["reason"]
    assert one(runs, {"kind": "better", "a": "b", "b": "a"})["verdict"] == "contradicted"
    close = make_runs({"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93]})
    got = one(close, {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive"
    assert "not significant" in got["reason"] and "could not have been detected" in got["reason"]
    assert "with ≤ 3 seeds, seed variance is poorly known" in got["reason"]
    # what it would take: 0.01 apart at std 0.02 needs far more seeds than 3
    assert "telling apart a difference of 0.01 would take " in got["reason"], got["reason"]


def test_better_needs_valid_runs():
    got = one(make_runs({"a": HIGH, "b": AT_CHANCE}), {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive" and "significant" in got["reason"] and "b is at chance" in got["reason"]
    got = one(make_runs({"a": HIGH, "b": LOW}, rising=("a",)), {"kind": "better", "a": "a", "b": "b"})
    assert got["verdict"] == "inconclusive" and "a has not converged" in got["reason"]


def test_better_is_holm_adjusted_over_the_studys_claims():
    # 0.92 vs 0.87, std 0.02 on 3 seeds each: Welch p = 0.037 alone, 2 × 0.037 = 0.075 in a family of two
    values = {"a": [0.90, 0.92, 0.94], "b": [0.85, 0.87, 0.89], "c": [0.90, 0.92, 0.94], "d": [0.85, 0.87, 0.89]}
    runs = make_runs(values)
    alone = one(runs, {"kind": "better", "a": "a", "b": "b"})
    assert alone["verdict"] == "confirmed", alone["reason"]
    two = verdicts(
        runs,
        [{"claim": "ab", "kind": "better", "a": "a", "b": "b"}, {"claim": "cd", "kind": "better", "a": "c", "b": "d"}],
    )
    assert [c["verdict"] for c in two] == ["inconclusive", "inconclusive"]
    assert "Holm-adjusted p=0.075 over 2 claim comparisons" in two[0]["reason"]


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


def test_better_on_a_section_quantity():
    runs = make_runs({"a": HIGH, "b": LOW})
    claim = {"kind": "better", "a": "a", "b": "b", "metric": "capacity.gap", "direction": "min"}
    got = one(runs, claim)
    assert got["verdict"] == "inconclusive" and got["reason"] == "section capacity gave no gap"
    extras = {"capacity": {"values": {"gap": {"a": [0.01, 0.02, 0.015], "b": [0.10, 0.11, 0.12]}}}}
    assert one(runs, claim, extras=extras)["verdict"] == "confirmed"
    assert one(runs, {**claim, "direction": "max"}, extras=extras)["verdict"] == "contradicted"


def test_better_on_epochs_to_target_is_censored():
    fast, never = [2.0] * 5, [None] * 5
    runs = make_runs({"a": HIGH + HIGH[:2], "b": LOW + LOW[:2]}, reached={"a": fast, "b": never})
    claim = {"kind": "better", "a": "a", "b": "b", "metric": "epochs_to_target"}
    got = one(runs, claim)  # 5 vs 5, every a run before any b run: exact p = 2 / C(10, 5) = 0.0079
    assert got["verdict"] == "confirmed" and "a reaches the target sooner than b (p=0.0079" in got["reason"]
    assert one(runs, {**claim, "a": "b", "b": "a"})["verdict"] == "contradicted"
    three = make_runs({"a": HIGH, "b": LOW}, reached={"a": fast[:3], "b": never[:3]})
    got = one(three, claim)
    assert got["verdict"] == "inconclusive" and "needs ≥ 4 seeds per group" in got["reason"]


def test_epochs_to_target_claims_share_a_bonferroni_level():
    """p=0.04 confirms one such claim at 0.05; two claims test at 0.025 each, and the reason names that level."""
    sooner, later = [2, 2, 2, 3, 4], [3, 4, 5, None, None]
    five_high, five_low = HIGH + HIGH[:2], LOW + LOW[:2]
    runs = make_runs(
        {"a": five_high, "b": five_low, "c": five_high, "d": five_low},
        reached={"a": sooner, "b": later, "c": sooner, "d": later},
    )
    ab = {"claim": "ab", "kind": "better", "a": "a", "b": "b", "metric": "epochs_to_target"}
    (alone,) = verdicts(runs, [ab])
    assert alone["verdict"] == "confirmed" and "(p=0.04," in alone["reason"]
    first, _ = verdicts(runs, [ab, {**ab, "claim": "cd", "a": "c", "b": "d"}])
    assert first["verdict"] == "inconclusive"
    assert "not significantly different at the level 0.025 (Bonferroni over 2 epochs-to-target" in first["reason"]
    assert "(p=0.04," in first["reason"]


def test_unknown_variant_or_direction_is_inconclusive():
    runs = make_runs({"a": HIGH, "b": LOW}, finals={"a": {"n_params": 10}, "b": {"n_params": 20}})
    got = one(runs, {"kind": "better", "a": "nosuch", "b": "b"})
    assert got["verdict"] == "inconclusive" and got["reason"] == "no variant nosuch in these runs (variants: a, b)"
    got = one(runs, {"kind": "better", "a": "a", "b": "b", "metric": "n_params"})
    assert got["verdict"] == "inconclusive" and "give the claim a direction" in got["reason"]


# --------------------------------------------------------------------------- ratio


def test_ratio():
    runs = make_runs({"maxout": HIGH, "relu": LOW}, finals={"maxout": {"n_params": 42250}, "relu": {"n_params": 21450}})
    claim = {"kind": "ratio", "a": "maxout", "b": "relu", "metric": "n_params", "value": 2.0}
    got = one(runs, claim)
    assert got["verdict"] == "confirmed" and "= 1.97, claimed 2 ± 5%" in got["reason"]
    assert one(runs, {**claim, "value": 3.0})["verdict"] == "contradicted"
    assert one(runs, {**claim, "value": 2.0, "tolerance": 0.01})["verdict"] == "contradicted"
    got = one(runs, {**claim, "metric": "flops_per_sample"})
    assert got["verdict"] == "inconclusive" and got["reason"] == "no finished run logged flops_per_sample"


# --------------------------------------------------------------------------- extreme


def test_extreme_deterministic():
    finals = {"maxout": {"n_params": 42250}, "relu": {"n_params": 21450}, "tanh": {"n_params": 21450}}
    runs = make_runs({"maxout": HIGH, "relu": LOW, "tanh": LOW}, finals=finals)
    claim = {"kind": "extreme", "a": "maxout", "metric": "n_params", "direction": "max"}
    got = one(runs, claim)
    assert got["verdict"] == "confirmed" and "strictly beyond" in got["reason"]
    got = one(runs, {**claim, "a": "relu"})
    assert got["verdict"] == "contradicted" and "not beyond" in got["reason"]  # a tie is not "the highest"


def test_extreme_noisy():
    runs = make_runs({"a": HIGH, "b": LOW, "c": [0.70, 0.71, 0.72]})
    got = one(runs, {"kind": "extreme", "a": "a"})  # direction from the study's mode (max)
    assert got["verdict"] == "confirmed" and "significantly beyond it" in got["reason"]
    assert one(runs, {"kind": "extreme", "a": "c"})["verdict"] == "contradicted"
    close = make_runs({"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.93], "c": LOW})
    got = one(close, {"kind": "extreme", "a": "a"})
    assert got["verdict"] == "inconclusive" and "ranks first but is not significant" in got["reason"]
    assert one(close, {"kind": "extreme", "a": "c", "direction": "min"})["verdict"] == "confirmed"


# --------------------------------------------------------------------------- chance and trains


def test_chance_and_trains():
    runs = make_runs({"sigmoid": AT_CHANCE, "relu": HIGH})
    got = one(runs, {"kind": "chance", "a": "sigmoid"})
    assert got["verdict"] == "confirmed" and "at chance" in got["reason"]
    assert one(runs, {"kind": "chance", "a": "relu"})["verdict"] == "contradicted"
    assert one(runs, {"kind": "trains", "a": "relu"})["verdict"] == "confirmed"
    assert one(runs, {"kind": "trains", "a": "sigmoid"})["verdict"] == "contradicted"
    assert one(runs, {"kind": "trains", "a": ["relu", "sigmoid"]})["verdict"] == "contradicted"
    unknown = one(runs, {"kind": "trains", "a": "relu"}, chance=None)
    assert unknown["verdict"] == "inconclusive" and "chance level unknown" in unknown["reason"]
    nodef = one(runs, {"kind": "chance", "a": "relu", "metric": "test_loss"})
    assert nodef["verdict"] == "inconclusive"


def test_chance_at_a_stated_level_is_two_sided():
    """A GAN discriminator's accuracy: the claim states chance (0.5); 0.69 ± 0.06 is not near it, 0.5 ± 0.02 is,
    and so is 0.48 (below chance is not 'worse' here: the claim is about being near it)."""
    finals = {
        "won": [0.65, 0.66, 0.75],
        "balanced": [0.48, 0.50, 0.52],
        "fooled": [0.46, 0.48, 0.50],
    }
    runs = make_runs({v: HIGH for v in finals}, finals={v: {"test_d_accuracy": 0.0} for v in finals})
    for r in runs:
        r["final"]["test_d_accuracy"] = finals[r["tags"]["variant"]][int(r["tags"]["seed"])]
    claim = {"kind": "chance", "metric": "test_d_accuracy", "value": 0.5}
    won = one(runs, {**claim, "a": "won"})
    assert won["verdict"] == "contradicted" and "not within" in won["reason"], won["reason"]
    assert one(runs, {**claim, "a": "balanced"})["verdict"] == "confirmed"
    assert one(runs, {**claim, "a": "fooled"})["verdict"] == "confirmed"


# --------------------------------------------------------------------------- no_gain


def test_no_gain():
    same = make_runs({"a": [0.900, 0.901, 0.902, 0.903, 0.904], "b": [0.901, 0.902, 0.903, 0.904, 0.905]})
    got = one(same, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert got["verdict"] == "confirmed" and "entirely below the margin" in got["reason"]
    gain = make_runs({"a": [0.950, 0.951, 0.952], "b": [0.900, 0.901, 0.902]})
    got = one(gain, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert got["verdict"] == "contradicted" and "better by more than the margin" in got["reason"]
    noisy = make_runs({"a": [0.90, 0.93, 0.96], "b": [0.90, 0.92, 0.94]})
    got = one(noisy, {"kind": "no_gain", "a": "a", "b": "b", "margin": 0.01})
    assert got["verdict"] == "inconclusive" and "absence of evidence" in got["reason"]
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
