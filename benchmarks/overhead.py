"""Overhead vs a bare loop: one model, data set, epoch count and seed trained four ways.

  (a) a bare PyTorch loop written here (same batches in the same order, same optimizer, val accuracy each epoch)
  (b) pipeline.train.fit (diagnostics on, as by default)
  (c) a 1-worker Tune trial through pipeline.sweep.run_study (MLflow run, checkpoints, artifacts)
  (d) a 2-worker DDP trial (Ray Train TorchTrainer inside the Tune trial)

The four are interleaved, `--reps` times, and ratios are of medians measured in this run. The job is sized so
that (a) takes about 30 s on one idle thread. Ray is started once before the first (c) and its start-up time is
reported on its own line: a sweep pays it once, not per trial.

    python benchmarks/overhead.py              # ~10 min on 2 cores
    python benchmarks/overhead.py --smoke      # seconds: checks that every path runs
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import Project, build_trial_model, median, print_load, print_machine, table, timed, verdict


def spec(n_samples: int, epochs: int) -> dict:
    return {
        "question": "benchmark: overhead of the pipeline over a bare loop",
        "model": {"name": "mlp", "hidden": [256, 256]},
        "dataset": {"name": "synthetic", "n_samples": n_samples, "n_features": 64, "n_classes": 8, "n_informative": 32},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "momentum": 0.9},
        "search": {"algorithm": "grid", "space": {}},
        "seeds": 1,
    }


def bare_loop(cfg, data) -> float:
    """What one would write by hand. Batches come in DistributedSampler's order (seed + epoch), so the final
    weights, and the accuracy returned, equal fit's: both do the same arithmetic."""
    import torch
    import torch.nn.functional as F

    model, _ = build_trial_model(cfg, data)
    t = cfg.train
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    x, y, xv, yv = data.x_train, data.y_train, data.x_val, data.y_val
    acc = 0.0
    for epoch in range(t.epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        total = torch.zeros(())
        for start in range(0, len(order), t.batch_size):
            b = order[start : start + t.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[b]), y[b])
            loss.backward()
            opt.step()
            total += loss.detach() * len(b)
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(xv[i : i + t.eval_batch_size]).argmax(1) == yv[i : i + t.eval_batch_size]).sum())
                for i in range(0, len(xv), t.eval_batch_size)
            )
        acc = correct / len(xv)
    return acc


def with_fit(cfg, data) -> float:
    from pipeline.train import fit

    model, task = build_trial_model(cfg, data)
    result = fit(model, data, task, cfg.train, None, seed=cfg.seed)
    return result.history[-1]["val_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30, help="30: (a) takes ~30 s on an idle core")
    ap.add_argument("--n-samples", type=int, default=40_000, help="synthetic samples (60%% train)")
    ap.add_argument("--no-ddp", action="store_true", help="skip (d)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one rep")
    ap.add_argument("--json", help="also write the raw timings here")
    args = ap.parse_args()
    if args.smoke:
        args.reps, args.epochs, args.n_samples = 1, 2, 2000

    import torch

    torch.set_num_threads(1)  # (a) and (b) on one thread, like each Tune trial (cpus_per_worker: 1)
    print_machine()
    # 3 logical CPUs on 2 cores: the DDP trial's driver asks Tune for 0.01 CPU next to its two 1-CPU workers, which
    # a 2-CPU Ray runtime cannot fit (the worker group then times out waiting for resources).
    proj = Project({"bench": spec(args.n_samples, args.epochs)}, params={"ray.num_cpus": 3})
    ddp = Project({"bench": spec(args.n_samples, args.epochs)}, params={"ray.num_cpus": 3, "ray.workers_per_trial": 2})
    study, data = proj.study("bench"), proj.data("bench")
    cfg = study.resolve({}, study.seeds[0])
    print(
        f"job: mlp {cfg.model.options['hidden']} on synthetic {tuple(data.x_train.shape)} train samples, "
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, 1 thread; project in {proj.root}\n"
    )

    from pipeline import tracking
    from pipeline.tune.tuner import init_ray

    ray_init_s, _ = timed(lambda: init_ray(proj.params()))
    # A project's first sweep also creates its MLflow store (schema migrations): timed here, once, not in (c)/(d).

    def create_store(p: Project) -> float:
        uri = tracking.resolve_tracking_uri(p.params().mlflow.tracking_uri, p.root)
        return timed(lambda: tracking.ensure_experiment(uri, "bench", p.root))[0]

    store_s = create_store(proj)
    create_store(ddp)
    in_trial: dict[str, list[float]] = {}

    def tune(p: Project, name: str) -> float:
        summary = p.run_study("bench")
        runs = json.loads((p.root / "results" / "bench" / "runs.json").read_text())
        assert summary["errors"] == 0, summary
        # The trial function's own time (its start to its last report), from Tune's result log.
        (result,) = (p.root / "ray_results" / f"bench-{summary['sweep_id']}").glob("*/result.json")
        last = json.loads(result.read_text().strip().splitlines()[-1])
        in_trial.setdefault(name, []).append(last["time_total_s"])
        return runs[0]["final"]["val_accuracy"]

    ways = {
        "(a) bare loop": lambda: bare_loop(cfg, data),
        "(b) fit()": lambda: with_fit(cfg, data),
        "(c) Tune trial, 1 worker (run_study)": lambda: tune(proj, "c"),
        "(d) Tune trial, 2-worker DDP (run_study)": lambda: tune(ddp, "d"),
    }
    if args.no_ddp:
        ways.pop("(d) Tune trial, 2-worker DDP (run_study)")
    times: dict[str, list[float]] = {k: [] for k in ways}
    cpu_times: dict[str, list[float]] = {}
    acc: dict[str, float] = {}
    for rep in range(args.reps):
        for name, fn in ways.items():
            cpu0 = time.process_time()
            secs, acc[name] = timed(fn)
            cpu = time.process_time() - cpu0  # this process only: meaningful for (a) and (b), which run here
            times[name].append(secs)
            cpu_times.setdefault(name, []).append(cpu)
            print(
                f"rep {rep + 1}/{args.reps} {name}: {secs:.2f} s wall, {cpu:.2f} s CPU here "
                f"(val_accuracy {acc[name]:.4f}, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )

    base = median(times["(a) bare loop"])
    rows = [[name, median(t), min(t), max(t), median(t) / base, f"{acc[name]:.4f}"] for name, t in times.items()]
    # CPU time of (a) and (b) does not grow when other work shares the cores, so its ratio is the steadier one.
    cpu_ratio = median(cpu_times["(b) fit()"]) / median(cpu_times["(a) bare loop"])
    for key, label in (("c", "(c)"), ("d", "(d)")):
        if key in in_trial:
            t = in_trial[key]
            rows.append(
                [f"{label}: trial function only (Tune time_total_s)", median(t), min(t), max(t), median(t) / base, ""]
            )
    rows.append(["Ray start-up (once per session, not in (c)/(d))", ray_init_s, ray_init_s, ray_init_s, "", ""])
    rows.append(["MLflow store creation (a project's first sweep)", store_s, store_s, store_s, "", ""])
    print()
    print(table(["way", "median s", "min s", "max s", "ratio to (a)", "final val_accuracy"], rows))
    print()
    print(f"(b)/(a) = {verdict(median(times['(b) fit()']) / base, 1.05)} wall; {verdict(cpu_ratio, 1.05)} CPU time")
    print(f"(c)/(a) = {verdict(median(times['(c) Tune trial, 1 worker (run_study)']) / base, 1.15)}")
    if not args.no_ddp:
        print(f"(d)/(a) = {median(times['(d) Tune trial, 2-worker DDP (run_study)']) / base:.3g} (no target)")
    same = acc["(a) bare loop"] == acc["(b) fit()"] == acc["(c) Tune trial, 1 worker (run_study)"]
    print(f"(a), (b) and (c) end at the same val_accuracy (same arithmetic): {same}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "times": times,
                    "cpu": cpu_times,
                    "in_trial": in_trial,
                    "ray_init_s": ray_init_s,
                    "accuracy": acc,
                    "at": time.time(),
                },
                f,
                indent=1,
            )

    print_load()


if __name__ == "__main__":
    main()
