"""Re-train one logged run from its MLflow record and print its metrics next to the logged ones.

Every trial logs its resolved config (`config.yaml` artifact) and tags the commit, the dirty flag and the
checksum of its data (`mlflow.source.git.commit`, `git_dirty`, `data_sha256`). `rerun` reads these back, refuses
data whose checksum differs, trains the same config with `fit` on the CPU, and compares epoch by epoch.

    python -m pipeline.rerun RUN_ID [--tracking-uri sqlite:///mlflow.db] [--data data/prepared]

A 1-process CPU trial reproduces bit for bit on the same machine and versions; a DDP or GPU run reproduces
to within floating-point noise (different reduction order), which the `max_abs_diff` column shows.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

# Epoch metrics that are the same arithmetic in any run (timings and memory are not).
COMPARED = ("train_loss", "train_grad_norm", "val_loss", "val_accuracy", "train_accuracy", "lr")


def rerun(
    run_id: str,
    tracking_uri: str | None = None,
    data_dir: str | Path = "data/prepared",
    *,
    threads: int = 1,
    echo: bool = True,
) -> dict[str, Any]:
    """Re-train run `run_id` and compare with what it logged.

    Returns {"config", "rows": [{epoch, metric, logged, rerun}], "max_abs_diff", "identical", "warnings"}.
    `threads` should match the trial's `cpus_per_worker` (1 by default) for bit-for-bit results.
    """
    import torch

    from pipeline import tracking
    from pipeline.build import untrained
    from pipeline.config import TrialConfig, validate
    from pipeline.data import load_prepared
    from pipeline.train import fit

    uri = tracking.resolve_tracking_uri(tracking_uri or "sqlite:///mlflow.db")
    client = tracking.client(uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:  # MlflowException: no such run, or no such store
        raise ConfigError(f"no run {run_id!r} in {uri} ({type(e).__name__})") from None
    tags = run.data.tags
    commit = tags.get("mlflow.source.git.commit") or tags.get("git_commit", "")  # git_commit: runs before MLflow's tags
    with tempfile.TemporaryDirectory() as d:
        try:
            path = client.download_artifacts(run_id, "config.yaml", d)
        except Exception:
            raise ConfigError(f"run {run_id} has no config.yaml artifact (did it finish?)") from None
        cfg: TrialConfig = validate(TrialConfig, yaml.safe_load(Path(path).read_text()), file=f"run {run_id}")

    warnings: list[str] = []
    data = load_prepared(data_dir, cfg.dataset.name, cfg.dataset.options)
    logged_sha, sha = tags.get("data_sha256", ""), data.meta.get("sha256", "")
    if logged_sha and logged_sha != sha:
        raise ConfigError(
            f"prepared data sha256 {sha[:12]} differs from the run's {logged_sha[:12]}; "
            f"check out commit {(commit or '?')[:12]} and run `dvc repro prepare`",
            file=str(data_dir),
        )
    here = tracking.git_info()
    if commit and here["git_commit"] != commit:
        warnings.append(f"code is at {here['git_commit'][:12]}, the run was at {commit[:12]}")
    if tags.get("git_dirty") == "true":
        warnings.append("the run was made from a dirty working tree: uncommitted changes are not recorded")
    if tags.get("workers", "1") != "1":
        warnings.append(f"the run used {tags['workers']} DDP workers; a 1-process rerun matches to rounding only")

    torch.set_num_threads(threads)
    model, task = untrained(cfg, data.info)
    metric = next((k[len("best_") :] for k in run.data.metrics if k.startswith("best_")), None)
    result = fit(model, data, task, cfg.train, None, seed=cfg.seed, metric=metric)

    rows, worst = [], 0.0
    for key in COMPARED:
        if key not in run.data.metrics:
            continue
        logged = {int(m.step): m.value for m in client.get_metric_history(run_id, key)}
        for row in result.history:
            epoch = int(row["epoch"])
            if key in row and epoch in logged:
                a, b = logged[epoch], row[key]
                rows.append({"epoch": epoch, "metric": key, "logged": a, "rerun": b})
                if math.isfinite(a) and math.isfinite(b):
                    worst = max(worst, abs(a - b))
                elif not (math.isnan(a) and math.isnan(b)) and a != b:
                    worst = math.inf
    out = {
        "config": cfg.model_dump(),
        "rows": rows,
        "max_abs_diff": worst,
        "identical": bool(rows) and worst == 0.0,
        "warnings": warnings,
    }
    if echo:
        _print(run_id, out)
    return out


def _print(run_id: str, out: dict[str, Any]) -> None:
    for w in out["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"run {run_id}: {out['config']['study']} {out['config']['model']['name']} seed {out['config']['seed']}")
    print(f"{'epoch':>5}  {'metric':<16} {'logged':>14} {'rerun':>14} {'diff':>10}")
    for r in out["rows"]:
        diff = r["rerun"] - r["logged"]
        print(f"{r['epoch']:>5}  {r['metric']:<16} {r['logged']:>14.8g} {r['rerun']:>14.8g} {diff:>10.2g}")
    verdict = "identical" if out["identical"] else f"max |diff| {out['max_abs_diff']:.3g}"
    print(f"{len(out['rows'])} values compared: {verdict}")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (torch.set_num_threads refuses 0 and below with a traceback)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text!r})")
    return value


def main(argv: list[str] | None = None) -> int:
    from pipeline.entry import ArgParser, guarded

    @guarded
    def _main() -> int:
        ap = ArgParser(
            prog="python -m pipeline.rerun", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        ap.add_argument("run_id")
        ap.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
        ap.add_argument("--data", default="data/prepared", help="prepared data folder")
        ap.add_argument("--threads", type=positive_int, default=1, help="the trial's cpus_per_worker")
        args = ap.parse_args(argv)
        out = rerun(args.run_id, args.tracking_uri, args.data, threads=args.threads)
        return 0 if out["rows"] else 1

    return _main()


if __name__ == "__main__":
    sys.exit(main())
