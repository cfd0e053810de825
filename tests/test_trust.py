"""Results you can trust: the same inputs give the same numbers, every run says what produced it, nothing
unsafe is ever deserialized, tampered data is refused, and a logged run can be re-trained from its record."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipeline import tracking
from pipeline.config import Study, TrainConfig, load_params, load_study
from pipeline.data import load_prepared, prepare
from pipeline.data.base import LoadContext
from pipeline.errors import ConfigError
from pipeline.models import build_model
from pipeline.tasks import task_for
from pipeline.train import fit
from pipeline.trial import Runtime, run_worker, trial_config, trial_key
from tests.conftest import REPO, TINY_SPEC, write_params, write_spec


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Trials run on one thread (cpus_per_worker: 1), and on a shared 2-core runner two intra-op threads spin
    # against other work: a 1-second fit took 20.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


# Wall-clock and memory readings differ between any two runs; everything else must not.
NOT_DETERMINISTIC = ("epoch_seconds", "samples_per_s", "peak_memory_mb")


def _strip(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in NOT_DETERMINISTIC} for row in history]


# --------------------------------------------------------------------------- same inputs, same numbers


def test_fit_is_deterministic_with_diagnostics_on(prepared_dir):
    data = load_prepared(prepared_dir, "digits")
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.1)  # diagnostics on, as by default

    def run(seed: int) -> list[dict[str, float]]:
        torch.manual_seed(seed)
        model = build_model("mlp", {"hidden": [32, 32]}, data.info)
        return fit(model, data, task_for("classification"), cfg, seed=seed).history

    a, b, c = run(1), run(1), run(2)
    assert any(k.startswith("grad_norm/") for k in a[0])  # the per-layer diagnostics are compared too
    assert _strip(a) == _strip(b)
    assert _strip(a) != _strip(c)


def _runtime(folder: Path, spec: dict) -> Runtime:
    params_path = write_params(folder)
    study = load_study(write_spec(folder, "s", spec), load_params(params_path), str(params_path))
    uri = tracking.resolve_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}", folder)
    exp = tracking.ensure_experiment(uri, study.name, folder)
    parent = tracking.client(uri).create_run(exp).info.run_id
    return Runtime(
        study=study,
        tracking_uri=uri,
        experiment_id=exp,
        parent_run_id=parent,
        sweep_id="trust",
        space_keys=list(study.spec.search.space),
    )


def _logged(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    c = MlflowClient(uri)
    keys = [k for k in c.get_run(run_id).data.metrics if k not in NOT_DETERMINISTIC]
    return {k: sorted((m.step, m.value) for m in c.get_metric_history(run_id, k)) for k in keys}


def test_run_worker_twice_logs_identical_metrics(tmp_path, prepared_dir):
    """Two trials of one config, as a Tune trial runs them (minus Ray), log the same numbers to MLflow."""
    rt = _runtime(tmp_path, {**TINY_SPEC, "search": {"space": {}}})
    data = load_prepared(prepared_dir, "digits")
    runs = {}
    for trial_id, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg, variant, _ = trial_config(rt, {"seed": seed})
        # One sweep runs a configuration once (its trial_key names its run): each trial here is its own sweep.
        sweep = dataclasses.replace(rt, sweep_id=f"trust-{trial_id}")
        run_worker(cfg, variant, sweep, data, trial_id, lambda m, d: None, lambda: None, torch.device("cpu"))
        (run,) = tracking.find_runs(rt.tracking_uri, rt.experiment_id, f"tags.ray_trial_id = '{trial_id}'")
        runs[trial_id] = _logged(rt.tracking_uri, run.info.run_id)
    assert {"train_loss", "val_accuracy", "test_accuracy", "best_val_accuracy"} <= set(runs["a"])
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


# --------------------------------------------------------------------------- every run says what produced it


def _git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, prepared_dir, ray_local):
    """One finished 1-trial sweep through run_study (real Ray, real SQLite store) in a committed git project."""
    from pipeline.sweep import run_study

    folder = tmp_path_factory.mktemp("project")
    params_path = write_params(folder)
    spec = {**TINY_SPEC, "search": {"space": {"model.activation": ["tanh"]}}}
    spec_path = write_spec(folder, "s", spec)
    _git(folder, "init", "-q")
    _git(folder, "add", "params.yaml", "s.yaml")
    _git(folder, "commit", "-q", "-m", "project")
    commit = _git(folder, "rev-parse", "HEAD").strip()
    old = os.environ.get("PIPELINE_ROOT")
    os.environ["PIPELINE_ROOT"] = str(folder)  # git_info and relative stores resolve against the project
    try:
        study = load_study(spec_path, load_params(params_path), str(params_path))
        summary = run_study(study, prepared_dir, folder / "results")
    finally:
        os.environ.pop("PIPELINE_ROOT") if old is None else os.environ.__setitem__("PIPELINE_ROOT", old)
    runs = json.loads((folder / "results" / "runs.json").read_text())
    return {"folder": folder, "commit": commit, "study": study, "summary": summary, "runs": runs}


@pytest.mark.slow
def test_every_run_records_code_data_versions_and_config(tiny_sweep, prepared_dir, tmp_path):
    s = tiny_sweep
    assert s["summary"]["errors"] == 0
    (run,) = s["runs"]
    tags = run["tags"]
    assert tags["mlflow.source.git.commit"] == s["commit"] and tags["git_dirty"] == "false"
    meta = json.loads((prepared_dir / "digits.json").read_text())
    assert tags["data_sha256"] == meta["sha256"] == load_prepared(prepared_dir, "digits").meta["sha256"]
    assert tags["version.torch"] == torch.__version__.split("+")[0]  # the distribution's version, no local tag
    assert {"version.ray", "version.mlflow", "version.numpy"} <= set(tags)
    # The resolved config: the artifact equals what the study resolves for this trial, and the params say the same.
    client = MlflowClient(s["summary"]["tracking_uri"])
    path = client.download_artifacts(run["run_id"], "config.yaml", str(tmp_path))
    expected = s["study"].resolve({"model.activation": "tanh"}, int(tags["seed"])).model_dump()
    assert yaml.safe_load(Path(path).read_text()) == expected
    assert run["params"]["train.epochs"] == str(expected["train"]["epochs"])
    assert run["params"]["model.options.activation"] == "tanh"
    # The sweep's parent run records the commit and the spec as well.
    parent = client.get_run(s["summary"]["parent_run_id"])
    assert parent.data.tags["mlflow.source.git.commit"] == s["commit"]
    assert "spec.search.space.model.activation" in parent.data.params


def test_git_info_sees_commit_and_dirty_tree(tmp_path):
    (tmp_path / "a.txt").write_text("1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "a")
    info = tracking.git_info(tmp_path)
    assert info == {"git_commit": _git(tmp_path, "rev-parse", "HEAD").strip(), "git_dirty": "false"}
    # What the pipeline itself rewrites (dvc.lock, DVC's .gitignore files) does not make the tree dirty.
    for name in ("dvc.lock", "out/.gitignore"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1\n")
        _git(tmp_path, "add", name)
    _git(tmp_path, "commit", "-q", "-m", "lock")
    (tmp_path / "dvc.lock").write_text("2\n")
    (tmp_path / "out" / ".gitignore").write_text("/x\n")
    assert tracking.git_info(tmp_path)["git_dirty"] == "false"
    (tmp_path / "a.txt").write_text("2\n")
    assert tracking.git_info(tmp_path)["git_dirty"] == "true"
    assert tracking.git_info(tmp_path / "..")["git_commit"] in ("unknown", _git(REPO, "rev-parse", "HEAD").strip())


# --------------------------------------------------------------------------- a logged run re-trains to the same numbers


@pytest.mark.slow
def test_rerun_reproduces_a_logged_run(tiny_sweep, prepared_dir, capsys):
    from pipeline.rerun import rerun

    (run,) = tiny_sweep["runs"]
    out = rerun(run["run_id"], tiny_sweep["summary"]["tracking_uri"], prepared_dir)
    assert out["identical"], out
    assert {r["metric"] for r in out["rows"]} >= {"train_loss", "val_loss", "val_accuracy"}
    assert len({r["epoch"] for r in out["rows"]}) == 2
    printed = capsys.readouterr().out
    assert "identical" in printed and "val_accuracy" in printed


@pytest.mark.slow
def test_rerun_refuses_other_data(tiny_sweep, tmp_path):
    from pipeline.rerun import rerun

    other = tmp_path / "prepared"
    prepare("digits", {}, LoadContext(seed=1, root=tmp_path, download=False), other)  # another split
    (run,) = tiny_sweep["runs"]
    with pytest.raises(ConfigError, match="differs from the run's"):
        rerun(run["run_id"], tiny_sweep["summary"]["tracking_uri"], other, echo=False)


def test_rerun_unknown_run_is_one_line(tmp_path):
    from pipeline.rerun import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["0123456789abcdef", "--tracking-uri", uri]) == 2


# --------------------------------------------------------------------------- nothing unsafe is deserialized

SCANNED = ("pipeline", "stages", "benchmarks")
YAML_UNSAFE = {
    "load",
    "load_all",
    "unsafe_load",
    "unsafe_load_all",
    "full_load",
    "full_load_all",
    "Loader",
    "UnsafeLoader",
    "FullLoader",
}


def _source_calls():
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = node.func.value
                    if isinstance(owner, ast.Name):
                        yield path.relative_to(REPO), node.lineno, owner.id, node.func.attr, node
                elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "yaml", "pickle"):
                    for alias in node.names:
                        yield path.relative_to(REPO), node.lineno, node.module, f"import {alias.name}", node


def test_torch_load_always_weights_only():
    seen, bad = 0, []
    for path, line, owner, attr, node in _source_calls():
        if owner == "torch" and attr in ("load", "import load"):
            seen += 1
            kw = {k.arg: k.value for k in getattr(node, "keywords", [])}
            ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
            if not ok:
                bad.append(f"{path}:{line}")
    assert seen >= 2, "the scan found no torch.load at all: is it looking in the right place?"
    assert not bad, f"torch.load without weights_only=True at {bad}"


def test_yaml_safe_load_only_and_no_pickle():
    bad = []
    for path, line, owner, attr, _ in _source_calls():
        name = attr.removeprefix("import ")  # `yaml.load(...)` and `from yaml import load` alike
        if (owner == "yaml" and name in YAML_UNSAFE) or (owner == "pickle" and name in ("load", "loads")):
            bad.append(f"{path}:{line} {owner}.{name}")
    assert not bad, f"unsafe deserialization at {bad}"


# --------------------------------------------------------------------------- tampered data is refused


def _tampered(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    pt, meta = dst / "digits.pt", dst / "digits.json"
    if how == "data":
        raw = bytearray(pt.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
        pt.write_bytes(bytes(raw))
    else:
        m = json.loads(meta.read_text())
        m["sha256"] = "0" * 64
        meta.write_text(json.dumps(m))
    return dst


@pytest.mark.parametrize("how", ["data", "metadata"])
def test_checksum_mismatch_is_refused(prepared_dir, tmp_path, how):
    folder = _tampered(prepared_dir, tmp_path / "prepared", how)
    with pytest.raises(ConfigError) as e:
        load_prepared(folder, "digits")
    msg = str(e.value)
    assert "checksum does not match" in msg and str(folder / "digits.pt") in msg and "\n" not in msg


def test_study_stage_refuses_tampered_data_before_writing_anything(prepared_dir, tmp_path, capsys):
    import importlib.util

    folder = _tampered(prepared_dir, tmp_path / "prepared", "data")
    spec = importlib.util.spec_from_file_location("study_stage", REPO / "stages" / "study.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    params = write_params(tmp_path)
    code = stage.main(
        [
            "--params",
            str(params),
            "--study",
            str(write_spec(tmp_path, "s", TINY_SPEC)),
            "--data",
            str(folder),
            "--out",
            str(tmp_path / "results"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checksum does not match" in err[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, capsys):
    from pipeline.trial import save_checkpoint
    from pipeline.tune.trainable import _readable_checkpoint

    trial = tmp_path / "trial"
    for i in (2, 3):
        (trial / f"checkpoint_00000{i}").mkdir(parents=True)
        save_checkpoint({"history": [{"epoch": float(e)} for e in range(1, i + 1)]}, trial / f"checkpoint_00000{i}")
    (trial / "checkpoint_000004").mkdir()
    (trial / "checkpoint_000004" / "state.pt").write_bytes(b"truncated")
    gone = trial / "checkpoint_000001"  # what Tune's saved state points to, gone since

    def fetch(path=gone):
        if not path.exists():
            raise FileNotFoundError(path)
        return str(path)

    assert _readable_checkpoint(str(gone), fetch) == str(trial / "checkpoint_000003")
    assert "checkpoint_000001 unreadable" in capsys.readouterr().err
    ok = trial / "checkpoint_000002"
    assert _readable_checkpoint(str(ok), lambda: str(ok)) == str(ok)
    shutil.rmtree(trial / "checkpoint_000002")
    shutil.rmtree(trial / "checkpoint_000003")
    assert _readable_checkpoint(str(gone), fetch) is None
    assert "training from epoch 1" in capsys.readouterr().err


def test_a_grid_trial_names_its_run_by_its_configuration_not_by_tune(tmp_path):
    """Tune starts a sweep it cannot restore over with new trial ids; the grid trial's key stays the same."""
    rt = _runtime(tmp_path, {**TINY_SPEC, "search": {"space": {"model.activation": ["relu", "tanh"]}}})
    key = {
        (trial_id, act, seed): trial_key(rt, trial_config(rt, {"model.activation": act, "seed": seed})[0], trial_id)
        for trial_id in ("a", "b")
        for act in ("relu", "tanh")
        for seed in (0, 1)
    }
    assert key["a", "relu", 0] == key["b", "relu", 0]
    assert len({k for (trial_id, *_), k in key.items() if trial_id == "a"}) == 4
    spec = rt.study.spec.model_copy(update={"search": rt.study.spec.search.model_copy(update={"algorithm": "random"})})
    sampled = dataclasses.replace(rt, study=Study(rt.study.name, rt.study.path, spec, rt.study.params))
    cfg = trial_config(sampled, {"model.activation": "relu", "seed": 0})[0]
    assert trial_key(sampled, cfg, "a") == "a"  # a sampled search may suggest one point twice
