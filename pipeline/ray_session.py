"""Run a command (default: `dvc repro`) with one local Ray runtime that all its study stages share.

Each study stage is its own process; left alone, each starts and stops a local Ray runtime (about 10 s on
2 cores). This checks the configuration and the services first (`pipeline.preflight`), starts one runtime,
hands its address to the command's processes through RAY_ADDRESS, and stops it when the command ends, whatever
way it ends. With RAY_ADDRESS already set (a cluster), or `ray.address` in
params.yaml, the command runs against that as it is.

    python -m pipeline.ray_session                  # dvc repro
    python -m pipeline.ray_session dvc repro report@activations
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from pipeline.config import Params, load_params
from pipeline.entry import guarded


def local_runtime_defaults() -> None:
    """Settings for a Ray runtime this machine starts for itself, before it starts (its processes inherit them).

    Ray Train's preemption watcher is one more actor process per DDP trial (about 3 s of CPU on 2 cores) that
    watches for cloud nodes being reclaimed: a local runtime has none. A cluster joined by address keeps it."""
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def start_local_runtime(params: Params, **kwargs: Any) -> None:
    """A new local Ray runtime (even if `ray start` left one running on this machine) with this machine's settings."""
    local_runtime_defaults()
    import ray

    ray.init(
        address="local",
        num_cpus=params.ray.num_cpus,
        num_gpus=params.ray.num_gpus,
        include_dashboard=False,
        logging_level="WARNING",
        **kwargs,
    )


def _nothing_to_run(cmd: list[str]) -> bool:
    """A plain `dvc repro` with every stage up to date needs no Ray runtime (`dvc status -q` exits 0)."""
    return cmd == ["dvc", "repro"] and subprocess.run(["dvc", "status", "--quiet"]).returncode == 0


def _wait(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run `cmd` to its end. A Ctrl-C reaches the command's processes from the terminal (one process group): they
    close their runs and exit on their own, so this process ignores it while it waits and then stops Ray."""
    proc = subprocess.Popen(cmd, env=env)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the fork: the command keeps the default
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


@guarded
def main(argv: list[str] | None = None) -> int:
    cmd = list(sys.argv[1:] if argv is None else argv) or ["dvc", "repro"]
    if _nothing_to_run(cmd):
        return _wait(cmd)
    # Every study in every profile, the tracking store, the storage folder and any Ray address, before any stage
    # runs: a mistake stops `dvc repro` before it spends a stage's time (no output is lost either way: every one is
    # `persist: true`). The stages then skip the service checks already made here.
    from pipeline.preflight import preflight

    preflight("params.yaml", "experiments")
    os.environ["PIPELINE_PREFLIGHT_DONE"] = "1"
    params = load_params("params.yaml")
    if os.environ.get("RAY_ADDRESS") or params.ray.address:
        return _wait(cmd)

    # Ray turns token authentication on for the runtime it starts; the stages that connect to it must use the
    # same mode or be refused (InvalidAuthToken). Ray reads the mode when it is imported: set it first.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    start_local_runtime(params)
    try:
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        return _wait(cmd, env)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
