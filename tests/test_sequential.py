"""pipeline/sequential.py: the looks, the alpha spent at each, and futility (docs/statistics.md section 9)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline import honest_stats as hs
from pipeline.sequential import Design, futile, spending


@pytest.mark.parametrize(
    "m, big_m, looks",
    [
        (2, 12, [2, 4, 8, 12]),
        (3, 12, [3, 6, 12]),
        (2, 5, [2, 4, 5]),
        (5, 12, [5, 10, 12]),
        (1, 3, [1, 2, 3]),
        (4, 4, [4]),
    ],
)
def test_looks_double_up_to_max(m, big_m, looks):
    design = Design(m, big_m)
    assert design.looks() == looks
    assert [design.next_seeds(k) for k in range(len(looks))] == [*looks[1:], None]


@pytest.mark.parametrize("kind", ["pocock", "obrien_fleming"])
@pytest.mark.parametrize("m, big_m", [(2, 12), (3, 12), (2, 5), (1, 64), (7, 7)])
def test_levels_are_positive_and_sum_to_alpha(kind, m, big_m):
    design = Design(m, big_m, alpha=0.05, spending=kind)
    k_last = len(design.looks()) - 1
    levels = [design.level(k) for k in range(k_last + 1)]
    assert all(x > 0 for x in levels)
    assert math.isclose(sum(levels), 0.05, rel_tol=1e-12)
    assert design.spent(k_last) == 0.05  # exactly: nothing left over, nothing overspent
    assert np.allclose(np.cumsum(levels), [design.spent(k) for k in range(k_last + 1)])


@pytest.mark.parametrize("kind", ["pocock", "obrien_fleming"])
def test_spending_functions_increase_and_reach_alpha(kind):
    t = np.linspace(0.01, 1.0, 100)
    spent = np.array([spending(kind, 0.05, x) for x in t])
    assert np.all(np.diff(spent) > 0)
    assert spent[0] > 0
    assert math.isclose(spent[-1], 0.05, rel_tol=1e-9)


def test_obrien_fleming_keeps_alpha_for_the_last_look():
    pocock, obf = Design(2, 12, spending="pocock"), Design(2, 12, spending="obrien_fleming")
    assert obf.level(0) < 1e-4 < pocock.level(0)  # OBF: almost nothing at 2 of 12 seeds
    assert obf.level(3) > pocock.level(3)
    # Pocock type: roughly even levels across the looks
    assert max(pocock.record()["levels"]) / min(pocock.record()["levels"]) < 2


def test_fixed_is_one_look_at_alpha():
    design = Design.fixed(5, alpha=0.01)
    assert design.looks() == [5]
    assert design.level(0) == design.spent(0) == 0.01
    assert design.next_seeds(0) is None


def test_record_is_plain_json():
    record = json.loads(json.dumps(Design(2, 12, spending="obrien_fleming").record()))
    assert record["min"] == 2 and record["max"] == 12 and record["spending"] == "obrien_fleming"
    assert record["looks"] == [2, 4, 8, 12] and record["spent"][-1] == 0.05
    assert len(record["levels"]) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_seeds": 0, "max_seeds": 3},
        {"min_seeds": 5, "max_seeds": 3},
        {"min_seeds": 2.5, "max_seeds": 4},
        {"min_seeds": True, "max_seeds": 4},
        {"min_seeds": 2, "max_seeds": 4, "alpha": 1.0},
        {"min_seeds": 2, "max_seeds": 4, "spending": "haybittle"},
    ],
)
def test_bad_designs_fail_loudly(kwargs):
    with pytest.raises(ValueError):
        Design(**kwargs)


def test_futile_on_a_tiny_distance_not_on_a_huge_one():
    design = Design(2, 12)
    assert futile(0.01, 0.01, 0.0005, design)  # a twentieth of a spread: 12 seeds cannot see it
    assert not futile(0.01, 0.01, 0.05, design)  # five spreads: 12 seeds see it easily
    assert futile(0.01, 0.01, 0.0, design)  # no distance: nothing to decide
    assert futile(0.0, 0.0, 0.01, design)  # identical seeds on both sides: no test is ever defined
    assert not futile(math.nan, 0.01, 0.0005, design)  # one seed: the spread is unknown, judge later


@pytest.mark.parametrize("std_a, std_b, distance", [(0.01, 0.01, 0.015), (0.005, 0.02, 0.02), (0.02, 0.0, 0.01)])
def test_futile_is_seeds_needed_beyond_max(std_a, std_b, distance):
    """The rule as stated: seeds_needed at the last look's level is None or above M (the sign of the distance
    does not matter: Welch's power is two-sided)."""
    for design in (Design(2, 4), Design(3, 32, spending="obrien_fleming")):
        last = design.level(len(design.looks()) - 1)
        need = hs.seeds_needed(std_a, std_b, distance, alpha=last, power=0.8)
        assert futile(std_a, std_b, distance, design) == (need is None or need > design.max_seeds)
    assert futile(std_a, std_b, -distance, design) == futile(std_a, std_b, distance, design)


def test_more_seeds_make_a_distance_worth_pursuing():
    # seeds_needed(0.01, 0.01, 0.015) is about 11-12 at these levels: futile with 4 seeds at most, not with 32
    assert futile(0.01, 0.01, 0.015, Design(2, 4))
    assert not futile(0.01, 0.01, 0.015, Design(2, 32))
