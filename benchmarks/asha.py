"""Early stopping pays: the same 16-configuration study (x seeds) run as a full grid and with ASHA.

Three sweeps through pipeline.sweep.run_study, with the same spec except `search.scheduler` and the order of the
space's values: the grid, ASHA as the pipeline runs it (a grid under ASHA runs in an order shuffled by the base
seed), and ASHA on the same values pre-shuffled here (so another order). Asynchronous ASHA stops a trial only
against the trials that reached its rung before it, so the order changes what it saves; the two ASHA arms show
how much. Reported: total trial-epochs (epochs actually trained, summed over trials), wall time, and the best
configuration each finds. ASHA runs with the pipeline's defaults (grace_period 1, reduction_factor 3).
`--space activations` (default) is the hard case, where a slow starter (tanh) wins; `--space widths` is a
learning rate x width sweep.

"Best" is the configuration with the highest mean over seeds of its best val_accuracy, counting only trials that
ran every epoch (a trial ASHA stopped never finished; a configuration with none is not a candidate). The two
agree within seed noise when the grid's score of ASHA's pick is within one pooled seed standard deviation of
the grid's best.

    python benchmarks/asha.py            # ~3 min on 2 cores (--space widths: the other study)
    python benchmarks/asha.py --smoke    # 4 configurations, 3 epochs
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from collections import defaultdict
from pathlib import Path

from _common import Project, print_load, print_machine, table, timed, verdict

SPACES = {
    # A slow starter wins (tanh): the hard case for any rule that judges trials early.
    "activations": {
        "train.lr": [0.003, 0.01, 0.03, 0.1],
        "model.activation": ["sigmoid", "tanh", "relu", "leaky_relu"],
    },
    # Learning rate x width of a ReLU MLP [w, w]: the usual tuning sweep.
    "widths": {
        "train.lr": [0.001, 0.003, 0.01, 0.03],
        "model.hidden": [[16, 16], [32, 32], [64, 64], [128, 128]],
    },
}


def spec(scheduler: str, epochs: int, seeds: int, smoke: bool, shuffled: bool, asha: dict, space_name: str) -> dict:
    space = {"train.lr": [0.01, 0.1], "model.activation": ["sigmoid", "relu"]} if smoke else dict(SPACES[space_name])
    if shuffled:  # same configurations, another order (the pipeline shuffles this list again with its own seed)
        rng = random.Random(0)
        space = {k: rng.sample(v, len(v)) for k, v in space.items()}
    return {
        "question": "benchmark: ASHA vs the full grid",
        "model": {"name": "mlp", "hidden": [128, 128]},
        "dataset": {"name": "synthetic", "n_samples": 6000, "n_features": 32, "n_classes": 6, "n_informative": 12},
        "train": {"epochs": epochs, "batch_size": 64, "momentum": 0.9},
        "search": {"algorithm": "grid", "space": space, "scheduler": scheduler, **asha},
        "seeds": seeds,
    }


def summarize(runs: list[dict], epochs: int, tune_dir: Path) -> dict:
    """Compute from Tune's own result logs (epochs each trial trained); the best configuration from MLflow."""
    trained = {}
    for result in tune_dir.glob("*/result.json"):
        lines = result.read_text().strip().splitlines()
        if lines:
            last = json.loads(lines[-1])
            trained[last["trial_id"]] = last["training_iteration"]
    by_variant: dict[str, list[tuple[float, int]]] = defaultdict(list)
    missing = 0  # runs whose MLflow history lacks epochs that Tune saw reported
    for r in runs:
        acc = [v for _, v in r["history"].get("val_accuracy", [])]
        n = trained.get(r["tags"].get("ray_trial_id"), len(acc))
        missing += len(acc) < n
        by_variant[r["tags"]["variant"]].append((max(acc) if acc else float("nan"), n))
    # A configuration's score: the mean over its trials that ran every epoch (ASHA stops the others early, so
    # their best-so-far is not comparable); configurations with no such trial are not candidates.
    full = {k: [a for a, n in v if n == epochs] for k, v in by_variant.items()}
    full = {k: v for k, v in full.items() if v}
    means = {k: statistics.mean(v) for k, v in full.items()}
    sds = [statistics.stdev(v) for v in full.values() if len(v) > 1]
    best = max(means, key=means.get) if means else None
    return {
        "trials": len(runs),
        "trial_epochs": sum(trained.values()),
        "completed_trials": sum(n == epochs for n in trained.values()),
        "missing_history": missing,
        "means": means,
        "best": best,
        "pooled_sd": math.sqrt(statistics.mean(s * s for s in sds)) if sds else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--space", choices=sorted(SPACES), default="activations", help="which 16 configurations")
    ap.add_argument("--grace-period", type=int, default=None, help="default: the pipeline's (1)")
    ap.add_argument("--reduction-factor", type=int, default=None, help="default: the pipeline's (3)")
    args = ap.parse_args()
    if args.smoke:
        args.epochs, args.seeds = 3, 1

    print_machine()
    asha = {k: v for k, v in (("grace_period", args.grace_period), ("reduction_factor", args.reduction_factor)) if v}
    arms = {"grid": ("none", False), "asha": ("asha", False), "asha-other-order": ("asha", True)}
    proj = Project(
        {k: spec(sch, args.epochs, args.seeds, args.smoke, shuf, asha, args.space) for k, (sch, shuf) in arms.items()},
        params={"ray.num_cpus": 2},
    )
    print(f"space {args.space}: {SPACES[args.space] if not args.smoke else 'smoke'}")
    print(f"project in {proj.root}; ASHA settings {asha or 'the pipeline defaults (grace_period 1, factor 3)'}\n")
    from pipeline.tune.tuner import init_ray

    init_ray(proj.params())
    out = {}
    for name in arms:
        wall, summary = timed(lambda name=name: proj.run_study(name))
        runs = json.loads((proj.root / "results" / name / "runs.json").read_text())
        tune_dir = proj.root / "ray_results" / f"{name}-{summary['sweep_id']}"
        out[name] = {**summarize(runs, args.epochs, tune_dir), "wall": wall, "errors": summary["errors"]}
        print(
            f"{name}: {out[name]['trials']} trials, {out[name]['trial_epochs']} trial-epochs, {wall:.1f} s", flush=True
        )

    g = out["grid"]
    headers = [
        "sweep",
        "trials",
        "errors",
        "ran all epochs",
        "trial-epochs",
        "grid / this trial-epochs",
        "wall s",
        "grid / this wall",
        "best configuration",
        "its grid mean best val_accuracy",
        "agrees with grid",
        "runs missing logged epochs",
    ]
    rows = []
    for k, v in out.items():
        gap = g["means"][g["best"]] - g["means"].get(v["best"], float("nan"))
        agree = v["best"] == g["best"] or gap <= g["pooled_sd"]  # one seed: no noise estimate, only identity
        rows.append(
            [
                k,
                v["trials"],
                v["errors"],
                v["completed_trials"],
                v["trial_epochs"],
                g["trial_epochs"] / v["trial_epochs"],
                v["wall"],
                g["wall"] / v["wall"],
                v["best"],
                f"{g['means'].get(v['best'], float('nan')):.4f}",
                "yes" if agree else "NO",
                v["missing_history"],
            ]
        )
    print()
    print(table(headers, rows))
    print()
    for k in ("asha", "asha-other-order"):
        ratio = g["trial_epochs"] / out[k]["trial_epochs"]
        print(f"{k}: compute saved (grid / ASHA trial-epochs) = {verdict(ratio, 3.0, lower_is_better=False)}")
    print(f"pooled seed sd of the grid's best val_accuracy: {g['pooled_sd']:.4f} (agreement: gap <= this)")
    ranked = sorted(g["means"].items(), key=lambda kv: -kv[1])
    print(
        "grid ranking (mean best val_accuracy over seeds): "
        + ", ".join(f"{k} {v:.4f}" for k, v in ranked[:6])
        + (" ..." if len(ranked) > 6 else "")
    )
    print_load()


if __name__ == "__main__":
    main()
