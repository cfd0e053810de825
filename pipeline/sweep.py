"""Run one study's sweep with Ray Tune and record it in MLflow.

A trial is a Tune *function*. With `workers_per_trial: 1` it trains in its own process; with N > 1 it
builds and fits a Ray Train `TorchTrainer` (N DDP ranks, gloo on CPU, NCCL on GPU) and Train's
`TuneReportCallback` forwards rank 0's (already all-reduced) metrics to Tune.

Sweeps are resumable: the Tune experiment folder and the MLflow parent run are named by a hash of
everything that defines the sweep, so re-running the same command after a crash restores the sweep
(`Tuner.restore`): finished trials are kept and unfinished ones continue from their checkpoints.

A sweep ends early, resumably, on SIGINT or SIGTERM and when its MLflow tracking store or Ray runtime stops
answering (`SweepGuard`): reachable runs are closed KILLED, no results are written, and the stage exits non-zero
with one line. A completed sweep keeps no checkpoints (`drop_checkpoints`): what is kept of a trial is in MLflow.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import torch
from ray.tune import Callback

from pipeline import tracking
from pipeline.config import Params, Study
from pipeline.data import Splits, load_prepared
from pipeline.paths import project_root
from pipeline.progress import TrialProgress
from pipeline.ray_session import start_local_runtime
from pipeline.trial import (
    CHECKPOINT_FILE,
    Runtime,
    fill_history_gaps,
    load_checkpoint,
    run_worker,
    trial_config,
    trial_key,
)

COMPLETED_MARKER = "SWEEP_COMPLETED"


# --------------------------------------------------------------------------- trial functions (run in Ray)


def _quiet_checkpoint_logs() -> None:
    """Ray logs INFO lines per saved checkpoint and per report, i.e. per trial and epoch: noise in a study's log."""
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # Ray Train V2 also logs every report of every rank, under its module's file path
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass


def tune_trial(config: dict[str, Any], runtime: Runtime, data: Splits) -> None:
    """A Tune function trial."""
    from ray import tune

    _quiet_checkpoint_logs()

    trial_id = tune.get_context().get_trial_id()
    cfg, variant, _ = trial_config(runtime, config)
    key = trial_key(runtime, cfg, trial_id)
    done = tracking.completed_run(runtime.tracking_uri, runtime.experiment_id, key, runtime.parent_run_id)
    if done is not None:
        # The driver died after this trial closed its run but before Tune saved that (or Tune could not restore
        # its saved state and started the sweep over): keep the run as it is.
        tune.report({k: v for k, v in done.data.metrics.items() if "/" not in k})
        return
    if runtime.workers_per_trial > 1:
        _fit_ddp(config, runtime, data, trial_id)
        return

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def get_checkpoint() -> str | None:
        ckpt = tune.get_checkpoint()
        return _readable_checkpoint(ckpt.path, lambda: ckpt.to_directory()) if ckpt else None

    use_gpu = runtime.gpus_per_worker > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    run_worker(cfg, variant, runtime, data, trial_id, report, get_checkpoint, device, _placement_tags())


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """A trial actor's SIGTERM handler: end the process at once.

    Ray's own handler raises SystemExit in the main thread, wherever it is. The raylet sends SIGTERM when Tune
    releases a finished trial's placement group, often while the actor is already exiting and running the weakref
    callbacks of its teardown; a SystemExit raised there is printed as "Exception ignored ... SystemExit: 1" into
    the stage's log. The raylet has given the worker up by then (SIGKILL follows in 0.2 s), so there is nothing
    left to unwind: a trial's state is in its last checkpoint and MLflow."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken log stream: nothing more to save
            pass
    os._exit(128 + signum)


class QuietSigterm:
    """Trainable mixin for `tune_trial` (Tune builds its actor class from the function's `__mixins__`): installs
    `exit_on_sigterm` in the actor process. `setup` runs on the actor's main thread, the only one that may set a
    signal handler; the trial function itself runs on another."""

    def setup(self, config: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, exit_on_sigterm)
        super().setup(config)  # type: ignore[misc]  # FunctionTrainable's, after this in the MRO


tune_trial.__mixins__ = (QuietSigterm,)  # type: ignore[attr-defined]


def repair_missing_checkpoints(tune_dir: Path) -> list[str]:
    """Before `Tuner.restore`: give every unfinished trial the checkpoint Tune's saved state names.

    Tune deletes a trial's old checkpoints (`CheckpointConfig.num_to_keep`) before it snapshots its state, so a
    driver killed in between leaves a state naming a deleted checkpoint, and Tune refuses to restore that
    trial ("Could not recover from checkpoint as it does not exist"). The newest readable checkpoint of the same
    trial is copied under the missing name; the trial then resumes from the epoch recorded in it.

    The checkpoints the state keeps besides (num_to_keep: 2; its last result may be one checkpoint ahead of its
    list, so the two before) may be gone too. Tune deletes them at the trial's next checkpoints and logs a
    traceback for a missing one: an empty folder stands in for each (restoring from one falls back to the newest
    readable checkpoint, see _readable_checkpoint)."""
    repaired = []
    for trial, runtime in saved_trials(tune_dir):
        name = (runtime.get("last_result") or {}).get("checkpoint_dir_name")
        logdir = trial.get("relative_logdir")
        if trial.get("status") == "TERMINATED" or not name or not logdir:
            continue
        wanted = tune_dir / logdir / name
        index = name.rpartition("_")[2]
        for before in (1, 2) if index.isdigit() else ():  # Tune numbers a trial's checkpoints 0, 1, 2, ...
            kept = wanted.parent / f"checkpoint_{int(index) - before:0{len(index)}d}"
            if int(index) >= before and not kept.exists():
                kept.mkdir(parents=True)
        if wanted.exists():
            continue
        other = _newest_readable_checkpoint(wanted.parent)
        if other is not None:
            shutil.copytree(other, wanted)
            repaired.append(f"{logdir}: checkpoint {name} was deleted before Tune saved its state; using {other.name}")
    return repaired


def saved_trials(tune_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trial, runtime metadata) of every trial in Tune's newest saved experiment state; empty if there is none."""
    states = sorted(tune_dir.glob("experiment_state-*.json"))  # named by the time each driver started
    if not states:
        return []
    out = []
    for trial_json, runtime_json in json.loads(states[-1].read_text()).get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        runtime = json.loads(runtime_json) if isinstance(runtime_json, str) else runtime_json
        out.append((trial, runtime))
    return out


def _why_not_restorable(tune_dir: Path) -> str | None:
    """Why Tune's saved state of a sweep cannot be restored, or None. Tune's restore needs one saved trial (its
    first save lists none, and it saves at most every 10 s, so a driver killed early leaves that) and fails on an
    unreadable state; either way Tune would log a traceback and start the sweep over with an empty config."""
    try:
        if not saved_trials(tune_dir):
            return "its saved state lists no trial"
    except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
        return f"its saved state cannot be read: {type(e).__name__}: {e}"
    return None


def unfinished_trials(tune_dir: Path) -> list[str]:
    """The trials Tune's saved state has neither finished nor failed. Tune's loop can return with some (its own
    SIGINT or SIGUSR1 handler stops it): its results then list them as TERMINATED, but its last state does not."""
    return [t.get("trial_id", "?") for t, _ in saved_trials(tune_dir) if t.get("status") not in ("TERMINATED", "ERROR")]


def _newest_readable_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's newest `checkpoint_*` folder whose state loads; None if it has none."""
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            load_checkpoint(str(folder))
        except Exception:  # noqa: BLE001 - an unreadable one is no replacement
            continue
        return folder
    return None


def _readable_checkpoint(path: str, fetch: Any) -> str | None:
    """`fetch()` the checkpoint Tune restores a trial from; if it cannot be fetched or read (a state file cut
    short, say), the newest readable one beside it. A deleted one is recreated before the restore (see
    repair_missing_checkpoints): Tune refuses a missing checkpoint before the trial function runs."""
    try:
        folder = fetch()
        load_checkpoint(folder)
        return folder
    except Exception as e:  # noqa: BLE001 - any failure to read it means: look for another
        reason = f"{type(e).__name__}: {e}"
    here = Path(path)
    other = _newest_readable_checkpoint(here.parent)
    if other is not None:
        print(f"checkpoint {here.name} unreadable ({reason}); resuming from {other.name}", file=sys.stderr)
        return str(other)
    print(f"checkpoint {here.name} unreadable ({reason}) and no other found; training from epoch 1", file=sys.stderr)
    return None


def _fit_ddp(config: dict[str, Any], runtime: Runtime, data: Splits, trial_id: str) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = runtime.gpus_per_worker > 0
    resources = {"CPU": runtime.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = runtime.gpus_per_worker
    trainer = TorchTrainer(
        ddp_worker,
        train_loop_config={"config": config, "runtime": runtime, "data": data, "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=runtime.workers_per_trial, use_gpu=use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            # Deterministic name: a retried or restored trial finds its own Train checkpoints.
            name=f"{runtime.study.name}-{runtime.sweep_id}-{trial_id}",
            storage_path=runtime.storage_path,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=runtime.max_failures),
        ),
    )
    trainer.fit()


def ddp_worker(loop_config: dict[str, Any]) -> None:
    """One rank of a DDP trial (runs inside a Ray Train worker)."""
    import ray.train
    import ray.train.torch

    _quiet_checkpoint_logs()
    runtime: Runtime = loop_config["runtime"]
    cfg, variant, _ = trial_config(runtime, loop_config["config"])

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    def get_checkpoint() -> str | None:
        ckpt = ray.train.get_checkpoint()
        return ckpt.to_directory() if ckpt else None

    device = ray.train.torch.get_device()
    run_worker(
        cfg,
        variant,
        runtime,
        loop_config["data"],
        loop_config["trial_id"],
        report,
        get_checkpoint,
        device,
        _placement_tags(),
    )


def _placement_tags() -> dict[str, str]:
    """Where rank 0 ran: on a cluster the MLflow run says which node (nodes may share an IP)."""
    import socket

    import ray

    return {
        "ray_node_id": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }


# --------------------------------------------------------------------------- the driver


def sweep_id(study: Study, data: Splits) -> str:
    """Hash of what defines a sweep: the resolved spec, its seeds, and the data's checksum."""
    blob = json.dumps(
        {
            "spec": study.spec.model_dump(),
            "seeds": study.seeds,
            "data": data.meta.get("sha256"),
            "ray": study.params.ray.workers_per_trial,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def init_ray(params: Params) -> dict[str, float]:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's boxed tables do not read well in a log file
    # Checkpoints every epoch with CheckpointConfig(num_to_keep) make Tune snapshot its state often, on purpose
    # (the snapshot must not point at a deleted checkpoint); its warning about that would repeat every epoch.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune logs the whole traceback of every failed trial attempt. The sweep prints a line per failure (progress),
    # the last line of each failed trial's error at the end, and keeps the traceback in <trial dir>/error.txt; a lost
    # tracking server or Ray node would otherwise fill the log with one traceback per trial and retry.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    if not ray.is_initialized():
        address = params.ray.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
        else:
            start_local_runtime(params, log_to_driver=True)  # clusters are joined via RAY_ADDRESS
    return ray.cluster_resources()


def max_concurrent(resources: dict[str, float], workers: int, cpus: float, gpus: float, configured: int | None) -> int:
    """How many trials fit at once on the cluster, so that trials never starve each other."""
    per_trial_cpu, per_trial_gpu = workers * cpus, workers * gpus
    fit = int(resources.get("CPU", 1) // per_trial_cpu) if per_trial_cpu else 1
    if per_trial_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // per_trial_gpu))
    if fit < 1:
        raise RuntimeError(
            f"one trial needs {per_trial_cpu:g} CPUs and {per_trial_gpu:g} GPUs; "
            f"the Ray cluster has {resources.get('CPU', 0):g} and {resources.get('GPU', 0):g}"
        )
    return min(fit, configured) if configured else fit


def _param_space(study: Study) -> dict[str, Any]:
    from ray import tune

    s = study.spec.search
    # Asynchronous ASHA judges a trial against those that reached its rung before it, so a grid written from
    # weak to strong (ascending learning rates, say) delays every stop: it saved 1.4x compute in written order
    # and 7.6x shuffled in docs/benchmarks.md. A grid under ASHA runs in an order shuffled by the base seed.
    shuffle = random.Random(study.params.seed) if s.algorithm == "grid" and s.scheduler == "asha" else None
    space: dict[str, Any] = {}
    for key in s.space:
        values = study.space_values(key)
        if shuffle:
            values = shuffle.sample(values, len(values))
        raw = s.space[key]
        kind = next(iter(raw)) if isinstance(raw, dict) else "grid"
        if s.algorithm == "grid":
            space[key] = tune.grid_search(values)
        elif kind in ("grid", "choice"):
            space[key] = tune.choice(values)
        else:
            space[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
                *values
            )
    if s.algorithm != "optuna":
        space["seed"] = tune.grid_search(study.seeds)
    return space


def _search_alg(study: Study):
    s = study.spec.search
    if s.algorithm != "optuna":
        return None, s.num_samples if s.algorithm == "random" else 1
    from ray.tune.search import ConcurrencyLimiter, Repeater  # noqa: F401
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(metric=study.spec.metric, mode=study.spec.mode, seed=study.params.seed)
    n_seeds = len(study.seeds)
    if n_seeds > 1:
        # Each suggested configuration runs once per seed; Optuna learns from the mean over seeds.
        searcher = Repeater(searcher, repeat=n_seeds, set_index=True)
    return searcher, s.num_samples * n_seeds


def _scheduler(study: Study):
    s = study.spec.search
    if s.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = study.resolve({}, study.seeds[0]).train.epochs
    # max_t one past the last epoch: ASHA would otherwise stop every survivor at its final report, before
    # the trial evaluates its best checkpoint and closes its MLflow run itself.
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=epochs + 1,
        grace_period=min(s.grace_period, epochs),
        reduction_factor=s.reduction_factor,
    )


def _checkpoint_history(trial: Any) -> list[dict[str, float]]:
    """The per-epoch history saved in a Tune trial's latest checkpoint (empty if it has none on local disk)."""
    ckpt = trial.checkpoint
    if ckpt is None or not (Path(ckpt.path) / CHECKPOINT_FILE).exists():
        return []
    return load_checkpoint(ckpt.path).get("history", [])


def _close_trial_runs(rt: Runtime, trial: Any, status: str, reason: str) -> None:
    """End the trial's MLflow runs still RUNNING with `status`, tagged with why Tune let the trial go."""
    runs = tracking.find_runs(
        rt.tracking_uri,
        rt.experiment_id,
        f"tags.ray_trial_id = '{trial.trial_id}' and tags.sweep_id = '{rt.sweep_id}' and attributes.status = 'RUNNING'",
    )
    c = tracking.client(rt.tracking_uri)
    if runs and reason == "early_stopped":
        # A stopped trial's process may go before its asynchronous logger wrote the last epochs;
        # the checkpoint Tune holds from its last report has the whole history.
        history = _checkpoint_history(trial)
        for r in runs:
            fill_history_gaps(rt.tracking_uri, r.info.run_id, history)
    for r in runs:
        c.set_tag(r.info.run_id, "end_reason", reason)
        c.set_terminated(r.info.run_id, status=status)


# --------------------------------------------------------------------------- ending a sweep early, resumably

SERVICE_LOST_AFTER_S = 20.0  # a tracking store or Ray GCS that has not answered for this long is lost
RAYLET_LOST_AFTER_S = 3.0  # this node's raylet: Ray itself ends a driver about 10 s after its raylet goes
PROBE_EVERY_S = 1.0  # the watchdog's probes: a TCP connect or one /health request each
PROBE_TIMEOUT_S = 3.0
STUCK_AFTER_S = 10.0  # the driver's own thread has this long to end a sweep whose tracking store is lost
EXIT_STOPPED = 75  # EX_TEMPFAIL (sysexits.h): stopped before the end, not by a signal; run it again later


class StopSweep(Exception):
    """Raised in Tune's loop to end the sweep before its trials end. An Exception, not a BaseException: Tune's loop
    then stops its trial actors on the way out (`TuneController.cleanup`), before their runs are closed."""

    def __init__(self, message: str, code: int, end_reason: str):
        super().__init__(message)
        self.message, self.code, self.end_reason = message, code, end_reason


class SweepInterrupted(SystemExit):
    """What `run_study` raises when its sweep stopped early, after printing why on one line. A SystemExit, so that a
    stage process ends with `code` (130 SIGINT, 143 SIGTERM, EXIT_STOPPED otherwise) and no traceback."""

    def __init__(self, message: str, code: int):
        super().__init__(code)
        self.message = message


@dataclass(frozen=True)
class Service:
    """Something a sweep cannot go on without, and how to tell that it is still there."""

    name: str  # as the one-line message names it
    answers: Callable[[], bool]
    lost_after_s: float = SERVICE_LOST_AFTER_S
    # Tune's loop needs it to stop its trials (Ray): without it, the loop blocks in Ray's calls until Ray ends the
    # process, so the watchdog ends the sweep itself.
    loop_needs_it: bool = False


def tcp_answers(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts a TCP connection at `host:port` (Ray's GCS, a raylet). Asking Ray itself would
    block: a driver's calls wait for a lost GCS to come back, and Ray ends the process when it does not."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


class SweepGuard:
    """For the duration of one sweep: SIGINT or SIGTERM, or a lost service, end it early and resumably.

    Signals: the first is only recorded, and Tune's loop raises it (`check`, between two steps: never in the middle of
    writing its state) and stops its trials on the way out; a second one raises at once, wherever the driver is. Tune's
    own SIGINT handler is turned off (`TUNE_DISABLE_SIGINT_HANDLER`): it made `fit()` return as if the sweep completed.

    Services: a watchdog thread probes them every PROBE_EVERY_S. A tracking store silent for its `lost_after_s` is
    raised in Tune's loop the same way; if the driver's thread is stuck (in an MLflow call, say) for STUCK_AFTER_S
    more, or at once for a lost Ray runtime (Tune's loop cannot stop trials without it), the watchdog closes what it
    can reach (`close_runs`), prints the one line and ends the process with EXIT_STOPPED."""

    def __init__(self, study: str, services: list[Service]):
        self.study = study
        self.services = services
        self.signal: int | None = None
        self.lost: StopSweep | None = None
        self.close_runs: Callable[[str], None] = lambda end_reason: None  # set once the sweep's parent run is open
        self.previous: dict[int, Any] = {}
        self._done = threading.Event()
        self._ending = threading.Lock()  # one of the driver's thread and the watchdog says the last word
        self._watchdog = threading.Thread(target=self._watch, name="sweep-watchdog", daemon=True)

    def __enter__(self) -> SweepGuard:
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._on_signal)
        self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._done.is_set():  # the sweep is being closed: that takes a few MLflow calls
            return
        if self.signal is not None:
            raise self.interrupted()
        self.signal = signum

    def interrupted(self) -> StopSweep:
        sig = self.signal or signal.SIGINT
        return StopSweep(
            f"interrupted by {signal.Signals(sig).name}; run the same command again to resume",
            128 + sig,
            "driver_interrupted",
        )

    @staticmethod
    def service_lost(service: Service, silent_s: float) -> StopSweep:
        silent = f"no answer for {silent_s:.0f} s" if silent_s >= 1 else "it does not answer"
        return StopSweep(
            f"lost {service.name} ({silent}); once it is back, run the same command again to resume",
            EXIT_STOPPED,
            "service_lost",
        )

    def check(self) -> None:
        """Raise StopSweep if a signal arrived or a service is lost (the driver's thread, between Tune's steps)."""
        if self.signal is not None:
            raise self.interrupted()
        if self.lost is not None:
            raise self.lost

    def check_finished(self, tune_dir: Path) -> None:
        """After Tune's loop returned: raise StopSweep if it should not have, or a trial is unfinished."""
        self.check()
        left = unfinished_trials(tune_dir)
        if left:
            raise StopSweep(
                f"stopped by Ray Tune with {len(left)} trials unfinished; run the same command again to resume",
                EXIT_STOPPED,
                "driver_interrupted",
            )

    def lost_now(self) -> StopSweep | None:
        """After the sweep failed: why, if a signal came or a service does not answer now."""
        if self.signal is not None:  # Ctrl-C in a terminal reaches `make repro`'s Ray session too, which stops Ray
            return self.interrupted()
        if self.lost is not None:
            return self.lost
        return next((self.service_lost(s, 0) for s in self.services if not s.answers()), None)

    def begin_end(self) -> bool:
        """Claim the sweep's ending (closing runs, the one line); False if the other thread has it."""
        self._done.set()
        return self._ending.acquire(blocking=False)

    def _watch(self) -> None:
        silent_since: dict[str, float] = {}
        while not self._done.wait(PROBE_EVERY_S):
            now = time.monotonic()
            for service in self.services:
                if service.answers():
                    silent_since.pop(service.name, None)
                    continue
                silent_s = now - silent_since.setdefault(service.name, now)
                if silent_s < service.lost_after_s:
                    continue
                self.lost = self.service_lost(service, silent_s)
                if service.loop_needs_it or not self._done.wait(STUCK_AFTER_S):
                    self._end_process(self.lost if self.signal is None else self.interrupted())
                return

    def _end_process(self, stop: StopSweep) -> None:
        """The watchdog's ending, for a driver's thread that cannot: close what can be reached, one line, exit."""
        if not self.begin_end():
            return
        try:
            self.close_runs(stop.end_reason)
        finally:
            print(f"[{self.study}] {stop.message}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(stop.code)


@dataclass(frozen=True)
class _Running:
    guard: SweepGuard
    runtime: Runtime


_RUNNING: _Running | None = None  # the sweep this process runs now (signal handlers are per process anyway)


@contextmanager
def _running(guard: SweepGuard, runtime: Runtime) -> Iterator[None]:
    global _RUNNING
    _RUNNING = _Running(guard, runtime)
    tune_log = logging.getLogger("ray.tune.execution.tune_controller")
    fallback = _RestoreFallback(runtime.study.name)
    tune_log.addFilter(fallback)
    try:
        yield
    finally:
        tune_log.removeFilter(fallback)
        _RUNNING = None


class _RestoreFallback(logging.Filter):
    """Says on one line what it means when Tune could not restore a sweep's saved state: Tune logs a traceback and
    starts the sweep over from its param_space, with new trial ids (trial_key finds their runs again)."""

    def __init__(self, study_name: str):
        super().__init__()
        self.study_name = study_name

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to restore the run state"):
            error = record.exc_info[1] if record.exc_info else None
            why = f" ({type(error).__name__}: {error})" if error is not None else ""
            print(
                f"[{self.study_name}] Tune could not restore the sweep's saved state{why}; it starts the trials again "
                "(the runs of those that finished are kept, the others train again from epoch 1)",
                file=sys.stderr,
            )
        return True


class SweepCallback(Callback):
    """Tune callback of the sweep this process runs: the guard's checks between two steps of Tune's loop, and no
    trial's MLflow run left RUNNING once Tune is done with the trial. Stateless, reading `_RUNNING`: a restored sweep
    runs with the callbacks pickled by its first run, which may have logged to another tracking URI."""

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if _RUNNING is not None:
            _RUNNING.guard.check()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A function trial that returns closes its own run; one still RUNNING was stopped early.
        if _RUNNING is not None:
            _close_trial_runs(_RUNNING.runtime, trial, "FINISHED", "early_stopped")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _RUNNING is not None:
            _close_trial_runs(_RUNNING.runtime, trial, "FAILED", "error")


@dataclass(frozen=True)
class _Sweep:
    """Where one study's sweep lives: its data, MLflow experiment, id and Tune folder."""

    study: Study
    data: Splits
    root: Path
    uri: str
    experiment_id: str
    sid: str
    storage: Path
    tune_name: str  # the Tune experiment's name and folder under `storage`
    data_dir: Path

    @property
    def provenance(self) -> dict[str, str]:
        """MLflow's source tags and the DVC stage and data hash, for the parent run and every trial's run."""
        entry = Path(sys.argv[0]).resolve()
        entry_name = entry.relative_to(self.root).as_posix() if entry.is_relative_to(self.root) else entry.name
        return {
            **tracking.source_tags(self.root, entry_name),
            **tracking.dvc_tags(f"study@{self.study.name}", self.data_dir, self.root),
        }

    @property
    def tune_dir(self) -> Path:
        return self.storage / self.tune_name


def _resolve_sweep(study: Study, data_dir: str | Path) -> _Sweep:
    """Load the prepared data and name everything the sweep writes (creates the MLflow experiment if new)."""
    params = study.params
    root = project_root()
    data = load_prepared(
        data_dir, study.spec.dataset["name"], {k: v for k, v in study.spec.dataset.items() if k != "name"}
    )
    uri = tracking.resolve_tracking_uri(params.mlflow.tracking_uri, root)
    experiment_id = tracking.ensure_experiment(uri, study.name, root)
    sid = sweep_id(study, data)
    storage = Path(params.ray.storage_path)
    storage = storage if storage.is_absolute() or "://" in str(storage) else root / storage
    return _Sweep(study, data, root, uri, experiment_id, sid, storage, f"{study.name}-{sid}", Path(data_dir))


def _open_parent_run(sw: _Sweep) -> tuple[str, bool]:
    """(parent run id, resume?): resume a crashed sweep with the same definition; start over if the last one
    completed (its Tune folder is deleted, and a new parent run opened)."""
    study, params = sw.study, sw.study.params
    parents = tracking.find_runs(sw.uri, sw.experiment_id, f"tags.sweep_id = '{sw.sid}' and tags.sweep_parent = 'true'")
    unfinished = [r for r in parents if tracking.status_name(r) != "FINISHED"]
    resume = bool(unfinished) and sw.tune_dir.exists() and not (sw.tune_dir / COMPLETED_MARKER).exists()
    if not resume and sw.tune_dir.exists():
        shutil.rmtree(sw.tune_dir)
    c = tracking.client(sw.uri)
    if resume:
        parent_id = unfinished[0].info.run_id
        c.update_run(parent_id, status="RUNNING")
        return parent_id, resume
    parent_id = c.create_run(
        sw.experiment_id,
        run_name=f"{study.name}-sweep-{sw.sid}",
        tags={
            "sweep_parent": "true",
            "sweep_id": sw.sid,
            "study": study.name,
            "profile": params.profile,
            "question": study.spec.question,
            **sw.provenance,
        },
    ).info.run_id
    tracking.log_params(
        sw.uri,
        parent_id,
        {"spec": study.spec.model_dump(exclude={"profiles"}), "seeds": study.seeds, "profile": params.profile},
    )
    return parent_id, resume


def _runtime(sw: _Sweep, parent_id: str) -> Runtime:
    """What every trial shares; the study's own resources override the `ray` defaults in params."""
    study, ray_cfg = sw.study, sw.study.params.ray
    res = study.spec.resources
    return Runtime(
        study=study,
        tracking_uri=sw.uri,
        experiment_id=sw.experiment_id,
        parent_run_id=parent_id,
        sweep_id=sw.sid,
        space_keys=list(study.spec.search.space),
        workers_per_trial=res.workers_per_trial or ray_cfg.workers_per_trial,
        cpus_per_worker=res.cpus_per_worker or ray_cfg.cpus_per_worker,
        gpus_per_worker=res.gpus_per_worker if res.gpus_per_worker is not None else ray_cfg.gpus_per_worker,
        storage_path=str(sw.storage),
        max_failures=ray_cfg.max_failures,
        tags={
            **sw.provenance,
            **tracking.package_versions(),
            "data_sha256": sw.data.meta.get("sha256", ""),
        },
        data_source=sw.data.meta.get("path", ""),
    )


def _trainable(runtime: Runtime, data: Splits, resources: dict[str, float]) -> tuple[Any, int]:
    """(the Tune trainable with its per-trial resources, how many trials run at once on `resources`)."""
    from ray import tune

    workers, cpus, gpus = runtime.workers_per_trial, runtime.cpus_per_worker, runtime.gpus_per_worker
    concurrency = max_concurrent(resources, workers, cpus, gpus, runtime.study.params.ray.max_concurrent_trials)
    if workers > 1:
        # The trial function only waits on its TorchTrainer, whose workers hold the resources.
        trial_resources: dict[str, float] = {"cpu": 0.01}  # Tune refuses an empty request
    else:
        trial_resources = {"cpu": cpus, "gpu": gpus}
    trainable = tune.with_resources(tune.with_parameters(tune_trial, runtime=runtime, data=data), trial_resources)
    return trainable, concurrency


def _run_config(sw: _Sweep, runtime: Runtime) -> Any:
    """Tune's RunConfig: the sweep's folder, the sweep's and progress callbacks, retries, checkpoints."""
    from ray import tune

    study = sw.study
    return tune.RunConfig(
        name=sw.tune_name,
        storage_path=str(sw.storage),
        callbacks=[SweepCallback(), TrialProgress(study.name, study.spec.metric, study.spec.mode)],
        failure_config=tune.FailureConfig(max_failures=runtime.max_failures if runtime.workers_per_trial == 1 else 0),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=0,  # TrialProgress prints one plain line per event instead of redrawn tables
    )


def _tuner(
    sw: _Sweep,
    trainable: Any,
    run_config: Any,
    search_alg: Any,
    num_samples: int,
    concurrency: int,
    resume: bool,
) -> Any:
    """The sweep's Tuner: restored from its Tune folder when resuming (and restorable), else a new one."""
    from ray import tune

    study = sw.study
    if resume and tune.Tuner.can_restore(str(sw.tune_dir)):
        print(f"[{study.name}] resuming sweep {sw.sid} from {sw.tune_dir}", file=sys.stderr)
        why_not = _why_not_restorable(sw.tune_dir)
        if why_not is None:
            for line in repair_missing_checkpoints(sw.tune_dir):
                print(f"[{study.name}] {line}", file=sys.stderr)
            # The same param_space again: if Tune cannot restore its state it starts the sweep over from this
            # space (logging "Failed to restore the run state"), and the trials find their runs by trial_key.
            return tune.Tuner.restore(
                str(sw.tune_dir),
                trainable,
                param_space=_param_space(study),
                resume_unfinished=True,
                resume_errored=True,
            )
        print(
            f"[{study.name}] Tune cannot restore sweep {sw.sid} ({why_not}); starting its trials again "
            "(the runs of those that finished are kept, the others train again from epoch 1)",
            file=sys.stderr,
        )
    return tune.Tuner(
        trainable,
        param_space=_param_space(study),
        tune_config=tune.TuneConfig(
            metric=study.spec.metric,
            mode=study.spec.mode,
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=_scheduler(study),
            max_concurrent_trials=concurrency,
            reuse_actors=True,  # a fresh process per trial re-imports torch, ray and mlflow (~10 s)
        ),
        run_config=run_config,
    )


def _print_trial_errors(study_name: str, results: Any) -> list[Any]:
    """The failed trials' results, each announced on stderr by the last line of its traceback."""
    errors = [r for r in results if r.error is not None]
    for r in errors:
        # The last line of the trial's traceback names the exception; the whole one is in <trial dir>/error.txt.
        text = str(r.error).strip()
        last = text.splitlines()[-1] if text else type(r.error).__name__
        print(f"[{study_name}] trial {r.path}: {last}", file=sys.stderr)
    return errors


def _write_results(
    sw: _Sweep, parent_id: str, out_dir: str | Path, runs: Any, summary: dict[str, Any], failed: bool
) -> None:
    """Write `runs.json` and `sweep.json`, mark the Tune folder completed, then close the parent run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    # Written last: only a sweep whose outputs exist counts as completed (a re-run then starts over).
    (sw.tune_dir / COMPLETED_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (sw.tune_dir / COMPLETED_MARKER).write_text(parent_id + "\n")
    tracking.client(sw.uri).set_terminated(parent_id, status="FAILED" if failed else "FINISHED")


def _close_reachable(sw: _Sweep, parent_id: str, end_reason: str) -> None:
    """Close the sweep's runs still RUNNING (its trials' and its parent) as KILLED, if the tracking store answers.
    What cannot be reached now is closed by the next run of the sweep (`stale_driver`)."""
    if not tracking.store_answers(sw.uri, PROBE_TIMEOUT_S):
        return
    try:
        tracking.close_unfinished(sw.uri, sw.experiment_id, parent_id, "KILLED", end_reason)
        tracking.client(sw.uri).set_terminated(parent_id, status="KILLED")
    except Exception:  # noqa: BLE001 - lost in the meantime: the next run closes them
        pass


def _end_early(sw: _Sweep, parent_id: str, guard: SweepGuard, stop: StopSweep) -> NoReturn:
    """Close the sweep's runs that can be reached (KILLED), say why on one line, and raise SweepInterrupted. No
    results are written and the Tune folder stays as it is, so the same command resumes the sweep."""
    if not guard.begin_end():  # the watchdog is ending the process
        threading.Event().wait()
    _close_reachable(sw, parent_id, stop.end_reason)
    print(f"[{sw.study.name}] {stop.message}", file=sys.stderr, flush=True)
    raise SweepInterrupted(stop.message, stop.code)


def drop_checkpoints(storage: Path, tune_name: str) -> int:
    """Delete the checkpoint folders of a completed sweep's trials (Tune's, and Ray Train's of DDP trials, which
    live in `<tune_name>-<trial id>`); returns the bytes freed. What `rerun` and the report read is in MLflow:
    config.yaml, the logged model, the metrics. Tune's experiment state stays as it is (a few kB per trial, still
    loadable), naming checkpoints that only a restore would read: a completed sweep is started over, not restored."""
    folders = [*storage.glob(f"{tune_name}/*/checkpoint_*"), *storage.glob(f"{tune_name}-*/checkpoint_*")]
    freed = 0
    for folder in folders:
        freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return freed


def _services(uri: str) -> list[Service]:
    """What the sweep needs: its tracking store, the Ray runtime's GCS and this node's raylet (the driver's link to
    Ray; a raylet does not come back)."""
    import ray

    gcs = ray.get_runtime_context().gcs_address
    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    raylet = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    store = "server" if uri.startswith(("http://", "https://")) else "store"
    return [
        Service(f"the MLflow tracking {store} {uri}", functools.partial(tracking.store_answers, uri, PROBE_TIMEOUT_S)),
        Service(f"the Ray runtime at {gcs}", functools.partial(tcp_answers, gcs), loop_needs_it=True),
        Service(
            f"this node's Ray raylet at {raylet}",
            functools.partial(tcp_answers, raylet),
            lost_after_s=RAYLET_LOST_AFTER_S,
            loop_needs_it=True,
        ),
    ]


def run_study(study: Study, data_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the study's sweep; write `<out>/runs.json` and `<out>/sweep.json`.

    Raises SweepInterrupted (a SystemExit) if the sweep stopped early: on SIGINT or SIGTERM, when its tracking store
    or Ray runtime stopped answering, or when Tune returned with trials unfinished."""
    params = study.params
    sw = _resolve_sweep(study, data_dir)
    resources = init_ray(params)
    with SweepGuard(study.name, _services(sw.uri)) as guard:
        # A driver that died (or lost its tracking server) left its trials' runs RUNNING: none of them runs now.
        stale = tracking.close_sweep_runs(sw.uri, sw.experiment_id, sw.sid, "KILLED", "stale_driver")
        if stale:
            print(f"[{study.name}] closed {stale} runs left RUNNING by an earlier run of this sweep", file=sys.stderr)
        parent_id, resume = _open_parent_run(sw)
        guard.close_runs = functools.partial(_close_reachable, sw, parent_id)
        try:
            summary = _sweep(sw, parent_id, resume, resources, out_dir, guard)
        except StopSweep as stop:
            _end_early(sw, parent_id, guard, stop)
        except BaseException:
            lost = guard.lost_now()
            if lost is not None:  # the failure is the lost service's: one line, not its traceback
                _end_early(sw, parent_id, guard, lost)
            tracking.close_unfinished(sw.uri, sw.experiment_id, parent_id, "KILLED", "driver_interrupted")
            tracking.client(sw.uri).set_terminated(parent_id, status="KILLED")
            raise
    drop_checkpoints(sw.storage, sw.tune_name)
    return summary


def _sweep(
    sw: _Sweep, parent_id: str, resume: bool, resources: dict[str, float], out_dir: str | Path, guard: SweepGuard
) -> dict[str, Any]:
    """Fit the Tuner, then (if every trial ended) export the runs and write the results and the completed marker."""
    study = sw.study
    runtime = _runtime(sw, parent_id)
    trainable, concurrency = _trainable(runtime, sw.data, resources)
    search_alg, num_samples = _search_alg(study)
    run_config = _run_config(sw, runtime)
    t0 = time.time()
    tuner = _tuner(sw, trainable, run_config, search_alg, num_samples, concurrency, resume)
    with _running(guard, runtime):
        results = tuner.fit()
    guard.check_finished(sw.tune_dir)
    closed = tracking.close_unfinished(sw.uri, sw.experiment_id, parent_id, "FAILED", "left_running")
    errors = _print_trial_errors(study.name, results)
    runs = tracking.export_runs(sw.uri, sw.experiment_id, parent_id)
    summary = {
        "study": study.name,
        "sweep_id": sw.sid,
        "experiment_id": sw.experiment_id,
        "parent_run_id": parent_id,
        "tracking_uri": sw.uri,
        "profile": study.params.profile,
        "question": study.spec.question,
        "metric": study.spec.metric,
        "mode": study.spec.mode,
        "seeds": study.seeds,
        "trials": len(results),
        "errors": len(errors),
        "closed_left_running": closed,
        "wall_seconds": round(time.time() - t0, 2),
        "resumed": resume,
    }
    guard.check_finished(sw.tune_dir)  # a signal during the export: nothing written yet
    _write_results(sw, parent_id, out_dir, runs, summary, failed=bool(errors))
    return summary
