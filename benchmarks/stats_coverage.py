"""Coverage and error rates of pipeline.honest_stats on simulated studies with a known truth.

- interval(): coverage of the true mean at n = 2, 3, 5 (and 10) seeds, on accuracies (Beta around 0.70 / 0.90 / 0.97,
  seed std 0.005-0.03) and on a positive metric (log-normal), against the percentile bootstrap
  (scipy.stats.bootstrap) on the same data;
- family-wise error rate under the null (k = 5 equal variants) of Dunnett and Welch + Holm against a
  baseline, Tukey HSD and Welch + Holm over all pairs, against the naive "test the observed best against
  the others" with and without Holm, at n = 2 to 30 seeds;
- the power of Welch's test at detectable_difference() (should be about 0.8) and how often not_converged()
  flags flat and still-rising curves.

  python benchmarks/stats_coverage.py              # 2,000 studies per cell, ~10 minutes on 2 cores
  python benchmarks/stats_coverage.py --sims 100   # under a minute: checks that every path runs
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy import optimize, special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.honest_stats import (  # noqa: E402
    detectable_difference,
    dunnett_vs_baseline,
    holm_all_pairs,
    holm_vs_baseline,
    interval,
    not_converged,
    tukey_all_pairs,
)

ALPHA = 0.05
K = 5  # variants per study in the FWER simulation
SEEDS = (2, 3, 5, 10)  # 10: where the log / logit centre drifts from the arithmetic mean
FWER_SEEDS = (2, 3, 5, 10, 30)  # the selection bias of the naive test grows with n


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{datetime.date.today().isoformat()}, nproc {len(os.sched_getaffinity(0))}, CPU {model}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"statsmodels {statsmodels.__version__}"
    )


def beta_params(mean: float, std: float) -> tuple[float, float]:
    total = mean * (1 - mean) / std**2 - 1
    return mean * total, (1 - mean) * total


def bootstrap_bounds(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap of the mean for every row of x at once (the baseline being compared against)."""
    res = stats.bootstrap(
        (x,),
        np.mean,
        axis=-1,
        vectorized=True,
        method="percentile",
        n_resamples=1999,
        batch=100,
        rng=rng,
    )
    return res.confidence_interval.low, res.confidence_interval.high


def plain_transformed_bounds(x: np.ndarray, bounds: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The back-transformed t interval without interval()'s correction, for every row of x: it targets the
    seeds' median (logit) or geometric mean (log), which is what the correction is measured against."""
    logit = bounds[1] is not None
    z = special.logit(np.clip(x, 1e-4, 1 - 1e-4)) if logit else np.log(x)
    half = stats.t.ppf(0.975, x.shape[1] - 1) * z.std(-1, ddof=1) / np.sqrt(x.shape[1])
    back = special.expit if logit else np.exp
    return back(z.mean(-1) - half), back(z.mean(-1) + half)


def coverage_rows(sims: int, rng: np.random.Generator) -> list[list[str]]:
    scenarios = []
    for mean in (0.70, 0.90, 0.97):
        for std in (0.005, 0.015, 0.03):
            a, b = beta_params(mean, std)
            scenarios.append(
                (f"accuracy Beta, mean {mean}, std {std}", mean, (0.0, 1.0), lambda s, a=a, b=b: rng.beta(a, b, s))
            )
    for sigma in (0.05, 0.2, 0.5):
        mu = np.log(2.0)
        truth = float(np.exp(mu + sigma**2 / 2))  # the log-normal's arithmetic mean, not its median
        scenarios.append(
            (
                f"positive log-normal, sigma {sigma}",
                truth,
                (0.0, None),
                lambda s, mu=mu, sg=sigma: rng.lognormal(mu, sg, s),
            )
        )
    rows = []
    for label, truth, bounds, draw in scenarios:
        for n in SEEDS:
            x = draw((sims, n))
            ivs = [interval(row, bounds) for row in x]
            low = np.array([iv.low for iv in ivs])
            high = np.array([iv.high for iv in ivs])
            cov = float(((low <= truth) & (truth <= high)).mean())
            b_low, b_high = bootstrap_bounds(x, rng)
            b_cov = float(((b_low <= truth) & (truth <= b_high)).mean())
            p_low, p_high = plain_transformed_bounds(x, bounds)
            p_cov = float(((p_low <= truth) & (truth <= p_high)).mean())
            width = float(np.median(high - low))
            b_width = float(np.median(b_high - b_low))
            rows.append(
                [
                    label,
                    str(n),
                    f"{cov:.3f}",
                    f"{b_cov:.3f}",
                    f"{cov / b_cov:.2f}",
                    f"{p_cov:.3f}",
                    f"{width:.3g}",
                    f"{b_width:.3g}",
                    "yes" if ((low >= bounds[0]).all() and (bounds[1] is None or (high <= bounds[1]).all())) else "NO",
                ]
            )
    return rows


def welch_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return stats.ttest_ind(x, y, axis=-1, equal_var=False).pvalue


def fwer_rows(sims: int, rng: np.random.Generator, check_tukey: int) -> tuple[list[list[str]], str]:
    nulls = {
        "equal std 0.01": np.full(K, 0.01),
        # the baseline v0 noisiest: the case where pooling the variance (Dunnett, Tukey) hurts most
        "unequal std 0.03 (baseline) ... 0.005": np.array([0.03, 0.02, 0.015, 0.01, 0.005]),
    }
    names = [f"v{i}" for i in range(K)]
    rows, agree, checked = [], 0, 0

    def any_sig(results) -> bool:
        return any(r.significant for r in results)

    for label, stds in nulls.items():
        for n in FWER_SEEDS:
            x = 0.9 + rng.standard_normal((sims, K, n)) * stds[None, :, None]
            studies = [dict(zip(names, s)) for s in x]
            dunnett = np.mean([any_sig(dunnett_vs_baseline(g, "v0", ALPHA, rng=i)) for i, g in enumerate(studies)])
            holm_base = np.mean([any_sig(holm_vs_baseline(g, "v0", ALPHA)) for g in studies])
            holm = np.mean([any_sig(holm_all_pairs(g, ALPHA)) for g in studies])

            # Tukey: scipy integrates the studentized range numerically for each of the k^2 cells (~0.1-0.2 s a
            # study), so the FWER uses the equivalent rule "max q > critical q" and the first `check_tukey`
            # studies of each cell also go through tukey_all_pairs to show that both decide the same
            means, df = x.mean(-1), K * (n - 1)
            mse = x.var(-1, ddof=1).mean(-1)
            q_max = (means.max(-1) - means.min(-1)) / np.sqrt(mse / n)
            tukey_rej = q_max > stats.studentized_range.ppf(1 - ALPHA, K, df)
            for g, rej in zip(studies[:check_tukey], tukey_rej[:check_tukey]):
                agree += any_sig(tukey_all_pairs(g, ALPHA)) == bool(rej)
                checked += 1

            # the naive way: pick the best by its mean, then Welch-test it against each other variant
            best = means.argmax(-1)
            others = np.array([[j for j in range(K) if j != b] for b in best])
            xb = x[np.arange(sims), best][:, None, :]
            xo = np.take_along_axis(x, others[:, :, None], axis=1)
            p = welch_p(xb, xo)
            # Holm rejects at least one hypothesis exactly when its first step does: min p < alpha / m
            naive_holm = float((p.min(-1) < ALPHA / (K - 1)).mean())
            naive = float((p < ALPHA).any(-1).mean())
            cells = (dunnett, holm_base, float(tukey_rej.mean()), holm, naive_holm, naive)
            rows.append([label, str(n), *(f"{c:.3f}" for c in cells)])
    return rows, f"tukey_all_pairs agreed with the critical-q rule on {agree} of {checked} studies"


def noncentral_t_difference(std: float, n: int, power: float = 0.8) -> float:
    """The textbook formula detectable_difference() does not use: noncentral t at the Welch-Satterthwaite df,
    as if the df and the standard error were known."""
    se, df = std * np.sqrt(2 / n), 2 * (n - 1)
    crit = stats.t.ppf(1 - ALPHA / 2, df)
    # scipy's nct.cdf far in the lower tail can answer nan where it means 0
    ncp = optimize.brentq(
        lambda c: stats.nct.sf(crit, df, c) + np.nan_to_num(stats.nct.cdf(-crit, df, c)) - power, 0, crit + 10
    )
    return float(ncp * se)


def power_rows(sims: int, rng: np.random.Generator) -> list[list[str]]:
    rows = []
    for n in SEEDS:
        row = [str(n)]
        for d in (detectable_difference(0.01, 0.01, n, n, ALPHA), noncentral_t_difference(0.01, n)):
            a = rng.normal(0.9 + d, 0.01, (sims, n))
            b = rng.normal(0.9, 0.01, (sims, n))
            row += [f"{d:.4f}", f"{float((welch_p(a, b) < ALPHA).mean()):.3f}"]
        rows.append(row)
    return rows


def convergence_rows(sims: int, rng: np.random.Generator) -> list[list[str]]:
    """20 epochs at a plateau of 0.9 with epoch-to-epoch jitter of std 0.003, flat or rising over the last 4
    epochs; 3 seeds whose offsets (std 0.01 or 0.001) dominate the jitter or not, and a single seed."""
    epochs, window = 20, 4
    rows = []
    for label, rise in (("flat", 0.0), ("rising 0.01 over the last 4 epochs", 0.01), ("rising 0.03", 0.03)):
        trend = np.clip(np.arange(epochs) - (epochs - 1 - window), 0, None) / window * rise
        row = [label]
        for seeds, offset in ((3, 0.01), (3, 0.001), (1, 0.01)):
            curves = 0.9 + rng.normal(0, offset, (sims, seeds, 1)) + rng.normal(0, 0.003, (sims, seeds, epochs))
            row.append(f"{np.mean([not_converged(c, 'max').flagged for c in curves + trend]):.3f}")
        rows.append(row)
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=2000, help="simulated studies per cell")
    parser.add_argument("--check-tukey", type=int, default=10, help="studies per cell run through tukey_all_pairs")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # statsmodels' multipletests(method="holm") calls gc.collect() on every call: ~0.1 s with scipy loaded.
    # Freezing what is already allocated keeps the collector off it; no result changes.
    gc.freeze()
    start = time.perf_counter()

    print(f"# honest_stats coverage and error rates ({args.sims} simulated studies per cell)\n")
    print(f"Machine: {machine()}\n")

    print("## Interval of the mean (95%): coverage of the true mean\n")
    print(
        table(
            [
                "data",
                "n",
                "chosen coverage",
                "bootstrap coverage",
                "ratio",
                "uncorrected coverage",
                "chosen width",
                "bootstrap width",
                "in range",
            ],
            coverage_rows(args.sims, rng),
        )
    )
    print("\nchosen = interval(): Student-t on the logit (accuracy) / log (positive) scale with the Cox-type")
    print("correction, mapped back; bootstrap = scipy.stats.bootstrap(method='percentile'); ratio = chosen /")
    print("bootstrap coverage; uncorrected = the same t interval without the correction; widths are medians.\n")

    rows, tukey_note = fwer_rows(args.sims, rng, args.check_tukey)
    print(f"## Family-wise error rate under the null (k = {K} equal variants, alpha = {ALPHA})\n")
    print(
        table(
            [
                "null",
                "n",
                "Dunnett vs baseline",
                "Welch + Holm vs baseline",
                "Tukey HSD",
                "Welch + Holm, all pairs",
                "Holm vs observed best (naive)",
                "Welch vs best, uncorrected (the old stats.compare)",
            ],
            rows,
        )
    )
    print(f"\n{tukey_note}.\n")

    print(f"## Power of Welch's test at detectable_difference(std 0.01, 0.01, n, n, alpha {ALPHA}), target 0.8\n")
    header = ["n", "detectable_difference()", "its power", "noncentral-t formula", "its power"]
    print(table(header, power_rows(args.sims, rng)))

    print("\n## not_converged(): fraction of studies flagged (20 epochs, jitter std 0.003)\n")
    header = ["curves", "3 seeds, offsets std 0.01", "3 seeds, offsets std 0.001", "1 seed"]
    print(table(header, convergence_rows(args.sims, rng)))
    print(f"\nTotal wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
