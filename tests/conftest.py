"""Shared fixtures: a tiny params file, prepared data, and one real local Ray runtime per test session."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def write_params(folder: Path, **overrides) -> Path:
    """A params.yaml in `folder` on the tiny profile, with every store under `folder`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    params["ray"]["storage_path"] = str(folder / "ray_results")
    for key, value in overrides.items():
        node = params
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_spec(folder: Path, name: str, spec: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def pytest_configure(config):
    """Ray's auth token (`~/.ray/auth_token`), made once before any test: the tests' `ray start` clusters run with token
    auth (`RAY_AUTH_MODE=token`), which refuses to start without one, and with a fresh HOME nothing has made it yet
    (a local `ray.init` would, but in parallel runs a cluster test may come first). On the controller only, before
    pytest-xdist starts its workers."""
    if not hasattr(config, "workerinput"):
        ray = Path(sys.executable).parent / "ray"
        subprocess.run([str(ray), "get-auth-token", "--generate"], capture_output=True, check=False, timeout=120)


# The files that take minutes (real Ray, DVC and servers end to end), slowest first, then every other file. `make test`
# hands whole files to one worker per core (pytest-xdist `--dist loadfile --no-loadscope-reorder`) in this order: a
# long file handed out last would run alone at the end while the other cores idle.
SLOWEST_FILES = (
    "test_interrupts.py",
    "test_services.py",
    "test_trial_cache_dvc.py",
    "test_e2e_dvc.py",
    "test_faults.py",
    "test_sweep.py",
    "test_trial_cache.py",
    "test_preflight.py",
    "test_reproducible.py",
    "test_mlflow_ui.py",
    "test_text.py",
    "test_studies.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


TINY_SPEC = {
    "question": "Does a tiny MLP learn digits?",
    "model": {"name": "mlp", "hidden": [32], "activation": "relu"},
    "dataset": {"name": "digits"},
    "train": {"epochs": 2, "lr": 0.1},
    "search": {"space": {"model.activation": ["relu", "tanh"]}},
    "seeds": 1,
}


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray runtime for the session (4 logical CPUs so 4 trials can run at once)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        from pipeline.ray_session import local_runtime_defaults

        local_runtime_defaults()  # as pipeline.tune.tuner.init_ray does for the runtime it starts
        # address="local": always a fresh runtime of our own, whatever a killed `ray start` left in Ray's temp folder
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory) -> Path:
    """digits and synthetic, prepared once for the session."""
    from pipeline.data import prepare
    from pipeline.data.base import LoadContext

    out = tmp_path_factory.mktemp("prepared")
    ctx = LoadContext(seed=0, root=out / "raw", download=False)
    prepare("digits", {}, ctx, out)
    prepare("synthetic", {}, ctx, out)
    return out


def study_stage(params: Path, study: Path | str, data: Path | str, out: Path | str) -> list[str]:
    """The command of a study stage, as dvc.yaml runs it: `python stages/study.py --params --study --data --out`."""
    return [
        sys.executable,
        str(REPO / "stages" / "study.py"),
        *("--params", str(params), "--study", str(study)),
        *("--data", str(data), "--out", str(out)),
    ]


def wait_for(predicate, timeout: float = 240, every: float = 0.3):
    """The first truthy value of `predicate()`, polled every `every` seconds; TimeoutError after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


# write_params overrides for an end-to-end sweep that is not about concurrency (test_sweep's four concurrent trials
# are): one trial at a time, in one Ray actor that Tune reuses (reuse_actors) for every trial of the sweep. Each further
# concurrent trial is one more process importing torch, Ray and MLflow; on the loaded 2-core machine the logistic
# study's 5 tiny trials took 55-63 s at 4 at once and 28-31 s one at a time, the 3 language studies 55-74 s and 29-33 s.
SERIAL_TRIALS = {"ray.max_concurrent_trials": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(URL, store folder) of one plain `mlflow server` (SQLite store, local artifacts) on 127.0.0.1, shared by the
    session's tests that only log to or probe a live server: starting one costs 15-30 s on the 2-core machine.
    Tests that stop, kill or configure a server (auth) start their own."""
    store = tmp_path_factory.mktemp("mlflow_server")
    args = ["server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination"]
    with mlflow_process([*args, str(store / "art")], env=server_env(), timeout=180) as url:
        yield url, store


@pytest.fixture(scope="session")
def mlflow_postgres_server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(URL, backend store URI) of an `mlflow server` on a real PostgreSQL store, as a shared tracking server runs: the
    SQLite store of `mlflow_server` lets through what PostgreSQL may not. Skips where PostgreSQL is not installed."""
    from tests.postgres import postgres_database  # tests/postgres.py imports this module's free_port

    folder = tmp_path_factory.mktemp("mlflow_postgres_server")
    with postgres_database(folder) as backend_uri:
        args = ["server", "--backend-store-uri", backend_uri, "--artifacts-destination", str(folder / "art")]
        with mlflow_process(args, env=server_env(), timeout=180) as url:
            yield url, backend_uri


def server_env() -> dict[str, str]:
    """This environment for a test's `mlflow server`, less what would point it at the pipeline's own store or Ray, with
    the venv's `mlflow` first on PATH."""
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "PIPELINE_ROOT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@contextlib.contextmanager
def mlflow_process(
    args: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> Iterator[str]:
    """`mlflow ARGS --host 127.0.0.1 --port P --workers 1` (`server` or `ui`): yields its URL once /health answers,
    and stops its whole process group at the end (SIGKILL if SIGTERM is not enough)."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), *args, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mlflow {args[0]} did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that died on start: its error must not be masked
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker that ignores SIGTERM must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def sweep_store_made(folder: Path) -> bool:
    """Whether a sweep writing under `folder` (as `write_params` sets it up) has made its SQLite tracking store: it
    opens its Tune folder only after. Until then a test must leave the store alone: a client opening the file first
    creates the tables, racing the sweep's own creation and its check of the store ("database is locked")."""
    return any((folder / "ray_results").glob("*"))
