"""Fixed cost per trial: sweeps of 20 trials that do almost no work (1 epoch on 64 digits).

Two kinds of trial, one sweep each, run one trial at a time so that each trial's cost is visible:
  plain   a Tune function trial (workers_per_trial: 1; Tune reuses the actor between trials)
  ddp     a 2-worker Ray Train TorchTrainer inside the Tune trial (fresh worker processes every trial)

Per trial, from the MLflow child runs: `cycle` is the time between consecutive trials' ends (everything a trial
costs, Tune's scheduling included), `in run` is the MLflow run's own start to end. Medians over the sweep.
`--profile` adds a cProfile of `run_worker` called in this process on warm imports (the plain trial's own work).

    python benchmarks/trial_overhead.py                 # ~5-10 min on 2 cores
    python benchmarks/trial_overhead.py --trials 4 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from _common import Project, median, print_load, print_machine, table, timed, verdict

TARGETS = {"plain": 2.0, "ddp": 8.0}


def spec(trials: int, workers: int) -> dict:
    return {
        "question": "benchmark: fixed cost per trial",
        "model": {"name": "mlp", "hidden": [16]},
        "dataset": {"name": "digits"},
        "train": {"epochs": 1, "train_limit": 64},
        "search": {"algorithm": "grid", "space": {}},
        "seeds": trials,  # one trial per seed
        "resources": {"workers_per_trial": workers},
    }


def run_times(summary: dict) -> list[tuple[float, float]]:
    """(start, end) in seconds of each child run of the sweep, by end time."""
    from pipeline import tracking

    runs = tracking.find_runs(
        summary["tracking_uri"], summary["experiment_id"], f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'"
    )
    return sorted((r.info.start_time / 1000, r.info.end_time / 1000) for r in runs)


def profile_worker(proj: Project, n: int) -> str:
    """cProfile of n warm calls of run_worker in this process (no Ray): where a plain trial's own time goes."""
    import torch

    from pipeline import tracking
    from pipeline.trial import Runtime, run_worker, trial_config

    study, data = proj.study("plain"), proj.data("plain")
    uri = tracking.resolve_tracking_uri(proj.params().mlflow.tracking_uri, proj.root)
    exp = tracking.ensure_experiment(uri, "profile", proj.root)
    parent = tracking.client(uri).create_run(exp).info.run_id
    rt = Runtime(study=study, tracking_uri=uri, experiment_id=exp, parent_run_id=parent, sweep_id="p", space_keys=[])

    def one(i: int) -> None:
        cfg, variant, _ = trial_config(rt, {"seed": i})
        run_worker(cfg, variant, rt, data, f"p{i}", lambda m, d: None, lambda: None, torch.device("cpu"))

    first, _ = timed(lambda: one(0))  # pays the one-off imports (mlflow store, FlopCounterMode, matplotlib)
    prof = cProfile.Profile()
    times = []
    for i in range(1, n + 1):
        prof.enable()
        t, _ = timed(lambda i=i: one(i))
        prof.disable()
        times.append(t)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
        r"pipeline|mlflow/tracking/client.py|matplotlib/figure", 25
    )
    return (
        f"run_worker in-process: first call {first:.2f} s (imports), then median {median(times):.2f} s over {n}\n"
        + out.getvalue()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--kinds", default="plain,ddp")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    kinds = args.kinds.split(",")

    print_machine()
    # 3 logical CPUs for 2 cores: the DDP trial's driver asks for a sliver of CPU next to its two 1-CPU workers.
    params = {"ray.num_cpus": 3, "ray.max_concurrent_trials": 1}
    proj = Project({k: spec(args.trials, 2 if k == "ddp" else 1) for k in ("plain", "ddp")}, params=params)
    print(f"project in {proj.root}\n")
    from pipeline.tune.tuner import init_ray

    ray_s, _ = timed(lambda: init_ray(proj.params()))
    rows = []
    for kind in kinds:
        wall, summary = timed(lambda kind=kind: proj.run_study(kind))
        spans = run_times(summary)
        cycles = [b[1] - a[1] for a, b in zip(spans, spans[1:])]
        in_run = [end - start for start, end in spans]
        rows.append(
            [
                kind,
                len(spans),
                summary["errors"],
                median(cycles),
                median(in_run),
                summary["wall_seconds"] / len(spans),
                wall,
                verdict(median(cycles), TARGETS[kind]),
            ]
        )
        print(f"{kind}: cycles {[round(c, 2) for c in cycles]}", flush=True)
    print()
    print(f"Ray start-up (once per sweep): {ray_s:.2f} s")
    print(
        table(
            [
                "trial",
                "trials",
                "errors",
                "median s/trial (cycle)",
                "median s in MLflow run",
                "Tuner.fit s / trials",
                "run_study wall s",
                "vs target",
            ],
            rows,
        )
    )
    if args.profile:
        print()
        print(profile_worker(proj, 5))
    print(f"finished {time.strftime('%H:%M:%S')}")

    print_load()


if __name__ == "__main__":
    main()
