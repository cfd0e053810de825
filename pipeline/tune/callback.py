"""The driver's hook into Tune's loop: the guard's checks between two steps, and closing the MLflow runs of the
trials Tune lets go (stopped early by ASHA, failed).

Tune restores a sweep with the RunConfig, callbacks included, pickled by the sweep's first run (documented: "Upon
resuming ..., Ray Train/Tune will automatically apply the RunConfig from the previously checkpointed run"), and that
run may have logged to another tracking URI. So `SweepCallback` holds nothing: it acts on the sweep this process runs
now, set by `running` around `Tuner.fit()` (signal handlers are per process anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from pipeline import tracking
from pipeline.trial import CHECKPOINT_FILE, Runtime, fill_history_gaps, load_checkpoint
from pipeline.tune.guard import SweepGuard


@dataclass(frozen=True)
class _Running:
    guard: SweepGuard
    runtime: Runtime


_RUNNING: _Running | None = None


@contextmanager
def running(guard: SweepGuard, runtime: Runtime) -> Iterator[None]:
    """Make `SweepCallback` act on this sweep for the duration of `Tuner.fit()`."""
    global _RUNNING
    _RUNNING = _Running(guard, runtime)
    try:
        yield
    finally:
        _RUNNING = None


class SweepCallback(Callback):
    """Tune callback of the sweep this process runs: the guard's checks between two steps of Tune's loop, and no
    trial's MLflow run left RUNNING once Tune is done with the trial."""

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


def _checkpoint_history(trial: Any) -> list[dict[str, float]]:
    """The per-epoch history saved in a Tune trial's latest checkpoint (empty if it has none on local disk)."""
    ckpt = trial.checkpoint
    if ckpt is None or not (Path(ckpt.path) / CHECKPOINT_FILE).exists():
        return []
    return load_checkpoint(ckpt.path).get("history", [])
