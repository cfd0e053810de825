"""Family-wise error of each study's claims under the null, measured by simulation (docs/statistics.md, *Claims*).

For every study with inferential claims, its variants, design (baseline or all pairs) and claims run through the
report's own code (`analyze`, then `evaluate_claims`: the headline pairs and the claims in one Holm family) on
synthetic seeds drawn so that no claim is true:

- every variant's value of every metric a claim reads is N(0.9, 0.01) per seed (section quantities and run
  metrics alike): a `better` / `extreme` claim confirmed or contradicted is an error, and so is a `no_gain`
  contradicted (the true gain, 0, is below its margin);
- a `chance` claim's level sits at the mean + its margin, a `trains` claim's at the mean - its margin: the
  boundary of each, where confirming and contradicting are both errors;
- epochs to target are drawn alike for every variant (uniform over 1-10 epochs, all reached): a `sooner` verdict
  either way is an error.

The table gives, per study and seeds per variant, the fraction of simulated studies with at least one wrong
verdict (the family-wise error of the study's claims). Seeded: the same numbers on any machine.

    python benchmarks/claims_fwer.py [--sims 400] [--study augmentation ...]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Claim, load_params, load_study  # noqa: E402
from pipeline.report import claims as claims_module  # noqa: E402
from pipeline.report.analysis import analyze  # noqa: E402
from pipeline.report.claims import evaluate_claims, members  # noqa: E402

MEAN, STD, EPOCHS = 0.9, 0.01, 10
DETERMINISTIC = {"n_params", "flops_per_sample"}  # counts of the built model: an `extreme` on them is a check


def inferential(claims: list[Claim]) -> list[Claim]:
    return [c for c in claims if c.kind != "ratio" and not (c.kind == "extreme" and c.metric in DETERMINISTIC)]


def study_variants(name: str) -> list[str]:
    """The variants of the study's committed report (the names its claims use)."""
    import json

    return list(json.loads((ROOT / "reports" / name / "analysis.json").read_text())["variants"])


def synthetic_runs(
    variants: list[str], n: int, run_metrics: set[str], rng: np.random.Generator, means: dict[tuple[str, str], float]
) -> list[dict]:
    """n converged runs per variant: flat validation curves, every metric N(MEAN, STD) (N(means[variant, metric],
    STD) where given), epochs to target uniform."""
    runs = []
    for v in variants:
        for seed in range(n):
            x = float(rng.normal(MEAN, STD))
            final = {"val_accuracy": x, "test_accuracy": x}
            final |= {m: float(rng.normal(means.get((v, m), MEAN), STD)) for m in run_metrics}
            at = int(rng.integers(1, EPOCHS + 1))
            final["epochs_to_target"] = at
            runs.append(
                {
                    "run_id": f"{v}-{seed}",
                    "status": "FINISHED",
                    "tags": {"variant": v, "seed": str(seed), "outcome": "completed", "target_reached": "true"},
                    "params": {"train.epochs": str(EPOCHS)},
                    "final": final,
                    "history": {
                        "epoch": [[e, e] for e in range(1, EPOCHS + 1)],
                        "val_accuracy": [[e, x] for e in range(1, EPOCHS + 1)],
                    },
                }
            )
    return runs


def boundaries(claims: list[Claim]) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Each chance / trains claim's variants at the boundary of its margin: (the chance level of each variant on
    the headline metric, the mean of (variant, metric) where a claim states its level as `value`)."""
    levels, means = {}, {}
    for c in claims:
        if c.kind in ("chance", "trains"):
            off = (c.margin or 0.0) * (1 if c.kind == "chance" else -1)
            for a in members(c.a):
                if c.value is None:
                    levels[a] = MEAN + off
                else:
                    means[(a, c.metric)] = c.value - off
    return levels, means


def wrong(entry: dict, claim: Claim) -> bool:
    """A verdict the simulated truth contradicts."""
    if entry["type"] == "check" or entry["verdict"] == "inconclusive":
        return False
    return not (claim.kind == "no_gain" and entry["verdict"] == "confirmed")


def one_study(name: str, n: int, sims: int, seed: int = 0) -> float:
    study = load_study(ROOT / "experiments" / f"{name}.yaml", load_params(ROOT / "params.yaml"), ROOT / "params.yaml")
    spec = study.spec
    claims = inferential(spec.expect)
    variants = study_variants(name)
    section = {c.metric for c in claims if c.metric and "." in c.metric}
    run_metrics = {c.metric for c in claims if c.metric and "." not in c.metric} - {"epochs_to_target"}
    rng = np.random.default_rng(seed)
    levels, means = boundaries(claims)
    errors = 0
    for _ in range(sims):
        runs = synthetic_runs(variants, n, run_metrics, rng, means)
        analysis = analyze(runs, "val_accuracy", spec.mode, baseline=spec.baseline)
        for v, level in levels.items():
            analysis["chance"][v] = {"level": level, "what": "simulated", "reason": ""}
        analysis["extras"] = {}
        for metric in section:
            sec, quantity = metric.split(".", 1)
            values = {v: rng.normal(MEAN, STD, n).tolist() for v in variants}
            analysis["extras"].setdefault(sec, {"values": {}})["values"][quantity] = values
        entries, _ = evaluate_claims(claims, runs, analysis)
        errors += any(wrong(e, c) for e, c in zip(entries, claims))
    return errors / sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=400)
    ap.add_argument("--study", nargs="*", default=None)
    args = ap.parse_args()
    names = args.study or load_params(ROOT / "params.yaml").studies
    # the verdicts need no text: skip the power simulations that write "what it would take"
    claims_module.not_significant = lambda m, p, ctx: ""
    gc.freeze()  # statsmodels' Holm calls gc.collect() (docs/statistics.md)
    start = time.time()
    print("| study | inferential claims | 2 seeds | 3 seeds | 4 seeds | 5 seeds |")
    print("|---|---|---|---|---|---|")
    for name in names:
        study = load_study(
            ROOT / "experiments" / f"{name}.yaml", load_params(ROOT / "params.yaml"), ROOT / "params.yaml"
        )
        kinds = [c.kind for c in inferential(study.spec.expect)]
        if not kinds:
            continue
        rates = [one_study(name, n, args.sims) for n in (2, 3, 4, 5)]
        print(f"| {name} | {', '.join(kinds)} | " + " | ".join(f"{r:.3f}" for r in rates) + " |", flush=True)
    print(f"\n{args.sims} simulated studies per cell, {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
