"""A trial is computed once, tried as a user would: plain `dvc repro study@regression` in a git + DVC copy of the
project, then an edit, then the same command again. The runs go through an `mlflow server` whose store is a real
PostgreSQL (as a team's server runs), the stages start their own Ray runtime, as plain `dvc repro` does.

The study is cut to degrees 1-3 and 2 seeds (6 trials) to keep the test short. The edits, in order, each on the
state the one before left:
- a change to a module the trial runs (`pipeline/train.py`): all 6 train again;
- `seeds: 2` -> `3` and one more degree in `model.degree`, in one edit: only the 6 new trials train (the new seed of
  each old degree, every seed of the new one); the 6 others are the same MLflow runs;
- a new claim (`dvc repro report@regression`): the study stage does not run at all, the report does;
- `dvc repro -f` with nothing changed: every trial reused, none trained."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.test_e2e_dvc import _copy_repo, _dvc, _git

pytestmark = pytest.mark.slow
STUDY = "regression"


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_postgres_server):
    url, _ = mlflow_postgres_server
    repo = _copy_repo(tmp_path_factory.mktemp("cache") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["profiles"]["tiny"] = {"train": {"epochs": 2}}  # the study's own seeds (3), two epochs each
    params["studies"] = [STUDY]
    params["mlflow"]["tracking_uri"] = url
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _edit_study(repo, seeds=2, search={"space": {"model.degree": [1, 2, 3]}})
    (repo / "dvc.lock").unlink(missing_ok=True)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "copy")
    return repo


def _repro(repo: Path, *args: str, stage: str = "study") -> tuple[dict, dict[tuple[str, str], str], float, str]:
    """`dvc repro ARGS STAGE@regression` in the copy, whose `pipeline` package the stages import (PYTHONPATH):
    (sweep.json, (variant, seed) -> run id, seconds, stdout)."""
    t0 = time.time()
    proc = _dvc(repo, "repro", *args, f"{stage}@{STUDY}", pythonpath=repo)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = json.loads((repo / "results" / STUDY / "sweep.json").read_text())
    runs = json.loads((repo / "results" / STUDY / "runs.json").read_text())
    return sweep, {(r["tags"]["variant"], r["tags"]["seed"]): r["run_id"] for r in runs}, seconds, proc.stdout


def _edit_study(repo: Path, **changes) -> None:
    path = repo / "experiments" / f"{STUDY}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_each_edit_trains_exactly_the_trials_it_changes(project):
    repo = project
    first, runs1, t_first, _ = _repro(repo)
    assert (first["trials"], first["trials_reused"], first["trials_trained"]) == (6, 0, 6)

    train_py = repo / "pipeline" / "train.py"
    train_py.write_text(train_py.read_text() + "\n# a change to code every trial runs\n")
    code_change, runs2, t_all, _ = _repro(repo)
    assert (code_change["trials_reused"], code_change["trials_trained"]) == (0, 6)
    assert set(runs2) == set(runs1) and not set(runs2.values()) & set(runs1.values())

    _edit_study(repo, seeds=3, search={"space": {"model.degree": [1, 2, 3, 4]}})
    grown, runs4, _, _ = _repro(repo)
    assert (grown["trials_reused"], grown["trials_trained"]) == (6, 6)
    assert {k: runs4[k] for k in runs2} == runs2  # the same runs, by id
    new = set(runs4) - set(runs2)
    (new_variant,) = {variant for variant, _ in new} - {variant for variant, _ in runs2}
    assert "4" in new_variant and new == {(v, "2") for v, _ in runs2} | {(new_variant, s) for s in ("0", "1", "2")}
    client = MlflowClient(grown["tracking_uri"])
    for run_id in runs2.values():  # now children of the new sweep's run, which names both sweeps that used them
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.parentRunId"] == grown["parent_run_id"]
        assert tags["used_by_sweeps"] == f"{code_change['parent_run_id']},{grown['parent_run_id']}"

    variants = sorted({variant for variant, _ in runs4})
    claim = {"claim": "Degree 3 fits better than degree 1.", "kind": "better", "metric": "val_loss"}
    _edit_study(repo, expect=[{**claim, "a": next(v for v in variants if "3" in v), "b": variants[0]}])
    _, runs5, _, out = _repro(repo, stage="report")
    assert f"Running stage 'study@{STUDY}'" not in out and f"Running stage 'report@{STUDY}'" in out
    assert runs5 == runs4  # the sweep did not run

    forced, runs6, t_forced, _ = _repro(repo, "--force")
    assert (forced["trials_reused"], forced["trials_trained"]) == (12, 0)
    assert runs6 == runs4
    # Times are printed, not asserted (a busy machine decides them; -f also runs prepare again): what the cache saves
    # is measured by benchmarks/trial_cache.py.
    print(f"dvc repro: first {t_first:.0f} s (6 trials), all 6 trained again {t_all:.0f} s, -f {t_forced:.0f} s")
