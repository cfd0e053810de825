"""Fail early, lose nothing: a study stage process that gets SIGINT or SIGTERM, or loses its MLflow tracking server or
its Ray runtime mid-sweep, ends soon with one line and a non-zero exit, closes the runs it can reach, writes no results,
and the same command resumes the sweep. A completed sweep keeps no checkpoints; an interrupted one keeps them all.

Everything is real: stage processes (`python stages/study.py`) receiving real signals, their own Ray runtime or a
`ray start --head` one, an `mlflow server` on 127.0.0.1 killed and restarted on the same store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow import MlflowClient

from tests.conftest import TINY_SPEC, free_port, study_stage, sweep_store_made, wait_for, write_params, write_spec

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# How long a stage may take to end once its sweep is interrupted: these catch a stage that hangs, or waits for
# something to time out or for its trials to finish, instead of stopping them. It normally takes 3-10 s (a signal, a
# lost raylet: a few seconds; a lost tracking server: FAST_WATCHDOG's 6 s, then the ending); the bounds are several
# times that, so that a loaded 2-core machine cannot miss them.
SIGNAL_BOUND_S = 60
BOUND_S = 60
# The sweep watchdog's waits (pipeline.tune.guard) in the stage whose tracking server the test kills: the server is
# lost after 6 s of silence instead of 20, and a driver stuck in an MLflow call gets 3 s more instead of 10. The stage
# then ends ~10 s after the kill instead of 30-55 s, and its trials train fewer epochs unseen, which the next run
# logs again one request each (300 of them took 100 s). 6 s: at least two probes in a row (3 s timeout each) must
# fail before a live but slow server counts as lost.
FAST_WATCHDOG = {"PIPELINE_SERVICE_LOST_AFTER_S": "6", "PIPELINE_STUCK_AFTER_S": "3"}
MARKER = "SWEEP_COMPLETED"


def _env(**extra: str) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "PIPELINE_PREFLIGHT_DONE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def _wait_for(predicate: Callable[[], Any], timeout: float = 300, every: float = 0.5) -> Any:
    return wait_for(predicate, timeout, every)


class Stage:
    """`python stages/study.py` on a two-trial tiny study in `folder`, its output in files; kills what it leaves."""

    def __init__(self, folder: Path, prepared: Path, epochs: int, env: dict[str, str]):
        self.folder, self.env = folder, env
        params = write_params(folder, studies=["s"], **{"profiles.tiny": {"seeds": 1}, "ray.num_cpus": 2})
        spec = {**TINY_SPEC, "model": {"name": "mlp", "hidden": [128, 128]}, "train": {"epochs": epochs, "lr": 0.05}}
        self.cmd = study_stage(params, write_spec(folder, "s", spec), prepared, folder / "results")
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}  # the stage's processes (its own Ray runtime included)
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.out = self.folder / f"stderr{self.runs}.txt"
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.folder,
            env=self.env,
            stdout=open(self.folder / f"stdout{self.runs}.txt", "w"),  # noqa: SIM115 - closed with the process
            stderr=open(self.out, "w"),  # noqa: SIM115
            start_new_session=True,
        )

    def note_processes(self) -> None:
        try:
            me = psutil.Process(self.proc.pid)
            for p in [me, *me.children(recursive=True)]:
                self.seen[p.pid] = p
        except psutil.NoSuchProcess:
            pass

    def wait(self, timeout: float = 600) -> tuple[int, str, float]:
        """(exit code, stderr, seconds it took)."""
        t0 = time.time()
        code = self.proc.wait(timeout=timeout)
        return code, self.out.read_text(), time.time() - t0

    def run(self) -> tuple[int, str]:
        self.start()
        code, err, _ = self.wait()
        return code, err

    def kill_leftovers(self) -> list[str]:
        """Kill (by pid) every process of the stage still alive a few seconds after it ended; returns them."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Ray's dashboard and runtime-env agents exit on their own once they see their raylet gone: a few seconds,
        # longer on a loaded 2-core machine (once 15 s was not enough). Only a process alive after this counts.
        _, alive = psutil.wait_procs(list(self.seen.values()), timeout=45)
        left = []
        for p in alive:
            try:
                left.append(f"{p.pid} {p.name()}")
                p.kill()
            except psutil.NoSuchProcess:
                pass
        return left


@pytest.fixture
def stage(tmp_path: Path, prepared_dir: Path) -> Iterator[Callable[..., Stage]]:
    made: list[Stage] = []

    def make(epochs: int = 200, **env: str) -> Stage:
        made.append(Stage(tmp_path, prepared_dir, epochs, _env(**env)))
        return made[-1]

    yield make
    left = [p for s in made for p in s.kill_leftovers()]
    assert not left, f"processes left behind: {left}"


def _all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def _trials(uri: str) -> list:
    return [r for r in _all_runs(uri) if r.data.tags.get("sweep_parent") != "true"]


def _training(uri: str, stage: Stage, min_epoch: int = 3) -> bool:
    """Both trials RUNNING past `min_epoch` (noting the stage's processes meanwhile)."""
    stage.note_processes()
    assert stage.proc.poll() is None, stage.out.read_text()[-3000:]
    if not sweep_store_made(stage.folder):  # opening a SQLite store before the stage made it breaks the stage
        return False
    try:
        runs = [r for r in _trials(uri) if r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= min_epoch]
    except Exception:  # noqa: BLE001 - the store is not there yet
        return False
    return len(runs) == 2


def _tune_dir(folder: Path) -> Path:
    (tune_dir,) = (folder / "ray_results").iterdir()
    return tune_dir


def _checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "ray_results").glob("*/*/checkpoint_*"))


def _assert_stopped(folder: Path, uri: str, reason: str) -> None:
    """What an early end leaves: every run closed KILLED, no results, no completed marker, the checkpoints kept."""
    runs = _all_runs(uri)
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.info.status, r.data.tags) for r in runs]
    assert {r.data.tags.get("end_reason") for r in _trials(uri)} == {reason}
    assert not (folder / "results").exists()
    assert not (_tune_dir(folder) / MARKER).exists()
    assert _checkpoints(folder)


def _assert_completed(folder: Path, uri: str) -> dict[str, Any]:
    summary = json.loads((folder / "results" / "sweep.json").read_text())
    trials = _trials(uri)
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}
    assert summary["errors"] == 0 and summary["trials"] == 2
    assert (_tune_dir(folder) / MARKER).exists()
    assert not _checkpoints(folder)  # a completed sweep keeps none: MLflow holds the model and metrics
    return summary


def _one_line(err: str, text: str) -> str:
    (line,) = [ln for ln in err.splitlines() if text in ln]
    return line


# --------------------------------------------------------------------------- signals


def test_sigint_stops_the_sweep_and_the_same_command_resumes_it(tmp_path, stage):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = stage()
    s.start()
    _wait_for(lambda: _training(uri, s))
    s.proc.send_signal(signal.SIGINT)
    code, err, took = s.wait(timeout=120)
    assert code == 130, err[-3000:]
    assert _one_line(err, "interrupted by SIGINT") == "[s] interrupted by SIGINT; run the same command again to resume"
    assert "Traceback" not in err and took < SIGNAL_BOUND_S, (took, err[-3000:])
    _assert_stopped(tmp_path, uri, "driver_interrupted")

    code, err = s.run()
    assert code == 0, err[-3000:]
    assert "resuming sweep" in err and "Traceback" not in err
    summary = _assert_completed(tmp_path, uri)
    assert summary["resumed"] is True
    # Resumed, not restarted: each trial's run was reopened and its epochs logged once each.
    for run in _trials(uri):
        assert run.data.tags.get("resumed") == "true" and "end_reason" not in run.data.tags  # running again
        steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "epoch")]
        assert sorted(set(steps)) == list(range(1, 201))


def test_sigterm_stops_the_sweep_with_exit_code_143(tmp_path, stage):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = stage()
    s.start()
    _wait_for(lambda: _training(uri, s))
    s.proc.send_signal(signal.SIGTERM)
    code, err, _ = s.wait(timeout=120)
    assert code == 143, err[-3000:]
    assert _one_line(err, "interrupted by SIGTERM").startswith("[s] interrupted by SIGTERM;")
    assert "Traceback" not in err
    _assert_stopped(tmp_path, uri, "driver_interrupted")


# --------------------------------------------------------------------------- lost services


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over a SQLite store in `folder`; killed and restarted on the same port."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                *("server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
                *("--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}"),
                *("--artifacts-destination", str(self.folder / "art")),
            ],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:
            assert self.proc.poll() is None, "mlflow server ended"
            try:
                return urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200
            except OSError:
                return False

        _wait_for(up, timeout=300)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path)
    try:
        yield server
    finally:
        server.kill()


def test_lost_tracking_server_ends_the_sweep_and_the_next_run_closes_its_runs(tmp_path, stage, mlflow_server):
    mlflow_server.start()
    uri = mlflow_server.url
    s = stage(epochs=300, MLFLOW_TRACKING_URI=uri, **FAST_WATCHDOG)  # training on when the watchdog ends it
    s.start()
    _wait_for(lambda: _training(uri, s))
    mlflow_server.kill()
    code, err, took = s.wait(timeout=300)
    assert code != 0 and took < BOUND_S, (code, took, err[-3000:])
    assert _one_line(err, "lost the MLflow tracking server").startswith(f"[s] lost the MLflow tracking server {uri} (")
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (_tune_dir(tmp_path) / MARKER).exists()

    mlflow_server.start()  # the same port and store
    assert {r.info.status for r in _trials(uri)} == {"RUNNING"}  # nobody could close them
    s.env = _env(MLFLOW_TRACKING_URI=uri)  # the next run with the watchdog's own waits, as a user runs it
    code, err = s.run()
    assert code == 0, err[-3000:]
    assert "closed 2 runs left RUNNING by an earlier run of this sweep" in err and "resuming sweep" in err
    _assert_completed(tmp_path, uri)
    for run in _trials(uri):  # the same runs: closed (stale_driver), then resumed
        assert run.data.tags.get("resumed") == "true" and "end_reason" not in run.data.tags


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`ray start --head` with its own temp dir (and so its own ray_current_cluster file), token auth as on a cluster.
    Its processes are found by that temp dir and killed by pid at the end: `ray stop` would stop every runtime here."""
    temp = Path(f"/tmp/ri{os.getpid()}_{free_port()}")  # short: Ray's socket paths have a length limit
    port = free_port()
    try:
        subprocess.run(
            [
                *(str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false"),
                *("--node-ip-address=127.0.0.1", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"),
            ],
            env=_env(RAY_AUTH_MODE="token"),
            check=True,
            capture_output=True,
            timeout=180,
        )
        yield f"127.0.0.1:{port}", temp
    finally:
        mine = [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or [])]
        for p in mine:
            p.kill()
        psutil.wait_procs(mine, timeout=30)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


def test_lost_ray_runtime_ends_the_sweep(tmp_path, stage, ray_head):
    address, temp = ray_head
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = stage(RAY_ADDRESS=address, RAY_AUTH_MODE="token")
    s.start()
    _wait_for(lambda: _training(uri, s))
    head = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(temp) in " ".join(p.info["cmdline"] or []) and any(n in p.info["cmdline"][0] for n in ("gcs", "raylet"))
    ]
    assert len(head) == 2, [p.info["cmdline"][0] for p in head]
    for p in head:
        p.kill()
    code, err, took = s.wait(timeout=300)
    assert code != 0 and took < BOUND_S, (code, took, err[-3000:])
    assert _one_line(err, "[s] lost ").endswith("once it is back, run the same command again to resume")
    assert "Ray" in _one_line(err, "[s] lost ")
    _assert_stopped(tmp_path, uri, "service_lost")  # the tracking store is there: every run is closed
