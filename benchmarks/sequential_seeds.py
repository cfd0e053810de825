"""Sequential seeds (pipeline/sequential.py) against a fixed n, naive peeking and AdaStop, on the same simulated data.

A simulated study: 4 variants (a baseline and 3 others), per-seed accuracies drawn normal around 0.95 with the
spreads the default run shows (0.005-0.02: reports/*/analysis.json), and a family of 3 two-sided comparisons,
each variant against the baseline (what AdaStop tests too). Every simulated study draws M seeds per variant once;
each design reads the seeds it asks for from those same draws:

- `pocock`, `obrien_fleming`: the rule of docs/statistics.md section 9 (looks m, 2m, ..., M; look k tests the
  undecided tests, Holm at the spending function's increment; a variant gets the next look's seeds only while a
  test naming it is undecided and not futile); `pocock, no futility`: the same without futility;
- `fixed n = M`: one look at M seeds, at alpha;
- `naive peeking`: the same looks, Holm at the full alpha at every look, decided tests removed, seeds added to
  every undecided test (no futility: test again until p < alpha or M);
- `AdaStop`: `adastop.MultipleAgentsComparator` 0.1.3 (Mathieu et al. 2023), n = m runs per interim, K = M / m
  interims (rounded), its default beta = 0 (no early acceptance), B permutations (`--permutations`, default 1000:
  every permutation up to 216 (n = 2) or 400 (n = 3), then about as many random ones; B = 10,000 measured the same
  error rate, 10 times slower), at alpha 0.05 and at alpha 0.025: it compares |T| with the permutation
  distribution of the signed max, so it tests each look at about twice its level (docs/statistics.md section 9).
  AdaStop runs on the first `--ada-sims` studies of each cell only (default 500; 0.03-0.05 s a study).

The tests are the pipeline's own: `pipeline.report.gate.Family` (Welch t-tests, Holm in `close()`), at the look's
level. Futility is `sequential.futile` tabulated (it simulates Welch's power: 50-200 ms a call); the script checks
the table against `futile` itself and prints the agreement.

Per cell: family-wise error (a pair with no true difference declared different), power (a truly different pair
declared different in the true direction) and seeds per variant (mean over variants and studies).

    python benchmarks/sequential_seeds.py                 # 2,000 studies a cell (500 for AdaStop): 16 min on 1 core
    python benchmarks/sequential_seeds.py --designs 2,12  # one (m, M) (7 min): two processes use 2 cores
    python benchmarks/sequential_seeds.py --sims 100      # a quick check (1 min)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from adastop import MultipleAgentsComparator  # the `bench` extra

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_machine, table  # noqa: E402

from pipeline import honest_stats as hs  # noqa: E402
from pipeline.report.gate import Family  # noqa: E402
from pipeline.sequential import POWER, Design, futile  # noqa: E402

ALPHA = 0.05
NAMES = ("baseline", "v1", "v2", "v3")
MEAN = 0.95
STDS = np.array([0.010, 0.005, 0.010, 0.020])  # per-seed std of accuracy: unequal, as in the default run
PAIRS = ((1, 0), (2, 0), (3, 0))  # (variant, baseline): a difference > 0 is the variant above the baseline
EFFECTS = (1.0, 2.0, 3.0)  # in spreads of the pair: sqrt((std_a^2 + std_b^2) / 2)

Futility = Callable[[float, float, float], bool]


def spread_of(pair: tuple[int, int]) -> float:
    return float(np.sqrt((STDS[pair[0]] ** 2 + STDS[pair[1]] ** 2) / 2))


def cells() -> list[tuple[str, np.ndarray]]:
    """(label, true mean shift of each variant): the null, then one pair (v2, whose spread equals the baseline's)
    and all three pairs at each effect size."""
    out = [("null: all equal", np.zeros(4))]
    for e in EFFECTS:
        shift = np.zeros(4)
        shift[2] = e * spread_of(PAIRS[1])
        out.append((f"v2 +{e:g} spread", shift))
    for e in EFFECTS:
        shift = np.array([0.0] + [e * spread_of(p) for p in PAIRS])
        out.append((f"all 3 +{e:g} spread", shift))
    return out


class FutilityTable:
    """`sequential.futile` for one design, tabulated: Welch's detectable difference scales with the stds, so it is
    max(std) * h(min(std) / max(std)); h is computed by `detectable_difference` on a grid and interpolated."""

    def __init__(self, design: Design, points: int = 41) -> None:
        self.level = design.level(len(design.looks()) - 1)
        self.n = design.max_seeds
        self.q = np.linspace(0.0, 1.0, points)
        dd = hs.detectable_difference
        self.a_larger = np.array([dd(1.0, q, self.n, self.n, self.level, POWER) for q in self.q])
        self.b_larger = np.array([dd(q, 1.0, self.n, self.n, self.level, POWER) for q in self.q])

    def __call__(self, std_a: float, std_b: float, distance: float) -> bool:
        if not math.isfinite(distance) or distance == 0 or std_a == std_b == 0:
            return True
        if std_a >= std_b:
            reach = std_a * np.interp(std_b / std_a, self.q, self.a_larger)
        else:
            reach = std_b * np.interp(std_a / std_b, self.q, self.b_larger)
        return not reach <= abs(distance)


def sequential(values: np.ndarray, looks: list[int], levels: list[float], futility: Futility | None):
    """One simulated study through the rule: (verdict per pair: +1 / -1 / 0, seeds per variant)."""
    n = [looks[0]] * len(NAMES)
    verdict = [0] * len(PAIRS)
    undecided = list(range(len(PAIRS)))
    for k, level in enumerate(levels):
        family = Family(level)
        keys = {}
        for i in undecided:
            a, b = PAIRS[i]
            keys[i] = family.difference("accuracy", NAMES[a], NAMES[b], values[a, : n[a]], values[b, : n[b]], str(i))
        family.close()
        for i, key in keys.items():
            member = family.get(key)
            if not member.main.reason and member.p < level:
                verdict[i] = 1 if member.difference > 0 else -1
        undecided = [i for i in undecided if not verdict[i]]
        if k + 1 == len(looks):
            break
        grow = set()
        for i in undecided:
            a, b = PAIRS[i]
            va, vb = values[a, : n[a]], values[b, : n[b]]
            if futility is None or not futility(hs.spread(va), hs.spread(vb), float(va.mean() - vb.mean())):
                grow |= {a, b}
        if not grow:
            break
        for v in grow:
            n[v] = looks[k + 1]
    return verdict, n


class _Pairs(np.ndarray):
    """AdaStop keys its dicts by str(pair) inside its permutation loops, and numpy's array printing was 2/3 of
    its run time: the same keys, written fast."""

    def __str__(self) -> str:
        return str(self.tolist())


def adastop(values: np.ndarray, n: int, interims: int, permutations: int, alpha: float, seed: int):
    pairs = np.array(PAIRS).view(_Pairs)
    comparator = MultipleAgentsComparator(n=n, K=interims, B=permutations, comparisons=pairs, alpha=alpha, seed=seed)
    seen = {name: values[i, :0] for i, name in enumerate(NAMES)}
    for k in range(interims):
        active = range(len(NAMES)) if k == 0 else set(comparator.current_comparisons.ravel().tolist())
        for i in active:
            seen[NAMES[i]] = values[i, : len(seen[NAMES[i]]) + n]
        comparator.partial_compare(seen, verbose=False)
        if comparator.is_finished:
            break
    sign = {"larger": 1, "smaller": -1, "equal": 0, "continue": 0}
    return [sign[comparator.decisions[str(pairs[i])]] for i in range(len(PAIRS))], [len(v) for v in seen.values()]


def score(results: list[tuple[list[int], list[int]]], shift: np.ndarray) -> tuple[float, float, float]:
    """(family-wise error, power, seeds per variant) over simulated studies."""
    truth = [int(np.sign(shift[a] - shift[b])) for a, b in PAIRS]
    errors, hits, true_pairs, seeds = 0, 0, 0, 0.0
    for verdict, n in results:
        errors += any(v != 0 for v, t in zip(verdict, truth) if t == 0)
        hits += sum(v == t for v, t in zip(verdict, truth) if t != 0)
        true_pairs += sum(t != 0 for t in truth)
        seeds += float(np.mean(n))
    power = hits / true_pairs if true_pairs else float("nan")
    return errors / len(results), power, seeds / len(results)


def check_futility(tables: dict[str, FutilityTable], designs: dict[str, Design], rng: np.random.Generator) -> str:
    """The table against `sequential.futile` itself, on cases drawn near the boundary (50-150% of the reach)."""
    agree, total = 0, 0
    for name, t in tables.items():
        for _ in range(15):
            sa, sb = (float(s) for s in np.abs(rng.normal(0, 0.01, 2)))
            reach = t.a_larger[-1] * max(sa, sb)
            d = float(reach * rng.uniform(0.5, 1.5))
            agree += t(sa, sb, d) == futile(sa, sb, d, designs[name])
            total += 1
    return f"{agree} of {total}"


def run(m: int, big_m: int, sims: int, ada_sims: int, permutations: int, seed: int) -> str:
    """Every cell for one (m, M), as a Markdown table: a row per truth, a column per design, each entry
    "family-wise error / power / seeds per variant"."""
    designs = {s: Design(m, big_m, ALPHA, s) for s in ("pocock", "obrien_fleming")}
    looks = designs["pocock"].looks()
    levels = {s: [d.level(k) for k in range(len(looks))] for s, d in designs.items()}
    tables = {s: FutilityTable(d) for s, d in designs.items()}
    interims = max(1, round(big_m / m))
    print(f"## (m, M) = ({m}, {big_m}): looks {looks}; AdaStop: n = {m}, K = {interims}, B = {permutations}")
    for s in designs:
        print(f"# {s}: levels " + ", ".join(f"{x:.4g}" for x in levels[s]) + f"; futility at {tables[s].level:.4g}")
    agree = check_futility(tables, designs, np.random.default_rng(seed))
    print(f"# futility table vs sequential.futile: {agree} agree")
    rule: dict[str, Callable[[np.ndarray], tuple]] = {
        "pocock": lambda v: sequential(v, looks, levels["pocock"], tables["pocock"]),
        "obrien_fleming": lambda v: sequential(v, looks, levels["obrien_fleming"], tables["obrien_fleming"]),
        "pocock, no futility": lambda v: sequential(v, looks, levels["pocock"], None),
        f"fixed n = {big_m}": lambda v: sequential(v, [big_m], [ALPHA], None),
        "naive peeking": lambda v: sequential(v, looks, [ALPHA] * len(looks), None),
    }
    ada = {f"AdaStop, alpha {ALPHA:g}": ALPHA, f"AdaStop, alpha {ALPHA / 2:g}": ALPHA / 2} if ada_sims else {}
    rows = []
    for c, (label, shift) in enumerate(cells()):
        rng = np.random.default_rng([seed, m, big_m, c])
        draws = rng.normal(MEAN + shift[None, :, None], STDS[None, :, None], (sims, len(NAMES), big_m))
        t0 = time.perf_counter()
        got = {name: [design(v) for v in draws] for name, design in rule.items()}
        for name, alpha in ada.items():
            got[name] = [
                adastop(v, m, interims, permutations, alpha, seed * 100_003 + s) for s, v in enumerate(draws[:ada_sims])
            ]
        row = [label]
        for results in got.values():
            fwer, power, seeds = score(results, shift)
            row.append(f"{fwer:.3f} / {'-' if math.isnan(power) else f'{power:.2f}'} / {seeds:.1f}")
        rows.append(row)
        print(f"# {label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        gc.freeze()  # this cell's results: out of every later gc.collect()
    header = ["truth", *rule, *(f"{name} ({ada_sims} studies)" for name in ada)]
    title = f"### (m, M) = ({m}, {big_m}): looks {looks}; AdaStop n = {m}, K = {interims}, B = {permutations}"
    return f"{title}\n\nFWER / power / seeds per variant, {sims} studies a cell\n\n" + table(header, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000, help="simulated studies a cell")
    ap.add_argument("--ada-sims", type=int, default=500, help="AdaStop runs on the first this many (it is slow)")
    ap.add_argument("--permutations", type=int, default=1000, help="AdaStop's B")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--designs", nargs="*", default=["2,12", "3,12"], help="(m, M) pairs")
    args = ap.parse_args()
    print(f"# {datetime.date.today().isoformat()}, seed {args.seed}, {args.sims} simulated studies a cell")
    print_machine()  # imports torch: before the freeze
    gc.freeze()  # statsmodels' Holm calls gc.collect() on every call (docs/statistics.md)
    start = time.time()
    out = []
    for spec in args.designs:
        m, big_m = (int(x) for x in spec.split(","))
        out.append(run(m, big_m, args.sims, min(args.ada_sims, args.sims), args.permutations, args.seed))
    print()
    print("\n\n".join(out))
    print(f"\n# {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
