"""`dvc repro` end to end on the tiny profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not f.startswith(("results/", "reports/", "data/prepared")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def _dvc(cwd: Path, *args: str, session: bool = False) -> subprocess.CompletedProcess:
    """`dvc ARGS` in `cwd`; with `session`, under pipeline.ray_session, as `make repro` runs it."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    cmd = [str(Path(sys.executable).parent / "dvc"), *args]
    if session:
        cmd = [sys.executable, "-m", "pipeline.ray_session", "dvc", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_dvc_repro_tiny_profile_then_noop(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["studies"] = ["activations"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for f in ("dvc.lock",):
        (repo / f).unlink(missing_ok=True)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "copy")

    first = _dvc(repo, "repro", session=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    runs = json.loads((repo / "results" / "activations" / "runs.json").read_text())
    sweep = json.loads((repo / "results" / "activations" / "sweep.json").read_text())
    assert len(runs) == 5 and sweep["errors"] == 0  # five activations x one seed in the tiny profile
    assert {r["status"] for r in runs} == {"FINISHED"}
    assert sweep["tracking_uri"] == f"sqlite:///{(repo / 'mlflow.db').resolve()}"
    client = MlflowClient(sweep["tracking_uri"])
    statuses = [r.info.status for r in client.search_runs([sweep["experiment_id"]])]
    assert statuses.count("FINISHED") == 6 and "RUNNING" not in statuses  # 5 trials + the parent

    report = repo / "reports" / "activations"
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"sigmoid", "tanh", "relu", "leaky_relu", "maxout"}
    summary = (report / "summary.md").read_text()
    assert "**Question.**" in summary and "| relu |" in summary
    assert {p.name for p in (report / "figures").iterdir()} >= {"curve_val_accuracy.png", "final_val_accuracy.png"}
    assert len(list((report / "curves").glob("*.csv"))) == 5

    second = _dvc(repo, "repro")
    assert second.returncode == 0
    assert "Running stage" not in second.stdout, second.stdout
    status = _dvc(repo, "status")
    assert "up to date" in status.stdout
