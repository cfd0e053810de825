"""What the per-trial cache saves, tried as a user would: plain `dvc repro report@regression` on the default profile in
a git + DVC copy of the project (its own SQLite store), then an edit, then the same command again.

    first run           every trial trains (5 degrees x 3 seeds)
    seeds: 3 -> 4       the 5 new trials train, 15 are reused
    dvc repro -f        nothing changed: every trial reused
    --retrain           `PIPELINE_RETRAIN=1 dvc repro -f`: the baseline, every trial trains again, measured in this run

Prints one row per run (seconds, trials trained and reused) and each run's time as a ratio of the retrain's.

    python benchmarks/trial_cache.py                          # regression, ~3 min on 2 cores
    python benchmarks/trial_cache.py --study language_model   # the default run's longest sweep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import REPO, print_load, print_machine, table


def copy_project(dest: Path, study: str) -> Path:
    """The repository's tracked and unignored files, without results, reports or prepared data; a git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file() and not f.startswith(("results/", "reports/", "data/prepared")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["studies"] = [study]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def repro(project: Path, study: str, *args: str, retrain: bool = False) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(project)
    if retrain:
        env["PIPELINE_RETRAIN"] = "1"
    t0 = time.time()
    proc = subprocess.run(
        ["dvc", "repro", *args, f"report@{study}"], cwd=project, env=env, capture_output=True, text=True
    )
    seconds = time.time() - t0
    if proc.returncode:
        sys.exit(f"dvc repro failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, json.loads((project / "results" / study / "sweep.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="regression", help="a study of experiments/ (default: %(default)s)")
    study = ap.parse_args().study
    print_machine()
    print(f"# study: {study}, default profile, plain `dvc repro report@{study}` in a fresh copy of the project")
    with tempfile.TemporaryDirectory() as d:
        project = copy_project(Path(d) / "project", study)
        rows = [("first run", *repro(project, study))]
        spec_path = project / "experiments" / f"{study}.yaml"
        spec = yaml.safe_load(spec_path.read_text())
        spec_path.write_text(yaml.safe_dump({**spec, "seeds": spec["seeds"] + 1}, sort_keys=False))
        rows.append((f"seeds: {spec['seeds']} -> {spec['seeds'] + 1}", *repro(project, study)))
        rows.append(("dvc repro -f", *repro(project, study, "--force")))
        rows.append(("--retrain (baseline)", *repro(project, study, "--force", retrain=True)))
    baseline = rows[-1][1]
    print(
        table(
            ["run", "seconds", "trained", "reused", "study stage s", "vs retrain"],
            [
                (
                    name,
                    f"{s:.1f}",
                    sw["trials_trained"],
                    sw["trials_reused"],
                    sw["wall_seconds"],
                    f"{s / baseline:.2f}x",
                )
                for name, s, sw in rows
            ],
        )
    )
    print_load()


if __name__ == "__main__":
    main()
