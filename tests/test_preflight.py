"""pipeline.preflight: every profile, every value and every service checked before anything runs, writing nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from pipeline import preflight as pf
from pipeline.config import TrainConfig
from pipeline.datainfo import DataInfo, InputKind
from pipeline.preflight.__main__ import main as preflight_main
from tests.conftest import REPO, TINY_SPEC, free_port, write_params, write_spec

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch) -> None:
    for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "PIPELINE_ROOT"):
        monkeypatch.delenv(var, raising=False)


def make_project(folder: Path, specs: dict[str, dict] | None = None, **params) -> Path:
    """params.yaml (tiny profile, stores under `folder`) and experiments/<name>.yaml for each spec."""
    specs = {"s": TINY_SPEC} if specs is None else specs
    (folder / "experiments").mkdir(parents=True, exist_ok=True)
    for name, spec in specs.items():
        write_spec(folder / "experiments", name, spec)
    write_params(folder, **{"studies": list(specs), **params})
    return folder


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def run(folder: Path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python -m pipeline.preflight` in `folder` (in-process); its exit code and its one output line.
    Asserts that nothing in the folder changed."""
    monkeypatch.chdir(folder)
    before = listing(folder)
    code = preflight_main(list(args))
    out, err = capsys.readouterr()
    assert listing(folder) == before
    assert not (folder / "mlflow.db").exists()
    lines = (err if code else out).strip().splitlines()
    assert len(lines) == 1, err + out
    return code, lines[0]


def refused(folder: Path, monkeypatch, capsys, *args: str) -> str:
    code, line = run(folder, monkeypatch, capsys, *args)
    assert code == 2, line
    return line


def spec(**changes) -> dict:
    return {**TINY_SPEC, **changes}


# --------------------------------------------------------------------------- the real config


def test_repo_config_passes_from_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.preflight", "--no-services"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    n = len(yaml.safe_load((REPO / "params.yaml").read_text())["studies"])
    assert proc.stdout.startswith(f"preflight ok: {n} studies, profiles default, tiny, full"), proc.stdout


def test_repo_config_passes_with_services(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    assert preflight_main([]) == 0, capsys.readouterr().err
    n = len(yaml.safe_load((REPO / "params.yaml").read_text())["studies"])
    assert capsys.readouterr().out.startswith(f"preflight ok: {n} studies")


def test_a_tiny_project_passes_with_services_and_writes_nothing(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path)
    code, line = run(tmp_path, monkeypatch, capsys)
    assert (code, line) == (0, "preflight ok: 1 studies, profiles default, tiny, full")


# --------------------------------------------------------------------------- 1. every profile, the right file


def test_a_missing_study_file_names_its_studies_entry(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path)
    write_params(tmp_path, studies=["s", "nope"])
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line == "error: params.yaml: studies.1: experiments/nope.yaml does not exist; studies there: s"


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"defaults.train.epochz": 3}, "params.yaml: defaults.train.epochz: unknown key; allowed: epochs,"),
        ({"defaults.metricz": "val_loss"}, "params.yaml: defaults.metricz: unknown key; allowed: question,"),
        # an inactive profile, and a key only the model family knows: load_study would blame the study file
        ({"profiles.full.model.hiddn": [8]}, "params.yaml: profiles.full.model.hiddn: unknown key; allowed: hidden,"),
        ({"profiles.full.dataset.name": "mnistt"}, "params.yaml: profiles.full.dataset.name: unknown dataset 'mnistt'"),
    ],
)
def test_a_bad_key_in_params_layers_is_blamed_on_params(tmp_path, monkeypatch, capsys, params, expected) -> None:
    make_project(tmp_path, **params)
    assert refused(tmp_path, monkeypatch, capsys, "--no-services").startswith(f"error: {expected}")


def test_an_inactive_study_profile_is_checked(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, {"s": spec(profiles={"full": {"model": {"activation": "relux"}}})})
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith("error: experiments/s.yaml: profiles.full.model.activation: Input should be"), line


def test_every_profile_resolves_its_space(tmp_path, monkeypatch, capsys) -> None:
    """The full profile swaps the data set: an axis value that only fails there is found."""
    s = spec(
        model={"name": "mlp", "hidden": [8]},
        search={"space": {"model.name": ["mlp", "lenet"]}},
        profiles={"full": {"dataset": {"name": "synthetic"}}},
    )
    make_project(tmp_path, {"s": s})
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith("error: experiments/s.yaml: search.space.model.name: search value 'lenet': model.name: ")
    assert line.endswith("(profile full)")


# --------------------------------------------------------------------------- 2. duplicate keys


def test_a_duplicate_key_in_params_is_refused(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path)
    text = (tmp_path / "params.yaml").read_text() + "seed: 3\n"
    (tmp_path / "params.yaml").write_text(text)
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line == f"error: params.yaml: seed: duplicate key (line {len(text.splitlines())})"


def test_a_nested_duplicate_key_in_a_study_is_refused(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path)
    (tmp_path / "experiments" / "s.yaml").write_text(
        "question: q\nmodel:\n  name: mlp\n  hidden: [8]\n  hidden: [16]\ndataset: {name: digits}\n"
    )
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line == "error: experiments/s.yaml: model.hidden: duplicate key (line 5)"


def test_read_yaml_strict_keeps_anchors_and_merge_keys(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\nagain: *b\n")
    assert pf.read_yaml_strict(path) == {"base": {"x": 1}, "other": {"x": 1, "y": 2}, "again": {"x": 1}}


# --------------------------------------------------------------------------- 3. metrics, fit, values, distributions


VAL_LIST = "val_loss, val_accuracy, train_loss, train_grad_norm, epoch_seconds, samples_per_s, lr, peak_memory_mb"


@pytest.mark.parametrize(
    "study,params,expected",
    [
        (
            spec(metric="val_perplexity"),
            {},
            "experiments/s.yaml: metric: 'val_perplexity' is not reported by task classification "
            f"(model 'mlp' on 'digits'); allowed: {VAL_LIST}",
        ),
        (spec(target={"metric": "val_f1", "value": 0.5}), {}, "experiments/s.yaml: target.metric: 'val_f1' is not"),
        (spec(), {"defaults.metric": "val_f1"}, "params.yaml: defaults.metric: 'val_f1' is not reported"),
        (
            spec(
                model={"name": "vae"},
                dataset={"name": "unit_images"},
                metric="val_kl",
                mode="min",
                search={"space": {"model.name": ["vae", "autoencoder"]}},
            ),
            {},
            # the search value that brings the task in is blamed, as for any other value that fails a trial
            "experiments/s.yaml: search.space.model.name: search value 'autoencoder': metric: 'val_kl' is not "
            "reported by task autoencoder (model 'autoencoder' on 'unit_images'); allowed: val_loss, val_recon_bce,",
        ),
    ],
)
def test_the_metric_must_be_one_the_task_reports(tmp_path, monkeypatch, capsys, study, params, expected) -> None:
    make_project(tmp_path, {"s": study}, **params)
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith(f"error: {expected}"), line


@pytest.mark.parametrize(
    "model,dataset,space,key,why",
    [
        ("lenet", "two_class", {}, "model.name", "it takes image inputs and 'two_class' gives vector inputs; "),
        ("mlp", "two_class", {"model.name": ["mlp", "resnet"]}, "search.space.model.name", "it takes image inputs"),
        ("lstm_lm", "grammar_pos", {}, "model.name", "it is a language_model model and 'grammar_pos' is labelled"),
        ("mlp", "grammar_lm", {}, "model.name", "it takes any inputs and 'grammar_lm' gives tokens inputs"),
        ("vae", "digits", {}, "model.name", "it takes generative inputs and 'digits' gives image inputs"),
    ],
)
def test_the_model_must_fit_the_data_set(tmp_path, monkeypatch, capsys, model, dataset, space, key, why) -> None:
    s = spec(model={"name": model}, dataset={"name": dataset}, search={"space": space}, metric="val_loss", mode="min")
    make_project(tmp_path, {"s": s})
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith(f"error: experiments/s.yaml: {key}: "), line
    assert why in line and "models that fit it: " in line


def test_lenet_on_two_class_lists_the_models_that_fit(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, {"s": spec(model={"name": "lenet"}, dataset={"name": "two_class"}, search={})})
    assert refused(tmp_path, monkeypatch, capsys, "--no-services") == (
        "error: experiments/s.yaml: model.name: model 'lenet' does not fit data set 'two_class': it takes image "
        "inputs and 'two_class' gives vector inputs; models that fit it: linear, mlp, polynomial, rnn_classifier"
    )


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "study,params,expected",
    [
        ({"train": {"epochs": 2, "lr": INF}}, {}, "experiments/s.yaml: train.lr: must be a finite number (got inf)"),
        ({"train": {"epochs": 2, "weight_decay": NAN}}, {}, "experiments/s.yaml: train.weight_decay: must be a finite"),
        ({"train": {"epochs": 2, "grad_clip": INF}}, {}, "experiments/s.yaml: train.grad_clip: must be a finite"),
        ({"train": {"epochs": 2, "momentum": True}}, {}, "experiments/s.yaml: train.momentum: must be a finite number"),
        (
            {"train": {"epochs": True}},
            {},
            "experiments/s.yaml: train.epochs: must be an integer from 1 to 10,000 (got true, a YAML boolean)",
        ),
        ({"train": {"epochs": 20_000}}, {}, "experiments/s.yaml: train.epochs: must be an integer from 1 to 10,000"),
        ({"train": {"batch_size": 2_000_000}}, {}, "experiments/s.yaml: train.batch_size: must be an integer from 1"),
        (
            {"model": {"name": "mlp", "hidden": [-5]}},
            {},
            "experiments/s.yaml: model.hidden.0: must be an integer from 1 to 65,536 (got -5)",  # the list's item 0
        ),
        ({"model": {"name": "mlp", "hidden": [100_000]}}, {}, "experiments/s.yaml: model.hidden.0: must be an integer"),
        ({"model": {"name": "resnet", "width": True}}, {}, "experiments/s.yaml: model.width: must be an integer"),
        ({"seeds": 5000}, {}, "experiments/s.yaml: seeds: must be an integer from 1 to 1,000 (got 5000)"),
        ({"seeds": True}, {}, "experiments/s.yaml: seeds: must be an integer from 1 to 1,000 (got true"),
        (
            {"search": {"algorithm": "random", "num_samples": 5000, "space": {}}},
            {},
            "experiments/s.yaml: search.num_samples: must be an integer from 1 to 1,000",
        ),
        ({"dataset": {"name": "two_class", "noise": INF}}, {}, "experiments/s.yaml: dataset.noise: must be a finite"),
        (
            {},
            {"defaults.train.epochs": True},
            "params.yaml: defaults.train.epochs: must be an integer from 1 to 10,000",
        ),
        ({}, {"profiles.full.train.lr": INF}, "params.yaml: profiles.full.train.lr: must be a finite number (got inf)"),
        ({}, {"profiles.full.model.hidden": [0]}, "params.yaml: profiles.full.model.hidden.0: must be an integer from"),
        (
            {"profiles": {"full": {"train": {"batch_size": True}}}},
            {},
            "experiments/s.yaml: profiles.full.train.batch_size: must be an integer",
        ),
        (
            {"search": {"space": {"train.epochs": [2, True]}}},
            {},
            "experiments/s.yaml: search.space.train.epochs: search value True: train.epochs: must be an integer",
        ),
        (
            {"search": {"space": {"model.hidden": [[8], [8, -1]]}}},
            {},
            "experiments/s.yaml: search.space.model.hidden: search value [8, -1]: model.hidden.1: must be an integer",
        ),
    ],
)
def test_values_a_schema_lets_through_are_refused(tmp_path, monkeypatch, capsys, study, params, expected) -> None:
    make_project(tmp_path, {"s": {**TINY_SPEC, **study}}, **params)
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith(f"error: {expected}"), line


@pytest.mark.parametrize(
    "axis,dist,message",
    [
        ("train.lr", {"loguniform": [0.1, 0.01]}, "loguniform needs [low, high] with finite low < high and low > 0"),
        ("train.weight_decay", {"loguniform": [0, 0.1]}, "loguniform needs [low, high] with finite low < high and low"),
        (
            "train.momentum",
            {"uniform": [0.5, INF]},
            "uniform needs [low, high] with finite low < high (got [0.5, inf])",
        ),
        ("train.momentum", {"uniform": [0.9, 0.1]}, "uniform needs [low, high] with finite low < high"),
        (
            "train.batch_size",
            {"randint": [64, 16]},
            "randint needs [low, high] with integers low < high (got [64, 16])",
        ),
        ("train.batch_size", {"randint": [16.5, 64]}, "randint needs [low, high] with integers low < high"),
        ("model.activation", {"choice": []}, "choice needs a non-empty list of values"),
        ("model.activation", [], "needs at least one value"),
    ],
)
def test_distributions_must_be_well_formed(tmp_path, monkeypatch, capsys, axis, dist, message) -> None:
    make_project(tmp_path, {"s": spec(search={"algorithm": "random", "num_samples": 2, "space": {axis: dist}})})
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith(f"error: experiments/s.yaml: search.space.{axis}: {message}"), line


# --------------------------------------------------------------------------- 3b. report sections


def test_a_report_section_typo_is_refused(tmp_path, monkeypatch, capsys) -> None:
    from pipeline.sections import list_sections

    make_project(tmp_path, {"s": spec(report=["recurrent_paramz"])})
    assert refused(tmp_path, monkeypatch, capsys, "--no-services") == (
        "error: experiments/s.yaml: report.0: unknown report section 'recurrent_paramz'; "
        f"allowed: {', '.join(list_sections())}"
    )
    # The library call without `check_report` (the study stage's: the specs stage before it checked them) passes.
    pf.preflight(tmp_path / "params.yaml", tmp_path / "experiments", services=False)


def test_a_report_section_typo_in_an_inactive_profile_is_blamed_there(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, {"s": spec(report=["capacity"], profiles={"full": {"report": ["capacity", "nope"]}})})
    line = refused(tmp_path, monkeypatch, capsys, "--no-services")
    assert line.startswith("error: experiments/s.yaml: profiles.full.report.1: unknown report section 'nope'; "), line


# --------------------------------------------------------------------------- the registry entries against the code


def test_every_data_set_declares_a_known_input_kind_and_task() -> None:
    from typing import get_args

    from pipeline.data import DATASETS
    from pipeline.models import MODELS
    from pipeline.tasks import TASKS

    for name in DATASETS.names():
        meta = DATASETS.get(name).meta
        assert meta["inputs"] in get_args(InputKind) and meta["task"] in TASKS.names(), name
    for name in MODELS.names():  # and every family that fixes its task names a registered one
        assert MODELS.get(name).meta["task"] in [None, *TASKS.names()], name


@pytest.mark.parametrize(
    "name,options",
    [
        ("digits", {}),
        ("synthetic", {}),
        ("poly_regression", {}),
        ("two_class", {}),
        ("unit_images", {}),
        ("grammar_lm", {"n_sentences": 60}),
        ("grammar_pos", {"n_sentences": 60}),
        ("grammar_sentiment", {"n_sentences": 60}),
    ],
)
def test_data_kinds_match_the_offline_loaders(tmp_path, name, options) -> None:
    from pipeline.data import DATASETS
    from pipeline.data.base import LoadContext

    splits = DATASETS.build(name, options, LoadContext(seed=0, root=tmp_path, download=False))
    x = splits.x_train
    if x.dtype == torch.long:
        inputs = "tokens"
    elif x.ndim == 4:
        inputs = "unit_image" if splits.info.extra.get("normalize") is False else "image"
    else:
        inputs = "vector"
    meta = DATASETS.get(name).meta
    assert (meta["inputs"], meta["task"]) == (inputs, splits.info.task)


class _Const(nn.Module):
    """An output of a fixed shape per sample, from one parameter: enough for a task's sums."""

    def __init__(self, *shape: int):
        super().__init__()
        self.p = nn.Parameter(torch.randn(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p.expand(len(x), *self.p.shape)


def _batch(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from pipeline.models import MODELS

    torch.manual_seed(0)
    x = torch.randn(6, 3)
    if kind in ("autoencoder", "vae", "gan"):
        return MODELS.build(kind, {}, DataInfo((1, 8, 8), 10)), torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    if kind == "binary":
        return _Const(1), x, torch.randint(0, 2, (6, 1)).float()
    if kind == "regression":
        return _Const(1), x, torch.randn(6, 1)
    if kind == "language_model":
        return _Const(5, 7), x, torch.randint(0, 7, (6, 5))
    if kind == "tagging":
        return _Const(5, 7), x, torch.stack([torch.randint(0, 7, (6, 5)), torch.randint(0, 2, (6, 5))], -1)
    return _Const(4), x, torch.randint(0, 4, (6,))


def test_task_metrics_are_what_each_task_reports() -> None:
    """Every task's registered metrics recomputed from the task: a train step's and an evaluation's finalized sums."""
    from pipeline.tasks import TASKS, task_for

    for kind in TASKS.names():
        task, (model, x, y) = task_for(kind), _batch(kind)
        cfg = TrainConfig()
        model.train()
        train = task.finalize(task.train_step(model, x, y, task.optimizers(model, cfg), cfg), "train")
        model.eval()
        with torch.no_grad():
            val = task.finalize(task.batch_sums(model(x), y), "val")
        expected_train, expected_val = TASKS.get(kind).meta["train"], TASKS.get(kind).meta["val"]
        assert sorted(train) == sorted(f"train_{k}" for k in expected_train), kind
        assert sorted(val) == sorted(f"val_{k}" for k in expected_val), kind


# --------------------------------------------------------------------------- 4. services (local)


def test_a_typoed_sqlite_folder_is_refused_not_created(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"mlflow.tracking_uri": f"sqlite:///{tmp_path}/typo/mlflow.db"})
    assert refused(tmp_path, monkeypatch, capsys) == (
        f"error: params.yaml: mlflow.tracking_uri: folder {tmp_path}/typo does not exist "
        f"(sqlite:///{tmp_path}/typo/mlflow.db); create it or fix the path"
    )
    assert not (tmp_path / "typo").exists()


def test_mlflow_tracking_uri_is_honoured(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///typo/mlflow.db")  # relative: under the project root
    line = refused(tmp_path, monkeypatch, capsys)
    assert line.startswith(f"error: params.yaml: mlflow.tracking_uri: folder {tmp_path}/typo does not exist")
    assert line.endswith("(from MLFLOW_TRACKING_URI)")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"mlflow.tracking_uri": "sqlite:///notes.db"})
    (tmp_path / "notes.db").write_text("not a database\n")
    assert refused(tmp_path, monkeypatch, capsys) == (
        f"error: params.yaml: mlflow.tracking_uri: {tmp_path}/notes.db cannot be the tracking store: "
        "it is not an SQLite database"
    )


def test_an_existing_sqlite_store_is_read_without_being_changed(tmp_path, monkeypatch, capsys) -> None:
    import sqlite3

    con = sqlite3.connect(tmp_path / "mine.db")
    con.execute("CREATE TABLE experiments (name TEXT)")
    con.commit()
    con.close()
    make_project(tmp_path, **{"mlflow.tracking_uri": "sqlite:///mine.db"})
    assert run(tmp_path, monkeypatch, capsys)[0] == 0


def test_one_reading_of_a_local_store_uri_with_a_space_and_percent_encoding(tmp_path, monkeypatch, capsys) -> None:
    """resolve_tracking_uri, store_answers and the preflight read a sqlite/file URI alike, and as SQLAlchemy (which
    MLflow opens a sqlite store with) reads it: percent-decoded, without the `?query`."""
    from sqlalchemy.engine import make_url

    from pipeline import tracking

    folder = tmp_path / "my store%41"  # a space, and a percent sign that must not be decoded again
    folder.mkdir()
    uri = "sqlite:///my%20store%2541/mlflow.db?timeout=5"  # relative: under the project folder
    resolved = tracking.resolve_tracking_uri(uri, tmp_path)
    db = folder / "mlflow.db"
    assert tracking.local_store_path(resolved) == db and make_url(resolved).database == str(db)
    assert resolved.endswith("?timeout=5")
    assert tracking.local_store_path(folder.as_uri()) == folder  # a file: store, percent-encoded by as_uri
    assert tracking.resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"

    make_project(tmp_path, **{"mlflow.tracking_uri": uri})
    assert not tracking.store_answers(resolved)
    assert run(tmp_path, monkeypatch, capsys)[0] == 0  # the folder is found; nothing is created in it
    assert list(folder.iterdir()) == []
    db.touch()
    assert tracking.store_answers(resolved) and run(tmp_path, monkeypatch, capsys)[0] == 0


def test_an_unknown_tracking_scheme_is_refused(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"mlflow.tracking_uri": "postgresql://db/mlflow"})
    assert refused(tmp_path, monkeypatch, capsys) == (
        "error: params.yaml: mlflow.tracking_uri: unsupported tracking store scheme 'postgresql' "
        "(postgresql://db/mlflow); allowed: sqlite:///, file:, http://, https://"
    )


# A refusal that must not wait for its service's timeout (10 s by default) or hang: a generous bound, so that a busy
# 2-core machine cannot miss it, which still fails if a probe waits for anything like a hung service.
BOUNDED_S = 30


def test_a_dead_tracking_server_is_refused_at_once(tmp_path, monkeypatch, capsys) -> None:
    port = free_port()
    make_project(tmp_path, **{"mlflow.tracking_uri": f"http://127.0.0.1:{port}"})
    t0 = time.monotonic()
    line = refused(tmp_path, monkeypatch, capsys)
    assert time.monotonic() - t0 < BOUNDED_S
    assert line.startswith(
        f"error: params.yaml: mlflow.tracking_uri: no MLflow server answers at http://127.0.0.1:{port}/health "
        "within 10 s ("
    )


def test_a_silent_tracking_server_is_refused_within_the_timeout(tmp_path, monkeypatch, capsys) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        make_project(tmp_path, **{"mlflow.tracking_uri": f"http://127.0.0.1:{port}"})
        t0 = time.monotonic()
        line = refused(tmp_path, monkeypatch, capsys, "--timeout", "2")
        assert time.monotonic() - t0 < BOUNDED_S
    assert line.startswith(
        f"error: params.yaml: mlflow.tracking_uri: no MLflow server answers at http://127.0.0.1:{port}"
    )
    assert "within 2 s (timed out)" in line


def test_a_storage_path_under_a_file_is_refused(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    make_project(tmp_path, **{"ray.storage_path": str(tmp_path / "afile" / "results")})
    assert refused(tmp_path, monkeypatch, capsys) == (
        f"error: params.yaml: ray.storage_path: {tmp_path}/afile is not a folder (storage path "
        f"{tmp_path}/afile/results)"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_worker_is_refused_on_a_machine_without_one(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"ray.gpus_per_worker": 1})
    assert refused(tmp_path, monkeypatch, capsys) == (
        "error: params.yaml: ray.gpus_per_worker: one worker needs 1 GPU; this machine has 0 (study s, profile tiny)"
    )


def test_more_workers_than_cpus_are_refused(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"ray.workers_per_trial": 3, "ray.num_cpus": 2})
    assert refused(tmp_path, monkeypatch, capsys) == (
        "error: params.yaml: ray.workers_per_trial: one trial needs 3 workers x 1 CPU = 3 CPU; this machine has 2 "
        "(study s, profile tiny)"
    )


def test_a_study_resource_override_is_blamed_on_the_study(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, {"s": spec(profiles={"full": {"resources": {"cpus_per_worker": 8}}})}, **{"ray.num_cpus": 2})
    assert refused(tmp_path, monkeypatch, capsys) == (
        "error: experiments/s.yaml: profiles.full.resources.cpus_per_worker: one worker needs 8 CPU; this machine "
        "has 2 (study s, profile full)"
    )


@pytest.mark.parametrize("via_env", [False, True])
def test_a_dead_ray_address_fails_in_seconds(tmp_path, monkeypatch, capsys, via_env) -> None:
    if via_env:
        make_project(tmp_path)
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    else:
        make_project(tmp_path, **{"ray.address": "127.0.0.1:9"})
    t0 = time.monotonic()
    line = refused(tmp_path, monkeypatch, capsys)
    assert time.monotonic() - t0 < BOUNDED_S
    assert line.startswith("error: params.yaml: ray.address: no Ray cluster answers at 127.0.0.1:9 within 10 s")
    assert line.endswith("(from RAY_ADDRESS)") == via_env


@pytest.mark.slow
def test_an_open_port_without_ray_is_refused_in_bounded_time(tmp_path, monkeypatch, capsys) -> None:
    with socket.socket() as silent:  # the TCP connect succeeds; no Ray answers behind it
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        make_project(tmp_path, **{"ray.address": f"127.0.0.1:{port}"})
        t0 = time.monotonic()
        line = refused(tmp_path, monkeypatch, capsys, "--timeout", "2")
        assert time.monotonic() - t0 < 2 + pf.PYTHON_START_S + BOUNDED_S
    assert line == (
        f"error: params.yaml: ray.address: no Ray cluster answers at 127.0.0.1:{port}: a Ray driver could not "
        f"connect (no answer within {2 + pf.PYTHON_START_S:g} s)"
    )


def test_no_services_skips_them(tmp_path, monkeypatch, capsys) -> None:
    make_project(tmp_path, **{"ray.address": "127.0.0.1:9", "mlflow.tracking_uri": "postgresql://db/x"})
    assert run(tmp_path, monkeypatch, capsys, "--no-services") == (
        0,
        "preflight ok: 1 studies, profiles default, tiny, full (services not checked)",
    )


# --------------------------------------------------------------------------- 4. services (real ones)


def _env(**extra: str) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "PIPELINE_ROOT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


@pytest.mark.slow
def test_a_live_tracking_server_passes(tmp_path, monkeypatch, capsys, mlflow_server) -> None:
    url, _ = mlflow_server
    make_project(tmp_path, **{"mlflow.tracking_uri": url})
    assert run(tmp_path, monkeypatch, capsys)[0] == 0
    make_project(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # the environment wins over params.yaml
    assert run(tmp_path, monkeypatch, capsys)[0] == 0


# --------------------------------------------------------------------------- 4. a real two-node cluster

_WAIT_FOR_NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.time() + 150
while True:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) == 2 or time.time() > deadline:
        break
    time.sleep(1)
workers = [n for n in nodes if "node:__internal_head__" not in n["Resources"]]
print(json.dumps([[n["NodeID"], n["NodeManagerAddress"]] for n in workers]))
"""


def _ray_processes(marker: str) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory) -> Iterator[dict]:
    """A head node and a second node that sees its own copy of the project folder (a private mount namespace):
    what a second machine with a local disk sees. One CPU each, token auth on, Ray temp files in a private
    folder; every process of both nodes is found by that folder, killed by id, and the folder removed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    base = tmp_path_factory.mktemp("cluster")
    # the defaults of params.yaml: a store and a results folder inside the project
    project = make_project(
        base / "project", **{"mlflow.tracking_uri": "sqlite:///mlflow.db", "ray.storage_path": "ray_results"}
    )
    copy = base / "copy"
    shutil.copytree(project, copy)
    port = free_port()
    temp = Path(f"/tmp/rp{os.getpid()}_{port}")  # short: Ray's socket paths have a length limit
    env = _env(RAY_AUTH_MODE="token")
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    ray = str(BIN / "ray")
    node2 = None
    try:
        check = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
        if check.returncode != 0:
            pytest.skip(f"unshare -m is not permitted here: {check.stderr.strip()}")
        subprocess.run(
            [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        inner = f"mount --bind {copy} {project} && exec {ray} start --address={address} {' '.join(common)} --block"
        node2 = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "bash", "-c", inner],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(base / "node2.log").open("w"),
            start_new_session=True,
        )
        ids = subprocess.run(
            [sys.executable, "-c", _WAIT_FOR_NODES, address], env=env, capture_output=True, text=True, timeout=240
        )
        if node2.poll() is not None:
            pytest.skip(f"the second node did not start: {(base / 'node2.log').read_text()[-500:]}")
        assert ids.returncode == 0, ids.stderr[-2000:]
        ((node_id, ip),) = json.loads(ids.stdout.strip().splitlines()[-1])
        yield {"address": address, "project": project, "base": base, "node2": node_id, "ip": ip}
    finally:
        if node2 is not None and node2.poll() is None:
            os.killpg(node2.pid, signal.SIGKILL)
            node2.wait(timeout=30)
        for p in _ray_processes(str(temp)):
            p.kill()
        deadline = time.time() + 30
        while _ray_processes(str(temp)) and time.time() < deadline:
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)
        left = [" ".join(p.cmdline())[:120] for p in _ray_processes(str(temp))]
        assert not left, left
        current = Path("/tmp/ray/ray_current_cluster")
        assert not (current.exists() and address in current.read_text()), "ray_current_cluster left behind"


def _on_cluster(cluster: dict, monkeypatch, capsys, *args: str) -> tuple[int, str, float]:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_ADDRESS", cluster["address"])
    t0 = time.monotonic()
    code, line = run(cluster["project"], monkeypatch, capsys, *args)
    return code, line, time.monotonic() - t0


@pytest.mark.slow
def test_a_local_sqlite_store_is_refused_on_a_cluster(two_nodes, monkeypatch, capsys) -> None:
    code, line, seconds = _on_cluster(two_nodes, monkeypatch, capsys)
    assert code == 2 and seconds < 2 * BOUNDED_S + 60, (line, seconds)
    db = two_nodes["project"] / "mlflow.db"
    assert line.startswith(
        f"error: params.yaml: mlflow.tracking_uri: node {two_nodes['ip']} (id {two_nodes['node2'][:12]}) cannot open "
        f"the tracking store sqlite:///{db} ("
    ), line
    assert line.endswith(
        "a sqlite file is local to one machine); use an MLflow server reachable from every node (docs/cluster.md)"
    )


@pytest.mark.slow
def test_a_storage_path_that_is_not_shared_is_refused(two_nodes, mlflow_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server[0])
    code, line, _ = _on_cluster(two_nodes, monkeypatch, capsys)
    assert code == 2
    assert line.startswith(
        f"error: params.yaml: ray.storage_path: node {two_nodes['ip']} (id {two_nodes['node2'][:12]}) cannot use "
        f"{two_nodes['project']} ("
    ), line
    assert line.endswith("ray.storage_path must be a shared folder, the same on every node (docs/cluster.md)")


@pytest.mark.slow
def test_a_server_and_a_shared_storage_path_pass_on_a_cluster(two_nodes, mlflow_server, monkeypatch, capsys) -> None:
    shared = two_nodes["base"] / "shared"
    shared.mkdir(exist_ok=True)
    params = write_params(two_nodes["base"], studies=["s"], **{"ray.storage_path": str(shared / "ray_results")})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server[0])
    experiments = str(two_nodes["project"] / "experiments")
    code, line, seconds = _on_cluster(
        two_nodes, monkeypatch, capsys, "--params", str(params), "--experiments", experiments
    )
    assert (code, line) == (0, "preflight ok: 1 studies, profiles default, tiny, full"), seconds
    assert list(shared.iterdir()) == []  # its probe files are gone
