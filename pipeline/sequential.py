"""A study's sequential seeds, planned before the first look: the looks, the alpha each spends, and futility.

`seeds: {min: m, max: M}` trains m seeds per variant, then doubles (m, 2m, 4m, ..., M) while a claim is
undecided. Look k tests the family at Delta_k = alpha(t_k) - alpha(t_{k-1}) of a Lan-DeMets spending function
alpha(t) at information time t_k = n_k / M; the levels sum to alpha, so the family-wise error across looks stays
under alpha (a Bonferroni bound over looks, docs/statistics.md section 9). `seeds: n` is `Design.fixed(n)`.

Cheap to import: the config imports it, and `futile` imports `honest_stats` only when it runs. The rule is a pure
function of the per-seed values, so benchmarks/sequential_seeds.py simulates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, get_args

Spending = Literal["pocock", "obrien_fleming"]
POWER = 0.8  # futility: the power at which M seeds would have to detect the observed distance


def spending(kind: Spending, alpha: float, t: float) -> float:
    """Lan-DeMets alpha spent by information time t in (0, 1]: Pocock type spends early, O'Brien-Fleming type
    keeps almost all of it for the last look."""
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    x = NormalDist().inv_cdf(1 - alpha / 2) / math.sqrt(t)
    return math.erfc(x / math.sqrt(2))  # = 2 - 2 Phi(x), without the cancellation


@dataclass(frozen=True)
class Design:
    min_seeds: int
    max_seeds: int
    alpha: float = 0.05
    spending: Spending = "pocock"

    def __post_init__(self) -> None:
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (self.min_seeds, self.max_seeds)):
            raise ValueError(f"seeds must be integers, got min={self.min_seeds!r}, max={self.max_seeds!r}")
        if not 1 <= self.min_seeds <= self.max_seeds:
            raise ValueError(f"seeds need 1 <= min <= max, got min={self.min_seeds}, max={self.max_seeds}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.spending not in get_args(Spending):
            raise ValueError(f"unknown spending {self.spending!r}; valid: {', '.join(get_args(Spending))}")

    @classmethod
    def of(cls, seeds: Any, alpha: float = 0.05) -> Design:
        """A study's `seeds`: n (one look) or a range with `min` and `max` (`pipeline.config.SeedRange`)."""
        return cls.fixed(seeds, alpha) if isinstance(seeds, int) else cls(seeds.min, seeds.max, alpha)

    @classmethod
    def fixed(cls, n: int, alpha: float = 0.05) -> Design:
        """`seeds: n`: one look at n seeds, at the full alpha."""
        return cls(n, n, alpha)

    def looks(self) -> list[int]:
        """Seeds per variant at each look: m, 2m, 4m, ... capped at M, the last at M."""
        out = [self.min_seeds]
        while out[-1] < self.max_seeds:
            out.append(min(2 * out[-1], self.max_seeds))
        return out

    def spent(self, k: int) -> float:
        """Alpha spent through look k (cumulative); exactly alpha at the last look."""
        n = self.looks()[k]
        if n == self.max_seeds:
            return self.alpha
        return spending(self.spending, self.alpha, n / self.max_seeds)

    def level(self, k: int) -> float:
        """Delta_k: the level look k tests the family at."""
        return self.spent(k) - (self.spent(k - 1) if k > 0 else 0.0)

    def next_seeds(self, k: int) -> int | None:
        """Seeds per variant at look k + 1; None after the last look."""
        looks = self.looks()
        return looks[k + 1] if k + 1 < len(looks) else None

    def record(self) -> dict[str, Any]:
        """The design as analysis.json keeps it."""
        looks = range(len(self.looks()))
        return {
            "min": self.min_seeds,
            "max": self.max_seeds,
            "alpha": self.alpha,
            "spending": self.spending,
            "looks": self.looks(),
            "levels": [self.level(k) for k in looks],
            "spent": [self.spent(k) for k in looks],
        }


def futile(std_a: float, std_b: float, distance: float, design: Design) -> bool:
    """Even M seeds per variant would not plausibly decide the test: a two-sided Welch test at the last look's
    level would detect the observed `distance` from the null boundary with power below 0.8 at M seeds
    (`seeds_needed` > M or undefined), taking the observed stds as the true ones. Non-binding: a futile test stays
    in the family, it only gets no more seeds. A std of nan means one seed, no spread known yet: not futile
    (`honest_stats.spread` gives 0 for one seed, which reads as identical seeds: judge only at 2+ seeds a side)."""
    if math.isnan(std_a) or math.isnan(std_b):
        return False
    from pipeline import honest_stats as hs  # SciPy: imported only where a claim is judged, not with every config

    last = design.level(len(design.looks()) - 1)
    return hs.seeds_needed(std_a, std_b, distance, alpha=last, power=POWER, most=design.max_seeds) is None
