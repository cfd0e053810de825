"""Every workaround of Ray Tune / Ray Train behaviour that has no public API, in one place.

Tested with Ray 2.60.0 (pyproject.toml pins `ray[tune]>=2.50,<2.61`); tests/test_ray_workarounds.py fails when
Ray no longer behaves as each one assumes. Each is needed because:

1. `saved_trials` reads the trial ids and statuses in Tune's newest `experiment_state-*.json` (`trial_data`).
   `Tuner.can_restore` only says that a state file exists, but Tune's restore of a state that lists no trial (its
   first save lists none, and it saves at most every 10 s) or that is not JSON fails with a traceback and starts the
   sweep over; and when Tune's own SIGUSR1 handler ends its loop, the results list the unfinished trials TERMINATED:
   only the saved state says which trials finished. `ExperimentAnalysis` is the public reader of that state (the
   test checks that both agree), but it fails on a broken trial entry just as Tune's restore does, which Tune should
   then report itself (2.), and it reads every trial's result files besides.
2. `explain_restore_failure` watches the log line Tune writes when it cannot restore a saved state and starts the
   sweep over from the param_space ("Failed to restore the run state", logger `ray.tune.execution.tune_controller`):
   Tune raises nothing and returns nothing that says so.
3. `quiet_report_log`: Ray Train V2 logs every report of every rank at INFO under a logger named by its module's
   file path, not under `ray.train`, so neither `logging.getLogger("ray.train")` nor `ray.train.LoggingConfig`
   reaches it.
4. `quiet_sigterm` gives a Tune function trainable's actor a SIGTERM handler that ends the process at once, through
   Tune's `__mixins__` hook (the classes Tune mixes into the actor class it builds from a function; kept by
   `tune.with_parameters`). Ray's worker loop installs a handler raising SystemExit; the raylet sends SIGTERM when
   Tune releases a finished trial's placement group, often while the actor is exiting, and a SystemExit raised in
   its teardown prints "Exception ignored ... SystemExit: 1" into the stage's log. Only the actor's main thread may
   set a handler, and a function trainable runs on another thread: `setup` runs on the main one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

STATE_GLOB = "experiment_state-*.json"  # named by the time each driver started: the newest sorts last
RESTORE_LOGGER = "ray.tune.execution.tune_controller"
RESTORE_FAILED = "Failed to restore the run state"

# --------------------------------------------------------------------------- 1. Tune's saved experiment state


def saved_trials(tune_dir: Path) -> list[tuple[str, str]]:
    """(trial id, status) of every trial in Tune's newest saved state; empty if there is none. Raises ValueError,
    TypeError or AttributeError if the state cannot be read ("?" and "" stand in for a trial's missing fields)."""
    states = sorted(tune_dir.glob(STATE_GLOB))
    if not states:
        return []
    out = []
    for trial_json, _ in json.loads(states[-1].read_text()).get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        out.append((str(trial.get("trial_id", "?")), str(trial.get("status") or "")))
    return out


# --------------------------------------------------------------------------- 2. Tune's silent restart


class _RestoreFailureNote(logging.Filter):
    """Says on one line what Tune's "Failed to restore the run state" means: it starts the sweep over from its
    param_space, with new trial ids (the trials find their MLflow runs by trial_key). Lets every record through."""

    def __init__(self, study_name: str):
        super().__init__()
        self.study_name = study_name

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RESTORE_FAILED):
            error = record.exc_info[1] if record.exc_info else None
            why = f" ({type(error).__name__}: {error})" if error is not None else ""
            print(
                f"[{self.study_name}] Tune could not restore the sweep's saved state{why}; it starts the trials again "
                "(the runs of those that finished are kept, the others train again from epoch 1)",
                file=sys.stderr,
            )
        return True


@contextmanager
def explain_restore_failure(study_name: str) -> Iterator[None]:
    """Around `Tuner.fit()` (where Tune restores a saved state): one line if Tune could not restore it."""
    log = logging.getLogger(RESTORE_LOGGER)
    note = _RestoreFailureNote(study_name)
    log.addFilter(note)
    try:
        yield
    finally:
        log.removeFilter(note)


# --------------------------------------------------------------------------- 3. Ray Train's per-report log line


def quiet_report_log() -> None:
    """Silence Ray Train V2's INFO line per report and rank (its logger is named by a file path)."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # not Train V2: nothing logs there
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- 4. a quiet SIGTERM in trial actors


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """End the process at once. The raylet has given the worker up by then (SIGKILL follows in 0.2 s): a trial's
    state is in its last checkpoint and MLflow, and there is nothing left to unwind."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken log stream: nothing more to save
            pass
    os._exit(128 + signum)


class QuietSigterm:
    """Trainable mixin: installs `exit_on_sigterm` in the actor process, from its main thread."""

    def setup(self, config: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, exit_on_sigterm)
        super().setup(config)  # type: ignore[misc]  # FunctionTrainable's, after this in the MRO


F = TypeVar("F", bound=Callable[..., Any])


def quiet_sigterm(trainable: F) -> F:
    """Decorate a Tune function trainable so that its actor ends quietly on SIGTERM (see `QuietSigterm`)."""
    trainable.__mixins__ = (QuietSigterm,)  # type: ignore[attr-defined]
    return trainable
