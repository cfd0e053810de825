"""A trial is computed once: a sweep reuses every finished run of the same trial (same `trial_identity`) from the
study's earlier sweeps instead of training it, keeps its run id, and trains everything else.

Real parts: `fit` on the embedded digits, sweeps through `run_study` on the session's local Ray runtime and a real
SQLite MLflow store."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from pipeline.build import untrained
from pipeline.config import load_params, load_study
from pipeline.data import load_prepared
from pipeline.sweep import run_study
from pipeline.train import fit
from pipeline.trial import Runtime, model_name, trial_identity, trial_name
from tests.conftest import SERIAL_TRIALS, TINY_SPEC, write_params, write_spec


def _study(folder, spec, **params_over):
    params_path = write_params(folder, **{**SERIAL_TRIALS, **params_over})
    return load_study(write_spec(folder, "s", spec), load_params(params_path), str(params_path))


def _runtime(study, **changes) -> Runtime:
    rt = Runtime(study, "sqlite:///x", "0", "p", "sid", [], tags={"data_sha256": "d", "version.torch": "t"})
    return dataclasses.replace(rt, **{"code_sha": "c", **changes})


# --------------------------------------------------------------------------- what a trial's identity is


def _history(study, cfg, data) -> list[dict[str, float]]:
    """Every per-epoch value `fit` reports, but the per-layer diagnostics (named `group/key`) and what the machine
    measures (time, memory)."""
    model, task = untrained(cfg, data.info, torch.device("cpu"))
    result = fit(model, data, task, cfg.train, lambda m, c: None, seed=cfg.seed, metric="val_accuracy", mode="max")
    timing = ("epoch_seconds", "samples_per_s", "peak_memory_mb")
    return [{k: v for k, v in row.items() if "/" not in k and k not in timing} for row in result.history]


def test_fields_left_out_of_the_identity_cannot_change_the_weights(tmp_path, prepared_dir):
    """Each field `trial_identity` leaves out, changed: the identity stays, and training gives the very same
    per-epoch metrics. (The study's question, claims, report and Ray concurrency are not in a trial's config.)"""
    study = _study(tmp_path, {**TINY_SPEC, "train": {"epochs": 3, "lr": 0.1, "checkpoint_every": 1}})
    data = load_prepared(prepared_dir, "digits")
    base = study.resolve({}, 0)
    rt = _runtime(study)
    reference = _history(study, base, data)
    for train_change in ({"diagnostics": False}, {"checkpoint_every": 0}, {"checkpoint_every": 2}):
        cfg = base.model_copy(update={"train": base.train.model_copy(update=train_change)})
        assert trial_identity(rt, cfg) == trial_identity(rt, base), train_change
        assert _history(study, cfg, data) == reference, train_change
    renamed = base.model_copy(update={"study": "another_study"})
    assert trial_identity(rt, renamed) == trial_identity(rt, base)


def test_everything_that_decides_the_weights_is_in_the_identity(tmp_path):
    study = _study(tmp_path, TINY_SPEC)
    base = study.resolve({}, 0)
    rt = _runtime(study)
    changed_cfgs = [
        study.resolve({}, 1),  # the seed
        study.resolve({"model.activation": "tanh"}, 0),  # the model
        base.model_copy(update={"train": base.train.model_copy(update={"lr": 0.2})}),
        base.model_copy(update={"train": base.train.model_copy(update={"eval_batch_size": 7})}),
    ]
    changed_runtimes = [
        _runtime(study, workers_per_trial=2),
        _runtime(study, code_sha="c2"),
        _runtime(study, tags={"data_sha256": "d2", "version.torch": "t"}),
        _runtime(study, tags={"data_sha256": "d", "version.torch": "t2"}),
    ]
    keys = {trial_identity(rt, base)}
    keys |= {trial_identity(rt, cfg) for cfg in changed_cfgs}
    keys |= {trial_identity(other, base) for other in changed_runtimes}
    assert len(keys) == 1 + len(changed_cfgs) + len(changed_runtimes)


# --------------------------------------------------------------------------- sweeps reuse what they can


def _sweep(folder, prepared_dir, spec, seeds, retrain=False):
    study = _study(folder, spec, **{"profiles.tiny": {"seeds": seeds, "train": {"epochs": 2}}})
    summary = run_study(study, prepared_dir, folder / "results", retrain=retrain)
    runs = json.loads((folder / "results" / "runs.json").read_text())
    return summary, {(r["tags"]["variant"], r["tags"]["seed"]): r for r in runs}


@pytest.mark.slow
def test_more_seeds_and_one_more_variant_train_only_the_new_trials(tmp_path, prepared_dir, ray_local, capfd):
    spec = {**TINY_SPEC, "search": {"space": {"model.activation": ["relu", "tanh"]}}}
    first, first_runs = _sweep(tmp_path, prepared_dir, spec, seeds=1)
    assert (first["trials_reused"], first["trials_trained"]) == (0, 2)

    more = {**spec, "search": {"space": {"model.activation": ["relu", "tanh", "sigmoid"]}}}
    second, runs = _sweep(tmp_path, prepared_dir, more, seeds=2)
    assert (second["trials_reused"], second["trials_trained"]) == (2, 4)
    assert len(runs) == 6
    c = MlflowClient(second["tracking_uri"])
    for key, old in first_runs.items():
        run = runs[key]
        assert run["run_id"] == old["run_id"] and run["history"] == old["history"]  # the same run, not a copy
        assert c.get_run(run["run_id"]).data.tags["mlflow.parentRunId"] == second["parent_run_id"]
        assert run["tags"]["used_by_sweeps"] == f"{first['parent_run_id']},{second['parent_run_id']}"
    trained = {k: r for k, r in runs.items() if k not in first_runs}
    assert all(r["tags"]["trained_under"] == second["parent_run_id"] for r in trained.values())
    parent = c.get_run(second["parent_run_id"]).data.tags
    assert (parent["trials_reused"], parent["trials_trained"]) == ("2", "4")

    # A reused run whose per-example test results were deleted trains again, saying why; the rest is reused.
    gone = runs[("relu", "1")]["run_id"]
    artifacts = Path(urllib.parse.urlparse(c.get_run(gone).info.artifact_uri).path)
    (artifacts / "test_correct.npy").unlink()
    no_model = runs[("tanh", "0")]
    c.delete_logged_model(no_model["tags"]["best_model_id"])
    capfd.readouterr()
    third, again = _sweep(tmp_path, prepared_dir, more, seeds=2)
    assert (third["trials_reused"], third["trials_trained"]) == (4, 2)
    assert again[("relu", "1")]["run_id"] != gone and again[("tanh", "0")]["run_id"] != no_model["run_id"]
    err = capfd.readouterr().err
    assert f"[s] relu seed 1 trained again instead of reusing run {gone}: its test_correct.npy is gone" in err
    model_line = f"[s] tanh seed 0 trained again instead of reusing run {no_model['run_id']}: its logged model "
    assert model_line in err

    # --retrain (PIPELINE_RETRAIN=1): nothing is reused.
    fourth, retrained = _sweep(tmp_path, prepared_dir, more, seeds=2, retrain=True)
    assert (fourth["trials_reused"], fourth["trials_trained"]) == (0, 6)
    assert not {r["run_id"] for r in retrained.values()} & {r["run_id"] for r in again.values()}


def test_a_run_keeps_its_variant_label_and_its_model_name_replaces_what_mlflow_refuses():
    variant = "lr=0.8,grad_clip=0.05"
    assert trial_name("grad_clipping", variant, 1) == "grad_clipping-lr=0.8,grad_clip=0.05-s1"
    assert model_name("grad_clipping", variant, 1) == "grad_clipping-lr=0_8,grad_clip=0_05-s1"
