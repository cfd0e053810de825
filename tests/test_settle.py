"""Sequential looks (`pipeline.report.settle`): the looks replayed over synthetic runs whose truth we chose. A claim
decided at the first look adds no seeds; an undecided one gives the next look's seeds to the variants it names and
to no other; a futile one gets none; the report states how each claim was settled. The seeded simulation of the
rule's error rate is benchmarks/sequential_seeds.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_params, load_study
from pipeline.errors import ConfigError
from pipeline.report.analysis import analyze
from pipeline.report.build import conclude
from pipeline.report.gate import Family
from pipeline.report.settle import claim_settlement, replay, settled_texts
from pipeline.sequential import Design
from tests.conftest import write_params, write_spec
from tests.test_claims import chance_fn, make_runs

SPEC = {
    "question": "Which activation?",
    "model": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "dataset": {"name": "digits"},
    "search": {"space": {"model.activation": ["relu", "tanh", "sigmoid"]}},
    "seeds": {"min": 2, "max": 8},
}


@pytest.fixture(autouse=True, scope="module")
def frozen_gc():
    import gc

    gc.freeze()
    yield
    gc.unfreeze()


def study(tmp_path: Path, claims: list[dict], **spec):
    params = write_params(tmp_path, **{"profiles.tiny": {}})
    path = write_spec(tmp_path, "acts", {**SPEC, **spec, "expect": claims})
    return load_study(path, load_params(params), str(params))


def settle(s, runs):
    """The looks replayed with the report's analysis of each (without sections: these claims read run metrics)."""

    def analyse(look_runs: list[dict], family: Family) -> dict:
        analysis = analyze(look_runs, "val_accuracy", "max", chance=chance_fn)
        return conclude(analysis, s.spec.expect, look_runs, chance_fn, family=family)

    return replay(s, s.variants(), runs, analyse)


def last_look(s, plan, family: Family) -> dict:
    """The report's own analysis of the last look (as `build._build` makes it)."""
    analysis = analyze(plan.runs, "val_accuracy", "max", chance=chance_fn)
    return conclude(analysis, s.spec.expect, plan.runs, chance_fn, family=family)


BETTER = {"claim": "relu beats sigmoid", "kind": "better", "a": "relu", "b": "sigmoid"}
CLOSE = {"claim": "tanh beats relu", "kind": "better", "a": "tanh", "b": "relu"}


def test_a_claim_decided_at_the_first_look_adds_no_seeds(tmp_path):
    s = study(tmp_path, [BETTER])
    runs = make_runs({"relu": [0.950, 0.952], "tanh": [0.94, 0.93], "sigmoid": [0.500, 0.503]})
    plan = settle(s, runs)
    assert plan.wanted is None and len(plan.looks) == 1
    assert plan.last.decided == [0] and plan.last.needs == []
    assert plan.analysis["claims"][0]["verdict"] == "confirmed"
    assert plan.looks[0].seeds == {"relu": 2, "tanh": 2, "sigmoid": 2}


def test_an_undecided_claim_gives_seeds_to_the_variants_it_names_and_no_other(tmp_path):
    s = study(tmp_path, [CLOSE])
    look1 = {"relu": [0.930, 0.944], "tanh": [0.955, 0.965], "sigmoid": [0.5, 0.51]}
    plan = settle(s, make_runs(look1))
    assert plan.looks[0].decided == [] and set(plan.looks[0].needs) == {"tanh", "relu"}
    assert plan.wanted == {"relu": 4, "tanh": 4, "sigmoid": 2}  # sigmoid: named by no claim
    # the next look's runs, seeds 2 and 3 of tanh and relu: the difference holds with a tighter spread
    look2 = {"relu": [0.930, 0.944, 0.936, 0.938], "tanh": [0.955, 0.965, 0.960, 0.961], "sigmoid": [0.5, 0.51]}
    plan = settle(s, make_runs(look2))
    assert len(plan.looks) == 2 and plan.wanted is None
    assert plan.looks[1].seeds == {"relu": 4, "tanh": 4, "sigmoid": 2}
    claim = plan.analysis["claims"][0]
    assert claim["verdict"] == "confirmed", claim["reason"]
    assert "look 2 of 3" in claim["reason"]
    # the look that decided it, its seeds and the alpha spent by then, as analysis.json and the tables state them
    family = plan.family()
    analysis = last_look(s, plan, family)
    (rec,) = claim_settlement(analysis["claims"], family, plan)
    assert rec["look"] == 2 and rec["seeds"] == {"tanh": 4, "relu": 4}
    assert rec["alpha_spent"] == pytest.approx(Design.of(s.spec.seeds).spent(1)) and rec["alpha_spent"] < 0.05
    (text,) = settled_texts(analysis["claims"], family, plan)
    assert text.startswith("decided at look 2 of 3: 4 seeds per variant; alpha spent")


def test_a_futile_claim_gets_no_seeds_and_says_why(tmp_path):
    s = study(tmp_path, [CLOSE])
    runs = make_runs({"relu": [0.90, 0.96], "tanh": [0.93, 0.9302], "sigmoid": [0.5, 0.51]})  # 0.0001 apart, noisy
    plan = settle(s, runs)
    assert plan.wanted is None and plan.looks[0].needs == []
    family = plan.family()
    analysis = last_look(s, plan, family)
    (rec,) = claim_settlement(analysis["claims"], family, plan)
    assert rec["look"] is None and rec["why"].startswith("futile")
    assert analysis["claims"][0]["verdict"] == "inconclusive"


def test_a_variant_that_has_not_converged_gets_no_seeds(tmp_path):
    s = study(tmp_path, [CLOSE])
    runs = make_runs({"relu": [0.930, 0.944], "tanh": [0.946, 0.956], "sigmoid": [0.5, 0.51]}, rising=("tanh",))
    plan = settle(s, runs)
    assert plan.wanted is None
    family = plan.family()
    analysis = last_look(s, plan, family)
    (rec,) = claim_settlement(analysis["claims"], family, plan)
    assert rec["why"] == "more seeds cannot decide it: tanh has not converged"


def test_the_report_replays_only_the_seeds_the_rule_asked_for(tmp_path):
    """Runs beyond what the looks asked for (a variant's extra seeds) are not looked at: the replay is the rule's."""
    s = study(tmp_path, [BETTER])
    runs = make_runs({"relu": [0.950, 0.952, 0.2], "tanh": [0.94, 0.93], "sigmoid": [0.500, 0.503, 0.99]})
    plan = settle(s, runs)
    assert plan.wanted is None and sorted(r["run_id"] for r in plan.runs) == [
        "relu-0",
        "relu-1",
        "sigmoid-0",
        "sigmoid-1",
        "tanh-0",
        "tanh-1",
    ]


@pytest.mark.parametrize(
    ("seeds", "search", "key", "says"),
    [
        ({"min": 4, "max": 2}, None, "seeds.max", "must be at least min (4)"),
        ({"min": 1, "max": 2}, None, "seeds.min", "must be an integer from 2"),
        ({"min": 2, "max": 40}, None, "seeds.max", "max_seeds (12)"),
        (
            {"min": 2, "max": 4},
            {"space": {"model.activation": ["relu", "tanh"]}, "scheduler": "asha"},
            "seeds",
            "scheduler none",
        ),
    ],
)
def test_a_bad_seed_range_is_refused_with_the_key(tmp_path, seeds, search, key, says):
    params = write_params(tmp_path, **{"profiles.tiny": {}})
    spec = {**SPEC, "seeds": seeds, **({"search": search} if search else {})}
    path = write_spec(tmp_path, "acts", spec)
    with pytest.raises(ConfigError) as e:
        load_study(path, load_params(params), str(params))
    assert e.value.key == key and says in e.value.message, str(e.value)
    assert str(path) in str(e.value)


def test_plain_seeds_are_one_look_at_the_full_alpha(tmp_path):
    s = study(tmp_path, [BETTER], seeds=3)
    assert not s.sequential and Design.of(3).looks() == [3] and Design.of(3).level(0) == 0.05
    assert s.seeds == [0, 1, 2]


def test_the_claims_decide_a_sequential_sweep_so_they_are_in_its_fingerprint(tmp_path):
    seq = study(tmp_path, [BETTER]).fingerprint()["spec"]
    fixed = study(tmp_path, [BETTER], seeds=3).fingerprint()["spec"]
    assert seq["expect"] and "expect" not in fixed
