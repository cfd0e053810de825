"""Faults: a killed trial process, a killed sweep driver, a diverging trial, ASHA-stopped trials."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from pipeline.config import load_params, load_study
from pipeline.sweep import run_study
from tests.conftest import SERIAL_TRIALS, TINY_SPEC, study_stage, sweep_store_made, wait_for, write_params, write_spec

pytestmark = pytest.mark.slow


def _study(tmp_path, spec, **params_over):
    # These tests set their own epochs: the tiny profile keeps only its single seed.
    params_over.setdefault("profiles.tiny", {"seeds": 1})
    params_path = write_params(tmp_path, **params_over)
    spec_path = write_spec(tmp_path, "s", spec)
    return load_study(spec_path, load_params(params_path), str(params_path)), params_path, spec_path


def _child_runs(uri):
    client = MlflowClient(uri)
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps]) if exps else []
    return [r for r in runs if r.data.tags.get("sweep_parent") != "true"]


def _epoch_steps(uri, run_id):
    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, "epoch")]


def test_killed_trial_process_retries_from_its_checkpoint(tmp_path, prepared_dir, ray_local, monkeypatch):
    # The sweep must log to this test's store, the one polled below: an earlier in-process sweep (any test file's)
    # leaves MLFLOW_TRACKING_URI set in this process (mlflow.set_tracking_uri does), and it wins over params.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = {
        **TINY_SPEC,
        "model": {"name": "mlp", "hidden": [256, 256], "activation": "relu"},
        "search": {"space": {"model.activation": ["relu"]}},
        "train": {"epochs": 60, "lr": 0.05},
    }
    study, _, _ = _study(tmp_path, spec)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(run_study(study, prepared_dir, tmp_path / "results")))
    t.start()

    def running_at_epoch_5():
        if not sweep_store_made(tmp_path):
            return None
        try:
            runs = [r for r in _child_runs(uri) if r.info.status == "RUNNING"]
        except Exception:  # store not created yet
            return None
        return next((r for r in runs if r.data.metrics.get("epoch", 0) >= 5 and "pid" in r.data.tags), None)

    victim = wait_for(running_at_epoch_5)
    os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)
    t.join(timeout=600)
    assert out and out["errors"] == 0
    (run,) = _child_runs(uri)
    assert run.info.status == "FINISHED" and run.data.tags.get("resumed") == "true"
    assert run.data.tags["pid"] != victim.data.tags["pid"]
    steps = _epoch_steps(uri, run.info.run_id)
    assert sorted(set(steps)) == list(range(1, 61))
    assert Counter(steps)[1] == 1  # continued from a checkpoint, not restarted from epoch 1


KILLED_DRIVER_SPEC = {
    **TINY_SPEC,
    "search": {"space": {"model.activation": ["relu", "tanh", "sigmoid", "leaky_relu"]}},
    "train": {"epochs": 25, "lr": 0.05},
    "model": {"name": "mlp", "hidden": [128, 128]},
}


@dataclass(frozen=True)
class KilledDriver:
    """A study stage SIGKILLed while one trial of its sweep had finished and another ran: what it left in `work` (its
    params, study, MLflow store and Tune folder) is also kept in `snapshot`, for `restore` to put back."""

    work: Path
    snapshot: Path
    cmd: list[str]
    env: dict[str, str]
    finished_before: dict[str, int]  # run id -> end time of the trials' runs FINISHED before the kill

    def restore(self, name: str) -> str:
        """Put back `work` as the killed driver left it, at the same absolute path: the params name the store and the
        Tune folder by it, the experiment's artifact location and Tune's saved state too. Returns a tracking URI of
        that store for the test to read, its own for `name`: MLflow keeps one SQLAlchemy engine per store URI in a
        process, whose pooled connection would go on reading the store file that this restore replaced."""
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self.snapshot, self.work, symlinks=True)
        alias = self.work.parent / f"read-{name}"  # a link to `work`: the same file under another name
        alias.symlink_to(self.work, target_is_directory=True)
        return f"sqlite:///{alias / 'mlflow.db'}"


@pytest.fixture(scope="module")
def killed_driver(tmp_path_factory, prepared_dir) -> KilledDriver:
    """One first run for every variant of the killed-driver test: the variants differ only in how they alter the
    saved state the kill left, so they share the kill (the expensive part) and each resumes from a copy of it."""
    base = tmp_path_factory.mktemp("killed_driver")
    work = base / "sweep"
    work.mkdir()
    _, params_path, spec_path = _study(work, KILLED_DRIVER_SPEC, **{"ray.num_cpus": 1})
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = study_stage(params_path, spec_path, prepared_dir, work / "results")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    first_log = base / "first_driver.log"
    with first_log.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    processes: dict[int, psutil.Process] = {}  # the driver's, its own Ray runtime's and its trials'

    def note_processes():
        try:
            me = psutil.Process(proc.pid)
            for p in [me, *me.children(recursive=True)]:
                processes[p.pid] = p
        except psutil.NoSuchProcess:
            pass

    def one_finished_one_running():
        note_processes()
        assert proc.poll() is None, f"the first driver ended on its own: {first_log.read_text()[-3000:]}"
        if not sweep_store_made(work) or not _saved_state_lists_trials(work):
            # Wait for a saved state that lists the trials, as the variants that alter a trial's entry need: Tune's
            # first save lists none, the next comes at least 10 s later (the variant without trials stands for a kill
            # before it).
            return None
        try:
            runs = _child_runs(uri)
        except Exception:
            return None
        statuses = Counter(r.info.status for r in runs)
        return runs if statuses["FINISHED"] >= 1 and statuses["RUNNING"] >= 1 else None

    try:
        before = wait_for(one_finished_one_running)
    except BaseException as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if isinstance(e, TimeoutError):
            raise TimeoutError(f"no trial finished while another ran: {first_log.read_text()[-3000:]}") from None
        raise
    note_processes()
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: Ray's own processes share its fate
    proc.wait()
    # Nothing of the first run may write to the store or the Tune folder once they are copied: wait for its trials
    # and Ray's processes to end, as they do within seconds of their driver (any still there after 2 min are killed).
    # Ray's dashboard and runtime-env agents, which write to neither, wait a minute for their lost GCS first: they
    # are left to end on their own, as the test always left them.
    writers = [p for p in processes.values() if not _ray_agent(p)]
    _, alive = psutil.wait_procs(writers, timeout=120)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=30)
    finished_before = {r.info.run_id: r.info.end_time for r in before if r.info.status == "FINISHED"}
    snapshot = base / "snapshot"
    shutil.copytree(work, snapshot, symlinks=True)
    return KilledDriver(work, snapshot, cmd, env, finished_before)


def _ray_agent(p: psutil.Process) -> bool:
    try:
        return any(name in " ".join(p.cmdline()) for name in ("DashboardAgent", "RuntimeEnvAgent"))
    except psutil.Error:  # gone already
        return False


def _saved_state_lists_trials(folder: Path) -> bool:
    """Whether Tune's newest saved state of the sweep in `folder` lists its trials."""
    states = sorted((folder / "ray_results").glob("s-*/experiment_state-*.json"))
    try:
        return bool(states) and bool(json.loads(states[-1].read_text()).get("trial_data"))
    except (OSError, ValueError):  # being written
        return False


@pytest.mark.parametrize("state", ["as_saved", "without_trials", "unreadable", "invalid"])
def test_killed_driver_resumes_without_rerunning_finished_trials(killed_driver, state):
    """The same command after a SIGKILL finishes the sweep, whatever Tune's saved state holds: Tune saves it at most
    every 10 s, so a driver killed early leaves the state of Tune's first save, which lists no trial and which
    Tune cannot restore (CI met it). Such a state, or an unreadable one, starts the trials again; one Tune itself
    fails to restore makes Tune start the sweep over with new trial ids. Finished trials keep their runs."""
    uri = killed_driver.restore(state)
    work, cmd, env = killed_driver.work, killed_driver.cmd, killed_driver.env
    finished_before = killed_driver.finished_before
    (saved,) = sorted((work / "ray_results").glob("s-*/experiment_state-*.json"))[-1:]
    experiment = json.loads(saved.read_text())
    if state == "without_trials":
        experiment["trial_data"] = []
    elif state == "unreadable":
        experiment["trial_data"][0][0] = "{not json"
    elif state == "invalid":  # readable, but not a trial: Tune's own restore fails and starts the sweep over
        experiment["trial_data"][0][0] = "{}"
    saved.write_text(json.dumps(experiment))

    again = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming sweep" in again.stderr
    expected_line = {
        "as_saved": None,
        "without_trials": "its saved state lists no trial",
        "unreadable": "its saved state cannot be read",
        "invalid": "Tune could not restore the sweep's saved state",
    }[state]
    assert expected_line is None or expected_line in again.stderr, again.stderr[-3000:]
    runs = _child_runs(uri)
    variants = Counter(r.data.tags["variant"] for r in runs)
    assert variants == {"relu": 1, "tanh": 1, "sigmoid": 1, "leaky_relu": 1}, again.stderr[-3000:]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        if r.info.run_id in finished_before:  # kept, not re-run
            assert r.info.end_time == finished_before[r.info.run_id]
            assert "resumed" not in r.data.tags
        assert sorted(set(_epoch_steps(uri, r.info.run_id))) == list(range(1, 26))
    parent = [
        r
        for r in MlflowClient(uri).search_runs([runs[0].info.experiment_id])
        if r.data.tags.get("sweep_parent") == "true"
    ]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert json.loads((work / "results" / "sweep.json").read_text())["resumed"] is True


def test_diverging_trial_is_tagged_and_the_sweep_goes_on(tmp_path, prepared_dir, ray_local):
    spec = {
        **TINY_SPEC,
        "search": {"space": {"train.lr": [0.05, 1.0e6]}},
        "train": {"epochs": 3},
        "model": {"name": "mlp", "hidden": [32, 32]},
    }
    study, _, _ = _study(tmp_path, spec, **SERIAL_TRIALS)
    summary = run_study(study, prepared_dir, tmp_path / "results")
    assert summary["errors"] == 0
    runs = {r["tags"]["variant"]: r for r in json.loads((tmp_path / "results" / "runs.json").read_text())}
    assert runs["1e+06"]["tags"]["outcome"] == "diverged" and runs["1e+06"]["status"] == "FINISHED"
    assert runs["0.05"]["tags"]["outcome"] == "completed"
    assert len(runs["0.05"]["history"]["epoch"]) == 3

    from pipeline.report.analysis import analyze
    from pipeline.report.build import conclude

    analysis = conclude(analyze(list(runs.values()), "val_accuracy", "max"), [], list(runs.values()))
    assert analysis["variants"]["1e+06"]["diverged"] == 1
    assert "1 run(s) diverged" in analysis["answer"]


def test_asha_stops_trials_early_and_marks_their_runs(tmp_path, prepared_dir, ray_local):
    spec = {
        **TINY_SPEC,
        "train": {"epochs": 9},
        "search": {
            "space": {"train.lr": [0.3, 0.1, 0.03, 0.01, 0.003, 0.001]},
            "scheduler": "asha",
            "grace_period": 1,
            "reduction_factor": 3,
        },
    }
    study, _, _ = _study(tmp_path, spec, **{"ray.max_concurrent_trials": 2})
    summary = run_study(study, prepared_dir, tmp_path / "results")
    assert summary["errors"] == 0
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    assert len(runs) == 6 and {r["status"] for r in runs} == {"FINISHED"}
    epochs = [len(r["history"]["epoch"]) for r in runs]
    stopped = [r for r in runs if r["tags"].get("end_reason") == "early_stopped"]
    assert stopped and sum(epochs) < 6 * 9
    assert all(len(r["history"]["epoch"]) < 9 for r in stopped)


def test_optuna_repeats_each_configuration_once_per_seed(tmp_path, prepared_dir, ray_local):
    spec = {
        **TINY_SPEC,
        "seeds": 2,
        "train": {"epochs": 2},
        "search": {"algorithm": "optuna", "num_samples": 2, "space": {"train.lr": {"loguniform": [0.01, 0.3]}}},
    }
    # Two trials at a time, one configuration's two seeds: the Repeater hands out the repeats the same way, and four
    # trial processes starting at once on a 2-core machine took twice as long (33-41 s against 19-22 s).
    study, _, _ = _study(tmp_path, spec, **{"profiles.tiny": {}, "ray.max_concurrent_trials": 2})
    summary = run_study(study, prepared_dir, tmp_path / "results")
    assert summary["errors"] == 0 and summary["trials"] == 4
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    by_lr = Counter(r["params"]["train.lr"] for r in runs)
    assert len(by_lr) == 2 and set(by_lr.values()) == {2}
    for lr in by_lr:
        assert sorted(r["tags"]["seed"] for r in runs if r["params"]["train.lr"] == lr) == ["0", "1"]
