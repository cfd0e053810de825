"""The pipeline as a whole: `dvc repro` from a clean clone, a no-op `dvc repro`, and what MLflow logging costs.

repro    clone the project's last commit (or, with --from worktree, copy the working tree) to a temporary
         folder, run the default `dvc repro` there, and report its wall time and the peak memory of the whole
         process tree (Ray's processes included), sampled with psutil: sum of RSS (shared pages counted once
         per process) and sum of PSS (shared pages divided among their processes). Then time `dvc repro` again
         with nothing changed, several times. Target: no-op <= 3 s.
logging  fit() of the default study's model with the per-epoch MLflow callback the trials use
         (tracking.log_metrics, asynchronous log_batch) against fit() with no callback, interleaved.
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


def bench_repro(noop_reps: int, source: str) -> list[list]:
    folder = Path(tempfile.mkdtemp(prefix="bench-repro-")) / "project"
    what = copy_project(folder, source)
    env = repro_env(folder)
    studies = __import__("yaml").safe_load((folder / "params.yaml").read_text())["studies"]
    print(f"{what} in {folder}; studies {studies}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with TreeMemory(proc.pid) as mem:
        out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(out.decode()[-4000:])
        raise SystemExit(f"dvc repro failed with {proc.returncode}")
    print(out.decode()[-1500:])
    noop = []
    for _ in range(noop_reps):
        t = time.perf_counter()
        r = subprocess.run(["dvc", "repro"], cwd=folder, env=env, capture_output=True, text=True)
        noop.append(time.perf_counter() - t)
        assert r.returncode == 0 and "didn't change" in r.stdout + r.stderr or "up to date" in r.stdout, r.stdout
    return [
        ["`dvc repro` from a clean copy (wall s)", f"{wall:.1f}", f"{what}; studies: {', '.join(studies)}"],
        ["peak memory, process tree, sum of RSS", f"{mem.peak_rss / 2**30:.2f} GiB", f"{mem.peak_procs} processes"],
        ["peak memory, process tree, sum of PSS", f"{mem.peak_pss / 2**30:.2f} GiB", ""],
        [f"no-op `dvc repro`, median of {noop_reps} (s)", f"{median(noop):.2f}", verdict(median(noop), 3.0)],
        ["no-op `dvc repro`, all runs (s)", ", ".join(f"{x:.2f}" for x in noop), ""],
    ]


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

    def run(log: bool) -> tuple[float, float, float, int]:
        model, task = build_trial_model(cfg, data)
        in_callback = [0.0]
        run_id = tracking.client(uri).create_run(exp).info.run_id if log else None
        n_metrics = [0]

        def report(metrics, checkpoint):
            t = time.perf_counter()
            tracking.log_metrics(uri, run_id, metrics, step=int(metrics["epoch"]))
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

    run(True), run(False)  # warm-up: imports, first SQLite connection, allocator
    with_log, without, callback, ends, n = [], [], [], [], 0
    for _ in range(reps):
        for log in (True, False):
            fit_s, cb, end_s, k = run(log)
            (with_log if log else without).append(fit_s)
            if log:
                callback.append(cb)
                ends.append(end_s)
                n = k
    e = cfg.train.epochs
    epoch_s = median(without) / e
    wall_frac = (median(with_log) - median(without)) / median(without)
    cb_frac = median(callback) / e / epoch_s
    print(f"fit with logging {[round(x, 3) for x in with_log]}, without {[round(x, 3) for x in without]}")
    return [
        ["model", f"mlp {cfg.model.options['hidden']} on digits, {e} epochs, diagnostics on", ""],
        ["metrics logged per epoch", str(n), ""],
        ["epoch time without logging, median (s)", f"{epoch_s:.4f}", ""],
        [
            "fit wall: with / without logging - 1 (median of each)",
            f"{100 * wall_frac:+.2f}%",
            verdict(100 * wall_frac, 2),
        ],
        ["time inside the logging callback per epoch (s)", f"{median(callback) / e:.5f}", ""],
        ["callback time / epoch time", f"{100 * cb_frac:.2f}%", verdict(100 * cb_frac, 2)],
        ["end_run flush, once per run (s)", f"{median(ends):.3f}", ""],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["repro", "logging"])
    ap.add_argument("--reps", type=int, default=7, help="interleaved fit pairs for the logging benchmark")
    ap.add_argument("--epochs", type=int, default=None, help="logging benchmark epochs (default: the study's)")
    ap.add_argument("--noop-reps", type=int, default=5)
    ap.add_argument("--from", dest="source", choices=["head", "worktree"], default="head")
    args = ap.parse_args()
    print_machine()
    rows = []
    if args.only in (None, "logging"):
        rows += bench_logging(args.reps, args.epochs)
    if args.only in (None, "repro"):
        rows += bench_repro(args.noop_reps, args.source)
    print()
    print(table(["measure", "value", "note"], rows))

    print_load()


if __name__ == "__main__":
    main()
