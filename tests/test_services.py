"""Real services started and stopped by the tests: a two-node Ray cluster and an MLflow tracking server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import (
    REPO,
    SERIAL_TRIALS,
    TINY_SPEC,
    free_port,
    mlflow_process,
    study_stage,
    wait_for,
    write_params,
    write_spec,
)

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


@pytest.fixture
def ray_cluster(tmp_path):
    """`ray start --head` plus a second `ray start --address` node, one CPU each, token auth on everywhere.

    Its processes are found by their private temp dir and killed at the end: `ray stop` would also stop
    every other Ray runtime on the machine."""
    temp = Path(f"/tmp/rc{os.getpid()}_{free_port()}")  # short: Ray's socket paths have a length limit
    port = free_port()
    env = _clean_env(RAY_AUTH_MODE="token")
    common = ["--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats"]
    try:
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                "--node-ip-address=127.0.0.1",
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        subprocess.run(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(["pkill", "-9", "-f", str(temp)], check=False)
        shutil.rmtree(temp, ignore_errors=True)


def test_study_on_a_two_node_cluster_places_trials_on_both(tmp_path, prepared_dir, ray_cluster):
    address, env = ray_cluster
    params = write_params(tmp_path, **{"profiles.tiny": {"seeds": 2, "train": {"epochs": 3}}})
    spec = write_spec(tmp_path, "s", {**TINY_SPEC, "model": {"name": "mlp", "hidden": [128, 128]}})
    proc = subprocess.run(
        study_stage(params, spec, prepared_dir, tmp_path / "results"),
        cwd=tmp_path,
        env={**env, "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    assert len(runs) == 4 and {r["status"] for r in runs} == {"FINISHED"}
    assert len({r["tags"]["ray_node_id"] for r in runs}) == 2  # both nodes trained trials
    # A stage joining a cluster gets its trial actors' output: Ray's SIGTERM handler in an actor being torn down
    # used to print "Exception ignored ... SystemExit: 1" after every sweep (QuietSigterm ends it quietly).
    for noise in ("Exception ignored", "SystemExit", "Traceback"):
        assert noise not in proc.stderr, proc.stderr[-3000:]


def test_study_logs_through_an_mlflow_server(tmp_path, prepared_dir, mlflow_server, ray_local, monkeypatch):
    from pipeline.config import load_params, load_study
    from pipeline.sweep import run_study

    url, store = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    params = write_params(tmp_path, **SERIAL_TRIALS)  # what is tested is where the runs go, not concurrency
    study = load_study(write_spec(tmp_path, "s", TINY_SPEC), load_params(params), str(params))
    summary = run_study(study, prepared_dir, tmp_path / "results")
    assert summary["errors"] == 0 and summary["tracking_uri"] == url
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
    client = MlflowClient(url)
    runs = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'"
    )
    assert sorted(r.data.tags["variant"] for r in runs) == ["relu", "tanh"]
    assert all(r.info.status == "FINISHED" for r in runs)
    local = client.download_artifacts(runs[0].info.run_id, "config.yaml", str(tmp_path))
    assert "model:" in Path(local).read_text()
    # each trial's logged model went into the server's artifact store (found by its id: the server is the session's)
    models = [o.model_id for r in runs for o in r.outputs.model_outputs]
    assert len(models) == 2 and all(list((store / "art").glob(f"*/models/{m}/artifacts/MLmodel")) for m in models)


def test_ray_session_shares_one_runtime_and_stops_it(tmp_path):
    """`make repro` runs dvc under pipeline.ray_session: its processes connect to one runtime, gone afterwards."""
    (tmp_path / "params.yaml").write_text("ray: {num_cpus: 2}\n")
    probe = (
        "import os, sys, ray; ray.init(address=os.environ['RAY_ADDRESS']); "
        "env = ray.get(ray.remote(lambda: os.environ.get('RAY_TRAIN_ENABLE_PREEMPTION_WATCHER')).remote()); "
        "print(os.environ['RAY_ADDRESS'], int(ray.cluster_resources()['CPU']), env); sys.exit(3)"
    )
    env = _clean_env()
    runs = [
        subprocess.run(
            [sys.executable, "-m", "pipeline.ray_session", sys.executable, "-c", probe],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 3, r.stderr[-2000:]  # the command's exit code, passed through
    (address, cpus, watcher), (address2, _, _) = (r.stdout.split() for r in runs)
    assert cpus == "2"
    assert watcher == "0"  # the runtime's processes skip Ray Train's preemption watcher (no cloud nodes here)
    assert address != address2  # each session starts its own runtime
    # ...and stops it: no Ray process of that runtime is left.
    import psutil

    def left() -> list[str]:
        return [
            " ".join(p.info["cmdline"])[:200]
            for p in psutil.process_iter(["cmdline"])
            if f"--gcs-address={address}" in " ".join(p.info["cmdline"] or [])  # the raylet and Ray's agents
        ]

    try:
        wait_for(lambda: not left(), timeout=30)
    except TimeoutError:
        pytest.fail(f"Ray processes of the session's runtime left running: {left()}")


@pytest.fixture
def auth_server(tmp_path):
    """`mlflow server --app-name basic-auth` on 127.0.0.1 (the cluster recipe's server), admin password set."""
    store = tmp_path / "auth-server"
    store.mkdir()
    ini = store / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{store / 'basic_auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = _clean_env(
        MLFLOW_AUTH_CONFIG_PATH=str(ini),
        MLFLOW_AUTH_ADMIN_PASSWORD="s3cret-admin",
        MLFLOW_FLASK_SERVER_SECRET_KEY="test-only-csrf-key",  # the auth app refuses to start without one
    )
    store_args = [
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "art"),
    ]
    with mlflow_process(["server", "--app-name", "basic-auth", *store_args], env=env, cwd=store) as url:
        yield url


def test_a_server_behind_basic_auth_is_refused_without_credentials_and_used_with_them(
    tmp_path, prepared_dir, auth_server
):
    from pipeline.errors import ConfigError
    from pipeline.preflight import check_tracking

    def refuse_or_none(**env: str) -> str | None:
        old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        os.environ.update(env)
        try:
            check_tracking(auth_server, 60, file="params.yaml")  # it hashes the password per request: slow when busy
            return None
        except ConfigError as e:
            return str(e)
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)

    refused = refuse_or_none()
    assert refused and "params.yaml: mlflow.tracking_uri:" in refused and "HTTP 401" in refused, refused
    wrong = refuse_or_none(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="nope")
    assert wrong and "refuses user 'admin'" in wrong
    assert refuse_or_none(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="s3cret-admin") is None

    # A study stage with the credentials in its environment (as the recipe sets them before `ray start`) logs
    # every trial through the server; its local Ray runtime's workers inherit them.
    params = write_params(tmp_path, **SERIAL_TRIALS)  # what is tested is where the runs go, not concurrency
    # One trial of one epoch: the server checks the password's hash on each of the trial's requests (about 0.5 s
    # each on the 2-core machine), so every trial more costs half a minute.
    one_trial = {
        **TINY_SPEC,
        "train": {**TINY_SPEC["train"], "epochs": 1},
        "search": {"space": {"model.activation": ["relu"]}},
    }
    spec = write_spec(tmp_path, "s", one_trial)
    env = _clean_env(
        MLFLOW_TRACKING_URI=auth_server, MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="s3cret-admin"
    )
    proc = subprocess.run(
        study_stage(params, spec, prepared_dir, tmp_path / "results"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = json.loads((tmp_path / "results" / "sweep.json").read_text())
    runs = json.loads((tmp_path / "results" / "runs.json").read_text())
    assert sweep["tracking_uri"] == auth_server and sweep["errors"] == 0
    assert [r["tags"]["variant"] for r in runs] == ["relu"]
    assert {r["status"] for r in runs} == {"FINISHED"}
    assert "View run" not in proc.stdout  # MLflow's per-run URL banners are off
