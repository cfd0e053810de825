"""The pipeline as a whole: `dvc repro` from a clean clone, a no-op `dvc repro`, and what MLflow logging costs.

repro    clone the project's last commit (or, with --from worktree, copy the working tree) to a temporary
         folder, run the default `dvc repro` there, and report its wall time and the peak memory of the whole
         process tree (Ray's processes included), sampled with psutil: sum of RSS (shared pages counted once
         per process) and sum of PSS (shared pages divided among their processes). Then time `dvc repro` again
         with nothing changed, several times. Target: no-op <= 3 s.
logging  fit() of the default study's model with the per-epoch MLflow callback the trials use
         (tracking.log_metrics), with the former one-log_batch-per-epoch callback, and with no callback,
         interleaved.
         Target: logging <= 2% of epoch time.

  python benchmarks/pipeline_costs.py                     # both; the repro takes as long as the default studies
  python benchmarks/pipeline_costs.py --only logging --reps 3 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import REPO, Project, median, print_load, print_machine, table, verdict


class TreeMemory:
    """Peak total memory of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def copy_project(dst: Path, source: str) -> str:
    """A clean copy of the project: `head` is a git clone of the last commit; `worktree` also takes uncommitted
    and untracked-but-not-ignored files (what the next commit would hold). Returns what was copied."""
    if source == "head":
        subprocess.run(["git", "clone", "-q", str(REPO), str(dst)], check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=dst, capture_output=True, text=True)
        return f"git clone of commit {rev.stdout.strip()}"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / f.decode()
        if src.is_file():
            (dst / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f.decode())
    # DVC needs a git repository (it reads .gitignore and commits nothing here).
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return "copy of the working tree"


def repro_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_ROOT", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    # The copy's own `pipeline` package must win over the editable install that points at the repository.
    env["PYTHONPATH"] = str(folder)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=30)


def bench_repro(noop_reps: int, source: str, budget_s: float) -> list[list]:
    """The default `dvc repro` in a clean clone, streamed with a timestamp per line; if it outlasts `budget_s` it is
    stopped, and the no-op check runs on the report stages that finished."""
    folder = Path(tempfile.mkdtemp(prefix="bench-repro-")) / "project"
    what = copy_project(folder, source)
    env = repro_env(folder)
    studies = __import__("yaml").safe_load((folder / "params.yaml").read_text())["studies"]
    print(f"{what} in {folder}; studies {studies}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = threading.Timer(budget_s, kill_tree, [proc.pid])
    timer.start()
    stages: list[tuple[str, float]] = []  # (stage, seconds since start when it began)
    with TreeMemory(proc.pid) as mem:
        for line in proc.stdout:
            now = time.perf_counter() - t0
            if line.startswith("Running stage '"):
                stages.append((line.split("'")[1], now))
                print(f"[{now:7.1f}s] {line.rstrip()}  (peak so far: {mem.peak_pss / 2**30:.2f} GiB PSS)", flush=True)
        proc.wait()
    timer.cancel()
    wall = time.perf_counter() - t0
    complete = proc.returncode == 0
    if not complete:
        print(f"dvc repro stopped after {wall:.0f} s (return code {proc.returncode}); stages begun: {len(stages)}")
    ends = [b for _, b in stages[1:]] + [wall]
    for (name, begin), end in zip(stages, ends):
        print(f"  {name}: {end - begin:.1f} s{'' if complete or end != wall else ' (stopped)'}")
    # A no-op repro of the whole pipeline, or (when stopped) of the reports that finished.
    finished = [n for (n, b), e in zip(stages, ends) if n.startswith("report@") and e != wall]
    targets = [] if complete else finished
    noop = []
    for _ in range(noop_reps if complete or targets else 0):
        t = time.perf_counter()
        r = subprocess.run(["dvc", "repro", *targets], cwd=folder, env=env, capture_output=True, text=True)
        noop.append(time.perf_counter() - t)
        assert r.returncode == 0 and "Running stage" not in r.stdout, r.stdout[-2000:]
    rows = [
        [
            "`dvc repro` from a clean clone (wall s)"
            + ("" if complete else f", stopped at the {budget_s:.0f} s budget"),
            f"{wall:.1f}",
            f"{what}; {len(stages)} stages {'run' if complete else 'begun'}; studies: {', '.join(studies)}",
        ],
        ["peak memory, process tree, sum of RSS", f"{mem.peak_rss / 2**30:.2f} GiB", f"{mem.peak_procs} processes"],
        ["peak memory, process tree, sum of PSS", f"{mem.peak_pss / 2**30:.2f} GiB", ""],
    ]
    if noop:
        scope = "the whole pipeline" if complete else f"{len(targets)} finished report stages and their upstream"
        rows += [
            [
                f"no-op `dvc repro` ({scope}), median of {len(noop)} (s)",
                f"{median(noop):.2f}",
                verdict(median(noop), 3),
            ],
            ["no-op `dvc repro`, all runs (s)", ", ".join(f"{x:.2f}" for x in noop), ""],
        ]
    return rows


def bench_logging(reps: int, epochs: int | None) -> list[list]:
    import torch

    from pipeline import tracking
    from pipeline.train import fit

    torch.set_num_threads(1)  # as in a trial (cpus_per_worker: 1)
    spec = {**__import__("yaml").safe_load((REPO / "experiments" / "activations.yaml").read_text())}
    spec["seeds"] = 1
    if epochs:
        spec["train"] = {**spec.get("train", {}), "epochs": epochs}
    proj = Project({"activations": spec})
    study, data = proj.study("activations"), proj.data("activations")
    cfg = study.resolve({"model.activation": "relu"}, 0)
    uri = tracking.resolve_tracking_uri(proj.params().mlflow.tracking_uri, proj.root)
    exp = tracking.ensure_experiment(uri, "logging", proj.root)
    from _common import build_trial_model
    from mlflow.entities import Metric

    def per_epoch_log_batch(run_id: str, metrics: dict, step: int) -> None:
        """The pipeline's logging before batching: one asynchronous MLflow log_batch per epoch."""
        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        tracking.client(uri).log_batch(run_id, metrics=items, synchronous=False)

    loggers = {
        "none": None,
        "one MLflow log_batch per epoch (before)": per_epoch_log_batch,
        "tracking.log_metrics (now: batched, at most 1/s)": lambda r, m, s: tracking.log_metrics(uri, r, m, step=s),
    }

    def run(log) -> tuple[float, float, float, int]:
        model, task = build_trial_model(cfg, data)
        in_callback = [0.0]
        run_id = tracking.client(uri).create_run(exp).info.run_id if log else None
        n_metrics = [0]

        def report(metrics, checkpoint):
            t = time.perf_counter()
            log(run_id, metrics, int(metrics["epoch"]))
            in_callback[0] += time.perf_counter() - t
            n_metrics[0] = len(metrics)

        t = time.perf_counter()
        fit(model, data, task, cfg.train, report if log else None, seed=cfg.seed)
        fit_s = time.perf_counter() - t
        end_s = 0.0
        if log:
            t = time.perf_counter()
            tracking.end_run(uri, run_id)  # the flush that the trial's end pays once
            end_s = time.perf_counter() - t
        return fit_s, in_callback[0], end_s, n_metrics[0]

    for log in loggers.values():  # warm-up: imports, first SQLite connection, allocator
        run(log)
    fits: dict[str, list[float]] = {k: [] for k in loggers}
    callback: dict[str, list[float]] = {k: [] for k in loggers}
    ends: dict[str, list[float]] = {k: [] for k in loggers}
    n = 0
    for _ in range(reps):
        for name, log in loggers.items():
            fit_s, cb, end_s, k = run(log)
            fits[name].append(fit_s)
            callback[name].append(cb)
            ends[name].append(end_s)
            n = max(n, k)
    e = cfg.train.epochs
    base = median(fits["none"])
    epoch_s = base / e
    rows = [
        ["model", f"mlp {cfg.model.options['hidden']} on digits, {e} epochs, diagnostics on, {reps} reps", ""],
        ["metrics logged per epoch", str(n), ""],
        ["epoch time without logging, median (s)", f"{epoch_s:.4f}", ""],
    ]
    for name in list(loggers)[1:]:
        wall = 100 * (median(fits[name]) - base) / base
        cb = 100 * median(callback[name]) / e / epoch_s
        rows += [
            [f"{name}: fit wall vs none (medians)", f"{wall:+.2f}%", verdict(wall, 2)],
            [f"{name}: time in the callback / epoch time", f"{cb:.2f}%", verdict(cb, 2)],
            [f"{name}: end_run, once per run (s)", f"{median(ends[name]):.3f}", ""],
        ]
    for name, v in fits.items():
        print(f"fit s, {name}: {[round(x, 3) for x in v]}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["repro", "logging"])
    ap.add_argument("--reps", type=int, default=15, help="interleaved repetitions of the logging benchmark")
    ap.add_argument("--epochs", type=int, default=None, help="logging benchmark epochs (default: the study's)")
    ap.add_argument("--noop-reps", type=int, default=5)
    ap.add_argument("--from", dest="source", choices=["head", "worktree"], default="head")
    ap.add_argument("--budget-s", type=float, default=3600, help="stop the full repro after this long")
    args = ap.parse_args()
    print_machine()
    rows = []
    if args.only in (None, "logging"):
        rows += bench_logging(args.reps, args.epochs)
    if args.only in (None, "repro"):
        rows += bench_repro(args.noop_reps, args.source, args.budget_s)
    print()
    print(table(["measure", "value", "note"], rows))

    print_load()


if __name__ == "__main__":
    main()
