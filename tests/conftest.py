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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker that ignores SIGTERM must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
