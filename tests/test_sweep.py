"""Sweeps on a real local Ray runtime and a real MLflow SQLite store."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from pipeline.config import load_params, load_study
from pipeline.data import load_prepared
from pipeline.sweep import run_study
from pipeline.tasks import task_for
from pipeline.train import evaluate
from tests.conftest import SERIAL_TRIALS, TINY_SPEC, write_params, write_spec

pytestmark = pytest.mark.slow


def _run(tmp_path, prepared_dir, spec, **params_over):
    params_path = write_params(tmp_path, **params_over)
    study = load_study(write_spec(tmp_path, "s", spec), load_params(params_path), str(params_path))
    summary = run_study(study, prepared_dir, tmp_path / "results")
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    return summary, runs


def test_four_concurrent_trials_on_a_fresh_sqlite_store(tmp_path, prepared_dir, ray_local):
    spec = {**TINY_SPEC, "search": {"space": {"model.activation": ["relu", "tanh", "sigmoid", "leaky_relu"]}}}
    summary, runs = _run(tmp_path, prepared_dir, spec, **{"ray.max_concurrent_trials": 4})
    assert summary["errors"] == 0 and summary["trials"] == 4
    assert sorted(r["tags"]["variant"] for r in runs) == ["leaky_relu", "relu", "sigmoid", "tanh"]
    assert all(r["status"] == "FINISHED" for r in runs)
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    for r in runs:
        assert {"study", "family", "variant", "seed", "ray_trial_id", "mlflow.source.git.commit", "data_sha256"} <= set(
            r["tags"]
        )
        assert [step for step, _ in r["history"]["val_accuracy"]] == [1, 2]
        assert {"train_loss", "val_loss", "epoch_seconds", "samples_per_s"} <= set(r["history"])
        assert r["params"]["model.options.activation"] == r["tags"]["variant"]
        names = {a.path for a in client.list_artifacts(r["run_id"])}
        assert {"config.yaml", "learning_curve.png", "test_correct.npy"} <= names
        assert r["tags"]["best_model_id"]  # the best checkpoint is an MLflow logged model
    # ... in the study's experiment (its Models tab), one per trial, not in MLflow's Default experiment
    models = client.search_logged_models(experiment_ids=[summary["experiment_id"]])
    assert sorted(m.model_id for m in models) == sorted(r["tags"]["best_model_id"] for r in runs)
    assert {m.source_run_id for m in models} == {r["run_id"] for r in runs}
    # ... each named for its trial (study, variant, seed), its source the stage's program, not Ray's worker script
    assert sorted(m.name for m in models) == sorted(r["run_name"] for r in runs)
    for m in models:
        source = client.get_run(m.source_run_id).data.tags["mlflow.source.name"]
        assert m.tags["mlflow.source.name"] == source != "default_worker.py"
        assert m.name == f"{m.tags['study']}-{m.tags['variant']}-s{m.tags['seed']}"


def test_a_completed_sweep_run_again_reuses_every_trial(tmp_path, prepared_dir, ray_local):
    """DVC runs a study stage again when an unrelated dep changed (or under `dvc repro -f`): the same sweep gets a new
    parent run, and every trial is the earlier run itself (pipeline.trial.trial_identity), trained once."""
    spec = {**TINY_SPEC, "search": {"space": {"model.activation": ["relu", "tanh"]}}}
    first, first_runs = _run(tmp_path, prepared_dir, spec, **SERIAL_TRIALS)
    again, again_runs = _run(tmp_path, prepared_dir, spec, **SERIAL_TRIALS)
    assert again["parent_run_id"] != first["parent_run_id"] and again["resumed"] is False
    assert (again["trials_reused"], again["trials_trained"]) == (2, 0)
    assert [r["run_id"] for r in again_runs] == [r["run_id"] for r in first_runs]
    assert [r["history"] for r in again_runs] == [r["history"] for r in first_runs]
    assert all("resumed" not in r["tags"] for r in again_runs)


def test_two_worker_ddp_trial_matches_single_process_evaluation(tmp_path, prepared_dir, ray_local):
    spec = {
        **TINY_SPEC,
        "search": {"space": {"model.activation": ["tanh"]}},
        "train": {"epochs": 2, "lr": 0.1},
        "resources": {"workers_per_trial": 2},
    }
    summary, runs = _run(tmp_path, prepared_dir, spec)
    assert summary["errors"] == 0
    (run,) = runs
    assert run["status"] == "FINISHED" and run["tags"]["workers"] == "2"
    # Reload the logged best weights and evaluate them in this one process on the full validation split.
    import mlflow.pytorch

    mlflow.set_tracking_uri(summary["tracking_uri"])  # the fluent API reads the same store
    data = load_prepared(prepared_dir, "digits")
    model = mlflow.pytorch.load_model(f"models:/{run['tags']['best_model_id']}")
    single = evaluate(model, data.x_val, data.y_val, task_for("classification"), 256)
    assert single["val_accuracy"] == pytest.approx(run["final"]["best_val_accuracy"], abs=1e-9)
    best_epoch = int(run["final"]["best_epoch"])
    reported = dict((int(s), v) for s, v in run["history"]["val_accuracy"])[best_epoch]
    assert single["val_accuracy"] == pytest.approx(reported, abs=1e-9)
